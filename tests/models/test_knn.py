"""k-nearest neighbours, the estimator: hand-computed cases, input dtypes, scikit-learn,
errors and parameters (the search machinery: test_knn_search.py)."""

from __future__ import annotations

import numpy as np
import pytest
from knn_reference import brute_force

from chainrule.models import KNearestNeighbors
from chainrule.models._base import NotFittedError

METRICS = ("l2", "l1", "cosine")


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
    with pytest.raises(ValueError, match="X has 2 features, but KNearestNeighbors is expecting 3"):
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
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        KNearestNeighbors().fit(X, [0.5, 1, 0, 1])
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
