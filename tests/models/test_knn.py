"""k-nearest neighbours: hand-computed cases, float64 brute force, scikit-learn, chunking."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.models import KNearestNeighbors, knn_best_k, knn_cross_validate
from chainrule.models._base import NotFittedError
from chainrule.models.knn import _parallel, _projection, _search, _select
from chainrule.models.knn import stratified_folds as _stratified_folds
from chainrule.models.knn._search import NeighborSearch

METRICS = ("l2", "l1", "cosine")


def brute_force(X, Q, metric):
    """Float64 distances (nq, n) and the stable argsort: the reference everything must match."""
    X = np.asarray(X, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    if metric == "l2":
        d = np.sqrt(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    elif metric == "l1":
        d = np.abs(Q[:, None, :] - X[None, :, :]).sum(-1)
    else:
        nq = np.linalg.norm(Q, axis=1)[:, None]
        nx = np.linalg.norm(X, axis=1)[None, :]
        cos = np.divide(Q @ X.T, nq * nx, out=np.zeros((len(Q), len(X))), where=nq * nx > 0)
        d = 1.0 - cos
    order = np.argsort(d, axis=1, kind="stable")
    return np.take_along_axis(d, order, 1), order


def brute_predict(X, y, Q, k, metric):
    _, order = brute_force(X, Q, metric)
    classes = np.unique(y)
    votes = np.stack([(y[order[:, :k]] == c).sum(1) for c in classes], axis=1)
    return classes[votes.argmax(1)], votes / k


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


# --- exact small cases ----------------------------------------------------------------


def test_one_dimensional_example_by_hand():
    # Points 0, 1, 3, 7 with labels 5, 5, -2, -2; the query 2 is at distances 2, 1, 1, 5.
    X = np.array([[0.0], [1.0], [3.0], [7.0]], dtype=np.float32)
    y = np.array([5, 5, -2, -2])
    for metric in ("l2", "l1"):
        model = KNearestNeighbors(k=3, metric=metric).fit(X, y)
        np.testing.assert_array_equal(model.classes_, [-2, 5])
        d, i = model.kneighbors([[2.0]])
        # Equal distances: the smaller training index first.
        np.testing.assert_array_equal(i, [[1, 2, 0]])
        np.testing.assert_array_equal(d, [[1.0, 1.0, 2.0]])
        assert d.dtype == np.float64 and i.dtype == np.int64
        # k=3: labels 5, -2, 5 -> 5.
        assert model.predict([[2.0]]).tolist() == [5]
        np.testing.assert_array_equal(model.predict_proba([[2.0]]), [[1 / 3, 2 / 3]])
        # k=1: nearest is index 1 (label 5); k=2: one vote each -> the smaller label, -2.
        assert model.set_params(k=1).predict([[2.0]]).tolist() == [5]
        assert model.set_params(k=2).predict([[2.0]]).tolist() == [-2]
        np.testing.assert_array_equal(model.predict_proba([[2.0]]), [[0.5, 0.5]])
        # Far right: 7 then 3.
        assert model.kneighbors([[10.0]], k=2)[1].tolist() == [[3, 2]]


def test_two_dimensional_example_by_hand_all_metrics():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [4.0, 4.0]])
    y = np.array([0, 1, 2, 3])
    q = np.array([[2.0, 1.0]])
    expected = {
        "l2": ([1.0, np.sqrt(2.0), np.sqrt(4.0), np.sqrt(13.0)], [2, 0, 1, 3]),
        "l1": ([1.0, 2.0, 2.0, 5.0], [2, 0, 1, 3]),
        "cosine": (
            [
                1 - 12 / np.sqrt(5 * 32),  # (4, 4) is as aligned as (1, 1): index 2 first
                1 - 3 / np.sqrt(10),
                1 - 2 / np.sqrt(5),
                1 - 1 / np.sqrt(5),
            ],
            [2, 3, 0, 1],
        ),
    }
    for metric, (dist, idx) in expected.items():
        model = KNearestNeighbors(k=4, metric=metric).fit(X, y)
        d, i = model.kneighbors(q)
        np.testing.assert_array_equal(i[0], idx)
        np.testing.assert_allclose(d[0], dist, rtol=0, atol=1e-15)


def test_cosine_zero_vector_is_at_distance_one():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    model = KNearestNeighbors(k=3, metric="cosine").fit(X, [0, 1, 2])
    d, i = model.kneighbors([[3.0, 0.0]])
    np.testing.assert_array_equal(i, [[1, 0, 2]])
    np.testing.assert_allclose(d, [[0.0, 1.0, 2.0]], atol=1e-15)
    d, i = model.kneighbors([[0.0, 0.0]])
    np.testing.assert_array_equal(d, [[1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(i, [[0, 1, 2]])


def test_cosine_ignores_the_scale_of_each_row_even_near_overflow():
    # Cosine distance does not depend on the length of a row. Rows scaled by 1e160 used
    # to overflow when squared (norm inf, every distance NaN, neighbours 0, 1, 2); rows
    # scaled by 1e-160 lost digits to subnormal squares, and 1e-300 became zero vectors.
    rng = np.random.default_rng(16)
    X = rng.normal(size=(60, 7))
    Q = rng.normal(size=(12, 7))
    ref_d, ref_i = KNearestNeighbors(k=5, metric="cosine").fit(X, np.arange(60)).kneighbors(Q)
    np.testing.assert_array_equal(ref_i, brute_force(X, Q, "cosine")[1][:, :5])
    for scale in (1e160, 1e300, 1e-160, 1e-300):
        model = KNearestNeighbors(k=5, metric="cosine").fit(X * scale, np.arange(60))
        d, i = model.kneighbors(Q * scale)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(d, ref_d, rtol=0, atol=1e-15)
    # Every row at its own scale, from 1e-300 to 1e300.
    row_scale = 10.0 ** rng.integers(-300, 301, size=(60, 1))
    query_scale = 10.0 ** rng.integers(-300, 301, size=(12, 1))
    model = KNearestNeighbors(k=5, metric="cosine").fit(X * row_scale, np.arange(60))
    d, i = model.kneighbors(Q * query_scale)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(d, ref_d, rtol=0, atol=1e-15)


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


def image_like(rng, n, d=96, rank=6):
    """Integer data near a low-dimensional subspace, like natural images."""
    Z = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) * 20
    return np.clip(np.round(Z + 128 + rng.normal(scale=4, size=(n, d))), 0, 255).astype(np.float32)


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


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int16, np.float16, np.float64, np.int64, np.int32, bool]
)
def test_input_dtypes(dtype):
    rng = np.random.default_rng(5)
    X = rng.integers(0, 2 if dtype is bool else 100, (300, 10)).astype(dtype)
    Q = rng.integers(0, 2 if dtype is bool else 100, (40, 10)).astype(dtype)
    y = rng.integers(0, 3, 300)
    for metric in METRICS:
        ref_d, ref_i = brute_force(X, Q, metric)
        d, i = KNearestNeighbors(k=4, metric=metric).fit(X, y).kneighbors(Q)
        np.testing.assert_array_equal(i, ref_i[:, :4])
        np.testing.assert_allclose(d, ref_d[:, :4], atol=1e-12)


def test_float64_input_is_computed_in_float64_and_float32_in_float32():
    X = np.arange(12.0).reshape(6, 2)
    assert KNearestNeighbors().fit(X, np.arange(6))._search.metric.dtype == np.float64
    model = KNearestNeighbors().fit(X.astype(np.float32), np.arange(6))
    assert model._search.metric.dtype == np.float32
    # float32 values too large to square in float32 switch the computation to float64.
    big = np.array([[0.0], [3e25], [-3e25]], dtype=np.float32)
    model = KNearestNeighbors().fit(big, [0, 1, 2])
    assert model._search.metric.dtype == np.float64
    np.testing.assert_array_equal(model.kneighbors([[2e25]], k=3)[1], [[1, 0, 2]])


def test_queries_too_large_for_float32_are_refused():
    model = KNearestNeighbors().fit(np.zeros((3, 2), np.float32), [0, 1, 2])
    with pytest.raises(ValueError, match="too large"):
        model.predict(np.full((1, 2), 1e30, np.float32))


def test_float64_queries_against_float32_training_data():
    rng = np.random.default_rng(6)
    X = (rng.random((500, 8)) + 300).astype(np.float32)
    Q = rng.random((50, 8)) + 300  # float64, not representable in float32
    _, ref_i = brute_force(X, Q, "l2")
    _, i = KNearestNeighbors(k=3).fit(X, np.zeros(500, int)).kneighbors(Q)
    np.testing.assert_array_equal(i, ref_i[:, :3])


# --- scikit-learn ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric, sk_metric", [("l2", "euclidean"), ("l1", "manhattan"), ("cosine", "cosine")]
)
def test_agrees_with_sklearn(metric, sk_metric):
    pytest.importorskip("sklearn")
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(7)
    # Continuous data (no equal distances, where sklearn's order is arbitrary), few classes
    # and even k, so that vote ties are common: both pick the smallest label.
    X = rng.normal(size=(600, 12)).astype(np.float32)
    y = rng.integers(0, 3, 600) * 10 - 5
    Q = rng.normal(size=(200, 12)).astype(np.float32)
    for k in (1, 2, 4, 10):
        ours = KNearestNeighbors(k=k, metric=metric).fit(X, y)
        ref = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric=sk_metric).fit(X, y)
        np.testing.assert_array_equal(ours.predict(Q), ref.predict(Q))
        np.testing.assert_allclose(ours.predict_proba(Q), ref.predict_proba(Q))
        d_ref, i_ref = ref.kneighbors(Q.astype(np.float64))
        d, i = ours.kneighbors(Q)
        np.testing.assert_array_equal(i, i_ref)
        np.testing.assert_allclose(d, d_ref, rtol=1e-6, atol=1e-6)


def test_sklearn_cross_val_score_and_grid_search():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score

    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(0, 1, (40, 3)), rng.normal(3, 1, (40, 3))])
    y = np.repeat([3, 9], 40)
    model = KNearestNeighbors(k=3, metric="l1", chunk_size=16)
    assert clone(model).get_params() == model.get_params()
    scores = cross_val_score(model, X, y, cv=4)
    assert scores.shape == (4,) and scores.mean() > 0.8
    grid = GridSearchCV(model, {"k": [1, 5, 15], "metric": ["l2", "cosine"]}, cv=3).fit(X, y)
    assert grid.best_params_["k"] in (1, 5, 15)
    assert grid.best_estimator_.score(X, y) == grid.score(X, y)
    assert set(grid.predict(X)) <= {3, 9}


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


# --- errors, parameters, model files ---------------------------------------------------


def test_errors_name_the_problem():
    X = np.zeros((4, 3), np.float32)
    y = [0, 1, 0, 1]
    with pytest.raises(ValueError, match="k=5 is larger than the number of training samples"):
        KNearestNeighbors(k=5).fit(X, y)
    with pytest.raises(ValueError, match="k must be at least 1"):
        KNearestNeighbors(k=0).fit(X, y)
    with pytest.raises(TypeError, match="k must be an int"):
        KNearestNeighbors(k=2.5).fit(X, y)
    with pytest.raises(ValueError, match="metric must be one of l2, l1, cosine"):
        KNearestNeighbors(metric="euclid").fit(X, y)
    with pytest.raises(ValueError, match="chunk_size"):
        KNearestNeighbors(chunk_size=0).fit(X, y)
    with pytest.raises(ValueError, match="n_jobs"):
        KNearestNeighbors(n_jobs=0).fit(X, y)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        KNearestNeighbors().predict(X)
    model = KNearestNeighbors(k=2).fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features, but KNearestNeighbors was fitted"):
        model.predict(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        KNearestNeighbors().fit(np.array([[np.nan]]), [0])
    with pytest.raises(ValueError, match="infinity"):
        model.kneighbors(np.array([[0.0, np.inf, 0.0]]))
    with pytest.raises(ValueError, match="k=9 is larger"):
        model.kneighbors(X, k=9)
    with pytest.raises(ValueError, match="2-D"):
        model.predict(np.zeros(3))
    with pytest.raises(TypeError, match="integer class labels"):
        KNearestNeighbors().fit(X, ["a", "b", "a", "b"])
    with pytest.raises(ValueError, match="4 rows in X, 3 labels"):
        KNearestNeighbors().fit(X, [0, 1, 0])
    with pytest.raises(ValueError, match="empty"):
        KNearestNeighbors().fit(np.zeros((0, 3)), [])


def test_empty_query_gives_empty_answers():
    model = KNearestNeighbors(k=2).fit(np.eye(3), [0, 1, 1])
    assert model.predict(np.zeros((0, 3))).shape == (0,)
    assert model.predict_proba(np.zeros((0, 3))).shape == (0, 2)
    d, i = model.kneighbors(np.zeros((0, 3)))
    assert d.shape == i.shape == (0, 2)


def test_params_and_repr():
    model = KNearestNeighbors(k=3, metric="cosine")
    assert model.get_params() == {"k": 3, "metric": "cosine", "chunk_size": None, "n_jobs": None}
    assert repr(model) == "KNearestNeighbors(k=3, metric='cosine')"
    assert model.set_params(k=7).k == 7


def test_model_file_round_trip(tmp_path):
    from chainrule.models.io import load_model, save_model

    rng = np.random.default_rng(12)
    X = rng.integers(0, 256, (80, 12)).astype(np.uint8)
    y = rng.integers(0, 3, 80) + 4
    model = KNearestNeighbors(k=3, metric="l1", chunk_size=(8, 16)).fit(X, y)
    path = save_model(tmp_path / "knn.npz", model, classes=["four", "five", "six"])
    loaded = load_model(path)
    assert loaded.name == "knn" and loaded.params["chunk_size"] == [8, 16]
    Q = rng.integers(0, 256, (30, 12)).astype(np.uint8)
    np.testing.assert_array_equal(loaded.model.predict(Q), model.predict(Q))
    np.testing.assert_array_equal(loaded.model.classes_, [4, 5, 6])
    with np.load(path, allow_pickle=False) as z:
        assert z["model/fit_X"].dtype == np.uint8
