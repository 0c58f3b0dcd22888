"""Cross-validation of k: one sorted neighbour list per fold serves every k."""

from __future__ import annotations

import numbers

import numpy as np

from chainrule._random import as_generator
from chainrule.models._base import check_X_y
from chainrule.models.knn._estimator import KNearestNeighbors, check_k, count_votes

__all__ = ["DEFAULT_KS", "knn_best_k", "knn_cross_validate", "stratified_folds"]

# The ks of the course's cross-validation exercise (cs231n / DeepRob).
DEFAULT_KS = (1, 3, 5, 8, 10, 12, 15, 20, 50, 100)


def stratified_folds(y: np.ndarray, folds: int, random_state) -> np.ndarray:
    """Fold number (N,) for each sample: each class dealt round-robin over the folds.

    Without ``random_state`` samples are taken in their given order (deterministic); with
    one, each class is shuffled first.
    """
    fold = np.empty(len(y), dtype=np.int64)
    rng = None if random_state is None else as_generator(random_state)
    offset = 0
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        if rng is not None:
            members = rng.permutation(members)
        # The offset keeps fold sizes balanced when classes are small.
        fold[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return fold


def _check_cv_args(y, ks, folds) -> list[int]:
    if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 2:
        raise ValueError(f"folds must be an int >= 2, got {folds!r}")
    if folds > len(y):
        raise ValueError(f"folds={folds} is more than the number of samples ({len(y)})")
    ks = [check_k(k, "every k in ks") for k in np.atleast_1d(ks).tolist()]
    if not ks:
        raise ValueError("ks is empty")
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks has repeated values: {ks}")
    return ks


def knn_cross_validate(
    X,
    y,
    ks=DEFAULT_KS,
    folds: int = 5,
    metric: str = "l2",
    random_state=None,
    chunk_size=None,
    n_jobs=None,
    progress: bool = False,
) -> dict[int, np.ndarray]:
    """Fold accuracies of k-NN for every k in ``ks``.

    X : (N, D), y : (N,) integer labels. The data are split into ``folds`` stratified
    folds (see ``stratified_folds``; ``random_state`` shuffles within each class). For each
    fold the distances are computed once: the ``max(ks)`` nearest neighbours of the held-out
    rows, sorted, from which every k votes.

    Returns ``{k: accuracies}`` with ``accuracies`` a float64 array of shape (folds,).
    """
    X, y = check_X_y(X, y)
    ks = _check_cv_args(y, ks, folds)
    fold = stratified_folds(y, folds, random_state)
    smallest_train = len(y) - np.bincount(fold, minlength=folds).max()
    k_max = max(ks)
    if k_max > smallest_train:
        raise ValueError(
            f"k={k_max} is larger than the smallest training part of the folds "
            f"({smallest_train} samples)"
        )
    results = {k: np.empty(folds) for k in ks}
    model = KNearestNeighbors(k=k_max, metric=metric, chunk_size=chunk_size, n_jobs=n_jobs)
    steps = range(folds)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"k-NN {metric} cross-validation", unit="fold")
    for f in steps:
        held = fold == f
        model.fit(X[~held], y[~held])
        idx = model.kneighbors(X[held], k_max, return_distance=False)
        labels = model.fit_y_[idx]
        truth = np.searchsorted(model.classes_, y[held])
        known = np.isin(y[held], model.classes_)
        for k in ks:
            pred = count_votes(labels[:, :k], len(model.classes_)).argmax(axis=1)
            results[k][f] = np.mean((pred == truth) & known)
    return results


def knn_best_k(results: dict[int, np.ndarray]) -> int:
    """The k with the highest mean accuracy in ``results`` (smallest k on ties)."""
    if not results:
        raise ValueError("results is empty")
    means = {int(k): float(np.mean(v)) for k, v in results.items()}
    best = max(means.values())
    # Means of equal fold accuracies can differ in the last bit from summation order.
    return min(k for k, v in means.items() if v >= best - 1e-12)
