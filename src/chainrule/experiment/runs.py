"""Run folders of ``chainrule train`` and ``chainrule compare``: trials and their records.

A training run writes ``metrics.json`` when it starts (``status: running``, the
arguments and the data), after each trial of a grid search (``search_trials``, the rows
so far), once the settings are chosen (``params``, so that an interrupted run resumes
with them), and when it is done (the `Result`). A run into a folder that holds an
unfinished run with the same arguments and data continues its search: the trials it
recorded are not run again. A comparison writes it once, after every model.
"""

from __future__ import annotations

from chainrule.experiment.data import TrialData
from chainrule.experiment.records import Result, Trial
from chainrule.experiment.trial import ExperimentError, Output, choose_settings, finish, spec_of
from chainrule.models.registry import MODEL_REGISTRY, get_model_spec
from chainrule.report.run import RunFolder, to_jsonable

__all__ = [
    "compare_output",
    "comparison_record",
    "interrupted_run",
    "model_extra",
    "recorded_trials",
    "resumable_models",
    "train_run",
]

CHECKPOINT_FILE = "checkpoint.npz"


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
    same = all(
        to_jsonable(metrics[k]) == saved.get(k) for k in ("command", "chainrule", "args", "data")
    )
    if not same or saved.get("status") == "done":
        return []
    search = saved.get("search")
    rows = search.get("results") if isinstance(search, dict) else saved.get("search_trials")
    return rows if isinstance(rows, list) else []


def train_run(
    trial: Trial, data: TrialData, out, *, args: dict, client=None
) -> tuple[Result, RunFolder]:
    """Train one model into run folder ``out``; ``args`` is the command's record of its
    arguments (what a resume restores); ``client``, a ``dask.distributed.Client``, runs
    the search's trials on its cluster. Returns the result and the folder."""
    folder = RunFolder(out)
    metrics = {
        "command": "train",
        "status": "running",
        "chainrule": _version(),
        "args": args,
        "data": data.describe(),
    }
    recorded = recorded_trials(folder, metrics)
    if recorded:
        metrics["search_trials"] = recorded
    folder.write_metrics(metrics)  # written first, so that an interrupted run can resume

    def record(row):  # each trial as it finishes, so that an interrupted search continues
        metrics.setdefault("search_trials", []).append(row)
        folder.write_metrics(metrics)

    settings = choose_settings(trial, data, client=client, recorded=recorded, on_result=record)
    metrics.pop("search_trials", None)  # the search's record (in settings.tuning) holds them
    metrics["params"] = dict(settings.params)
    metrics.update(settings.tuning)
    folder.write_metrics(metrics)
    output = Output(folder, checkpoints=True, extra=model_extra(data))
    result, _ = finish(trial, data, settings, output)
    metrics.update(result_record(result, test=data.has("test")))
    metrics.update({"status": "done", "plots": folder.plots, "plot_errors": folder.plot_errors})
    folder.write_metrics(metrics)
    # The finished model is in model.npz; the per-epoch checkpoint only served a resume.
    folder.file(CHECKPOINT_FILE).unlink(missing_ok=True)
    return result, folder


def resumable_models() -> list[str]:
    """The registered models whose runs can be resumed (their ``fit`` checkpoints)."""
    return [name for name in MODEL_REGISTRY if get_model_spec(name).checkpoints]


def _names(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def interrupted_run(path, model: str | None = None) -> tuple[dict, dict | None]:
    """The arguments and chosen settings of the interrupted training run in ``path``.

    Returns ``(args, params)``; ``params`` is None when the run stopped before choosing
    them (a run into the folder with these arguments then continues the search from the
    trials it recorded). Raises `ExperimentError` for a folder that is not such a run, a
    finished run, a model that cannot resume, or a ``model`` other than the run's.
    """
    try:
        saved = RunFolder(path, create=False).read_metrics()
    except (OSError, ValueError) as e:
        raise ExperimentError(f"cannot resume {path}: {e}") from None
    stored = saved.get("args")
    if not isinstance(stored, dict) or stored.get("model") not in MODEL_REGISTRY:
        raise ExperimentError(f"{path} is not a run folder written by chainrule train")
    name = stored["model"]
    if saved.get("status") == "done":
        raise ExperimentError(f"the run in {path} has finished; there is nothing to resume")
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
