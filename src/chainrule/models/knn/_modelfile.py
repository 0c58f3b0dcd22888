"""k-NN model files: the training images in their own dtype, with their preprocessing.

A k-NN model is its training rows. Rows made by a ``Preprocessor`` from uint8 images are
float32, four bytes for each byte of the images they came from (587 MB against 147 MB
for CIFAR-10's 50,000 images). So a model file stores the images instead, when it can
prove that the preprocessing gives back exactly the rows the model was fitted on: the
images are recovered by inverting the preprocessing (every pixel level's image, looked
up per feature), the preprocessing is applied to them again and the result compared bit
for bit with the rows. Loading applies the preprocessing to the stored images, which
rebuilds the same rows, and therefore the same neighbours and predictions. Anything
else (no preprocessing, rows from elsewhere, a preprocessing that loses information) is
stored as the rows themselves.
"""

from __future__ import annotations

import numpy as np

__all__ = ["images_of_rows", "rows_of_images"]

# Rows converted at a time (bounded memory for any training set).
_ROWS = 8192


def _level_table(preprocessor, shape) -> np.ndarray:
    """(256, D) float32: the preprocessed row of the image whose pixels all equal v."""
    levels = np.broadcast_to(np.arange(256, dtype=np.uint8)[:, None, None, None], (256, *shape))
    return np.asarray(preprocessor.transform(levels), dtype=np.float32).reshape(256, -1)


def images_of_rows(X: np.ndarray, preprocessor) -> np.ndarray | None:
    """The uint8 images (N, H, W, C) that ``preprocessor`` turns into exactly ``X``
    (N, D) float32, or None when there are none (or ``X`` did not come from it)."""
    shape = tuple(getattr(preprocessor, "image_shape_", None) or ())
    if len(shape) != 3 or X.dtype != np.float32 or X.ndim != 2:
        return None
    n = X.shape[0]
    d = int(np.prod(shape))
    try:
        table = _level_table(preprocessor, shape)
    except (ValueError, TypeError):
        return None
    if table.shape[1] != X.shape[1] or X.shape[1] < d:
        return None
    # Rows are images[i].ravel() (HWC) after per-pixel operations, then perhaps more
    # columns (a bias); features sharing a level table are inverted together.
    tables, which = np.unique(table[:, :d].T, axis=0, return_inverse=True)
    groups = [np.flatnonzero(which.ravel() == g) for g in range(len(tables))]
    orders = [np.argsort(t, kind="stable") for t in tables]
    images = np.empty((n, d), dtype=np.uint8)
    for s in range(0, n, _ROWS):
        block = X[s : s + _ROWS]
        for t, order, cols in zip(tables, orders, groups, strict=True):
            values = np.take(block, cols, axis=1)
            pos = np.minimum(np.searchsorted(t[order], values), 255)
            images[s : s + _ROWS, cols] = order[pos]
        rebuilt = preprocessor.transform(images[s : s + _ROWS].reshape(-1, *shape))
        if not np.array_equal(np.asarray(rebuilt).reshape(len(block), -1), block):
            return None
    return images.reshape(n, *shape)


def rows_of_images(images: np.ndarray, preprocessor) -> np.ndarray:
    """The float32 rows (N, D) that ``preprocessor`` makes of ``images`` (N, H, W, C),
    converted a block at a time."""
    if preprocessor is None:
        raise ValueError("the model stores training images but the file has no preprocessing")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"fit_images must be non-empty uint8 (N, H, W, C), got {images.dtype} {images.shape}"
        )
    first = np.asarray(preprocessor.transform(images[:1]), dtype=np.float32).reshape(1, -1)
    X = np.empty((len(images), first.shape[1]), dtype=np.float32)
    for s in range(0, len(images), _ROWS):
        part = preprocessor.transform(images[s : s + _ROWS])
        X[s : s + _ROWS] = np.asarray(part, dtype=np.float32).reshape(-1, first.shape[1])
    return X
