"""Classification metrics: accuracy, confusion matrix, per-class accuracy."""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "confusion_matrix", "per_class_accuracy"]


def _labels(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got {y.shape}")
    if y.size and (y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer)):
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} and {p.shape[0]}")
    if t.size == 0:
        raise ValueError("no labels to score (N = 0)")
    return t, p


def accuracy(y_true, y_pred) -> float:
    """Fraction of ``y_pred`` (N,) equal to ``y_true`` (N,), a float in [0, 1]."""
    t, p = _pair(y_true, y_pred)
    return float(np.count_nonzero(t == p) / t.shape[0])


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts ``M[i, j]`` of samples of true class ``i`` predicted as class ``j``.

    Parameters
    ----------
    y_true, y_pred : int arrays (N,), labels in ``0 .. num_classes - 1``
    num_classes : int, optional
        Size of the matrix; by default one more than the largest label seen.

    Returns
    -------
    ndarray (num_classes, num_classes), int64; rows are true classes, columns predictions,
    so ``M.sum(axis=1)`` is the number of samples of each class and ``trace(M) / N`` the
    accuracy.
    """
    t, p = _pair(y_true, y_pred)
    lo = min(int(t.min()), int(p.min()))
    hi = max(int(t.max()), int(p.max()))
    if lo < 0:
        raise ValueError(f"labels must be non-negative, found {lo}")
    if num_classes is None:
        num_classes = hi + 1
    elif hi >= num_classes:
        raise ValueError(f"label {hi} does not fit num_classes={num_classes}")
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix (C, C): float64 (C,), NaN for an empty class."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {cm.shape}")
    totals = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / totals, np.nan)
