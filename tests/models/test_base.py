"""Estimator conventions: parameters from the signature, accuracy score, input validation."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from chainrule.models._base import (
    BaseEstimator,
    ClassifierMixin,
    DataConversionWarning,
    NotFittedError,
    check_is_fitted,
    check_labels,
    check_X,
    check_X_y,
    label_indices,
    unique_labels,
)

SRC = Path(__file__).resolve().parents[2] / "src"


class NearestMean(ClassifierMixin, BaseEstimator):
    def __init__(self, shrink=0.0, inner=None):
        self.shrink = shrink
        self.inner = inner

    def fit(self, X, y):
        X, y = check_X_y(X, y, estimator=self)
        self.classes_, y_index = unique_labels(y, estimator=self)
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
    # One class per process, found again by name: exceptions survive pickling (Dask workers).
    err = pickle.loads(pickle.dumps(NotFittedError("x")))
    assert type(err) is NotFittedError and str(err) == "x"


def test_not_fitted_error_and_column_warning_are_scikit_learns_where_installed():
    exceptions = pytest.importorskip("sklearn.exceptions")
    assert issubclass(NotFittedError, exceptions.NotFittedError)
    assert issubclass(DataConversionWarning, exceptions.DataConversionWarning)
    with pytest.raises(exceptions.NotFittedError):
        NearestMean().predict([[1.0]])


def _run_python(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": ""},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_chainrule_does_not_import_scikit_learn():
    report = _run_python(
        "import json, sys, chainrule, chainrule.models, chainrule.models._base\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn')))"
    )
    assert report == []


def test_without_scikit_learn_the_classes_are_chainrules_own():
    # sys.modules["sklearn"] = None makes `import sklearn` raise ImportError.
    report = _run_python(
        "import json, sys, warnings\n"
        "sys.modules['sklearn'] = None\n"
        "import numpy as np\n"
        "from chainrule.models._base import NotFittedError, DataConversionWarning, check_labels\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    y = check_labels(np.array([[1], [2]]))\n"
        "print(json.dumps({\n"
        "    'nfe': [b.__name__ for b in NotFittedError.__mro__],\n"
        "    'warning': [b.__name__ for b in DataConversionWarning.__mro__],\n"
        "    'caught': [(x.category.__name__, str(x.message)) for x in w],\n"
        "    'y': y.tolist(),\n"
        "}))"
    )
    assert report["nfe"][:4] == ["NotFittedError", "ValueError", "AttributeError", "Exception"]
    assert report["warning"][:3] == ["DataConversionWarning", "UserWarning", "Warning"]
    assert report["y"] == [1, 2]
    [(category, message)] = report["caught"]
    assert category == "DataConversionWarning"
    assert message.startswith("A column-vector y was passed when a 1d array was expected")


@pytest.mark.parametrize(
    "X, error, message",
    [
        (np.zeros(3), ValueError, r"2-D array .* got shape \(3,\)\. Reshape your data"),
        (np.zeros((2, 2, 2)), ValueError, r"got shape \(2, 2, 2\) .*flatten"),
        (np.zeros((0, 3)), ValueError, r"empty: 0 sample\(s\) \(shape=\(0, 3\)\) while a minimum"),
        (np.zeros((3, 0)), ValueError, r"0 feature\(s\) \(shape=\(3, 0\)\) while a minimum of 1"),
        (np.array([[1.0, np.nan]]), ValueError, "NaN .*row 0"),
        (np.array([[1.0], [2.0], [np.inf]], dtype=np.float32), ValueError, "infinity .*row 2"),
        (np.array([["a", "b"]]), TypeError, "real numbers"),
        (np.array([[1 + 2j]]), ValueError, r"Complex data not supported: X has dtype complex128"),
        (np.array([[1.0, {"a": 1}]], dtype=object), TypeError, "not numbers: float.. argument"),
        (np.array([[1.0, "a"]], dtype=object), TypeError, "not numbers: could not convert"),
        ([[1.0, 2.0], [3.0]], ValueError, "could not be converted"),
    ],
)
def test_check_X_names_the_problem(X, error, message):
    with pytest.raises(error, match=message):
        check_X(X)


def test_check_X_feature_count_and_conversion():
    X = check_X([[1, 2], [3, 4]], dtype=np.float32)
    assert X.dtype == np.float32 and X.flags.c_contiguous
    with pytest.raises(ValueError, match="X has 2 features, but NearestMean is expecting 3 "):
        check_X(X, n_features=3, estimator=NearestMean())
    # Python objects that are numbers are numbers.
    Xo = check_X(np.array([[1, 2.5]], dtype=object))
    assert Xo.dtype == np.float64 and Xo.tolist() == [[1.0, 2.5]]
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
    with pytest.raises(ValueError, match="Unknown label type: continuous. y holds non-integral"):
        check_labels([0.5, 1.0])
    with pytest.raises(ValueError, match=r"1-D .*\(3, 2\)"):
        check_labels(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        check_labels([np.nan, 1.0])
    with pytest.raises(ValueError, match="Unknown label type: y holds complex numbers"):
        check_labels([1j, 2j])


def test_string_labels_are_kept():
    y = check_labels(["cat", "dog", "cat"])
    assert y.dtype.kind == "U" and y.tolist() == ["cat", "dog", "cat"]
    # Python objects: all strings become a string array (which model files can store),
    # all numbers are numbers; a mix is refused.
    assert check_labels(np.array(["a", "b"], dtype=object)).dtype.kind == "U"
    assert check_labels(np.array([3, 1], dtype=object)).dtype == np.int64
    with pytest.raises(ValueError, match="Unknown label type: y mixes labels of types int, str"):
        check_labels(np.array(["a", 1], dtype=object))
    with pytest.raises(ValueError, match=r"Unknown label type: y holds values of dtype datetime"):
        check_labels(np.array(["2020-01-01"], dtype="datetime64[D]"))


def test_a_column_vector_y_is_flattened_with_a_warning():
    with pytest.warns(DataConversionWarning, match="A column-vector y was passed") as record:
        y = check_labels(np.array([[3], [1]]))
    assert y.tolist() == [3, 1]
    # The warning points at the caller's line, not at chainrule's validation code.
    assert record[0].filename == __file__
    with pytest.warns(DataConversionWarning):
        NearestMean().fit(np.zeros((2, 1)), np.array([[0], [1]]))
    assert issubclass(DataConversionWarning, UserWarning)


def test_y_none_is_refused_by_name():
    with pytest.raises(ValueError, match="NearestMean requires y to be passed, but the target y"):
        check_X_y(np.zeros((3, 2)), None, estimator=NearestMean())


def test_sparse_input_is_refused_naming_it():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match=r"X is a sparse matrix \(csr_matrix\).*X.toarray\(\)"):
        check_X(sparse.csr_matrix(np.eye(3)))


def test_unique_labels_and_label_indices():
    classes, idx = unique_labels(np.array(["b", "a", "b"]))
    assert classes.tolist() == ["a", "b"] and idx.tolist() == [1, 0, 1]
    with pytest.raises(
        ValueError, match=r"NearestMean needs at least 2 classes in y, got 1 class \(7\)$"
    ):
        unique_labels(np.array([7, 7]), min_classes=2, estimator=NearestMean())
    assert label_indices(np.array([2, 5]), np.array([5, 3, 2])).tolist() == [1, -1, 0]
    # Strings are never numbers: "2" is not the class 2.
    assert label_indices(np.array([2, 5]), np.array(["2"])).tolist() == [-1]
    assert label_indices(np.array(["a"]), np.array([0])).tolist() == [-1]


def test_string_classes_fit_predict_and_score():
    X = np.array([[0.0], [0.2], [5.0], [5.2]])
    y = np.array(["cat", "cat", "dog", "dog"])
    est = NearestMean().fit(X, y)
    assert est.classes_.tolist() == ["cat", "dog"]
    assert est.predict([[4.0], [0.1]]).tolist() == ["dog", "cat"]
    assert est.score(X, y) == 1.0
    assert est.score(X, [0, 0, 1, 1]) == 0.0  # numbers never equal strings


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


def test_the_documented_example_passes_scikit_learns_checks():
    # The rules of the module docstring are enough for scikit-learn's whole contract.
    pytest.importorskip("sklearn")
    try:
        from sklearn.utils import Tags  # noqa: F401 - the tags API (>= 1.6)
    except ImportError:
        pytest.skip("scikit-learn >= 1.6 is not installed")
    from sklearn.exceptions import SkipTestWarning
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Estimator .* does not inherit from `sklearn.base")
        warnings.simplefilter("ignore", SkipTestWarning)  # pandas absent, array API off
        results = check_estimator(NearestMean(), on_fail=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 50
