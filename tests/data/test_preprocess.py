"""The Preprocessor: scaling, centring, flattening or keeping the image shape."""

import io

import numpy as np
import pytest

from chainrule.data import Preprocessor


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 5, 4, 3), dtype=np.uint8)
    x[..., 2] //= 4  # channels with different means and spreads
    return x


def test_scale_center_flatten_matches_float64_reference(images):
    pre = Preprocessor()
    X = pre.fit_transform(images)
    assert X.shape == (40, 60) and X.dtype == np.float32
    x64 = images.astype(np.float64) / 255.0
    mean = x64.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(pre.mean_, mean, rtol=0, atol=1e-7)
    np.testing.assert_allclose(X, (x64 - mean).reshape(40, -1), rtol=0, atol=2e-7)
    # Per-channel mean of the transformed training images is zero.
    np.testing.assert_allclose(X.reshape(40, 5, 4, 3).mean(axis=(0, 1, 2)), 0, atol=1e-6)
    # Row i is image i flattened in HWC order.
    assert X[3, 5] == pytest.approx(images[3, 0, 1, 2] / 255.0 - mean[2], abs=1e-6)


def test_standardize_and_no_centering(images):
    X = Preprocessor(standardize=True).fit_transform(images).reshape(40, 5, 4, 3)
    np.testing.assert_allclose(X.std(axis=(0, 1, 2)), 1.0, rtol=1e-5)
    raw = Preprocessor(center=False).fit_transform(images)
    np.testing.assert_allclose(raw, images.reshape(40, -1) / 255.0, atol=1e-7)
    const = np.full((3, 2, 2, 1), 9, np.uint8)
    out = Preprocessor(standardize=True).fit_transform(const)
    np.testing.assert_array_equal(out, 0)  # a constant channel is centred, not divided by 0


def test_bias_trick(images):
    pre = Preprocessor(bias=True)
    X = pre.fit_transform(images)
    assert X.shape == (40, 61) and pre.n_features_out_ == 61
    np.testing.assert_array_equal(X[:, -1], 1.0)
    np.testing.assert_array_equal(X[:, :-1], Preprocessor().fit_transform(images))


def test_state_round_trip_through_npz_without_pickle(images):
    pre = Preprocessor(standardize=True, bias=True).fit(images[:30])
    buf = io.BytesIO()
    np.savez(buf, **{f"pre/{k}": v for k, v in pre.state_dict().items()})
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        state = {k.split("/", 1)[1]: z[k] for k in z.files}
    back = Preprocessor.from_state_dict(state)
    assert (back.center, back.standardize, back.bias) == (True, True, True)
    assert back.image_shape_ == (5, 4, 3)
    np.testing.assert_array_equal(back.transform(images[30:]), pre.transform(images[30:]))


def test_float_input_on_pixel_scale(images):
    pre = Preprocessor().fit(images)
    np.testing.assert_allclose(
        pre.transform(images.astype(np.float32)), pre.transform(images), atol=1e-7
    )


def test_errors(images):
    pre = Preprocessor()
    with pytest.raises(RuntimeError, match="not fitted"):
        pre.transform(images)
    pre.fit(images)
    with pytest.raises(
        ValueError, match=r"\(4, 5, 3\).*fitted on images \(H, W, C\) = \(5, 4, 3\)"
    ):
        pre.transform(images.transpose(0, 2, 1, 3))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        pre.transform(images[0])
    bad = images.astype(np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pre.transform(bad)
    state = pre.state_dict()
    del state["mean"]
    with pytest.raises(ValueError, match="missing mean"):
        Preprocessor.from_state_dict(state)
    state = pre.state_dict()
    state["std"] = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="shape"):
        Preprocessor.from_state_dict(state)


# -- keeping images as images (channels-last) for convolutional models -------------------


def test_images_layout_holds_the_values_of_the_rows_channels_last():
    images = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3, 2), dtype=np.uint8)
    rows = Preprocessor().fit(images).transform(images)
    hwc = Preprocessor(flatten=False).fit(images).transform(images)
    assert hwc.shape == (5, 4, 3, 2) and hwc.dtype == np.float32 and hwc.flags.c_contiguous
    # the rows are these images flattened: the same memory order, no transposition
    np.testing.assert_array_equal(hwc.reshape(5, -1), rows)
    # channel c of image i is that channel's pixels, scaled and centred
    mean = images[..., 1].mean() / 255.0
    np.testing.assert_allclose(hwc[2, ..., 1], images[2, :, :, 1] / 255.0 - mean, atol=1e-6)


def test_the_layout_travels_with_the_state():
    images = np.random.default_rng(1).integers(0, 256, size=(4, 3, 3, 3), dtype=np.uint8)
    pre = Preprocessor(flatten=False).fit(images)
    back = Preprocessor.from_state_dict(pre.state_dict())
    assert back.flatten is False
    np.testing.assert_array_equal(back.transform(images), pre.transform(images))
    # a state written before the option existed has no "flatten": rows
    state = Preprocessor().fit(images).state_dict()
    del state["flatten"]
    assert Preprocessor.from_state_dict(state).transform(images).shape == (4, 27)


def test_a_bias_column_needs_rows():
    with pytest.raises(ValueError, match="bias column needs flattened rows"):
        Preprocessor(bias=True, flatten=False)
