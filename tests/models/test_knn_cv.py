"""Cross-validation of k: folds, one neighbour list per fold for every k, the filters."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.models import KNearestNeighbors, knn_best_k, knn_cross_validate
from chainrule.models.knn import stratified_folds as _stratified_folds

# --- cross-validation ------------------------------------------------------------------


def test_stratified_folds_partition_the_data():
    y = np.repeat([0, 1, 2], [10, 7, 3])
    for random_state in (None, 0):
        fold = _stratified_folds(y, 5, random_state)
        assert fold.shape == y.shape and set(fold) == set(range(5))
        sizes = np.bincount(fold)
        assert sizes.sum() == len(y) and sizes.max() - sizes.min() <= 1
        for c in range(3):  # every class spread as evenly as possible
            per_class = np.bincount(fold[y == c], minlength=5)
            assert per_class.max() - per_class.min() <= 1
    a = _stratified_folds(y, 5, 1)
    assert not np.array_equal(a, _stratified_folds(y, 5, 2))
    np.testing.assert_array_equal(a, _stratified_folds(y, 5, 1))


def test_cross_validate_matches_fitting_each_fold():
    rng = np.random.default_rng(11)
    X = np.concatenate([rng.normal(0, 1, (30, 4)), rng.normal(1.5, 1, (30, 4))])
    y = np.repeat([0, 7], 30)
    ks = (1, 2, 5, 9)
    results = knn_cross_validate(X, y, ks=ks, folds=3, metric="l1", random_state=0)
    assert sorted(results) == list(ks)
    fold = _stratified_folds(y, 3, 0)
    for k in ks:
        assert results[k].shape == (3,)
        for f in range(3):
            held = fold == f
            expected = KNearestNeighbors(k=k, metric="l1").fit(X[~held], y[~held])
            assert results[k][f] == expected.score(X[held], y[held])


def test_cross_validate_errors():
    X = np.zeros((10, 2))
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="k=9 is larger than the smallest training part"):
        knn_cross_validate(X, y, ks=(1, 9), folds=5)
    with pytest.raises(ValueError, match="folds must be an int >= 2"):
        knn_cross_validate(X, y, folds=1)
    with pytest.raises(ValueError, match="repeated"):
        knn_cross_validate(X, y, ks=(1, 1), folds=2)
    with pytest.raises(ValueError, match="at least 1"):
        knn_cross_validate(X, y, ks=(0, 1), folds=2)


def test_best_k_highest_mean_smallest_k_on_ties():
    results = {
        10: np.array([0.5, 0.7]),
        3: np.array([0.6, 0.6]),
        5: np.array([0.7, 0.5]),
        1: np.array([0.4, 0.4]),
    }
    assert knn_best_k(results) == 3
    results[20] = np.array([0.9, 0.4])
    assert knn_best_k(results) == 20
    with pytest.raises(ValueError, match="empty"):
        knn_best_k({})


def test_plot_knn_cv_writes_a_png(tmp_path):
    from chainrule.report.plots import plot_knn_cv

    results = {1: [0.3, 0.32, 0.31], 5: [0.35, 0.33, 0.36], 50: [0.28, 0.3, 0.29]}
    path = plot_knn_cv(results, tmp_path / "cv" / "knn.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_knn_cv({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="finite"):
        plot_knn_cv({1: [np.nan]}, tmp_path / "x.png")


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
def test_cross_validate_is_the_same_with_and_without_filters(metric, monkeypatch):
    # The filters (prepared here on small data) change how the neighbours are found, not
    # which: every fold accuracy of every k is the brute-force one.
    from knn_reference import smooth_images

    from chainrule.models.knn import _groupsums, _projection, _search

    rng = np.random.default_rng(31)
    X = smooth_images(rng, 1500)
    y = rng.integers(0, 4, 1500)
    ks = (1, 3, 10, 25)
    monkeypatch.setattr(_search, "FILTER_MIN_TRAIN", 10**9)
    brute = knn_cross_validate(X, y, ks=ks, folds=3, metric=metric, random_state=0)
    monkeypatch.setattr(_search, "FILTER_MIN_TRAIN", 500)
    monkeypatch.setattr(_search, "FILTER_MIN_FEATURES", 32)
    monkeypatch.setattr(_groupsums, "COARSE_SHARE", 16)
    used = []
    for cls in (_projection.Projection, _groupsums.GroupSumFilter):
        original = cls.search_chunk

        def spy(self, *args, original=original):
            done, ex, ix = original(self, *args)
            used.append(int(done.sum()))
            return done, ex, ix

        monkeypatch.setattr(cls, "search_chunk", spy)
    filtered = knn_cross_validate(X, y, ks=ks, folds=3, metric=metric, random_state=0)
    assert sum(used) > 0.3 * len(y)  # the filters answered many held-out rows (k up to 25)
    assert sorted(filtered) == sorted(brute)
    for k in ks:
        np.testing.assert_array_equal(filtered[k], brute[k])
