"""The one image resize of chainrule: the NumPy twin of the resize in exported graphs.

An image of another size than a model reads (a camera frame, a photo taken at another
resolution) is resized to the model's size as ONNX's ``Resize`` operator does it on uint8
images with ``mode="linear"``, ``coordinate_transformation_mode="half_pixel"`` and
``antialias=1``. Training on a folder of mixed sizes, ``chainrule predict`` and ``eval``
resize with :func:`resize_images`; an exported graph resizes with the operator itself,
and ONNX Runtime (1.32) gives the same pixels, bit for bit.

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

The weights are then rounded to multiples of 2^-22, and each output value is rounded to
a whole pixel value (halves up): the integer arithmetic of Pillow's resampling, which
ONNX Runtime uses for uint8 images. The width is resized first, to whole pixel values,
then the height; channels are never mixed. The aspect ratio is not kept: a 640x480 frame
becomes a 64x64 image if the model reads 64x64 images. :func:`resize_weights` computes
the weights with the float32 operations of ONNX Runtime's kernel, in its order, so that
their rounding is the same too.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "RESIZE_METHOD",
    "format_size",
    "parse_size",
    "resize_images",
    "resize_weights",
]

#: The resize in words, for messages and the metadata of exported graphs.
RESIZE_METHOD = (
    "linear interpolation with half-pixel centres, antialiased when shrinking (ONNX "
    "Resize on uint8 images: mode=linear, coordinate_transformation_mode=half_pixel, "
    "antialias=1); the aspect ratio is not kept"
)

_F = np.float32
_ONE = 1 << 22  # the fixed-point unit of the weights


@lru_cache(maxsize=64)
def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) weights, integers in units of 2^-22 (float64 holding integers),
    that resize one axis of ``n_in`` pixels to ``n_out`` (see the module docstring).
    Each row sums to 2^22 up to the rounding of its weights. (Cached: do not modify.)"""
    n_in, n_out = int(n_in), int(n_out)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resize an axis of {n_in} pixels to {n_out}")
    out_per_in = _F(n_out) / _F(n_in)
    s = _F(1.0) / out_per_in  # input pixels per output pixel
    r = s if s >= 1 else _F(1.0)  # the triangle's half-width
    inv_r = _F(1.0) / s if s >= 1 else _F(1.0)
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        if s == 1:
            centre = _F(0.5) + _F(i)
        else:
            centre = _F(0.5) + ((_F(i) + _F(0.5)) / out_per_in - _F(0.5))
        # the taps whose weight is not zero: [floor(c - r + 0.5), floor(c + r + 0.5))
        lo = int(np.floor(np.float64(centre - r) + 0.5))
        hi = int(np.floor(np.float64(centre + r) + 0.5))
        distance = np.abs(((np.arange(lo, hi).astype(_F) - centre) + _F(0.5)) * inv_r)
        w = np.where(distance < 1, _F(1.0) - distance, _F(0.0)).astype(_F)
        total = np.cumsum(w, dtype=_F)[-1] if len(w) else _F(0.0)  # in order, as the kernel
        # taps beyond the image read its edge pixel: their weights join the edge's
        for k in range(max(0, -lo)):
            w[-lo] = w[-lo] + w[k]
        for k in range(n_in - lo, hi - lo):
            w[n_in - lo - 1] = w[n_in - lo - 1] + w[k]
        inside = w[max(0, -lo) : min(hi, n_in) - lo]
        inside = (inside * (_F(1.0) if total == 0 else _F(1.0) / total)) * _F(_ONE)
        weights[i, max(0, lo) : min(hi, n_in)] = np.floor(inside.astype(np.float64) + 0.5)
    weights.flags.writeable = False
    return weights


def resize_images(images, height: int, width: int) -> np.ndarray:
    """Images (N, H, W, C) or one image (H, W, C) resized to ``height`` x ``width`` pixels:
    uint8 of the same rank. Real-valued images (0..255) are rounded to pixel values
    first. Images that already have that size come back as they are."""
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W, C) or (H, W, C), got shape {x.shape}")
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    one = x.ndim == 3
    if one:
        x = x[None]
    height, width = int(height), int(width)
    n, h, w, c = x.shape
    if (h, w) != (height, width):
        # Integers below 2^53 throughout: the float64 products and sums are exact.
        # width: rows (N * H * C, W) @ (W, width), one matrix product
        rows = np.ascontiguousarray(np.moveaxis(x, 3, 2), dtype=np.float64)
        rows = _pixels(rows.reshape(-1, w) @ resize_weights(w, width).T)
        # height: (height, H) @ (H, C * width) for each image
        rows = rows.reshape(n, h, c * width)
        weights = resize_weights(h, height)
        out = np.empty((n, height, c * width), dtype=np.float64)
        for k in range(n):
            out[k] = _pixels(weights @ rows[k])
        x = np.moveaxis(out.reshape(n, height, c, width), 2, 3).astype(np.uint8)
    return x[0] if one else x


def _pixels(acc: np.ndarray) -> np.ndarray:
    """Sums in units of 2^-22 -> whole pixel values, halves up, within 0..255."""
    return np.clip(np.floor((acc + _ONE // 2) / _ONE), 0, 255)


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
