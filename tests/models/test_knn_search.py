"""The search under KNearestNeighbors: neighbours equal a float64 brute force through
every path (certificate, exact pass, widened search, projection filter), whatever the
chunks and threads; shards merge to the whole."""

from __future__ import annotations

import numpy as np
import pytest
from knn_reference import brute_force, brute_predict, image_like

from chainrule.models import KNearestNeighbors
from chainrule.models.knn import (
    NeighborSearch,
    _parallel,
    _projection,
    _search,
    _select,
    merge_neighbors,
)

METRICS = ("l2", "l1", "cosine")


@pytest.fixture
def count_redo(monkeypatch):
    """Number of queries that went through the uncertified (exact re-measuring) path."""
    calls = []
    original = NeighborSearch._redo

    def wrapped(self, Qo, bound, k, ws):
        calls.append(len(Qo))
        return original(self, Qo, bound, k, ws)

    monkeypatch.setattr(NeighborSearch, "_redo", wrapped)
    return calls


# --- agreement with a float64 brute force --------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_matches_float64_brute_force_on_pixels_with_an_offset(metric, offset):
    # Raw 0..255 pixel values, optionally far from the origin: float32 cancellation is
    # what centring and the certificate must defeat. 1,200 training rows exercise the
    # threshold selection (more than 64 entries per group).
    rng = np.random.default_rng(1)
    X = (rng.integers(0, 256, (1200, 48)) + offset).astype(np.float32)
    Q = (rng.integers(0, 256, (60, 48)) + offset).astype(np.float32)
    y = rng.integers(0, 4, 1200)
    ref_d, ref_i = brute_force(X, Q, metric)
    for k in (1, 6):
        model = KNearestNeighbors(k=k, metric=metric).fit(X, y)
        d, i = model.kneighbors(Q)
        np.testing.assert_array_equal(i, ref_i[:, :k])
        np.testing.assert_allclose(d, ref_d[:, :k], rtol=1e-12, atol=1e-12)
        pred, proba = brute_predict(X, y, Q, k, metric)
        np.testing.assert_array_equal(model.predict(Q), pred)
        np.testing.assert_array_equal(model.predict_proba(Q), proba)


@pytest.mark.parametrize("metric", METRICS)
def test_matches_brute_force_on_nearly_equal_continuous_data(metric):
    # A tiny spread on a large offset: differences near float32 resolution.
    rng = np.random.default_rng(2)
    X = (1000.0 + rng.random((400, 16))).astype(np.float32)
    Q = (1000.0 + rng.random((60, 16))).astype(np.float32)
    _, ref_i = brute_force(X, Q, metric)
    _, i = KNearestNeighbors(k=5, metric=metric).fit(X, np.zeros(400, int)).kneighbors(Q)
    np.testing.assert_array_equal(i, ref_i[:, :5])


@pytest.mark.parametrize("metric", METRICS)
def test_many_exact_ties_go_through_the_exact_path(metric, count_redo):
    # Integer points on a sphere around the query (all permutations and signs of
    # (3, 4, 0, 0) and (0, 0, 5, 0) ...) plus duplicates: more equal distances than
    # candidates, so the certificate must fail and the exact path pick the smallest indices.
    base = []
    for a, b in [(3, 4), (4, 3), (5, 0), (0, 5)]:
        for pos in [(0, 1), (1, 2), (2, 3), (0, 3)]:
            for sa in (1, -1):
                for sb in (1, -1):
                    v = [0, 0, 0, 0]
                    v[pos[0]], v[pos[1]] = sa * a, sb * b
                    base.append(v)
    rng = np.random.default_rng(3)
    X = np.array(base * 3, dtype=np.float32)
    X = X[rng.permutation(len(X))]
    X = np.concatenate([X, X * 2.0]) + 50.0  # a shell farther out, and an offset
    y = rng.integers(0, 3, len(X))
    Q = np.full((3, 4), 50.0, dtype=np.float32)
    Q[1] += 0.5  # a second query off-centre
    ref_d, ref_i = brute_force(X, Q, metric)
    model = KNearestNeighbors(k=7, metric=metric, chunk_size=(2, 100)).fit(X, y)
    d, i = model.kneighbors(Q)
    np.testing.assert_array_equal(i, ref_i[:, :7])
    np.testing.assert_allclose(d, ref_d[:, :7], atol=1e-12)
    np.testing.assert_array_equal(model.predict(Q), brute_predict(X, y, Q, 7, metric)[0])
    assert sum(count_redo) > 0


def test_well_separated_data_needs_no_re_measuring(count_redo, monkeypatch):
    pools = []
    original = NeighborSearch._pool

    def wrapped(self, Qo, query, vals, cols, rows, k, m, ws):
        pools.append(len(rows))
        return original(self, Qo, query, vals, cols, rows, k, m, ws)

    monkeypatch.setattr(NeighborSearch, "_pool", wrapped)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(2000, 32)).astype(np.float32)
    Q = X[:100] + rng.normal(scale=0.01, size=(100, 32)).astype(np.float32)
    model = KNearestNeighbors(k=3).fit(X, np.zeros(2000, int))
    model.predict(Q)
    idx = model.kneighbors(Q, k=1, return_distance=False)
    np.testing.assert_array_equal(idx[:, 0], np.arange(100))
    assert pools == [] and count_redo == []
    # Many exact duplicates: the approximate values cannot tell them apart.
    X2 = np.repeat(X[:50], 3, axis=0)
    model = KNearestNeighbors(k=2).fit(X2, np.zeros(150, int))
    np.testing.assert_array_equal(
        model.kneighbors(X[:5], return_distance=False)[:, 0], [0, 3, 6, 9, 12]
    )
    assert sum(pools) == 5


def test_return_distance_false_gives_the_same_indices():
    rng = np.random.default_rng(13)
    X = rng.integers(0, 5, (400, 6)).astype(np.float32)  # many equal distances
    Q = rng.integers(0, 5, (50, 6)).astype(np.float32)
    for metric in METRICS:
        model = KNearestNeighbors(k=12, metric=metric).fit(X, np.zeros(400, int))
        d, i = model.kneighbors(Q)
        np.testing.assert_array_equal(model.kneighbors(Q, return_distance=False), i)
        np.testing.assert_array_equal(i, brute_force(X, Q, metric)[1][:, :12])


@pytest.fixture
def small_filter(monkeypatch):
    """Turn the l2 projection filter on for small data; count the queries it settles."""
    monkeypatch.setattr(_search, "FILTER_MIN_TRAIN", 500)
    monkeypatch.setattr(_search, "FILTER_MIN_FEATURES", 32)
    settled = []
    original = _projection.Projection.search_chunk

    def wrapped(self, *args):
        done, ex, ix = original(self, *args)
        settled.append((len(done), int(done.sum())))
        return done, ex, ix

    monkeypatch.setattr(_projection.Projection, "search_chunk", wrapped)
    return settled


def test_projection_filter_is_exact_and_settles_most_queries(small_filter, monkeypatch):
    widened = []
    original = _projection.Projection._widen

    def wrapped(self, search, Qo, query, full, pquery, rows, *args):
        widened.append(len(rows))
        return original(self, search, Qo, query, full, pquery, rows, *args)

    monkeypatch.setattr(_projection.Projection, "_widen", wrapped)
    rng = np.random.default_rng(14)
    X = image_like(rng, 1500)
    X[700:720] = X[100:120]  # duplicates: equal distances the filter cannot separate
    Q = np.concatenate([image_like(rng, 130), X[100:110]])
    y = rng.integers(0, 4, 1500)
    ref_d, ref_i = brute_force(X, Q, "l2")
    model = KNearestNeighbors(k=1, chunk_size=50).fit(X, y)
    assert model._search.filter.train.data.shape == (1500, 33)
    for k in (1, 4):
        d, i = model.kneighbors(Q, k)
        np.testing.assert_array_equal(i, ref_i[:, :k])
        np.testing.assert_allclose(d, ref_d[:, :k], rtol=1e-12, atol=1e-12)
        model.set_params(k=k)
        np.testing.assert_array_equal(model.predict(Q), brute_predict(X, y, Q, k, "l2")[0])
    total, settled = np.sum(small_filter, axis=0)
    assert settled == total
    # The duplicates (equal distances) needed the widened search, the others not.
    assert 0 < sum(widened) <= 0.2 * total
    # With many neighbours the filter does not pay off: fit does not prepare it.
    assert KNearestNeighbors(k=_projection.MAX_K).fit(X, y)._search.filter is not None
    assert KNearestNeighbors(k=_projection.MAX_K + 1).fit(X, y)._search.filter is None


@pytest.mark.parametrize("centred", [False, True])
def test_cosine_projection_filter_is_exact(small_filter, centred):
    # Unit rows: ||u - v||^2 = 2 (1 - cos), so the l2 filter of the unit rows bounds
    # cosine distances. Rows that are multiples of each other (2x, 0.5x: equal cosine
    # distances) and zero rows (distance 1 from everything) make ties.
    rng = np.random.default_rng(17)
    X = image_like(rng, 1500)
    X[600:640] = X[0:40] * 2.0
    X[640:650] = 0.0
    Q = np.concatenate([image_like(rng, 100), X[:10] * 0.5, np.zeros((2, 96), np.float32)])
    if centred:
        mean = X.mean(axis=0)
        X, Q = X - mean, Q - mean
    y = rng.integers(0, 4, 1500)
    ref_d, ref_i = brute_force(X, Q, "cosine")
    model = KNearestNeighbors(k=1, metric="cosine", chunk_size=40).fit(X, y)
    assert isinstance(model._search.filter, _projection.Projection)
    for k in (1, 5, 20):
        d, i = model.kneighbors(Q, k)
        np.testing.assert_array_equal(i, ref_i[:, :k])
        np.testing.assert_allclose(d, ref_d[:, :k], rtol=0, atol=1e-12)
        model.set_params(k=k)
        np.testing.assert_array_equal(model.predict(Q), brute_predict(X, y, Q, k, "cosine")[0])
    total, settled = np.sum(small_filter, axis=0)
    assert settled > 0.8 * total


@pytest.mark.parametrize("scale", [1e-150, 1.0, 1e150])
def test_cosine_filter_with_constant_images_and_extreme_scales(small_filter, scale):
    # 200 copies of one constant image: a query pointing the same way (any constant image)
    # has 200 neighbours tied, to be taken by index (copies: the ties are exact in any
    # float64 computation); float64 rows at 1e-150 and 1e150 square to 1e-300 and 1e300.
    rng = np.random.default_rng(18)
    X = image_like(rng, 1500).astype(np.float64)
    X[rng.choice(1500, 200, replace=False)] = 50.0
    Q = np.concatenate([image_like(rng, 40), np.full((3, 96), 7.0), X[:5] * 3.0])
    X, Q = X * scale, Q * scale
    y = rng.integers(0, 3, 1500)
    ref_d, ref_i = brute_force(X / scale, Q / scale, "cosine")
    model = KNearestNeighbors(k=1, metric="cosine", chunk_size=48).fit(X, y)
    assert isinstance(model._search.filter, _projection.Projection)
    for k in (1, 7, 30):
        d, i = model.kneighbors(Q, k)
        np.testing.assert_array_equal(i, ref_i[:, :k])
        np.testing.assert_allclose(d, ref_d[:, :k], rtol=0, atol=1e-12)
    total, settled = np.sum(small_filter, axis=0)
    assert settled > 0.8 * total


def test_projection_filter_gives_up_on_noise(small_filter, monkeypatch):
    rng = np.random.default_rng(15)
    X = rng.normal(size=(1500, 64)).astype(np.float32)
    Q = rng.normal(size=(200, 64)).astype(np.float32)
    _, ref_i = brute_force(X, Q, "l2")
    i = KNearestNeighbors(k=3, chunk_size=50).fit(X, np.zeros(1500, int)).kneighbors(Q)[1]
    np.testing.assert_array_equal(i, ref_i[:, :3])
    # Isotropic noise has no subspace to project on: fit prepares no filter at all...
    assert small_filter == []
    # ... and if one were there, a chunk it cannot settle switches it off.
    monkeypatch.setattr(_projection, "MIN_CAPTURED", 0.0)
    model = KNearestNeighbors(k=3, chunk_size=50).fit(X, np.zeros(1500, int))
    np.testing.assert_array_equal(model.kneighbors(Q)[1], ref_i[:, :3])
    assert len(small_filter) == 1 and small_filter[0][1] < 25


# --- chunking and threads ------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_chunk_sizes_give_identical_results(metric, monkeypatch):
    rng = np.random.default_rng(9)
    X = rng.integers(0, 256, (700, 20)).astype(np.float32)
    Q = rng.integers(0, 256, (90, 20)).astype(np.float32)
    y = rng.integers(0, 5, 700)
    ref_d, ref_i = KNearestNeighbors(k=5, metric=metric).fit(X, y).kneighbors(Q)
    for chunk_size in (1, 7, 64, 1000, (5, 3), (32, 150), [90, 700]):
        d, i = KNearestNeighbors(k=5, metric=metric, chunk_size=chunk_size).fit(X, y).kneighbors(Q)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_array_equal(d, ref_d)
    # Automatic sizing from a smaller memory budget: several blocks of training rows.
    monkeypatch.setattr(_search, "BLOCK_BYTES", 20 * 150 * 4)
    monkeypatch.setattr(_search, "MIN_QUERY_ROWS", 20)
    model = KNearestNeighbors(k=5, metric=metric).fit(X, y)
    # 700 rows in 5 equal blocks of 140 rather than 4 of 150 and one of 100.
    assert model._search.blocks(len(Q)) == (3000 // 140, 140)
    d, i = model.kneighbors(Q)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(d, ref_d)


def test_automatic_block_size_follows_the_budget():
    model = KNearestNeighbors().fit(np.zeros((50_000, 2), np.float32), np.zeros(50_000, int))
    qc, tb = model._search.blocks(10_000)
    assert qc * tb * 4 <= _search.BLOCK_BYTES and qc >= _search.MIN_QUERY_ROWS
    n_blocks = -(-50_000 // tb)
    assert n_blocks * tb - 50_000 < n_blocks  # equal blocks
    assert tb <= _search.BLOCK_BYTES // 4 // _search.MIN_QUERY_ROWS
    assert model._search.blocks(10) == (10, tb)
    small = KNearestNeighbors().fit(np.zeros((100, 2), np.float32), np.zeros(100, int))
    assert small._search.blocks(10**6) == (_search.BLOCK_BYTES // 400, 100)


@pytest.mark.parametrize("metric", METRICS)
def test_threads_give_identical_results(metric, monkeypatch):
    rng = np.random.default_rng(10)
    X = rng.random((300, 40)).astype(np.float32)
    Q = rng.random((77, 40)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    one = KNearestNeighbors(k=4, metric=metric, n_jobs=1).fit(X, y).kneighbors(Q)
    # Threads even for tiny blocks: L1 tiles, candidate selection and the exact pass.
    monkeypatch.setattr(_parallel, "JOB_ELEMENTS", 1000)
    monkeypatch.setattr(_search, "THREADED_BLOCK", 1)
    three = KNearestNeighbors(k=4, metric=metric, n_jobs=3).fit(X, y).kneighbors(Q)
    np.testing.assert_array_equal(one[1], three[1])
    np.testing.assert_array_equal(one[0], three[0])


def test_selection_of_smallest_handles_duplicated_values():
    # All-equal rows defeat the threshold filter; the per-row partition takes over.
    A = np.zeros((3, 5000), dtype=np.float32)
    A[1, 4000] = -1.0
    A[2, :2500] = np.arange(2500, 0, -1)
    vals, cols = _select.smallest(A, 4)
    np.testing.assert_array_equal(vals, [[0, 0, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(np.take_along_axis(A, cols, 1), vals)
    assert cols[1, 0] == 4000
    assert all(len(set(row)) == 4 for row in cols.tolist())
    assert (np.diff(cols[[0, 2]], axis=1) > 0).all()  # equal values by index
    # The threshold path on distinct values agrees with a full sort.
    B = np.random.default_rng(0).permutation(40_000).reshape(4, 10_000).astype(np.float32)
    vals, cols = _select.smallest(B, 9)
    np.testing.assert_array_equal(cols, np.argsort(B, axis=1)[:, :9])


# --- shards ------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
@pytest.mark.parametrize("filters", [False, True])
def test_shards_merge_to_the_whole(metric, filters, monkeypatch):
    # A training set cut into three shards of unequal sizes: each shard's exact top k
    # (local indices plus the shard's offset), merged, is the top k of the whole, with
    # ties across shards (duplicated rows) to the smallest global index.
    if filters:
        monkeypatch.setattr(_search, "FILTER_MIN_TRAIN", 300)
        monkeypatch.setattr(_search, "FILTER_MIN_FEATURES", 32)
    rng = np.random.default_rng(30)
    X = image_like(rng, 1400)
    X[900:930] = X[10:40]  # duplicates in another shard
    X[1300:1310] = X[20:30]
    Q = np.concatenate([image_like(rng, 60), X[10:20]])
    bounds = [0, 450, 1000, 1400]
    for k in (1, 5):
        whole_v, whole_i = NeighborSearch(X, metric).kneighbors(Q, k)
        lists = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            v, i = NeighborSearch(X[a:b], metric).kneighbors(Q, k)
            lists.append((v, i + a))
        v, i = merge_neighbors(lists, k)
        np.testing.assert_array_equal(i, whole_i)
        np.testing.assert_array_equal(v, whole_v)
        np.testing.assert_array_equal(i, brute_force(X, Q, metric)[1][:, :k])


def test_merge_neighbors_orders_by_value_then_index():
    a = (np.array([[1.0, 3.0]]), np.array([[7, 2]]))
    b = (np.array([[1.0, 2.0, 3.0]]), np.array([[4, 9, 1]]))
    vals, idx = merge_neighbors([a, b], 4)
    np.testing.assert_array_equal(idx, [[4, 7, 9, 1]])
    np.testing.assert_array_equal(vals, [[1.0, 1.0, 2.0, 3.0]])
