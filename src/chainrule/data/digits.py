"""The bundled handwritten digits (8x8 grayscale, 1,797 images): the offline default dataset.

E. Alpaydin and C. Kaynak (1998), "Optical Recognition of Handwritten Digits", UCI Machine
Learning Repository, CC BY 4.0 (see ``bundled/README.md`` and ``bundled/LICENSE``).
"""

from __future__ import annotations

import gzip
import io
from importlib import resources

import numpy as np

__all__ = ["CLASSES", "TEST_FRACTION", "TEST_SEED", "read_digits"]

CLASSES = [str(d) for d in range(10)]
#: Share of the images held out as the test split, always the same images.
TEST_FRACTION = 0.2
TEST_SEED = 20260101
_FILE = "digits.csv.gz"


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images (N, 8, 8, 1) uint8, pixel values 0..16 rescaled to 0..255, and
    labels (N,) int64, in file order."""
    blob = resources.files(__package__).joinpath("bundled").joinpath(_FILE).read_bytes()
    text = gzip.decompress(blob).decode("ascii")
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 65:
        raise ValueError(f"bundled {_FILE} is damaged: {table.shape[1]} columns, expected 65")
    pixels, labels = table[:, :64], table[:, 64]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"bundled {_FILE} is damaged: values out of range")
    # 0..16 -> 0..255, rounding half up (16 -> 255, 8 -> 128).
    images = ((pixels * 255 + 8) // 16).astype(np.uint8).reshape(-1, 8, 8, 1)
    return images, labels
