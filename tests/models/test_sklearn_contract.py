"""The scikit-learn estimator contract, on every registered model.

scikit-learn's own ``check_estimator`` suite runs on each model constructed with its
defaults when scikit-learn is installed (one test per check): the defaults must learn
the checks' small data sets as they learn large ones. The behaviours it asks for that
are ours (string labels, the two-class ``decision_function``, a column-vector ``y``,
complex and object input, quiet by default) are also tested here without scikit-learn,
on instances sized for speed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from chainrule.models import MODEL_REGISTRY, get_model_class, load_model, save_model
from chainrule.models._base import DataConversionWarning, NotFittedError

# Every registered model, with settings for the checks' small data sets (tens to hundreds
# of rows, 1 to 10 features; the defaults are sized for CIFAR-10): enough steps to learn
# them, few enough to keep the whole contract quick. A new model is one line here.
CHECKED: dict[str, dict] = {
    "knn": {},
    "svm": {"epochs": 5},
    "softmax": {"epochs": 5},
    "twolayer": {"hidden_size": 16, "learning_rate": 3e-2, "epochs": 3},
    "mlp": {
        "hidden_dims": (16, 16),
        "batchnorm": True,
        "dropout": 0.1,
        "learning_rate": 1e-2,
        "epochs": 5,
    },
    # rows without an image_shape are 1x1 images of D channels
    "cnn": {
        "channels": (8,),
        "convs_per_stage": 1,
        "learning_rate": 3e-2,
        "batch_size": 50,
        "epochs": 5,
    },
}


def make(name: str, **params):
    """The checked instance of model `name`, seeded."""
    cls = get_model_class(name)
    kwargs = {**CHECKED[name], **params}
    if "random_state" in cls._get_param_names():
        kwargs.setdefault("random_state", 0)
    return cls(**kwargs)


def blobs(n_classes: int, n_per_class: int = 15, n_features: int = 3, seed: int = 0):
    """Well separated clusters: X (N, D) float64, y (N,) int64 in 0..n_classes-1."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, (n_classes, n_features))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centers[y] + rng.normal(0, 0.3, (len(y), n_features))
    order = rng.permutation(len(y))
    return X[order], y[order]


def test_the_exception_classes_are_public():
    import chainrule.models
    from chainrule.models import _base

    assert chainrule.models.NotFittedError is _base.NotFittedError is NotFittedError
    assert chainrule.models.DataConversionWarning is DataConversionWarning
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        chainrule.models.Nope  # noqa: B018


def test_every_registered_model_is_checked():
    missing = sorted(set(MODEL_REGISTRY) - set(CHECKED))
    assert not missing, f"add {missing} to CHECKED in {__file__}"


# ------------------------------------------------------------------ scikit-learn's checks


def _sklearn_checks():
    """``parametrize_with_checks`` over the checked models, or one skipped test."""
    try:
        from sklearn.utils import Tags  # noqa: F401 - the tags API (>= 1.6) the models use
        from sklearn.utils.estimator_checks import parametrize_with_checks
    except ImportError:

        def skipped(test):
            test = pytest.mark.parametrize("estimator, check", [(None, None)])(test)
            return pytest.mark.skip(reason="scikit-learn >= 1.6 is not installed")(test)

        return skipped
    with warnings.catch_warnings():
        # By design: the models follow the conventions without importing scikit-learn.
        warnings.filterwarnings("ignore", "Estimator .* does not inherit from `sklearn.base")
        return parametrize_with_checks([get_model_class(name)() for name in MODEL_REGISTRY])


@_sklearn_checks()
def test_scikit_learn_check(estimator, check):
    # Every model as constructed with its defaults. The only skips are scikit-learn's
    # own: pandas not installed, SCIPY_ARRAY_API unset.
    check(estimator)


def sklearn_blobs():
    """The 300-point, 3-class blobs of scikit-learn's check_classifiers_train, scaled as
    there: (X (300, 2) float64, y (300,))."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import make_blobs
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils import shuffle

    X, y = make_blobs(n_samples=300, random_state=0)
    X, y = shuffle(X, y, random_state=7)
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("name", ["twolayer", "mlp", "cnn", "svm", "softmax"])
def test_the_defaults_learn_the_blobs_as_scikit_learns_mlp_does(name):
    # MLPClassifier() reaches 93% training accuracy on these blobs (its 200 epochs of
    # Adam at 1e-3); chainrule's defaults are chosen from the data: 300 samples are a
    # small data set, so a larger step and enough epochs for a few hundred updates.
    from sklearn.neural_network import MLPClassifier

    X, y = sklearn_blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLPClassifier's convergence warning
        reference = MLPClassifier(random_state=0).fit(X, y).score(X, y)
    assert reference >= 0.92
    model = get_model_class(name)(random_state=0).fit(X, y)
    assert model.score(X, y) >= reference - 0.01


def test_float64_scores_do_not_depend_on_the_order_of_the_rows():
    # float32 matrix products round a row by where it falls in the BLAS kernel's tiles
    # (about 1e-7 apart); the networks run in float64 and round their scores to float32,
    # the same bits wherever the row sits (tests/models/test_row_invariance.py).
    X, y = blobs(3, n_per_class=40, n_features=5)
    model = make("mlp").fit(X, y)
    order = np.random.default_rng(1).permutation(len(X))
    for method in (model.decision_function, model.predict_proba):
        np.testing.assert_array_equal(method(X)[order], method(X[order]))
        assert method(X).dtype == np.float64
        assert method(X.astype(np.float32)).dtype == np.float32


# ------------------------------------------------------------------ the behaviours, ours


@pytest.mark.parametrize("name", CHECKED)
def test_string_labels_round_trip_through_fit_predict_and_model_files(name, tmp_path):
    X, y = blobs(3)
    words = np.array(["cat", "dog", "zebra"])  # sorted as 0, 1, 2: the same training
    names = words[y]
    model = make(name).fit(X, names)
    assert model.classes_.dtype.kind == "U" and model.classes_.tolist() == words.tolist()
    pred = model.predict(X)
    numbers = make(name).fit(X, y)
    np.testing.assert_array_equal(pred, words[numbers.predict(X)])
    assert model.score(X, names) == numbers.score(X, y)
    np.testing.assert_array_equal(model.predict_proba(X), numbers.predict_proba(X))
    # Labels held as Python objects are the same labels.
    np.testing.assert_array_equal(make(name).fit(X, names.astype(object)).predict(X), pred)

    loaded = load_model(save_model(tmp_path / "m.npz", model))
    assert loaded.classes == ["cat", "dog", "zebra"]
    np.testing.assert_array_equal(loaded.model.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.model.predict(X), pred)


@pytest.mark.parametrize(
    "name", [n for n in CHECKED if hasattr(get_model_class(n), "decision_function")]
)
def test_decision_function_is_one_column_for_two_classes(name):
    X, y = blobs(2)
    labels = np.array([-1, 1])[y]
    model = make(name).fit(X, labels)
    d = model.decision_function(X)
    assert d.shape == (len(X),)
    # > 0 predicts classes_[1], as in scikit-learn
    np.testing.assert_array_equal(model.classes_[(d > 0).astype(int)], model.predict(X))
    X3, y3 = blobs(3)
    assert make(name).fit(X3, y3).decision_function(X3).shape == (len(X3), 3)


@pytest.mark.parametrize("name", CHECKED)
def test_a_column_vector_y_warns_and_fits_as_its_ravel(name):
    X, y = blobs(3)
    with pytest.warns(DataConversionWarning, match="A column-vector y was passed"):
        model = make(name).fit(X, y[:, None])
    np.testing.assert_array_equal(model.predict(X), make(name).fit(X, y).predict(X))


@pytest.mark.parametrize("name", CHECKED)
def test_complex_and_object_input(name):
    X, y = blobs(3)
    with pytest.raises(ValueError, match="Complex data not supported"):
        make(name).fit(X + 1j, y)
    # Python objects that are numbers are numbers; others are named.
    pred = make(name).fit(X, y).predict(X)
    np.testing.assert_array_equal(make(name).fit(X.astype(object), y).predict(X), pred)
    bad = X.astype(object)
    bad[0, 0] = {"foo": "bar"}
    with pytest.raises(TypeError, match="X holds objects that are not numbers"):
        make(name).fit(bad, y)


@pytest.mark.parametrize("name", CHECKED)
def test_errors_name_the_problem(name):
    X, y = blobs(3)
    cls = get_model_class(name).__name__
    model = make(name)
    with pytest.raises(NotFittedError, match=f"this {cls} is not fitted yet"):
        model.predict(X)
    with pytest.raises(ValueError, match=f"{cls} requires y to be passed, but the target y"):
        model.fit(X, None)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        model.fit(X, y + 0.5)
    model.fit(X, y)
    with pytest.raises(ValueError, match=f"X has 2 features, but {cls} is expecting 3 features"):
        model.predict(X[:, :2])
    with pytest.raises(ValueError, match="Reshape your data"):
        model.predict(X[0])


@pytest.mark.parametrize("name", CHECKED)
def test_sparse_input_is_refused_by_name(name):
    sparse = pytest.importorskip("scipy.sparse")
    X, y = blobs(3)
    with pytest.raises(TypeError, match="sparse input is not supported"):
        make(name).fit(sparse.csr_matrix(X), y)


@pytest.mark.parametrize(
    "name", [n for n in CHECKED if "verbose" in get_model_class(n)._get_param_names()]
)
def test_quiet_by_default(name, capsys):
    # scikit-learn's default: a model fitted inside cross-validation prints nothing.
    cls = get_model_class(name)
    assert cls().verbose == 0
    X, y = blobs(2)
    params = {k: v for k, v in CHECKED[name].items() if k != "verbose"}
    cls(**params, random_state=0).fit(X, y)
    assert capsys.readouterr() == ("", "")


def test_the_command_line_still_shows_progress(tmp_path, capsys, monkeypatch):
    from chainrule.cli import main

    monkeypatch.setenv("CHAINRULE_CACHE", str(tmp_path / "cache"))
    argv = ["train", "twolayer", "--data", "digits", "--hidden", "8", "--epochs", "2"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out
