"""Contact sheets: many small images in one PNG, for a run's page.

A sheet is a grid of equal tiles without gaps (``rows x columns`` tiles of ``h x w``
pixels), so a page can show any one tile by placing the sheet behind a tile-sized
window. Images larger than `MAX_SIDE` pixels are shrunk by an integer factor (the mean of
each block of pixels), so a sheet of photos stays small.
"""

from __future__ import annotations

import io
import math

import numpy as np

__all__ = ["MAX_SIDE", "sheet_png", "thumbnails"]

MAX_SIDE = 96  # pixels: the longest side of a tile


def thumbnails(images: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """``images`` (N, H, W, C) uint8 shrunk by the smallest integer factor that brings
    the longest side to ``max_side`` or less (block means; C is 1, 3 or 4)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected images (N, H, W, C) uint8, got {images.shape} {images.dtype}")
    n, h, w, c = images.shape
    f = max(1, math.ceil(max(h, w) / max_side))
    if f == 1:
        return images
    h2, w2 = h // f, w // f
    blocks = images[:, : h2 * f, : w2 * f].reshape(n, h2, f, w2, f, c)
    return np.rint(blocks.mean(axis=(2, 4), dtype=np.float64)).astype(np.uint8)


def sheet_png(tiles: list, columns: int, background: int = 255) -> tuple[bytes, dict]:
    """A PNG of ``tiles`` (each (h, w, C) uint8 of one shape, or None for an empty
    place) laid out ``columns`` to a row. Returns the PNG's bytes and its layout:
    ``{"tile": [h, w], "columns": ..., "rows": ...}``."""
    from PIL import Image

    shaped = [t for t in tiles if t is not None]
    if not shaped or columns < 1:
        raise ValueError("a sheet needs at least one tile and one column")
    h, w, c = shaped[0].shape
    rows = math.ceil(len(tiles) / columns)
    sheet = np.full((rows * h, columns * w, c), background, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        if tile is None:
            continue
        if tile.shape != (h, w, c):
            raise ValueError(f"tile {k} has shape {tile.shape}, the sheet's tiles {(h, w, c)}")
        r, q = divmod(k, columns)
        sheet[r * h : (r + 1) * h, q * w : (q + 1) * w] = tile
    buffer = io.BytesIO()
    Image.fromarray(sheet[..., 0] if c == 1 else sheet).save(buffer, format="PNG")
    return buffer.getvalue(), {"tile": [int(h), int(w)], "columns": columns, "rows": rows}
