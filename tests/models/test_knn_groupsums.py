"""The l1 group-sum filter: lower bounds that never exceed a distance, and neighbours equal
to a float64 brute force on adversarial data (ties, duplicates, constant images, k > 1,
tiny and huge values)."""

from __future__ import annotations

import numpy as np
import pytest
from knn_reference import brute_force, brute_predict, smooth_images

from chainrule.models import KNearestNeighbors
from chainrule.models.knn import _groupsums, _search
from chainrule.models.knn._groupsums import GroupSumFilter, fit_group_sums, pair_by_correlation


@pytest.fixture
def small_l1_filter(monkeypatch):
    """The l1 filter on small data (192 features: 12 coarse groups, then 48); records
    (queries, queries settled) of every chunk it sees."""
    monkeypatch.setattr(_search, "FILTER_MIN_TRAIN", 500)
    monkeypatch.setattr(_search, "FILTER_MIN_FEATURES", 32)
    monkeypatch.setattr(_groupsums, "COARSE_SHARE", 16)
    settled = []
    original = GroupSumFilter.search_chunk

    def wrapped(self, *args):
        done, ex, ix = original(self, *args)
        settled.append((len(done), int(done.sum())))
        return done, ex, ix

    monkeypatch.setattr(GroupSumFilter, "search_chunk", wrapped)
    return settled


def check_against_brute_force(X, Q, y, ks, chunk_size=None):
    ref_d, ref_i = brute_force(X, Q, "l1")
    model = KNearestNeighbors(k=max(ks), metric="l1", chunk_size=chunk_size).fit(X, y)
    for k in ks:
        d, i = model.kneighbors(Q, k)
        np.testing.assert_array_equal(i, ref_i[:, :k])
        np.testing.assert_array_equal(d, ref_d[:, :k])
        np.testing.assert_array_equal(model.kneighbors(Q, k, return_distance=False), i)
        model.set_params(k=k)
        pred, proba = brute_predict(X, y, Q, k, "l1")
        np.testing.assert_array_equal(model.predict(Q), pred)
        np.testing.assert_array_equal(model.predict_proba(Q), proba)
    return model


def test_filter_gives_the_brute_force_neighbours_and_settles_most_queries(small_l1_filter):
    rng = np.random.default_rng(20)
    X = smooth_images(rng, 1500)
    X[700:720] = X[100:120]  # duplicates: equal distances, the smaller index first
    Q = np.concatenate([smooth_images(rng, 110), X[100:110]])
    y = rng.integers(0, 4, 1500)
    model = check_against_brute_force(X, Q, y, ks=(1, 5, 20), chunk_size=40)
    assert isinstance(model._search.filter, GroupSumFilter)
    assert [lv.n_groups for lv in model._search.filter.levels] == [12, 48]
    # k = 1 (the first three chunks): nearly every query, duplicates included; with more
    # neighbours and only 12 coarse numbers per row, fewer.
    total, settled = np.sum(small_l1_filter[:3], axis=0)
    assert total == 120 and settled >= 110
    total, settled = np.sum(small_l1_filter, axis=0)
    assert settled > 0.7 * total


def test_ties_duplicates_and_constant_images(small_l1_filter, monkeypatch):
    # Constant images (every pixel the same) at 40 grey levels, each twice, and images
    # made of two grey levels: many exactly equal distances, bounds that are exact (the
    # groups of a constant image sum to the same), queries at distance 0 from several
    # training rows.
    monkeypatch.setattr(_groupsums, "PREPARE_MAX_SURVIVORS", 1.0)
    rng = np.random.default_rng(21)
    grey = np.repeat(np.arange(0, 240, 6, dtype=np.float32), 2)
    constant = np.repeat(grey[:, None], 192, axis=1)
    halves = np.where(np.arange(192) < 96, 1.0, 0.0).astype(np.float32)
    two_level = 60 * rng.integers(0, 4, (300, 1)) + 30 * rng.integers(0, 4, (300, 1)) * halves
    X = np.concatenate([smooth_images(rng, 700), constant, two_level.astype(np.float32)])
    X = X[rng.permutation(len(X))]
    Q = np.concatenate([constant[::7] + 3, constant[::9], two_level[:20], smooth_images(rng, 20)])
    y = rng.integers(0, 3, len(X))
    check_against_brute_force(X, Q, y, ks=(1, 7, 30))
    assert small_l1_filter  # the filter saw the queries


@pytest.mark.parametrize("scale", [1e-30, 1e-300, 1e30, 1e300])
def test_tiny_and_huge_float64_values(small_l1_filter, scale, monkeypatch):
    # float64 rows: group sums in float32 underflow (1e-300) or would overflow (1e300);
    # the bounds account for both (or the filter stays off), and neighbours stay exact.
    monkeypatch.setattr(_groupsums, "PREPARE_MAX_SURVIVORS", 1.0)
    rng = np.random.default_rng(22)
    X = smooth_images(rng, 800).astype(np.float64) * scale
    Q = smooth_images(rng, 40).astype(np.float64) * scale
    X[400:410] = X[0:10]
    y = rng.integers(0, 3, 800)
    model = check_against_brute_force(X, Q, y, ks=(1, 4))
    assert (model._search.filter is None) == (scale == 1e300)


def test_filter_is_not_prepared_for_noise_and_switches_off(small_l1_filter, monkeypatch):
    rng = np.random.default_rng(23)
    X = rng.normal(size=(1200, 192)).astype(np.float32)
    Q = rng.normal(size=(90, 192)).astype(np.float32)
    y = rng.integers(0, 3, 1200)
    assert KNearestNeighbors(metric="l1").fit(X, y)._search.filter is None
    # Prepared anyway, the first chunk it cannot settle switches it off.
    monkeypatch.setattr(_groupsums, "PREPARE_MAX_SURVIVORS", 1.0)
    check_against_brute_force(X, Q, y, ks=(3,), chunk_size=30)
    assert small_l1_filter[0][1] < 15
    # One chunk of each of the four calls (two kneighbors, predict, predict_proba).
    assert small_l1_filter == [(30, 0)] * 4


@pytest.mark.parametrize(
    "scale, dtype", [(1.0, np.float32), (1e-20, np.float64), (1e25, np.float64)]
)
def test_bounds_never_exceed_the_distance(scale, dtype, monkeypatch):
    monkeypatch.setattr(_groupsums, "COARSE_SHARE", 16)
    rng = np.random.default_rng(24)
    X = (smooth_images(rng, 600) * scale).astype(dtype)
    X[:100] = (rng.normal(size=(100, 192)) * 60 * scale).astype(dtype)  # and some noise
    Q = np.concatenate([X[:5] + dtype(scale), X[300:305], X[:100:10] * dtype(1.5)])
    filt = fit_group_sums(X, X.mean(axis=0, dtype=np.float64).astype(dtype))
    assert filt is not None
    dist = brute_force(X, Q, "l1")
    true = np.empty((len(Q), len(X)))
    true[np.arange(len(Q))[:, None], dist[1]] = dist[0]
    zq = filt.reduce(Q)
    low, slack = filt.coarse_bounds(zq[0], np.empty((len(Q), len(X)), np.float32), 1)
    coarse = (low - slack[:, None]).ravel()
    assert (coarse <= true.ravel()).all()
    apart = true.ravel() > 0  # (queries 5..9 are training rows)
    tightness = np.median(coarse[apart] / true.ravel()[apart])
    assert tightness > 0.3  # and not useless
    rows, cols = (a.ravel() for a in np.indices(true.shape))
    for level, z in zip(filt.levels[1:], zq[1:], strict=True):
        bound = filt.refine(level, z, rows, cols, 1)
        assert (bound <= true.ravel()).all()
        assert np.median(bound[apart] / true.ravel()[apart]) > tightness


def test_pairing_by_correlation():
    # Items 0..9 in correlated pairs (0, 7), (1, 4), (2, 9), (3, 5), (6, 8), and a single 10.
    rng = np.random.default_rng(25)
    partner = {0: 7, 1: 4, 2: 9, 3: 5, 6: 8}
    base = rng.normal(size=(500, 11))
    data = base.copy()
    for a, b in partner.items():
        data[:, b] = base[:, a] + 0.1 * base[:, b]
    groups = pair_by_correlation(np.corrcoef(data.T))
    assert sorted(map(sorted, groups)) == sorted([[a, b] for a, b in partner.items()] + [[10]])
    assert pair_by_correlation(np.ones((1, 1))) == [[0]]
    # Every item in exactly one group, pairs first, for any matrix.
    C = np.corrcoef(rng.normal(size=(50, 33)).T)
    groups = pair_by_correlation(C)
    assert sorted(sum(groups, [])) == list(range(33))
    assert [len(g) for g in groups] == [2] * 16 + [1]
