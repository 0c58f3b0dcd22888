"""One trial: choose the settings, fit (or keep the search's model), evaluate, save, plot.

::

    data = TrialData(load("digits", "train"), load("digits", "val"))
    result = run_trial(Trial("svm", search=True), data)        # a Result
    result.val_accuracy, result.params, result.tuning["search"]

With an :class:`Output` the model file and plots go into a run folder. The steps are
public for callers that record progress between them (``chainrule train`` writes the
chosen settings before fitting, so that an interrupted run can resume with them):
``check_trial`` (before loading data), ``choose_settings``, ``finish``.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule._blas import SMALL_DATA  # noqa: F401 - where callers found it
from chainrule._blas import blas_threads_for as _blas_threads_for
from chainrule._memory import format_bytes, physical_memory
from chainrule.experiment.data import TrialData
from chainrule.experiment.records import Result, Trial
from chainrule.models.registry import get_model_class, get_model_spec
from chainrule.models.spec import LAYOUTS, DataSummary, ModelSpec
from chainrule.report.run import RunFolder, to_jsonable
from chainrule.train.solver import TRAIN_ACC_SAMPLES

__all__ = [
    "TRAIN_ACC_SAMPLES",
    "ExperimentError",
    "Output",
    "Settings",
    "check_memory",
    "check_trial",
    "checkpoint_settings",
    "choose_settings",
    "finish",
    "fit_model",
    "run_trial",
    "starting_params",
]


class ExperimentError(ValueError):
    """Settings or data that a trial cannot run with; the message is one line for the user."""


@dataclass
class Settings:
    """The chosen hyperparameters of a trial, and how they were chosen.

    params : complete keyword arguments of the estimator
    tuning : JSON-able records (``knn_cv``, ``search``)
    model : the model the search already fitted with ``params`` on the training split,
        when it is the final one (the spec's ``reuse_search_fit``); else None
    fit_time_s : its fit time
    """

    params: dict
    tuning: dict = field(default_factory=dict)
    model: Any = None
    fit_time_s: float | None = None


@dataclass
class Output:
    """Where a trial's files go.

    folder : the run folder; model_file : the model file's name in it
    prefix : prepended to the plots' names (``svm_`` in a comparison)
    checkpoints : a model that checkpoints writes its checkpoints into the folder
    extra : stored in the model file (data source, split, seed)
    """

    folder: RunFolder
    model_file: str = "model.npz"
    prefix: str = ""
    checkpoints: bool = False
    extra: dict = field(default_factory=dict)


def spec_of(name: str) -> ModelSpec:
    """The spec of model ``name``, its estimator importable."""
    try:
        spec = get_model_spec(name)
        get_model_class(name)  # a model whose module does not import fails here, in one line
    except ValueError as e:
        raise ExperimentError(str(e)) from None
    if spec.input_layout not in LAYOUTS:
        raise ExperimentError(
            f"model {name} wants input {spec.input_layout!r}, not one of {LAYOUTS}"
        )
    return spec


def build(spec: ModelSpec, params: dict, sources: dict | None = None):
    """An unfitted estimator with ``params``, its hyperparameters checked by the spec."""
    known = set(spec.param_names())
    for key in params:
        if key not in known:
            raise ExperimentError(
                f"{(sources or {}).get(key, key)} does not apply to model {spec.name}"
            )
    try:
        model = spec.estimator(**params)
        spec.check(model)
    except (TypeError, ValueError) as e:
        raise ExperimentError(f"bad settings for {spec.name}: {e}") from None
    return model


def check_trial(trial: Trial, *, validation: bool = True) -> None:
    """Refuse settings that cannot run, before any data is loaded.

    ``validation``: whether the data will have a validation split.
    """
    spec = spec_of(trial.model)
    build(spec, trial.params, trial.sources)
    if trial.search and trial.tune:
        if spec.search_needs_validation and not validation:
            raise ExperimentError(f"the search for {spec.name} needs a validation split")
        given = [trial.sources.get(p, p) for p in spec.searched if p in trial.params]
        if given:
            shown = ", ".join(given)
            raise ExperimentError(f"the search chooses {shown} itself; leave out {shown}")


def blas_threads_for(X: np.ndarray):
    """One BLAS thread while working on a small data set (`chainrule._blas`)."""
    return _blas_threads_for(X.size)


def summary_of(spec: ModelSpec, data: TrialData) -> DataSummary:
    """The training split as the spec sees it (in its input layout)."""
    X = data.inputs(spec.input_layout, "train")
    return DataSummary.of(X, len(data.classes), data.image_shape)


def check_memory(spec: ModelSpec, model, summary: DataSummary) -> None:
    """Refuse settings whose training needs more memory than the machine has (by the
    spec's lower bound), before anything is allocated."""
    need = spec.memory(model, summary)
    have = physical_memory()
    if need is not None and need > have:
        raise ExperimentError(
            f"{spec.name} with {spec.describe(model.get_params())} needs at least "
            f"{format_bytes(need)} of memory to train on {summary.n_features} features, "
            f"more than this machine's {format_bytes(have)}"
        )


def _images(n: int) -> str:
    return f"{n} training image{'' if n == 1 else 's'}"


# -- choosing the settings ----------------------------------------------------------------


def initial_params(trial: Trial, spec: ModelSpec, data: TrialData) -> dict:
    """The spec's defaults for the data, the seed, the values given, the verbosity."""
    known = set(spec.param_names())
    summary = summary_of(spec, data)
    params = {k: v for k, v in spec.defaults(summary).items() if k in known}
    if "random_state" in known:
        params["random_state"] = trial.seed
    params.update(trial.params)
    if "verbose" in known:
        params["verbose"] = bool(trial.verbose)
    return params


def starting_params(trial: Trial, data: TrialData) -> dict:
    """The trial's settings before any tuning, checked: they build a model, and its
    training fits in memory. Cheap: a run checks them before it records anything."""
    check_trial(trial, validation=data.has("val"))
    spec = spec_of(trial.model)
    params = initial_params(trial, spec, data)
    model = build(spec, params, trial.sources)  # a default that does not fit fails here
    check_memory(spec, model, summary_of(spec, data))
    return params


def choose_settings(
    trial: Trial, data: TrialData, *, client=None, recorded=None, on_result=None
) -> Settings:
    """Defaults for the data, then the given values, then (unless ``tune=False``) the
    family's own tuning or, with ``search``, a grid search on the validation split.

    The grid search runs its trials on ``client``'s Dask cluster when one is given,
    skips the trials ``recorded`` by an earlier run of it and calls ``on_result(row)`` as
    each trial finishes (see ``chainrule.train.grid_search``).
    """
    params = starting_params(trial, data)
    if not trial.tune:
        return Settings(params)
    spec = spec_of(trial.model)
    X = data.inputs(spec.input_layout, "train")
    y = data.labels("train")
    with blas_threads_for(X):
        try:
            own = spec.tune(
                params, dict(trial.params), X, y, search=trial.search, seed=trial.seed,
                progress=trial.progress,
            )  # fmt: skip
        except (ValueError, TypeError) as e:  # the family's refusal of this data
            raise ExperimentError(f"{spec.name} on {_images(len(y))}: {e}") from None
        if own is not None:
            params, records = own
            return Settings(params, to_jsonable(records))
        if not trial.search:
            return Settings(params)
        where = {"client": client, "recorded": recorded, "on_result": on_result}
        return grid_search_settings(trial, spec, params, data, **where)


def grid_search_settings(trial: Trial, spec: ModelSpec, params: dict, data: TrialData, **where):
    """The best of the spec's grid around ``params``, by validation accuracy; ``where``:
    ``client``, ``recorded``, ``on_result`` of ``chainrule.train.grid_search``."""
    from chainrule.train.search import grid_search

    if not data.has("val"):
        raise ExperimentError(f"the search for {spec.name} needs a validation split")
    template = build(spec, params)
    grid = spec.grid(template.get_params())
    if not grid:
        raise ExperimentError(f"model {spec.name} has no search grid; leave out the search")
    layout = spec.input_layout
    if "verbose" in params:  # one progress bar for the search, not every trial's epochs
        template.set_params(verbose=False)
    start = time.perf_counter()
    try:
        result = grid_search(
            template, data.inputs(layout, "train"), data.labels("train"),
            data.inputs(layout, "val"), data.labels("val"), grid, verbose=trial.progress,
            refit=spec.reuse_search_fit, **where,
        )  # fmt: skip
    except (FloatingPointError, ValueError, TypeError) as e:
        raise ExperimentError(f"search for {spec.name}: {e}") from None
    record = {
        "grid": grid,
        "results": result.results,
        "best_params": result.best_params,
        "best_val_accuracy": result.best_val_acc,
        "time_s": time.perf_counter() - start,
    }
    best = {**params, **result.best_params}
    if not spec.reuse_search_fit:
        return Settings(best, to_jsonable({"search": record}))
    fit_time = next(r["fit_time"] for r in result.results if r["params"] == result.best_params)
    model = result.best_estimator
    if "verbose" in params:
        model.set_params(verbose=params["verbose"])
    return Settings(best, to_jsonable({"search": record}), model, fit_time)


# -- fitting, evaluating --------------------------------------------------------------------


def checkpoint_settings(data: TrialData, seed: int) -> dict:
    """What a checkpoint records of the run besides the model's own hyperparameters: the
    data (source, split, sizes) and the trial's seed. A resume with other data or another
    seed is refused instead of continuing another run."""
    return {
        "data": str(data.source.get("name")),
        "val_fraction": data.source.get("val_fraction"),
        "split_seed": data.source.get("seed"),
        "n_train": data.size("train"),
        "n_val": data.size("val"),
        "classes": list(data.classes),
        "seed": seed,
    }


def fit_model(
    spec: ModelSpec, params: dict, data: TrialData, *, checkpoint_dir=None, resume=False, seed=0
):
    """Build and fit the model on the training split; returns ``(model, fit_seconds)``.

    ``fit`` gets the validation split and the checkpoint folder where the spec says it
    takes them, and the run's `checkpoint_settings` where it records them.
    """
    model = build(spec, params)
    check_memory(spec, model, summary_of(spec, data))
    kwargs: dict[str, Any] = {}
    if spec.fit_validation and data.has("val"):
        kwargs.update(X_val=data.inputs(spec.input_layout, "val"), y_val=data.labels("val"))
    if spec.checkpoints and checkpoint_dir is not None:
        kwargs.update(checkpoint_dir=checkpoint_dir, resume=resume)
        if "checkpoint_settings" in inspect.signature(model.fit).parameters:
            kwargs["checkpoint_settings"] = checkpoint_settings(data, seed)
    X = data.inputs(spec.input_layout, "train")
    start = time.perf_counter()
    try:
        model.fit(X, data.labels("train"), **kwargs)
    except (FloatingPointError, ValueError, TypeError) as e:
        raise ExperimentError(f"{spec.name}: {e}") from None
    return model, time.perf_counter() - start


def sample_rows(n: int, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` sorted row indices out of ``n``, drawn with ``seed``."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def evaluate(model, layout: str, data: TrialData, seed: int, predictions=None) -> dict:
    """Accuracy on a training sample; accuracy, confusion matrix and prediction time on
    the validation and test splits (those that exist): the fields of a `Result`.
    ``predictions``, a dict, receives each split's predicted labels."""
    from chainrule.report.metrics import accuracy, confusion_matrix

    y = data.labels("train")
    rows = sample_rows(len(y), TRAIN_ACC_SAMPLES, seed)
    X = data.inputs(layout, "train")
    out = {
        "train_accuracy": accuracy(y[rows], np.asarray(model.predict(X[rows]))),
        "train_accuracy_n": int(len(rows)),
    }
    for split in ("val", "test"):
        if not data.has(split):
            continue
        start = time.perf_counter()
        pred = np.asarray(model.predict(data.inputs(layout, split)))
        seconds = time.perf_counter() - start
        truth = data.labels(split)
        if predictions is not None:
            predictions[split] = pred
        out[f"{split}_accuracy"] = accuracy(truth, pred)
        out[f"{split}_predict_time_s"] = seconds
        out[f"confusion_matrix_{split}"] = confusion_matrix(truth, pred, len(data.classes))
    return out


def history_of(model) -> dict | None:
    """The model's ``history_`` curves (1-D entries) as lists, or None."""
    h = getattr(model, "history_", None)
    if not isinstance(h, dict):
        return None
    return {k: np.asarray(v).tolist() for k, v in h.items() if np.ndim(v) == 1}


# -- the whole trial ------------------------------------------------------------------------


def finish(trial: Trial, data: TrialData, settings: Settings, output: Output | None = None):
    """Fit with ``settings`` (or keep the search's model), evaluate, save and plot.

    Returns ``(result, model)``.
    """
    from chainrule.experiment.files import draw_plots, record_mistakes, save

    spec = spec_of(trial.model)
    X = data.inputs(spec.input_layout, "train")
    with blas_threads_for(X):
        if settings.model is not None:
            model, fit_time = settings.model, settings.fit_time_s
        else:
            folder = output.folder.path if output is not None and output.checkpoints else None
            model, fit_time = fit_model(
                spec, settings.params, data, checkpoint_dir=folder, resume=trial.resume,
                seed=trial.seed,
            )  # fmt: skip
        predictions: dict = {}
        scores = evaluate(model, spec.input_layout, data, trial.seed, predictions)
    params = model.get_params()
    result = Result(
        model=spec.name,
        params=params,
        settings=spec.describe(params),
        fit_time_s=fit_time,
        history=history_of(model),
        tuning=settings.tuning,
        **scores,
    )
    if output is not None:
        save(output, spec, model, data, result)
        draw_plots(output, spec, model, data, result)
        record_mistakes(output, spec, model, data, result, predictions, trial.seed)
    return Result.from_dict(result.to_dict()), model


def run_trial(
    trial: Trial, data: TrialData, output: Output | None = None, *, client=None
) -> Result:
    """Run ``trial`` on ``data``: settings, fit, evaluation (and files with ``output``).

    ``client``: a ``dask.distributed.Client`` whose cluster runs the grid search's trials.
    """
    settings = choose_settings(trial, data, client=client)
    result, _ = finish(trial, data, settings, output)
    return result
