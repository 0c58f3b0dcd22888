"""The one image resize of chainrule: the NumPy twin of the resize in exported graphs.

An image of another size than a model reads (a camera frame, a photo taken at another
resolution) is resized to the model's size by ONNX's ``Resize`` operator with
``mode="linear"``, ``coordinate_transformation_mode="half_pixel"`` and ``antialias=1``,
then rounded to whole pixel values (uint8), as if the camera had taken it at that size.
Training on a folder of mixed sizes, ``chainrule predict`` and ``eval`` resize with
:func:`resize_images`; an exported graph resizes with the operator itself, so both give
the same pixels (up to the rounding of a value within float32 precision of a half).

Per axis, with ``n_in`` input and ``n_out`` output pixels and ``s = n_in / n_out`` input
pixels per output pixel, output pixel ``i`` is a weighted mean of input pixels ``x``:

- its centre lies at ``c = (i + 0.5) * s`` on the input axis (pixel ``x`` covers
  ``[x, x + 1)``: half-pixel centres, so the image's edges map onto each other);
- weights are the triangle ``max(0, 1 - |x + 0.5 - c| / r)`` with ``r = max(1, s)``:
  linear interpolation between the two nearest pixels when enlarging (``r = 1``), a
  triangle stretched over ``2 s`` input pixels when shrinking (antialiasing: every input
  pixel contributes, none is skipped);
- taps beyond the image take the value of its edge pixel, and the weights are divided
  by their sum.

The two axes are resized one after the other (width, then height), each a matrix
product with the (n_out, n_in) weights of :func:`resize_weights`; channels are never
mixed. The aspect ratio is not kept: a 640x480 frame becomes a 64x64 image if the model
reads 64x64 images. The weights are computed with the float32 operations of ONNX
Runtime's CPU kernel (1.32), which agree with the formulas above up to float32 rounding.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "RESIZE_METHOD",
    "format_size",
    "parse_size",
    "resample",
    "resize_images",
    "resize_weights",
]

#: The resize in words, for messages and the metadata of exported graphs.
RESIZE_METHOD = (
    "linear interpolation with half-pixel centres, antialiased when shrinking (ONNX "
    "Resize mode=linear, coordinate_transformation_mode=half_pixel, antialias=1), "
    "rounded to whole pixel values; the aspect ratio is not kept"
)

_F = np.float32


def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) float32 matrix that resizes one axis of ``n_in`` pixels to
    ``n_out`` (see the module docstring); each row sums to 1 (up to rounding)."""
    n_in, n_out = int(n_in), int(n_out)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resize an axis of {n_in} pixels to {n_out}")
    out_per_in = _F(n_out) / _F(n_in)
    s = _F(1.0) / out_per_in  # input pixels per output pixel
    r = s if s >= 1 else _F(1.0)  # the triangle's half-width
    inv_r = _F(1.0) / s if s >= 1 else _F(1.0)
    i = np.arange(n_out, dtype=_F)
    if s == 1:
        centre = i + _F(0.5)
    else:
        centre = _F(0.5) + ((i + _F(0.5)) / out_per_in - _F(0.5))
    # The taps whose weight is not zero: [floor(c - r + 0.5), floor(c + r + 0.5)).
    lo = np.floor((centre - r).astype(np.float64) + 0.5).astype(np.int64)
    hi = np.floor((centre + r).astype(np.float64) + 0.5).astype(np.int64)
    taps = lo[:, None] + np.arange(int(np.ceil(r)) * 2 + 1)
    inside = taps < hi[:, None]
    distance = np.abs((taps.astype(_F) - centre[:, None] + _F(0.5)) * inv_r)
    w = np.where(inside & (distance < 1), _F(1.0) - distance, _F(0.0)).astype(_F)
    total = w.sum(axis=1, dtype=_F)[:, None]
    w = np.where((total != 0) & (total != 1), w / np.where(total == 0, 1, total), w)
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.broadcast_to(np.arange(n_out)[:, None], taps.shape)
    # taps beyond the image read its edge pixel
    np.add.at(weights, (rows[inside], np.clip(taps, 0, n_in - 1)[inside]), w[inside])
    return weights.astype(_F)


def resize_images(images, height: int, width: int) -> np.ndarray:
    """Images (N, H, W, C) or one image (H, W, C), uint8 or real on the 0..255 scale,
    resized to ``height`` x ``width`` pixels: uint8 of the same rank.

    Images that already have that size come back as they are (uint8).
    """
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W, C) or (H, W, C), got shape {x.shape}")
    one = x.ndim == 3
    if one:
        x = x[None]
    height, width = int(height), int(width)
    n, h, w, c = x.shape
    if (h, w) == (height, width):
        out = x if x.dtype == np.uint8 else _to_pixels(x.astype(np.float32))
        return out[0] if one else out
    out = _to_pixels(resample(x.astype(np.float32), height, width))
    return out[0] if one else out


def resample(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 images (N, H, W, C) resized to (N, height, width, C), float32, before
    rounding: what the ``Resize`` node of an exported graph computes."""
    n, h, w, c = x.shape
    ah, aw = resize_weights(h, height), resize_weights(w, width)
    # width: (N, H, C, W) @ (W, width) -> (N, H, C, width)
    rows = np.matmul(np.moveaxis(x, 2, 3), aw.T)
    # height: (height, H) @ (N, H, C * width) -> (N, height, C * width)
    out = np.matmul(ah, rows.reshape(n, h, c * width)).reshape(n, height, c, width)
    return np.moveaxis(out, 2, 3)


def _to_pixels(x: np.ndarray) -> np.ndarray:
    """Real values on the 0..255 scale -> uint8, rounded to nearest (ties to even, as
    ONNX's ``Round``)."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def parse_size(text: str) -> tuple[int, int]:
    """``"48x64"`` -> ``(48, 64)``: height x width, two positive integers."""
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected HEIGHTxWIDTH in pixels, e.g. 48x64, got {text!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"expected a positive height and width, got {text!r}")
    return h, w


def format_size(height: int, width: int) -> str:
    """A size as messages show it: ``"64x48 pixels"`` is 64 wide and 48 high, as cameras
    and image viewers give sizes (the ``--image-size`` flag takes height first)."""
    return f"{int(width)}x{int(height)} pixels"
