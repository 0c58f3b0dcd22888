"""On-the-fly data augmentation for image minibatches: random crops with padding, flips.

All functions work on a whole minibatch at once (no Python loop over images): the batch is
zero-padded once, every crop is one fancy-indexing gather of whole rows from a sliding-window
view, and the horizontal flips reverse the pixel order of the chosen images in one step.

`CropFlip` is the augmentation a `chainrule.train.Solver` applies to training
minibatches, with random or alternating flips: alternating flips mirror each image in
every other epoch (which half of the epochs is fixed at random per image), so that
over two epochs the network sees every image both ways, instead of each time by the
toss of a coin (in airbench's measurements on CIFAR-10 this saves about a tenth of the
epochs of short runs).
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from chainrule._random import as_generator

from .layout import image_shape as _image_shape

__all__ = [
    "CropFlip",
    "alternating_flips",
    "crop_flip",
    "random_crop_flip",
    "random_crop_flip_flat",
]


def _check_padding(padding) -> int:
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    return int(padding)


def _check_batch(images) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C), got {images.shape}")
    if images.dtype == np.bool_ or not (
        np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
    ):
        raise TypeError(f"images must be uint8 or floating point, got dtype {images.dtype}")
    return images


def crop_flip(
    images: np.ndarray,
    offsets_y: np.ndarray,
    offsets_x: np.ndarray,
    flips: np.ndarray | None = None,
    padding: int = 4,
) -> np.ndarray:
    """Crop each image of a zero-padded batch at a given offset, then flip some of them.

    Parameters
    ----------
    images : ndarray (N, H, W, C), any real dtype (uint8 or float32 in practice)
    offsets_y, offsets_x : int arrays (N,), values in ``0 .. 2*padding``
        Top-left corner of each crop in the padded image; ``padding`` is the unshifted crop.
    flips : bool array (N,) or None
        Which crops to mirror left-right (after cropping).
    padding : int
        Zeros added on every side of the H and W axes before cropping.

    Returns
    -------
    ndarray (N, H, W, C), same dtype, a new array:
    ``out[i] = pad(images)[i, dy:dy+H, dx:dx+W]``, mirrored (``[:, ::-1]``) where ``flips[i]``.
    """
    images = _check_batch(images)
    p = _check_padding(padding)
    n, h, w, c = images.shape
    dy = _check_offsets(offsets_y, n, p, "offsets_y")
    dx = _check_offsets(offsets_x, n, p, "offsets_x")
    if p:
        padded = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=images.dtype)
        padded[:, p : p + h, p : p + w] = images
    else:
        padded = np.ascontiguousarray(images)
    # A window covers H rows of W*C consecutive values; picking window (dy, dx*C) per image
    # copies whole contiguous rows instead of single pixels.
    rows = padded.reshape(n, h + 2 * p, (w + 2 * p) * c)
    windows = sliding_window_view(rows, (h, w * c), axis=(1, 2))
    out = windows[np.arange(n), dy, dx * c].reshape(n, h, w, c)
    if flips is not None:
        flips = np.asarray(flips)
        if flips.shape != (n,) or flips.dtype != np.bool_:
            raise ValueError(f"flips must be a boolean array of shape ({n},), got {flips.shape}")
        chosen = np.flatnonzero(flips)
        if chosen.size:
            # Viewing each pixel as one opaque item makes the reversal move whole pixels.
            pixels = out.view(np.dtype((np.void, c * out.itemsize)))[..., 0]
            pixels[chosen] = pixels[chosen][:, :, ::-1]
    return out


def _check_offsets(offsets, n: int, p: int, name: str) -> np.ndarray:
    offsets = np.asarray(offsets)
    if offsets.shape != (n,) or not np.issubdtype(offsets.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array of shape ({n},), got {offsets.shape}")
    if n and (offsets.min() < 0 or offsets.max() > 2 * p):
        raise ValueError(f"{name} must lie in 0..{2 * p} for padding={p}")
    return offsets.astype(np.intp, copy=False)


def _draw(n: int, p: int, flip: bool, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    rng = as_generator(rng)
    dy = rng.integers(0, 2 * p + 1, size=n)
    dx = rng.integers(0, 2 * p + 1, size=n)
    flips = rng.random(n) < 0.5 if flip else None
    return dy, dx, flips


def random_crop_flip(
    images: np.ndarray,
    padding: int = 4,
    flip: bool = True,
    rng: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Random crops with zero padding and random horizontal flips of a minibatch.

    Parameters
    ----------
    images : ndarray (N, H, W, C), uint8 or float32 (any real dtype)
    padding : int
        Each image is shifted by up to ``padding`` pixels in each direction (uniformly,
        independently in y and x); uncovered pixels are zero.
    flip : bool
        Mirror each image left-right with probability 1/2.
    rng : int, numpy.random.Generator or None
        Source of randomness; pass the training loop's Generator.

    Returns
    -------
    ndarray (N, H, W, C), same dtype, a new array (the input is not modified).
    """
    images = _check_batch(images)
    p = _check_padding(padding)
    dy, dx, flips = _draw(images.shape[0], p, flip, rng)
    return crop_flip(images, dy, dx, flips, padding=p)


def random_crop_flip_flat(
    X: np.ndarray,
    image_shape: tuple[int, int, int],
    padding: int = 4,
    flip: bool = True,
    rng: int | np.random.Generator | None = None,
) -> np.ndarray:
    """:func:`random_crop_flip` for flattened rows, as a trainer holds them after preprocessing.

    Parameters
    ----------
    X : ndarray (N, D), float32 (any real dtype)
        Rows ``image.ravel()`` in HWC order, D = H*W*C; D = H*W*C + 1 is accepted too, the
        trailing (bias) column is copied unchanged. With mean-subtracted features, the zero
        padding is padding with the training mean.
    image_shape : (H, W, C)
    padding, flip, rng : as in :func:`random_crop_flip`.

    Returns
    -------
    ndarray (N, D), same dtype as X, a new array.
    """
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        shape = getattr(X, "shape", None)
        raise ValueError(f"X must be a 2-D array (N, D), got shape {shape}")
    h, w, c = _image_shape(image_shape)
    d = h * w * c
    n, cols = X.shape
    if cols not in (d, d + 1):
        raise ValueError(
            f"X has {cols} columns but image_shape {(h, w, c)} needs {d} (or {d + 1} with a "
            "bias column)"
        )
    p = _check_padding(padding)
    images = X[:, :d].reshape(n, h, w, c)
    dy, dx, flips = _draw(n, p, flip, rng)
    out = crop_flip(images, dy, dx, flips, padding=p).reshape(n, d)
    if cols == d:
        return out
    full = np.empty_like(X)
    full[:, :d] = out
    full[:, d:] = X[:, d:]
    return full


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def alternating_flips(indices, epoch: int, seed: int = 0) -> np.ndarray:
    """Which of the images `indices` (int array (B,), rows of the training set) to mirror
    in `epoch` (0-based): a fixed random bit per image (a hash of the index and `seed`),
    inverted in odd epochs. bool (B,)."""
    x = np.asarray(indices).astype(np.uint64) + np.uint64(seed % 2**63) * np.uint64(0x9E3779B9)
    # splitmix64's finaliser: every input bit moves about half of the output bits.
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    x ^= x >> np.uint64(31)
    bits = (x >> np.uint64(63)).astype(bool)
    return bits ^ bool(epoch % 2)


class CropFlip:
    """Random crops of up to `padding` pixels (zero padding) and horizontal flips of
    minibatches of images of `image_shape` (H, W, C), for `chainrule.train.Solver`: images
    (B, H, W, C) or rows (B, H*W*C) of them flattened in HWC order.

    flips: ``"random"`` (each image mirrored with probability 1/2, drawn from the
    Solver's generator), ``"alternate"`` (`alternating_flips` with `seed`: each image
    mirrored in every other epoch) or ``"none"``.

    Called as ``augment(X, rng, indices=..., epoch=...)`` (the Solver passes the rows'
    positions in the training set and the 0-based epoch, because ``uses_indices`` is
    True); returns a new batch of X's shape.
    """

    uses_indices = True
    FLIPS = ("random", "alternate", "none")

    def __init__(self, image_shape, padding: int = 2, flips: str = "random", seed: int = 0):
        self.image_shape = _image_shape(image_shape)
        self.padding = _check_padding(padding)
        if flips not in self.FLIPS:
            raise ValueError(f"flips must be one of {', '.join(self.FLIPS)}, got {flips!r}")
        self.flips = flips
        self.seed = int(seed)

    def __call__(self, X, rng, indices=None, epoch: int = 0):
        n = X.shape[0]
        images = X.reshape(n, *self.image_shape)
        dy, dx, flips = _draw(n, self.padding, self.flips == "random", rng)
        if self.flips == "alternate":
            if indices is None:
                raise ValueError('CropFlip(flips="alternate") needs the rows\' indices')
            flips = alternating_flips(indices, epoch, self.seed)
        return crop_flip(images, dy, dx, flips, padding=self.padding).reshape(X.shape)

    def __repr__(self) -> str:
        return f"CropFlip(padding={self.padding}, flips={self.flips!r})"
