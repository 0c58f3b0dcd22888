"""Deterministic, stratified train/validation splits."""

from __future__ import annotations

import numbers

import numpy as np

from chainrule._random import as_generator  # noqa: F401  (re-exported)

__all__ = ["as_generator", "stratified_split_indices", "train_val_split"]


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
        every class keeps its share in both parts.
    random_state : int, Generator or None
        Which samples of a class go to validation. The same seed gives the same split.

    Returns
    -------
    train_idx, val_idx : int64 arrays, sorted ascending, disjoint, together ``0 .. N-1``.
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
    per_class = np.floor(exact).astype(np.int64)
    remainder = n_val - int(per_class.sum())
    if remainder > 0:
        # Largest fractional parts first; a stable sort breaks ties by class order.
        order = np.argsort(-(exact - per_class), kind="stable")
        per_class[order[:remainder]] += 1

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
