"""The one image resize: the definition's numbers worked by hand, its properties, and ONNX
Runtime's ``Resize`` (linear, half-pixel centres, antialias=1) on uint8 images giving the
same pixels, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from chainrule.data import DataWarning, load, resize_images
from chainrule.data.resize import format_size, parse_size, resize_weights


def row(*values) -> np.ndarray:
    """One image of one row, one channel: (1, 1, W, 1) uint8."""
    return np.asarray(values, np.uint8).reshape(1, 1, -1, 1)


def pixels(images) -> list[int]:
    return np.asarray(images).ravel().tolist()


def triangle_weights(n_in: int, n_out: int) -> np.ndarray:
    """The module docstring's definition, in float64: centres (i + 0.5) s, the triangle of
    half-width max(1, s), taps beyond the edges on the edge pixel, normalised."""
    s = n_in / n_out
    r = max(1.0, s)
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        c = (i + 0.5) * s
        for x in range(int(np.floor(c - r)) - 1, int(np.ceil(c + r)) + 1):
            w[i, min(max(x, 0), n_in - 1)] += max(0.0, 1 - abs(x + 0.5 - c) / r)
    return w / w.sum(axis=1, keepdims=True)


def test_shrinking_by_two_is_the_stretched_triangle_worked_by_hand():
    # 4 pixels -> 2: output 0 is centred at 1.0 (input pixel centres at 0.5, 1.5, 2.5, 3.5);
    # the triangle of half-width 2 gives taps at -0.5 (the edge pixel again), 0.5, 1.5, 2.5
    # the weights 0.25, 0.75, 0.75, 0.25, divided by their sum 2.
    want = [[0.25 + 0.75, 0.75, 0.25, 0.0], [0.0, 0.25, 0.75, 0.75 + 0.25]]
    np.testing.assert_array_equal(resize_weights(4, 2) / 2**22, np.array(want) / 2)
    # 6.25 and 23.75 rounded; 0.5 rounds up
    assert pixels(resize_images(row(0, 10, 20, 30), 1, 2)) == [6, 24]
    assert pixels(resize_images(row(0, 1, 1, 0), 1, 2)) == [1, 1]


def test_enlarging_is_linear_interpolation_between_pixel_centres():
    # 2 pixels -> 4: centres 0.25, 0.75, 1.25, 1.75 on an axis whose pixels are centred
    # at 0.5 and 1.5; beyond the outer centres the edge pixel's value
    assert pixels(resize_images(row(0, 100), 1, 4)) == [0, 25, 75, 100]
    assert pixels(resize_images(row(0, 100, 40), 1, 6)) == [0, 25, 75, 85, 55, 40]


def test_the_weights_are_the_definitions_rounded_to_22_bits():
    for n_in, n_out in [(640, 64), (48, 64), (7, 3), (3, 7), (1, 5), (5, 1), (97, 96), (100, 48)]:
        w = resize_weights(n_in, n_out)
        assert w.shape == (n_out, n_in) and (w == np.round(w)).all()
        # the kernel's float32 centres are within a few float32 steps of (i + 0.5) s
        np.testing.assert_allclose(w / 2**22, triangle_weights(n_in, n_out), rtol=0, atol=1e-5)


def test_a_constant_image_stays_constant():
    flat = np.full((2, 30, 17, 3), 137, np.uint8)
    assert (resize_images(flat, 9, 41) == 137).all()
    assert (resize_images(flat, 300, 2) == 137).all()


def test_shrinking_averages_every_pixel_instead_of_skipping_them():
    # stripes one pixel wide, shrunk 8 times: an antialiased resize sees their mean,
    # a plain linear one would pick single stripes
    stripes = np.tile(np.array([0, 255], np.uint8), 32).reshape(1, 1, 64, 1)
    stripes = np.repeat(stripes, 8, axis=1)
    out = resize_images(stripes, 1, 8).ravel().astype(int)
    assert np.abs(out[1:-1] - 128).max() <= 1  # 127.5 (the edges repeat their pixel)


def test_the_same_size_is_the_identity_and_shapes_are_kept():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 6, 9, 3), dtype=np.uint8)
    assert resize_images(images, 6, 9) is images
    assert resize_images(images[0], 12, 5).shape == (12, 5, 3)
    out = resize_images(images.astype(np.float64) + 0.4, 4, 4)  # rounded to pixels first
    np.testing.assert_array_equal(out, resize_images(images, 4, 4))
    with pytest.raises(ValueError, match="cannot resize an axis of 0 pixels"):
        resize_weights(0, 3)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\) or \(H, W, C\)"):
        resize_images(np.zeros((4, 4)), 2, 2)


def test_channels_are_resized_separately():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 11, 7, 3), dtype=np.uint8)
    whole = resize_images(images, 5, 9)
    for c in range(3):
        np.testing.assert_array_equal(
            whole[..., c : c + 1], resize_images(images[..., c : c + 1], 5, 9)
        )


def test_sizes_in_messages_and_flags():
    assert parse_size("48x64") == (48, 64) and parse_size(" 48 X 64 ") == (48, 64)
    for bad in ("48", "48x", "x64", "0x64", "48x64x3", "a by b"):
        with pytest.raises(ValueError, match="48x64|positive"):
            parse_size(bad)
    assert format_size(48, 64) == "64x48 pixels"  # width first, as cameras give sizes


def test_a_named_dataset_at_another_size():
    with pytest.warns(
        DataWarning, match="resized all 359 images of digits from 8x8 pixels to 12x16"
    ):
        ds = load("digits", "test", image_size=(16, 12))
    np.testing.assert_array_equal(ds.images, resize_images(load("digits", "test").images, 16, 12))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load("digits", "test", image_size=(8, 8)).image_shape == (8, 8, 1)


# -- ONNX Runtime's Resize --------------------------------------------------------------

SIZES = [
    ((480, 640), (48, 64)),  # a camera frame, 10 times smaller
    ((100, 50), (48, 64)),  # one axis shrinks, the other grows
    ((47, 65), (48, 64)),  # almost the same size
    ((1000, 7), (48, 64)),
    ((5, 3), (48, 64)),  # much smaller
    ((97, 1), (3, 5)),
    ((48, 64), (48, 64)),
    ((2160, 3840), (32, 32)),  # a 4K frame
]


def onnx_runtime_resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node(
        "Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
        coordinate_transformation_mode="half_pixel", antialias=1, axes=[1, 2],
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "resize",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", "H", "W", "C"]),
         helper.make_tensor_value_info("sizes", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, ["N", None, None, "C"])],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": images, "sizes": np.array([height, width], np.int64)})[0]


@pytest.mark.parametrize("size_in, size_out", SIZES)
def test_onnx_runtime_resizes_as_chainrule_does(size_in, size_out):
    images = np.random.default_rng(2).integers(0, 256, (2, *size_in, 3), dtype=np.uint8)
    want = onnx_runtime_resize(images, *size_out)
    got = resize_images(images, *size_out)
    assert got.shape == want.shape == (2, *size_out, 3)
    np.testing.assert_array_equal(got, want)


def test_onnx_runtime_resizes_as_chainrule_does_at_random_sizes():
    rng = np.random.default_rng(3)
    for _ in range(25):
        h, w, height, width = (int(v) for v in rng.integers(1, 200, 4))
        images = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(
            resize_images(images, height, width), onnx_runtime_resize(images, height, width),
            err_msg=f"{h}x{w} -> {height}x{width}",
        )  # fmt: skip
