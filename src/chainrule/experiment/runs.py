"""Run folders of ``chainrule train`` and ``chainrule compare``: trials and their records.

A run folder belongs to one run (`open_run`: locked while the run goes on, refused when
it holds another run unless replaced with ``force``). A training run writes
``metrics.json`` when it starts (``status: running``, the arguments, the data, the
environment), after each trial of a grid search (``search_trials``, the rows so far),
once the settings are chosen (``params``, so that an interrupted run resumes with them),
and when it is done (the `Result`). The same command again into the folder of its
unfinished run continues that run: the search trials it recorded (with the same
arguments and data) are not run again; a fit that is not a ``--resume`` starts from
nothing, its old checkpoint removed. A comparison writes ``metrics.json`` when it starts
and when every model is done. A run that stops early records why: ``interrupted``
(Ctrl-C, SIGTERM) or ``failed`` (with the error).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from chainrule._files import ForeignFileError
from chainrule.experiment.data import TrialData
from chainrule.experiment.records import Result, Trial
from chainrule.experiment.trial import (
    ExperimentError,
    Output,
    choose_settings,
    finish,
    spec_of,
    starting_params,
)
from chainrule.models.registry import MODEL_REGISTRY, get_model_spec
from chainrule.report.environment import environment, now
from chainrule.report.lock import LockFileError, RunFolderBusy
from chainrule.report.run import METRICS_FILE, RunFolder, RunFolderError, to_jsonable

__all__ = [
    "compare_output",
    "comparison_record",
    "interrupted_run",
    "model_extra",
    "open_run",
    "recorded_trials",
    "recording",
    "resumable_models",
    "train_run",
]

CHECKPOINT_FILE = "checkpoint.npz"
MODEL_FILE = Output.model_file  # "model.npz"
# What a training run writes into its folder besides its plots.
TRAINING_FILES = (METRICS_FILE, MODEL_FILE, CHECKPOINT_FILE)


def open_run(
    out, *, resume: bool = False, force: bool = False, args: dict | None = None
) -> RunFolder:
    """Run folder ``out`` opened for one run (see ``RunFolder.start``): locked, the run's
    own, cleaned of killed writers' temporary files. Release it when the run ends.

    ``args``: the arguments of a training run; a folder holding an unfinished training
    run started with the same arguments is that run's, taken without ``force``. A
    training run (``args`` given, or ``resume``) that continues in its folder is refused
    when its metrics, model file or checkpoint is there and not chainrule's.
    """

    def same_run(saved: dict) -> bool:
        return (
            args is not None
            and saved.get("command") == "train"
            and saved.get("args") == to_jsonable(args)
            and saved.get("status") != "done"
        )

    writes = TRAINING_FILES if args is not None or resume else (METRICS_FILE,)
    try:
        return RunFolder.start(out, resume=resume, force=force, same_run=same_run, writes=writes)
    except (RunFolderError, RunFolderBusy, LockFileError) as e:
        raise ExperimentError(str(e)) from None


@contextlib.contextmanager
def recording(
    folder: RunFolder, metrics: dict, command_line=None, data: TrialData | None = None,
    seed: int = 0,
) -> Iterator[dict]:  # fmt: skip
    """Record a run in ``folder``'s ``metrics.json``: ``running`` now, with the
    environment (versions, BLAS, machine, ``command_line``, start time) and, given the
    ``data``, sample images of each class (``samples.png``); ``interrupted`` or
    ``failed`` (with the error) if the block stops with an exception. The block updates
    ``metrics`` and sets ``done`` itself. When the block ends, however it ends, the run's
    page (``report.html``) is written from ``metrics``."""
    metrics["status"] = "running"
    metrics["environment"] = environment(command_line)
    if data is not None:
        _record_samples(folder, metrics, data, seed)
    folder.write_metrics(metrics)
    try:
        yield metrics
    except BaseException as e:
        interrupted = isinstance(e, KeyboardInterrupt)
        metrics["status"] = "interrupted" if interrupted else "failed"
        metrics["stopped"] = now()
        if not interrupted:
            metrics["error"] = f"{type(e).__name__}: {e}"
        with contextlib.suppress(Exception):  # the error that stopped the run matters more
            folder.write_metrics(metrics)
            write_page(folder, metrics)
        raise
    write_page(folder, metrics)


def _record_samples(folder: RunFolder, metrics: dict, data: TrialData, seed: int) -> None:
    import numpy as np

    from chainrule.report.examples import SAMPLES_FILE, samples_record

    counts = {
        split: np.bincount(data.labels(split), minlength=len(data.classes)).tolist()
        for split in ("train", "val", "test")
        if data.has(split)
    }
    try:
        metrics["samples"] = samples_record(
            folder.path, data.images("train"), data.labels("train"), data.classes, counts, seed
        )
    except Exception as e:  # a picture for the page must not stop the run
        folder.plot_errors[SAMPLES_FILE] = f"{type(e).__name__}: {e}"


def write_page(folder: RunFolder, metrics: dict) -> None:
    """Write the run's ``report.html``; a failure is recorded in the folder's
    ``plot_errors`` (the command warns about it), never raised."""
    from chainrule.report.pages import REPORT_FILE, write_run_report

    try:
        write_run_report(folder.path, to_jsonable(metrics))
    except Exception as e:
        folder.plot_errors[REPORT_FILE] = f"{type(e).__name__}: {e}"


def _version() -> str:
    from chainrule import __version__

    return __version__


def model_extra(data: TrialData) -> dict:
    """What a model file keeps of its data: where it came from, the split, the seed."""
    return {
        "data": str(data.source.get("name")),
        "val_fraction": data.source.get("val_fraction"),
        "seed": data.source.get("seed"),
    }


def result_record(result: Result, *, test: bool = True) -> dict:
    """A result as ``metrics.json`` records it: its fields, the tuning records beside them,
    ``predict_time_s`` on the test split, else the validation split. ``test=False`` leaves
    out the test fields (a run that never looks at the test split)."""
    record = result.to_dict()
    if not test:
        for key in ("test_accuracy", "test_predict_time_s", "confusion_matrix_test"):
            del record[key]
    tuning = record.pop("tuning")
    record["predict_time_s"] = result.predict_time_s
    return {**record, **tuning}


def recorded_trials(folder: RunFolder, metrics: dict) -> list[dict]:
    """The search trials that an unfinished run in ``folder`` recorded, when it ran with
    the same arguments and data as the run about to start (its ``metrics``); else []."""
    try:
        saved = folder.read_metrics()
    except (OSError, ValueError):
        return []
    if not isinstance(saved, dict):
        return []
    same = all(
        to_jsonable(metrics[k]) == saved.get(k) for k in ("command", "chainrule", "args", "data")
    )
    if not same or saved.get("status") == "done":
        return []
    search = saved.get("search")
    rows = search.get("results") if isinstance(search, dict) else saved.get("search_trials")
    return rows if isinstance(rows, list) else []


def train_run(
    trial: Trial,
    data: TrialData,
    out,
    *,
    args: dict,
    client=None,
    command_line=None,
    on_settings=None,
) -> tuple[Result, RunFolder]:
    """Train one model into run folder ``out`` (a path, or a `RunFolder` already opened
    with `open_run`); ``args`` is the command's record of its arguments (what a resume
    restores), ``command_line`` the command (recorded with the environment); ``client``,
    a ``dask.distributed.Client``, runs the search's trials on its cluster;
    ``on_settings(settings)`` is called once the settings are chosen, before the fit
    (the command line shows the search's summary there). A new run
    takes a missing or empty folder, or its own unfinished run's; ``trial.resume``
    continues the one in it. Returns the result and the folder."""
    opened = out if isinstance(out, RunFolder) else open_run(out, resume=trial.resume, args=args)
    try:
        starting_params(trial, data)  # settings that cannot run leave no run behind
        metrics = {
            "command": "train",
            "chainrule": _version(),
            "args": args,
            "data": data.describe(),
        }
        recorded = recorded_trials(opened, metrics)
        if recorded:
            metrics["search_trials"] = recorded
        if not trial.resume:  # a fit that does not resume starts from nothing
            opened.remove(CHECKPOINT_FILE)
        with recording(opened, metrics, command_line, data, trial.seed):
            result = _train(
                trial, data, opened, metrics, client=client, recorded=recorded,
                on_settings=on_settings,
            )  # fmt: skip
    finally:
        if opened is not out:
            opened.release()
    return result, opened


def _train(
    trial, data, folder: RunFolder, metrics: dict, *, client, recorded, on_settings
) -> Result:
    def record(row):  # each trial as it finishes, so that an interrupted search continues
        metrics.setdefault("search_trials", []).append(row)
        folder.write_metrics(metrics)

    settings = choose_settings(trial, data, client=client, recorded=recorded, on_result=record)
    metrics.pop("search_trials", None)  # the search's record (in settings.tuning) holds them
    metrics["params"] = dict(settings.params)
    metrics.update(settings.tuning)
    folder.write_metrics(metrics)
    if on_settings is not None:
        on_settings(settings)
    output = Output(folder, checkpoints=True, extra=model_extra(data))
    result, _ = finish(trial, data, settings, output)
    metrics.update(result_record(result, test=data.has("test")))
    metrics.update({"status": "done", "finished": now()})
    metrics.update({"plots": folder.plots, "plot_errors": folder.plot_errors})
    folder.write_metrics(metrics)
    # The finished model is in model.npz; the per-epoch checkpoint only served a resume
    # (one that a family wrote past chainrule's writer is not chainrule's to delete).
    with contextlib.suppress(ForeignFileError):
        folder.remove(CHECKPOINT_FILE)
    return result


def resumable_models() -> list[str]:
    """The registered models whose runs can be resumed (their ``fit`` checkpoints)."""
    return [name for name in MODEL_REGISTRY if get_model_spec(name).checkpoints]


def _names(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def interrupted_run(run, model: str | None = None) -> tuple[dict, dict | None]:
    """The arguments and chosen settings of the interrupted training run in ``run`` (a
    path, or a `RunFolder` opened with ``open_run(..., resume=True)``).

    Returns ``(args, params)``; ``params`` is None when the run stopped before choosing
    them (a run into the folder with these arguments then continues the search from the
    trials it recorded). Raises `ExperimentError` for a folder that is not such a run, a
    damaged ``metrics.json``, a finished run or one still running, a model that cannot
    resume, or a ``model`` other than the run's.
    """
    try:
        folder = run if isinstance(run, RunFolder) else RunFolder(run, create=False)
        path = folder.path
        saved = folder.read_metrics()
    except OSError as e:
        raise ExperimentError(f"cannot resume {run}: {e}") from None
    except ValueError as e:
        raise ExperimentError(f"cannot resume {run}: its metrics.json is damaged ({e})") from None
    if not isinstance(saved, dict):
        raise ExperimentError(f"cannot resume {path}: its metrics.json is damaged (not an object)")
    stored = saved.get("args")
    if not isinstance(stored, dict) or stored.get("model") not in MODEL_REGISTRY:
        raise ExperimentError(f"{path} is not a run folder written by chainrule train")
    name = stored["model"]
    status = folder.status()
    if status == "done":
        raise ExperimentError(f"the run in {path} has finished; there is nothing to resume")
    if status == "running" and not isinstance(run, RunFolder):
        raise ExperimentError(f"the run in {path} is still running")
    # A run stopped during its search continues the search, whatever the model.
    searching = saved.get("params") is None and isinstance(saved.get("search_trials"), list)
    if not spec_of(name).checkpoints and not searching:
        raise ExperimentError(
            f"only {_names(resumable_models())} runs, and runs stopped during their search, "
            f"can be resumed, not {name}"
        )
    if model is not None and model != name:
        raise ExperimentError(f"{path} trains {name}, not {model}")
    params = saved.get("params")
    return stored, params if isinstance(params, dict) else None


def comparison_record(data: TrialData, results: list[Result], *, search: bool) -> dict:
    """``metrics.json`` of a comparison (without its total time and plots)."""
    models = {}
    for r in results:
        record = result_record(r)
        record["predict_n"] = data.size("test") if data.has("test") else data.size("val")
        models[r.model] = record
    return {
        "command": "compare",
        "chainrule": _version(),
        "data": {**data.describe(), "n_test": data.size("test")},
        "search": bool(search),
        "models": models,
    }


def compare_output(folder: RunFolder, name: str, data: TrialData) -> Output:
    """Where a comparison puts model ``name``'s file and plots."""
    return Output(folder, model_file=f"{name}.npz", prefix=f"{name}_", extra=model_extra(data))
