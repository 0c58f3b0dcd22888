"""Grid and random hyperparameter search chosen on validation accuracy."""

import io
import math

import numpy as np
import pytest

from chainrule.models._base import BaseEstimator, ClassifierMixin
from chainrule.models.linear import LinearSVM, SoftmaxClassifier
from chainrule.train.search import (
    LogUniform,
    SearchResult,
    format_results,
    grid_search,
    print_results,
    random_search,
)


class Peaked(ClassifierMixin, BaseEstimator):
    """A stand-in whose accuracy is a known function of its parameters: it predicts the
    true label on the first ``round(q * N)`` rows, where q peaks at lr = 1e-2, reg = 1e-3."""

    def __init__(self, learning_rate=1.0, reg=1.0):
        self.learning_rate = learning_rate
        self.reg = reg

    def quality(self):
        d = math.log10(self.learning_rate) + 2
        e = math.log10(self.reg) + 3
        return 1.0 / (1.0 + d * d + e * e)

    def fit(self, X, y):
        self.fitted_ = True
        return self

    def predict(self, X):
        y = X[:, 0].astype(int)
        k = round(self.quality() * len(X))
        return np.where(np.arange(len(X)) < k, y, -1)


def toy_split(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    X = np.column_stack([y, rng.standard_normal(n)]).astype(np.float32)
    return X[: n // 2], y[: n // 2], X[n // 2 :], y[n // 2 :]


def blobs(seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((3, 6)) * 2
    y = rng.integers(0, 3, size=300)
    X = (centers[y] + rng.standard_normal((300, 6))).astype(np.float32)
    return X[:200], y[:200], X[200:], y[200:]


# ------------------------------------------------------------------ grid search


def test_grid_search_tries_every_combination_and_picks_best():
    X, y, Xv, yv = toy_split()
    grid = {"learning_rate": [1e-3, 1e-2, 1e-1], "reg": [1e-4, 1e-3, 1e-2, 1e-1]}
    template = Peaked()
    result = grid_search(template, X, y, Xv, yv, grid, verbose=False)
    assert isinstance(result, SearchResult)
    assert len(result.results) == 12
    tried = [(r["params"]["learning_rate"], r["params"]["reg"]) for r in result.results]
    assert sorted(tried) == sorted((a, b) for a in grid["learning_rate"] for b in grid["reg"])
    assert result.best_params == {"learning_rate": 1e-2, "reg": 1e-3}
    assert result.best_val_acc == 1.0
    assert result.best_estimator.get_params() == result.best_params
    assert result.best_estimator.fitted_
    # Every row's val_acc is the candidate's real accuracy on the validation split.
    for r in result.results:
        expected = round(Peaked(**r["params"]).quality() * len(Xv)) / len(Xv)
        assert r["val_acc"] == pytest.approx(expected)
        assert r["train_acc"] == pytest.approx(round(Peaked(**r["params"]).quality() * 100) / 100)
        assert r["fit_time"] >= 0
    # The template is untouched.
    assert template.learning_rate == 1.0 and not hasattr(template, "fitted_")


def test_ties_go_to_the_first_candidate_and_train_score_optional():
    X, y, Xv, yv = toy_split()
    result = grid_search(
        Peaked(), X, y, Xv, yv, {"learning_rate": [1e-1, 1e-3]}, train_score=False, verbose=False
    )
    assert result.results[0]["val_acc"] == result.results[1]["val_acc"]
    assert result.best_params == {"learning_rate": 1e-1}
    assert all(r["train_acc"] is None for r in result.results)


def test_grid_search_real_classifier_prefers_working_learning_rate():
    X, y, Xv, yv = blobs()
    base = LinearSVM(epochs=5, batch_size=50, random_state=0, verbose=False)
    result = grid_search(
        base, X, y, Xv, yv, {"learning_rate": [1e-7, 1e-1], "reg": [1e-3]}, verbose=False
    )
    by_lr = {r["params"]["learning_rate"]: r["val_acc"] for r in result.results}
    assert by_lr[1e-1] > by_lr[1e-7]
    assert result.best_params["learning_rate"] == 1e-1
    assert result.best_estimator.score(Xv, yv) == pytest.approx(result.best_val_acc)
    assert result.best_estimator.epochs == 5  # other parameters kept from the template


def test_works_with_scikit_learn_estimators():
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    X, y, Xv, yv = blobs(1)
    result = grid_search(LogisticRegression(), X, y, Xv, yv, {"C": [1e-6, 1.0]}, verbose=False)
    assert result.best_params == {"C": 1.0}


# ------------------------------------------------------------------ random search


def test_log_uniform_is_uniform_in_log_space():
    d = LogUniform(1e-6, 1e-2)
    rng = np.random.default_rng(0)
    x = np.array([d.sample(rng) for _ in range(4000)])
    assert x.min() >= 1e-6 and x.max() <= 1e-2
    # Each decade holds a quarter of the draws (a uniform draw would put 90% in the last).
    counts = np.histogram(np.log10(x), bins=[-6, -5, -4, -3, -2])[0] / len(x)
    np.testing.assert_allclose(counts, 0.25, atol=0.03)


def test_random_search_samples_log_uniform_and_is_reproducible():
    X, y, Xv, yv = toy_split()
    space = {"learning_rate": LogUniform(1e-4, 1e0), "reg": (1e-5, 1e-1)}
    a = random_search(Peaked(), X, y, Xv, yv, space, n_iter=15, random_state=3, verbose=False)
    b = random_search(Peaked(), X, y, Xv, yv, space, n_iter=15, random_state=3, verbose=False)
    c = random_search(Peaked(), X, y, Xv, yv, space, n_iter=15, random_state=4, verbose=False)
    pa = [r["params"] for r in a.results]
    assert pa == [r["params"] for r in b.results]
    assert pa != [r["params"] for r in c.results]
    assert len(pa) == 15
    assert all(1e-4 <= p["learning_rate"] <= 1.0 and 1e-5 <= p["reg"] <= 1e-1 for p in pa)
    best = max(a.results, key=lambda r: r["val_acc"])
    assert a.best_params == best["params"] and a.best_val_acc == best["val_acc"]


def test_random_search_choices_from_lists():
    X, y, Xv, yv = toy_split()
    result = random_search(
        Peaked(),
        X,
        y,
        Xv,
        yv,
        {"learning_rate": [1e-2, 1.0], "reg": [1e-3]},
        n_iter=10,
        random_state=0,
        verbose=False,
    )
    assert {r["params"]["learning_rate"] for r in result.results} == {1e-2, 1.0}
    assert result.best_params == {"learning_rate": 1e-2, "reg": 1e-3}


def test_random_search_real_classifier():
    X, y, Xv, yv = blobs(2)
    base = SoftmaxClassifier(epochs=5, batch_size=50, random_state=0, verbose=False)
    result = random_search(
        base,
        X,
        y,
        Xv,
        yv,
        {"learning_rate": (1e-2, 1.0), "reg": (1e-5, 1e-3)},
        n_iter=3,
        random_state=0,
        verbose=False,
    )
    assert result.best_val_acc > 0.8


# ------------------------------------------------------------------ table and plot


def test_results_table_sorted_by_validation_accuracy():
    X, y, Xv, yv = toy_split()
    result = grid_search(
        Peaked(), X, y, Xv, yv, {"learning_rate": [1e-1, 1e-2], "reg": [1e-3]}, verbose=False
    )
    text = format_results(result.results)
    lines = text.splitlines()
    assert lines[0].split() == ["learning_rate", "reg", "train_acc", "val_acc", "fit_time"]
    assert lines[1].split()[:2] == ["0.01", "0.001"] and lines[1].split()[3] == "1.0000"
    assert lines[2].split()[0] == "0.1"
    buf = io.StringIO()
    print_results(result, file=buf)
    assert buf.getvalue() == text + "\n"
    assert result.table() == text
    unsorted = format_results(result.results, sort=False).splitlines()
    assert unsorted[1].split()[0] == "0.1"


def test_search_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from chainrule.report.plots import plot_search_results

    X, y, Xv, yv = toy_split()
    result = grid_search(
        Peaked(), X, y, Xv, yv, {"learning_rate": [1e-3, 1e-2], "reg": [1e-4, 1e-3]}, verbose=False
    )
    path = plot_search_results(result, tmp_path / "search.png")
    assert path.stat().st_size > 0
    with pytest.raises(ValueError, match="no parameter 'momentum'"):
        plot_search_results(result.results, tmp_path / "x.png", y="momentum")
    with pytest.raises(ValueError, match="no search results"):
        plot_search_results([], tmp_path / "x.png")


# ------------------------------------------------------------------ errors


def test_errors():
    X, y, Xv, yv = toy_split()
    with pytest.raises(ValueError, match="no parameter.*momentum"):
        grid_search(Peaked(), X, y, Xv, yv, {"momentum": [0.9]}, verbose=False)
    with pytest.raises(ValueError, match="non-empty dict"):
        grid_search(Peaked(), X, y, Xv, yv, {}, verbose=False)
    with pytest.raises(ValueError, match="no values for 'reg'"):
        grid_search(Peaked(), X, y, Xv, yv, {"reg": []}, verbose=False)
    with pytest.raises(TypeError, match="must be a list"):
        grid_search(Peaked(), X, y, Xv, yv, {"reg": 0.1}, verbose=False)
    with pytest.raises(ValueError, match="validation split"):
        grid_search(Peaked(), X, y, None, None, {"reg": [0.1]}, verbose=False)
    with pytest.raises(TypeError, match="get_params"):
        grid_search(object(), X, y, Xv, yv, {"reg": [0.1]}, verbose=False)
    with pytest.raises(ValueError, match="n_iter"):
        random_search(Peaked(), X, y, Xv, yv, {"reg": (1e-3, 1e-1)}, n_iter=0, verbose=False)
    with pytest.raises(TypeError, match="LogUniform"):
        random_search(Peaked(), X, y, Xv, yv, {"reg": "big"}, verbose=False)
    with pytest.raises(ValueError, match="0 < low <= high"):
        LogUniform(0.0, 1.0)
    with pytest.raises(ValueError, match="0 < low <= high"):
        LogUniform(1.0, 0.1)
