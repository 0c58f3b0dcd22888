"""Datasets, downloads, preprocessing and augmentation for image classification.

Main entry points::

    from chainrule import data
    train = data.load("digits", split="train")        # Dataset: .images, .labels, .classes
    pre = data.Preprocessor(bias=False).fit(train.images)
    X = pre.transform(train.images)                   # (N, H*W*C) float32
    Xb = data.random_crop_flip_flat(X, train.image_shape, rng=rng)
    frame = data.resize_images(frame, 48, 64)        # any size -> 48 high, 64 wide, uint8

Submodules that need Pillow, tqdm, urllib or tarfile (``folder``, ``download``, ``cifar10``,
``props``, ``safe_pickle``, ``archive``, ``digits``, ``samples``) are imported on first use,
so ``import chainrule.data`` costs NumPy only. ``python -m chainrule.data.samples`` writes a
few digit images to try ``chainrule predict`` on.
"""

from __future__ import annotations

import importlib

from .augment import CropFlip, alternating_flips, crop_flip, random_crop_flip, random_crop_flip_flat
from .cache import cache_root
from .dataset import Dataset
from .loading import DATASETS, SPLITS, available_splits, load
from .preprocess import Preprocessor
from .report import DataWarning
from .resize import resize_images
from .splits import stratified_split_indices, train_val_split

__all__ = [
    "CropFlip",
    "alternating_flips",
    "DATASETS",
    "SPLITS",
    "DataWarning",
    "Dataset",
    "Preprocessor",
    "available_splits",
    "cache_root",
    "crop_flip",
    "load",
    "random_crop_flip",
    "random_crop_flip_flat",
    "read_image",
    "read_images",
    "resize_images",
    "stratified_split_indices",
    "train_val_split",
    "write_digit_pngs",
]

_LAZY_MODULES = (
    "archive",
    "cifar10",
    "decode",
    "digits",
    "download",
    "folder",
    "props",
    "safe_pickle",
    "samples",
)


def read_image(path, mode: str = "RGB", max_pixels: int | None = None):
    """Decode one image file to (H, W, C) uint8 exactly as image folders are decoded,
    refusing from its header an image of more than ``max_pixels`` pixels.

    See :func:`chainrule.data.decode.read_image`.
    """
    from .decode import read_image as _read_image

    return _read_image(path, mode, max_pixels)


def read_images(
    paths,
    mode: str = "RGB",
    progress: bool = True,
    workers: int | None = None,
    max_pixels: int | None = None,
):
    """Decode same-size image files to (N, H, W, C) uint8 in parallel.

    See :func:`chainrule.data.decode.read_images`.
    """
    from .decode import read_images as _read_images

    return _read_images(paths, mode=mode, progress=progress, workers=workers, max_pixels=max_pixels)


def write_digit_pngs(folder=".", n_per_class: int = 1):
    """Write test-split digits as PNG files ``digit0.png`` ... to try ``predict`` on.

    See :func:`chainrule.data.samples.write_digit_pngs`.
    """
    from .samples import write_digit_pngs as _write

    return _write(folder, n_per_class)


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
