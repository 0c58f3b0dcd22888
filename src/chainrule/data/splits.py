"""Deterministic, stratified train/validation splits."""

from __future__ import annotations

import numbers

import numpy as np

from chainrule._random import as_generator

from .dataset import Dataset

__all__ = ["stratified_split_indices", "train_val_split"]


def _check_fraction(val_fraction: float, name: str = "val_fraction") -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1), got {val_fraction!r}")
    val_fraction = float(val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {val_fraction}")
    return val_fraction


def stratified_split_indices(
    labels: np.ndarray,
    val_fraction: float = 0.2,
    random_state: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into a training part and a validation part, class by class.

    Parameters
    ----------
    labels : array, shape (N,), integer
    val_fraction : float in [0, 1)
        Share of the samples that goes to validation: ``round(val_fraction * N)`` in all,
        spread over the classes in proportion to their sizes (largest remainders first), so
        every class keeps its share in both parts. Every class keeps at least one
        training sample, whatever ``val_fraction`` asks: a model never silently trains
        without a class. A class with a single sample therefore has it in the training
        part and none in the validation part, and the validation part is smaller than
        asked only when the classes cannot give more.
    random_state : int, Generator or None
        Which samples of a class go to validation. The same seed gives the same split.

    Returns
    -------
    train_idx, val_idx : int64 arrays, sorted ascending, disjoint, together ``0 .. N-1``.

    Raises ``ValueError`` when ``val_fraction > 0`` leaves no validation sample at all (too
    few samples, or only classes of one sample).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {labels.shape}")
    if labels.size and (labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer)):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    val_fraction = _check_fraction(val_fraction)
    rng = as_generator(random_state)
    n = labels.shape[0]
    if n == 0:
        raise ValueError("cannot split an empty set of labels")

    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=classes.size)
    n_val = int(np.floor(val_fraction * n + 0.5))
    exact = val_fraction * counts
    room = counts - 1  # validation samples a class can give and keep one for training
    per_class = np.minimum(np.floor(exact).astype(np.int64), room)
    remainder = n_val - int(per_class.sum())
    # Largest fractional parts first; a stable sort breaks ties by class order. A class
    # without room passes its turn (more than one round only when classes are that small).
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    while remainder > 0:
        takers = order[per_class[order] < room[order]][:remainder]
        if takers.size == 0:
            break
        per_class[takers] += 1
        remainder -= takers.size
    if val_fraction > 0 and per_class.sum() == 0:
        raise ValueError(
            f"val_fraction={val_fraction} leaves no validation samples: {n} samples in "
            f"{classes.size} classes, and each class keeps at least one for training"
        )

    val_parts = []
    by_class = np.argsort(inverse, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)))
    for c in range(classes.size):
        members = by_class[starts[c] : starts[c + 1]]
        val_parts.append(rng.permutation(members)[: per_class[c]])
    val_idx = np.sort(np.concatenate(val_parts)).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    train_idx = np.flatnonzero(mask).astype(np.int64)
    return train_idx, val_idx


def train_val_split(
    X: np.ndarray,
    y: np.ndarray,
    val_fraction: float = 0.2,
    random_state: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, deterministic split of ``(X, y)`` into training and validation arrays.

    Parameters
    ----------
    X : array, shape (N, ...)
        Samples (images (N, H, W, C) or feature rows (N, D)); split along the first axis.
    y : array, shape (N,), integer labels
    val_fraction, random_state :
        As in :func:`stratified_split_indices`, which gives the indices used here.

    Returns
    -------
    X_train, X_val, y_train, y_val : arrays (scikit-learn's ``train_test_split`` order),
    samples in their original order within each part.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must have shape (N,), got {y.shape}")
    if X.ndim < 1 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y must have the same number of samples, got X {X.shape} and y {y.shape}"
        )
    train_idx, val_idx = stratified_split_indices(y, val_fraction, random_state)
    return X[train_idx], X[val_idx], y[train_idx], y[val_idx]


def carve(ds: Dataset, split: str, val_fraction: float, random_state: int) -> Dataset:
    """``ds`` itself for "test"/"all"; its stratified train or val part (see
    :func:`stratified_split_indices`) for "train"/"val"."""
    if split in ("test", "all"):
        return ds
    if split == "train" and val_fraction == 0:
        return Dataset(ds.images, ds.labels, ds.classes, ds.name, "train", ds.files)
    if split == "val" and val_fraction == 0:
        raise ValueError("val_fraction=0 leaves no validation split")
    train_idx, val_idx = stratified_split_indices(ds.labels, val_fraction, random_state)
    return ds.subset(train_idx if split == "train" else val_idx, split=split)
