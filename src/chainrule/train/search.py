"""Hyperparameter search on a validation split: grid search and random search.

Works with any estimator that has ``get_params``, ``set_params``, ``fit(X, y)`` and
``score(X, y)`` (accuracy). Every candidate is a fresh copy of the estimator with some
parameters changed, fitted on the training split and scored on the validation split;
the one with the highest validation accuracy wins (the first one on ties).

Random search draws learning rates and regularization strengths log-uniformly, as the
course recommends for scale parameters::

    result = random_search(
        SoftmaxClassifier(epochs=5),
        X_train, y_train, X_val, y_val,
        {"learning_rate": LogUniform(1e-3, 1e-1), "reg": LogUniform(1e-4, 1e-1)},
        n_iter=20, random_state=0,
    )
    print_results(result.results)
    model = result.best_estimator

Each trial is one call of :func:`fit_candidate` on a copy of the estimator whose
parameters, ``random_state`` included, are fixed before any trial runs; so the trials
can run in any order, in this process or on a Dask cluster (``client=``, see
``chainrule.train.distributed``), and give the same rows.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "LogUniform",
    "SearchResult",
    "fit_candidate",
    "format_results",
    "grid_search",
    "print_results",
    "random_search",
]


class LogUniform:
    """A distribution whose logarithm is uniform on ``[log(low), log(high)]`` (0 < low <= high)."""

    def __init__(self, low: float, high: float):
        try:
            low, high = float(low), float(high)
        except (TypeError, ValueError):
            raise TypeError(f"LogUniform bounds must be numbers, got {low!r}, {high!r}") from None
        if not (0 < low <= high < math.inf):
            raise ValueError(f"LogUniform needs 0 < low <= high < inf, got low={low}, high={high}")
        self.low = low
        self.high = high

    def sample(self, rng: np.random.Generator) -> float:
        return float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))

    def __repr__(self) -> str:
        return f"LogUniform({self.low:g}, {self.high:g})"


@dataclass
class SearchResult:
    """What a search found.

    results : list of dict
        One row per candidate, in the order tried: ``params`` (dict), ``train_acc``
        (float, or None when not measured), ``val_acc`` (float), ``fit_time`` (seconds).
    best_params : dict
        Parameters of the candidate with the highest validation accuracy.
    best_val_acc : float
    best_estimator : object
        That candidate, fitted on the training split (None when searched with
        ``refit=False``).
    """

    results: list[dict] = field(default_factory=list)
    best_params: dict = field(default_factory=dict)
    best_val_acc: float = -math.inf
    best_estimator: object = None

    def table(self) -> str:
        return format_results(self.results)


def _clone(estimator):
    """An unfitted copy with the same parameters (scikit-learn's clone).

    The parameters are copied, not shared: a ``random_state`` Generator is copied as it
    is when the search starts, so every candidate draws the same random numbers whether
    the candidates run one after another or at the same time in other processes.
    """
    return type(estimator)(**copy.deepcopy(estimator.get_params(deep=False)))


def _check_names(estimator, names, what):
    for method in ("get_params", "set_params", "fit", "score"):
        if not callable(getattr(estimator, method, None)):
            raise TypeError(
                f"{what} needs an estimator with get_params, set_params, fit and score; "
                f"{type(estimator).__name__} has no {method}"
            )
    known = estimator.get_params()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"{what}: {type(estimator).__name__} has no parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )


def fit_candidate(estimator, params, X, y, X_val, y_val, train_score=True):
    """One trial of a search: a copy of ``estimator`` with ``params``, fitted and scored.

    Returns ``(row, model)``: ``row`` the candidate's line of `SearchResult.results`
    (``fit_time`` measured here, where the trial runs) and the fitted copy. The same
    function runs every trial of a search, in this process or on a cluster's worker.
    """
    model = _clone(estimator)
    model.set_params(**params)
    start = time.perf_counter()
    model.fit(X, y)
    fit_time = time.perf_counter() - start
    val_acc = float(model.score(X_val, y_val))
    train_acc = float(model.score(X, y)) if train_score else None
    row = {"params": dict(params), "train_acc": train_acc, "val_acc": val_acc, "fit_time": fit_time}
    return row, model


def _params_key(params: dict) -> str:
    """``params`` as JSON text: equal for a candidate and its record read back from JSON."""

    def plain(v):
        return v.item() if hasattr(v, "item") else repr(v)

    return json.dumps(params, sort_keys=True, default=plain)


def _from_records(candidates, recorded) -> list:
    """Each candidate's row among ``recorded`` (rows of an earlier search), or None."""
    found = {}
    for r in recorded or ():
        if (
            isinstance(r, dict)
            and isinstance(r.get("params"), dict)
            and _is_number(r.get("val_acc"))
        ):
            found.setdefault(_params_key(r["params"]), r)
    rows = []
    for params in candidates:
        r = found.get(_params_key(params))
        rows.append(None if r is None else {**r, "params": dict(params)})
    return rows


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _sequential(estimator, candidates, todo, data, train_score, keep):
    """Run the trials ``todo`` (indices into ``candidates``) here, in order; yields
    ``(index, row, get_model)``, ``get_model()`` the fitted model (None without ``keep``)."""
    for i in todo:
        row, model = fit_candidate(estimator, candidates[i], *data, train_score)
        yield i, row, (lambda m=model: m) if keep else None


def _trials(client, template, candidates, todo, data, train_score, keep):
    """The trials ``todo``, here or on ``client``'s cluster, as they finish."""
    if client is None:
        return _sequential(template, candidates, todo, data, train_score, keep)
    from chainrule.train.distributed import run_trials

    return run_trials(client, fit_candidate, template, candidates, todo, data,
                      train_score=train_score, keep=keep)  # fmt: skip


def _run(estimator, candidates, X, y, X_val, y_val, *, train_score, verbose, client=None,
         refit=True, recorded=None, on_result=None):  # fmt: skip
    if X_val is None or y_val is None:
        raise ValueError("search needs a validation split: pass X_val and y_val")
    if not candidates:
        raise ValueError("search: no candidates to try")
    from tqdm.auto import tqdm

    rows = _from_records(candidates, recorded)
    todo = [i for i, r in enumerate(rows) if r is None]
    template, data = _clone(estimator), (X, y, X_val, y_val)
    # The best so far: (val_acc, -index, get_model), so that the first candidate wins ties
    # whatever order the trials finish in; only the best one's model is kept.
    best = max(((r["val_acc"], -i, None) for i, r in enumerate(rows) if r is not None),
               default=(-math.inf, 0, None))  # fmt: skip
    trials = _trials(client, template, candidates, todo, data, train_score, refit)
    # verbose shows the bar on a terminal only (tqdm disable=None), like the models.
    bar = tqdm(total=len(candidates), initial=len(candidates) - len(todo), desc="search",
               disable=None if verbose else True, leave=False)  # fmt: skip
    # closing: an error here (or Ctrl-C) stops the trials not yet done, on a cluster too
    with contextlib.closing(trials), bar:
        for i, row, get_model in trials:
            rows[i] = row
            if on_result is not None:
                on_result(row)
            if (row["val_acc"], -i) > best[:2]:
                best = (row["val_acc"], -i, get_model)
            bar.update()
            bar.set_postfix(best=f"{best[0]:.4f}")
    index, get_model = -best[1], best[2]
    result = SearchResult(rows, dict(candidates[index]), rows[index]["val_acc"])
    if refit:
        if get_model is None:  # the best trial was recorded by an earlier search: fit it again
            get_model = next(_trials(client, template, candidates, [index], data, False, True))[2]
        result.best_estimator = get_model()
    return result


def grid_search(
    estimator,
    X,
    y,
    X_val,
    y_val,
    param_grid: dict,
    *,
    train_score: bool = True,
    verbose: bool = True,
    client=None,
    refit: bool = True,
    recorded: list[dict] | None = None,
    on_result=None,
) -> SearchResult:
    """Try every combination of the values in ``param_grid``; choose on validation accuracy.

    Parameters
    ----------
    estimator : estimator with get_params/set_params/fit/score
        Used as a template; it is not modified.
    X, y : (N, D) float array, (N,) int array
        Training split.
    X_val, y_val : (M, D) float array, (M,) int array
        Validation split that picks the winner.
    param_grid : dict name -> sequence of values
        For example ``{"learning_rate": [1e-3, 1e-2], "reg": [1e-3, 1e-2, 1e-1]}``.
    train_score : bool
        Also measure accuracy on the training split (one more pass over it per candidate).
    verbose : bool
        Show a progress bar over the candidates (on a terminal).
    client : dask.distributed.Client, optional
        Run the trials on its cluster (``chainrule.train.distributed``): the splits are
        sent to every worker once, each trial runs on one BLAS thread, and the result is
        the one this process would have found, trial for trial.
    refit : bool
        Keep the best candidate's fitted model in ``best_estimator`` (fitted again when
        its trial was among ``recorded``); False keeps no model (``best_estimator`` None).
    recorded : list of dict, optional
        Rows of an earlier run of this search (``SearchResult.results``, as read back from
        JSON): candidates with a row here are not run again, their row is taken as it is.
    on_result : callable, optional
        Called with each new row as its trial finishes (in the order trials finish), for
        example to record it so that an interrupted search can continue.
    """
    if not isinstance(param_grid, dict) or not param_grid:
        raise ValueError("grid_search: param_grid must be a non-empty dict name -> values")
    names = list(param_grid)
    values = []
    for name in names:
        v = param_grid[name]
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise TypeError(f"grid_search: values for {name!r} must be a list, got {v!r}")
        v = list(v)
        if not v:
            raise ValueError(f"grid_search: no values for {name!r}")
        values.append(v)
    _check_names(estimator, names, "grid_search")
    candidates = [dict(zip(names, combo)) for combo in itertools.product(*values)]
    where = {"client": client, "refit": refit, "recorded": recorded, "on_result": on_result}
    return _run(estimator, candidates, X, y, X_val, y_val, train_score=train_score,
                verbose=verbose, **where)  # fmt: skip


def _sampler(name, spec):
    if isinstance(spec, LogUniform):
        return spec.sample
    if isinstance(spec, tuple) and len(spec) == 2:
        return LogUniform(*spec).sample
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"random_search: no values for {name!r}")
        return lambda rng: spec[int(rng.integers(len(spec)))]
    if callable(getattr(spec, "rvs", None)):  # a scipy.stats distribution
        return lambda rng: spec.rvs(random_state=rng)
    raise TypeError(
        f"random_search: {name!r} must be a LogUniform, a (low, high) tuple (log-uniform), "
        f"a list of choices or a distribution with rvs(); got {spec!r}"
    )


def random_search(
    estimator,
    X,
    y,
    X_val,
    y_val,
    param_distributions: dict,
    n_iter: int = 10,
    *,
    random_state=None,
    train_score: bool = True,
    verbose: bool = True,
    client=None,
    refit: bool = True,
    recorded: list[dict] | None = None,
    on_result=None,
) -> SearchResult:
    """Try ``n_iter`` random parameter settings; choose on validation accuracy.

    ``param_distributions`` maps a parameter name to a `LogUniform`, a ``(low, high)``
    tuple (also log-uniform: right for learning rates and regularization strengths), a
    list (uniform choice) or a scipy.stats distribution. The draws come from
    ``numpy.random.default_rng(random_state)``, so a seed gives the same candidates.
    Other arguments as in `grid_search`.
    """
    if not isinstance(param_distributions, dict) or not param_distributions:
        raise ValueError(
            "random_search: param_distributions must be a non-empty dict name -> distribution"
        )
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"random_search: n_iter must be a positive integer, got {n_iter!r}")
    _check_names(estimator, list(param_distributions), "random_search")
    samplers = {name: _sampler(name, spec) for name, spec in param_distributions.items()}
    rng = (
        random_state
        if isinstance(random_state, np.random.Generator)
        else np.random.default_rng(random_state)
    )
    candidates = [{name: s(rng) for name, s in samplers.items()} for _ in range(int(n_iter))]
    where = {"client": client, "refit": refit, "recorded": recorded, "on_result": on_result}
    return _run(estimator, candidates, X, y, X_val, y_val, train_score=train_score,
                verbose=verbose, **where)  # fmt: skip


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def format_results(results: list[dict], sort: bool = True) -> str:
    """The results of a search as a text table, best validation accuracy first."""
    if not results:
        return "(no results)"
    rows = sorted(results, key=lambda r: -r["val_acc"]) if sort else list(results)
    names = []
    for r in rows:
        for k in r["params"]:
            if k not in names:
                names.append(k)
    header = [*names, "train_acc", "val_acc", "fit_time"]
    body = []
    for r in rows:
        train = "-" if r.get("train_acc") is None else f"{r['train_acc']:.4f}"
        body.append(
            [_fmt(r["params"].get(k, "")) for k in names]
            + [train, f"{r['val_acc']:.4f}", f"{r['fit_time']:.2f}s"]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def print_results(results, file=None, sort: bool = True) -> None:
    """Print `format_results` of a result list (or of a `SearchResult`)."""
    if isinstance(results, SearchResult):
        results = results.results
    print(format_results(results, sort=sort), file=file or sys.stdout)
