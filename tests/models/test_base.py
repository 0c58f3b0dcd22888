"""Estimator conventions: parameters from the signature, accuracy score, input validation."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.models._base import (
    BaseEstimator,
    ClassifierMixin,
    NotFittedError,
    check_is_fitted,
    check_labels,
    check_X,
    check_X_y,
)


class NearestMean(ClassifierMixin, BaseEstimator):
    def __init__(self, shrink=0.0, inner=None):
        self.shrink = shrink
        self.inner = inner

    def fit(self, X, y):
        X, y = check_X_y(X, y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        self.means_ = np.stack([X[y_index == i].mean(0) for i in range(len(self.classes_))])
        return self

    def predict(self, X):
        check_is_fitted(self, "means_")
        X = check_X(X, n_features=self.n_features_in_, estimator=self)
        d = ((X[:, None, :] - self.means_[None]) ** 2).sum(-1)
        return self.classes_[d.argmin(1)]


def test_get_params_reads_the_signature_and_returns_the_objects_themselves():
    sizes = [1, 2]
    est = NearestMean(shrink=0.5, inner=sizes)
    params = est.get_params()
    assert params == {"inner": [1, 2], "shrink": 0.5}
    assert params["inner"] is sizes


def test_set_params_sets_returns_self_and_reaches_nested_estimators():
    inner = NearestMean(shrink=1.0)
    est = NearestMean(inner=inner)
    assert est.get_params(deep=True)["inner__shrink"] == 1.0
    assert "inner__shrink" not in est.get_params(deep=False)
    assert est.set_params(shrink=2.0, inner__shrink=3.0) is est
    assert est.shrink == 2.0 and inner.shrink == 3.0


def test_set_params_rejects_unknown_names_listing_valid_ones():
    with pytest.raises(ValueError, match="invalid parameter 'k' for NearestMean.*inner, shrink"):
        NearestMean().set_params(k=3)


def test_varargs_in_init_are_refused():
    class Bad(BaseEstimator):
        def __init__(self, *args):
            self.args = args

    with pytest.raises(TypeError, match="explicitly"):
        Bad().get_params()


def test_missing_attribute_for_a_parameter_is_reported():
    class Forgetful(BaseEstimator):
        def __init__(self, alpha=1):
            pass

    with pytest.raises(AttributeError, match="self.alpha"):
        Forgetful().get_params()


def test_repr_shows_only_changed_parameters():
    assert repr(NearestMean()) == "NearestMean()"
    assert repr(NearestMean(shrink=0.5)) == "NearestMean(shrink=0.5)"


def test_score_is_accuracy():
    X = np.array([[0.0], [0.2], [5.0], [5.2]])
    y = np.array([3, 3, 8, 8])
    est = NearestMean().fit(X, y)
    assert est.score(X, y) == 1.0
    assert est.score(X, np.array([3, 8, 8, 8])) == 0.75
    with pytest.raises(ValueError, match="4 samples but y has 3"):
        est.score(X, y[:3])


def test_not_fitted_error_is_value_and_attribute_error():
    with pytest.raises(NotFittedError, match="NearestMean is not fitted yet"):
        NearestMean().predict([[1.0]])
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


@pytest.mark.parametrize(
    "X, error, message",
    [
        (np.zeros(3), ValueError, r"2-D array .* got shape \(3,\) .*reshape"),
        (np.zeros((2, 2, 2)), ValueError, r"got shape \(2, 2, 2\) .*flatten"),
        (np.zeros((0, 3)), ValueError, "empty: it has 0 samples"),
        (np.zeros((3, 0)), ValueError, "0 features"),
        (np.array([[1.0, np.nan]]), ValueError, "NaN .*row 0"),
        (np.array([[1.0], [2.0], [np.inf]], dtype=np.float32), ValueError, "infinity .*row 2"),
        (np.array([["a", "b"]]), TypeError, "real numbers"),
        (np.array([[1 + 2j]]), TypeError, "complex"),
        ([[1.0, 2.0], [3.0]], ValueError, "could not be converted"),
    ],
)
def test_check_X_names_the_problem(X, error, message):
    with pytest.raises(error, match=message):
        check_X(X)


def test_check_X_feature_count_and_conversion():
    X = check_X([[1, 2], [3, 4]], dtype=np.float32)
    assert X.dtype == np.float32 and X.flags.c_contiguous
    with pytest.raises(ValueError, match="X has 2 features, but NearestMean was fitted with 3"):
        check_X(X, n_features=3, estimator=NearestMean())
    assert check_X(np.zeros((0, 3)), allow_empty=True).shape == (0, 3)
    # A view, not a copy, when nothing needs converting.
    A = np.zeros((4, 3), dtype=np.float32)
    assert np.shares_memory(check_X(A), A)
    # The finiteness check walks in row blocks: a NaN deep inside is still found.
    B = np.zeros((5000, 1000), dtype=np.float32)
    B[4321, 7] = np.nan
    with pytest.raises(ValueError, match="row 4321"):
        check_X(B)


def test_check_labels():
    np.testing.assert_array_equal(check_labels([2.0, -1.0]), [2, -1])
    assert check_labels(np.array([1, 0], dtype=np.uint8)).dtype == np.int64
    with pytest.raises(TypeError, match="non-integral"):
        check_labels([0.5, 1.0])
    with pytest.raises(TypeError, match="integer class labels, got dtype <U"):
        check_labels(["cat", "dog"])
    with pytest.raises(ValueError, match=r"1-D .*\(3, 1\) \(use y.ravel\(\)\)"):
        check_labels(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="NaN"):
        check_labels([np.nan, 1.0])


def test_check_X_y_lengths():
    with pytest.raises(ValueError, match="3 rows in X, 2 labels in y"):
        check_X_y(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="at least 2 samples"):
        check_X_y(np.zeros((1, 2)), [0], min_samples=2)


def test_works_with_sklearn_clone_and_cross_validation():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone, is_classifier
    from sklearn.model_selection import cross_val_score

    est = NearestMean(shrink=0.5)
    copy = clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    assert is_classifier(est)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (20, 2)), rng.normal(6, 1, (20, 2))])
    y = np.repeat([0, 1], 20)
    scores = cross_val_score(est, X, y, cv=4)
    assert scores.shape == (4,) and scores.min() == 1.0
    assert sklearn.__version__
