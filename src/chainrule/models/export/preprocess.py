"""The preprocessing of raw images as ONNX nodes, value for value what
``chainrule.data.Preprocessor.transform`` computes.

``transform`` computes ``x * scale - shift`` in float32 (one rounding each) with
``scale = 1 / (255 std)`` and ``shift = mean / std`` rounded to float32; the nodes here do
the same float32 operations in the same order (Cast, Mul, Sub), so the rows entering the
model are bit for bit those chainrule computes. Images of another size than the model's
are first resized (`resize_pixels`) as ``chainrule.data.resize_images`` resizes them.
"""

from __future__ import annotations

import numpy as np

from chainrule.models.export.graph import Graph

__all__ = ["images_to_rows", "resize_pixels", "scale_and_shift"]


def scale_and_shift(preprocessor) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift), each (C,) float32, such that rows are ``x * scale - shift``.

    The same expressions as ``Preprocessor.transform`` (float64, then rounded once).
    """
    std = np.asarray(preprocessor.std_, dtype=np.float32)
    mean = np.asarray(preprocessor.mean_, dtype=np.float32)
    scale = (1.0 / (255.0 * std.astype(np.float64))).astype(np.float32)
    shift = (mean.astype(np.float64) / std).astype(np.float32)
    return scale, shift


def resize_pixels(g: Graph, images: str, height: int, width: int) -> str:
    """uint8 images (N, H, W, C) of any H and W -> uint8 (N, height, width, C), resized as
    ``chainrule.data.resize_images`` resizes them: ONNX's own ``Resize`` (linear,
    half-pixel centres, antialiased when shrinking) on the uint8 pixels, whose integer
    arithmetic ONNX Runtime shares with chainrule bit for bit. An image of the model's size
    comes out unchanged."""
    return g.op(
        "Resize",
        [images, "", "", g.ints([height, width], "resize.sizes")],
        "resized",
        mode="linear",
        coordinate_transformation_mode="half_pixel",
        antialias=1,
        axes=[1, 2],
    )


def images_to_rows(g: Graph, pixels: str, preprocessor) -> str:
    """float32 pixels (N, H, W, C) on the 0..255 scale -> what the model reads, float32:
    rows (N, H*W*C [+1]) as ``Preprocessor.transform`` gives them, or the images (N, H, W,
    C) with ``flatten=False``.

    With ``preprocessor=None`` the rows are the pixel values as they are (what
    ``LoadedModel.features`` does for a model saved without preprocessing).
    """
    x = pixels
    if preprocessor is None:
        return g.op("Flatten", [x], "rows", axis=1)
    scale, shift = scale_and_shift(preprocessor)
    x = g.op("Mul", [x, g.const(scale, "prep.scale")], "scaled")
    if preprocessor.center:
        x = g.op("Sub", [x, g.const(shift, "prep.shift")], "centered")
    if not getattr(preprocessor, "flatten", True):
        return x  # images stay images, channels-last
    rows = g.op("Flatten", [x], "rows", axis=1)
    if preprocessor.bias:
        # The bias trick's column of ones, one per image of the batch.
        n = g.op("Shape", [pixels], "batch_size", start=0, end=1)
        ones = g.op(
            "ConstantOfShape",
            [g.op("Concat", [n, g.ints([1])], "ones_shape", axis=0)],
            "ones",
            value=_float_tensor(1.0),
        )
        rows = g.op("Concat", [rows, ones], "rows_with_bias", axis=1)
    return rows


def _float_tensor(value: float):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array([value], dtype=np.float32), "value")
