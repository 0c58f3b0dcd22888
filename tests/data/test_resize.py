"""The one image resize: the definition's numbers worked by hand, its properties, and ONNX
Runtime's ``Resize`` (linear, half-pixel centres, antialias=1) giving the same values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from chainrule.data import DataWarning, load, resize_images
from chainrule.data.resize import format_size, parse_size, resample, resize_weights


def row(*values) -> np.ndarray:
    """One image of one row, one channel, float32: (1, 1, W, 1)."""
    return np.asarray(values, np.float32).reshape(1, 1, -1, 1)


def test_shrinking_by_two_is_the_stretched_triangle_worked_by_hand():
    # 4 pixels -> 2: output 0 is centred at 1.0 (input pixel centres at 0.5, 1.5, 2.5, 3.5);
    # the triangle of half-width 2 gives taps at -0.5 (the edge pixel again), 0.5, 1.5, 2.5
    # the weights 0.25, 0.75, 0.75, 0.25, divided by their sum 2.
    first = (0.25 * 0 + 0.75 * 0 + 0.75 * 10 + 0.25 * 20) / 2
    second = (0.25 * 10 + 0.75 * 20 + 0.75 * 30 + 0.25 * 30) / 2
    out = resample(row(0, 10, 20, 30), 1, 2).ravel()
    assert out.tolist() == [first, second] == [6.25, 23.75]


def test_enlarging_is_linear_interpolation_between_pixel_centres():
    # 2 pixels -> 4: centres 0.25, 0.75, 1.25, 1.75 on an axis whose pixels are centred
    # at 0.5 and 1.5; beyond the outer centres the edge pixel's value
    assert resample(row(0, 100), 1, 4).ravel().tolist() == [0, 25, 75, 100]
    assert resample(row(0, 100, 40), 1, 6).ravel().tolist() == [0, 25, 75, 85, 55, 40]


def test_weights_sum_to_one_and_a_constant_image_stays_constant():
    for n_in, n_out in [(640, 64), (48, 64), (7, 3), (3, 7), (1, 5), (5, 1), (97, 96)]:
        w = resize_weights(n_in, n_out)
        assert w.shape == (n_out, n_in) and (w >= 0).all()
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    flat = np.full((2, 30, 17, 3), 137, np.uint8)
    assert (resize_images(flat, 9, 41) == 137).all()


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
    np.testing.assert_array_equal(resample(images.astype(np.float32), 6, 9), images)
    out = resize_images(images.astype(np.float64) + 0.4, 4, 4)
    assert out.dtype == np.uint8 and out.shape == (3, 4, 4, 3)
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
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "H", "W", "C"]),
         helper.make_tensor_value_info("sizes", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", None, None, "C"])],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    sizes = np.array([height, width], np.int64)
    return session.run(None, {"x": images.astype(np.float32), "sizes": sizes})[0]


@pytest.mark.parametrize("size_in, size_out", SIZES)
def test_onnx_runtime_resizes_as_chainrule_does(size_in, size_out):
    images = np.random.default_rng(2).integers(0, 256, (2, *size_in, 3)).astype(np.float32)
    want = onnx_runtime_resize(images, *size_out)
    got = resample(images, *size_out)
    assert got.shape == want.shape == (2, *size_out, 3)
    # float32 sums in another order: within a few units in the last place of 255
    assert np.abs(got - want).max() <= 2e-4
    # rounded to pixels: equal, but where a value is within that of a half
    near_half = np.abs(want - np.floor(want) - 0.5) < 2e-4
    rounded = resize_images(images, *size_out)
    np.testing.assert_array_equal(rounded[~near_half], np.rint(want)[~near_half])
