"""Photos a robot could take of three objects, made here: colour, not square (14 high, 20
wide, so that a mix-up of axes or channels changes a model's answers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 14, 20
CLASSES = ("cup", "drill", "mug")


def photo(kind: int, rng, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """One (H, W, 3) uint8 photo of object ``kind``: a red bar on the left, green
    horizontal stripes or a blue disc, shifted a little, on noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    dx = rng.integers(-2, 3)
    if kind == 0:
        mask, colour = xx + dx < width // 3, (200, 40, 40)
    elif kind == 1:
        mask, colour = (yy * 6 // height) % 2 == 0, (30, 180, 60)
    else:
        disc = (xx - width / 2 - dx) ** 2 + (yy - height / 2) ** 2
        mask, colour = disc < (min(height, width) / 3) ** 2, (40, 60, 210)
    noise = rng.integers(0, 70, (height, width, 3))
    return np.clip(noise + mask[..., None] * np.array(colour), 0, 255).astype(np.uint8)


def write_photos(root: Path, n_per_class: int, seed: int, **size) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for kind, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(photo(kind, rng, **size)).save(root / name / f"{i:03d}.png")
    return root
