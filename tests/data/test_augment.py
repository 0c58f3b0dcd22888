import numpy as np
import pytest

from chainrule.data import crop_flip, random_crop_flip, random_crop_flip_flat


def batch(n=6, h=5, w=7, c=3, dtype=np.uint8, seed=0):
    x = np.random.default_rng(seed).integers(1, 255, (n, h, w, c))
    return x.astype(dtype)


def padded(x, p):
    return np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_known_offsets_equal_slices_of_the_padded_batch(dtype):
    x = batch(dtype=dtype)
    p = 2
    dy = np.array([0, 1, 2, 3, 4, 2])
    dx = np.array([4, 3, 2, 1, 0, 2])
    out = crop_flip(x, dy, dx, padding=p)
    assert out.shape == x.shape and out.dtype == dtype
    big = padded(x, p)
    for i in range(len(x)):
        np.testing.assert_array_equal(out[i], big[i, dy[i] : dy[i] + 5, dx[i] : dx[i] + 7])
    # The centred crop is the image itself; a shift brings in zeros at the border.
    np.testing.assert_array_equal(out[2], x[2])
    np.testing.assert_array_equal(out[0, :2], 0)


def test_flip_equals_reversed_width_axis():
    x = batch()
    flips = np.array([True, False, True, False, False, True])
    out = crop_flip(x, np.full(6, 3), np.full(6, 3), flips, padding=3)
    np.testing.assert_array_equal(out[flips], x[flips][:, :, ::-1])
    np.testing.assert_array_equal(out[~flips], x[~flips])
    shifted = crop_flip(x, np.zeros(6, int), np.zeros(6, int), flips, padding=1)
    np.testing.assert_array_equal(shifted[0], padded(x, 1)[0, :5, :7][:, ::-1])


def test_random_crop_flip_draws_valid_crops_deterministically():
    x = batch(n=64, h=4, w=4, c=2, seed=3)
    p = 1
    a = random_crop_flip(x, padding=p, rng=np.random.default_rng(7))
    b = random_crop_flip(x, padding=p, rng=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, random_crop_flip(x, padding=p, rng=8))
    big = padded(x, p)
    seen = set()
    for i in range(len(x)):
        matches = [
            (dy, dx, f)
            for dy in range(3)
            for dx in range(3)
            for f in (False, True)
            if np.array_equal(a[i], big[i, dy : dy + 4, dx : dx + 4][:, :: -1 if f else 1])
        ]
        assert matches, f"image {i} is not a padded crop (or its mirror) of the input"
        seen.update(matches)
    assert {f for _, _, f in seen} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in seen}) > 4


def test_input_untouched_and_no_flip_option():
    x = batch()
    copy = x.copy()
    out = random_crop_flip(x, padding=0, flip=False, rng=0)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    random_crop_flip(x, rng=1)
    np.testing.assert_array_equal(x, copy)


def test_flat_variant_matches_image_variant_and_keeps_bias_column():
    x = batch(n=8, h=4, w=6, c=3, dtype=np.float32)
    X = x.reshape(8, -1)
    flat = random_crop_flip_flat(X, (4, 6, 3), padding=2, rng=5)
    np.testing.assert_array_equal(flat, random_crop_flip(x, padding=2, rng=5).reshape(8, -1))
    Xb = np.concatenate([X, np.ones((8, 1), np.float32)], axis=1)
    flat_b = random_crop_flip_flat(Xb, (4, 6, 3), padding=2, rng=5)
    np.testing.assert_array_equal(flat_b[:, :-1], flat)
    np.testing.assert_array_equal(flat_b[:, -1], 1.0)


def test_errors():
    x = batch()
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        random_crop_flip(x[0])
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(x, padding=-1)
    with pytest.raises(ValueError, match="0..4"):
        crop_flip(x, np.full(6, 5), np.zeros(6, int), padding=2)
    with pytest.raises(ValueError, match="needs 105"):
        random_crop_flip_flat(x.reshape(6, -1)[:, :50], (5, 7, 3))


# ----------------------------------------------------------------- alternating flips


def test_alternating_flips_mirror_each_image_in_every_other_epoch():
    from chainrule.data import alternating_flips

    idx = np.arange(10_000)
    e0, e1, e2 = (alternating_flips(idx, e, seed=3) for e in range(3))
    np.testing.assert_array_equal(e1, ~e0)
    np.testing.assert_array_equal(e2, e0)
    assert abs(e0.mean() - 0.5) < 0.02  # about half the images start mirrored
    # a fixed bit per image, whatever the batch it comes in; another seed, other bits
    np.testing.assert_array_equal(alternating_flips(idx[::-7], 4, seed=3), e0[::-7])
    other = alternating_flips(idx, 0, seed=4)
    assert 0.4 < np.mean(other != e0) < 0.6
    # neighbouring rows are not correlated
    assert abs(np.mean(e0[1:] == e0[:-1]) - 0.5) < 0.02


def test_crop_flip_with_alternating_flips():
    from chainrule.data import CropFlip, alternating_flips

    x = batch(n=8, dtype=np.float32)
    rows = x.reshape(8, -1)
    aug = CropFlip(x.shape[1:], padding=0, flips="alternate", seed=1)
    idx = np.arange(20, 28)
    for epoch in (0, 1, 2):
        out = aug(rows, np.random.default_rng(0), indices=idx, epoch=epoch).reshape(x.shape)
        mirrored = alternating_flips(idx, epoch, seed=1)
        for i in range(8):
            want = x[i, :, ::-1] if mirrored[i] else x[i]
            np.testing.assert_array_equal(out[i], want)
    with pytest.raises(ValueError, match="indices"):
        aug(rows, np.random.default_rng(0))


def test_crop_flip_random_is_random_crop_flip_flat():
    from chainrule.data import CropFlip

    x = batch(n=16, dtype=np.float32).reshape(16, -1)
    shape = (5, 7, 3)
    out = CropFlip(shape, padding=2)(x, np.random.default_rng(9), indices=np.arange(16), epoch=3)
    want = random_crop_flip_flat(x, shape, 2, True, np.random.default_rng(9))
    np.testing.assert_array_equal(out, want)
    # images (N, H, W, C) keep their shape, and are augmented as random_crop_flip does
    images = x.reshape(16, *shape)
    out = CropFlip(shape, padding=2)(images, np.random.default_rng(9))
    assert out.shape == images.shape
    want = random_crop_flip(images, 2, True, np.random.default_rng(9))
    np.testing.assert_array_equal(out, want)
    plain = CropFlip(shape, padding=1, flips="none")(x, np.random.default_rng(9))
    rng = np.random.default_rng(9)
    dy, dx = rng.integers(0, 3, 16), rng.integers(0, 3, 16)
    want = crop_flip(x.reshape(16, *shape), dy, dx, padding=1).reshape(16, -1)
    np.testing.assert_array_equal(plain, want)
    with pytest.raises(ValueError, match="flips must be one of"):
        CropFlip(shape, flips="sometimes")
