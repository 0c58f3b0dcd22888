"""What ``chainrule eval`` adds to the run folder it evaluates: a record in the run's
``metrics.json`` (``evaluations``, one per model, data and split: a new evaluation of
the same replaces the old), the contact sheet of the images the model got wrong, and the
run's page written again with them."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from chainrule.report.pages import ReportError, read_run, write_file, write_run_report

__all__ = ["add_evaluation", "run_folder_of", "sheet_name"]


def run_folder_of(run: str | os.PathLike, model_file: str | os.PathLike) -> Path | None:
    """The chainrule run folder that ``model_file`` (given as ``run``: the folder or the
    file) belongs to, or None (a model file outside any run folder)."""
    folder = Path(run)
    if not folder.is_dir():
        folder = folder.parent
    try:
        metrics = read_run(folder)
    except (ReportError, OSError):
        return None
    name = Path(model_file).name
    models = metrics.get("models") if metrics.get("command") == "compare" else {"": metrics}
    files = {m.get("model_file") for m in (models or {}).values() if isinstance(m, dict)}
    return (
        folder if name in files and Path(model_file).parent.resolve() == folder.resolve() else None
    )


def sheet_name(model_file: str, data: str, split: str) -> str:
    """The contact sheet of an evaluation's mistakes: ``<model>_eval_<split>_<hash>.png``,
    one per model, data and split."""
    key = hashlib.sha256(json.dumps([model_file, data, split]).encode()).hexdigest()[:8]
    return f"{Path(model_file).stem}_eval_{split}_{key}_mistakes.png"


def add_evaluation(
    folder: str | os.PathLike, evaluation: dict, mistakes: Callable[[Path], dict] | None = None
) -> Path:
    """Record ``evaluation`` (``model_file``, ``data``, ``split``, ``accuracy``, ...) in
    run folder ``folder`` and write its page again; ``mistakes(folder)`` writes the
    mistakes' sheet and returns their record. Holds the folder's lock throughout (a
    run writing into it raises ``RunFolderBusy``). Returns the page's path."""
    from chainrule.report.lock import RunLock
    from chainrule.report.run import to_jsonable

    folder = Path(folder)
    with RunLock(folder).acquire():
        metrics = read_run(folder)
        record = dict(evaluation)
        if mistakes is not None:
            record["mistakes"] = mistakes(folder)
        key = (record.get("model_file"), record.get("data"), record.get("split"))
        kept = [
            e
            for e in metrics.get("evaluations") or []
            if isinstance(e, dict) and (e.get("model_file"), e.get("data"), e.get("split")) != key
        ]
        metrics["evaluations"] = [*kept, record]
        metrics = to_jsonable(metrics)
        write_file(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        return write_run_report(folder, metrics)
