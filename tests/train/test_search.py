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
    fit_candidate,
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


# ------------------------------------------------------------------ seeds, order, records


class Noisy(ClassifierMixin, BaseEstimator):
    """Accuracy that depends on its random draws: it predicts the true label on the rows
    where its ``random_state`` draws u < q, so two candidates that drew different numbers
    score differently. Counts its fits."""

    fits = 0

    def __init__(self, q=0.5, random_state=None):
        self.q = q
        self.random_state = random_state

    def fit(self, X, y):
        type(self).fits += 1
        rng = self.random_state
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.u_ = rng.uniform(size=1000)
        return self

    def predict(self, X):
        y = X[:, 0].astype(int)
        return np.where(self.u_[: len(X)] < self.q, y, -1)


def rows_without_times(result):
    return [{k: v for k, v in r.items() if k != "fit_time"} for r in result.results]


def test_every_candidate_starts_from_the_random_state_the_search_started_with():
    # A Generator as random_state is copied for each candidate, not shared: candidate i
    # does not depend on the numbers candidates 0..i-1 drew, so the trials can run in
    # any order or in other processes and give the same rows.
    X, y, Xv, yv = toy_split()
    grid = {"q": [0.2, 0.5, 0.8]}
    gen = np.random.default_rng(7)
    result = grid_search(Noisy(random_state=gen), X, y, Xv, yv, grid, verbose=False)
    for r in result.results:
        alone, _ = fit_candidate(Noisy(random_state=np.random.default_rng(7)), r["params"],
                                 X, y, Xv, yv)  # fmt: skip
        assert alone["val_acc"] == r["val_acc"] and alone["train_acc"] == r["train_acc"]
    backwards = grid_search(Noisy(random_state=gen), X, y, Xv, yv, {"q": [0.8, 0.5, 0.2]},
                            verbose=False)  # fmt: skip
    assert rows_without_times(backwards) == rows_without_times(result)[::-1]
    # the template's Generator is not advanced by the search
    assert gen.uniform() == np.random.default_rng(7).uniform()


def test_recorded_trials_are_not_run_again_and_give_the_same_result():
    X, y, Xv, yv = toy_split()
    grid = {"q": [0.2, 0.9, 0.5, 0.7]}
    seen = []
    Noisy.fits = 0
    whole = grid_search(Noisy(random_state=1), X, y, Xv, yv, grid, verbose=False,
                        on_result=seen.append)  # fmt: skip
    assert Noisy.fits == 4 + 0  # the best candidate's fit is kept, not repeated
    assert seen == whole.results
    # An interrupted search recorded two rows (as JSON); running it again fits the rest.
    import json

    recorded = json.loads(json.dumps(seen[2:]))
    Noisy.fits, seen = 0, []
    again = grid_search(Noisy(random_state=1), X, y, Xv, yv, grid, verbose=False,
                        recorded=recorded, on_result=seen.append)  # fmt: skip
    assert [r["params"]["q"] for r in seen] == [0.2, 0.9]
    assert rows_without_times(again) == rows_without_times(whole)
    assert again.results[2:] == recorded  # taken as they were, times included
    assert again.best_params == whole.best_params == {"q": 0.9}
    assert Noisy.fits == 2
    # The best trial recorded: its model is fitted again; refit=False fits nothing more.
    Noisy.fits = 0
    refitted = grid_search(Noisy(random_state=1), X, y, Xv, yv, grid, verbose=False,
                           recorded=whole.results)  # fmt: skip
    assert Noisy.fits == 1 and refitted.best_estimator.q == 0.9
    np.testing.assert_array_equal(refitted.best_estimator.u_, whole.best_estimator.u_)
    Noisy.fits = 0
    bare = grid_search(Noisy(random_state=1), X, y, Xv, yv, grid, verbose=False,
                       recorded=whole.results, refit=False)  # fmt: skip
    assert Noisy.fits == 0 and bare.best_estimator is None
    assert bare.results == whole.results
    # Rows that are not a candidate's, or not rows, are ignored: those trials run.
    Noisy.fits = 0
    junk = [{"params": {"q": 0.3}, "val_acc": 1.0}, {"params": {"q": 0.2}}, "row", None]
    grid_search(Noisy(random_state=1), X, y, Xv, yv, grid, verbose=False, recorded=junk)
    assert Noisy.fits == 4


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
