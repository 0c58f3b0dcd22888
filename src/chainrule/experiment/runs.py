"""Run folders of ``chainrule train`` and ``chainrule compare``: trials and their records.

A training run writes ``metrics.json`` three times: when it starts (``status: running``,
the arguments and the data), once the settings are chosen (``params``, so that an
interrupted run resumes with them), and when it is done (the `Result`). A comparison
writes it once, after every model.
"""

from __future__ import annotations

from chainrule.experiment.data import TrialData
from chainrule.experiment.records import Result, Trial
from chainrule.experiment.trial import ExperimentError, Output, choose_settings, finish, spec_of
from chainrule.models.registry import MODEL_REGISTRY, get_model_spec
from chainrule.report.run import RunFolder

__all__ = [
    "compare_output",
    "comparison_record",
    "interrupted_run",
    "model_extra",
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


def train_run(trial: Trial, data: TrialData, out, *, args: dict) -> tuple[Result, RunFolder]:
    """Train one model into run folder ``out``; ``args`` is the command's record of its
    arguments (what a resume restores). Returns the result and the folder."""
    folder = RunFolder(out)
    metrics = {
        "command": "train",
        "status": "running",
        "chainrule": _version(),
        "args": args,
        "data": data.describe(),
    }
    folder.write_metrics(metrics)  # written first, so that an interrupted run can resume
    settings = choose_settings(trial, data)
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
    them. Raises `ExperimentError` for a folder that is not such a run, a finished run,
    a model that cannot resume, or a ``model`` other than the run's.
    """
    try:
        saved = RunFolder(path, create=False).read_metrics()
    except (OSError, ValueError) as e:
        raise ExperimentError(f"cannot resume {path}: {e}") from None
    stored = saved.get("args")
    if not isinstance(stored, dict) or stored.get("model") not in MODEL_REGISTRY:
        raise ExperimentError(f"{path} is not a run folder written by chainrule train")
    name = stored["model"]
    if not spec_of(name).checkpoints:
        raise ExperimentError(f"only {_names(resumable_models())} runs can be resumed, not {name}")
    if model is not None and model != name:
        raise ExperimentError(f"{path} trains {name}, not {model}")
    if saved.get("status") == "done":
        raise ExperimentError(f"the run in {path} has finished; there is nothing to resume")
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
