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

from chainrule.report.pages import REPORT_FILE, ReportError, read_run, write_run_report
from chainrule.report.run import to_jsonable

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
    mistakes' sheet and returns their record. Holds the folder throughout as a run holds
    it (`RunFolder.start`: a run writing into it raises ``RunFolderBusy``), so that every
    file written is checked against and added to the folder's record of chainrule's
    files: a ``metrics.json``, page or sheet that chainrule did not write is refused
    (``ForeignFileError``, ``RunFolderError``; a page before anything is written).
    Returns the page's path."""
    from chainrule._files import ForeignFileError
    from chainrule.report.run import METRICS_FILE, RunFolder

    # metrics.json is the run's own (read_run checked it); a folder of a chainrule that
    # kept no record of its files takes it over as it does for a resumed run.
    with RunFolder.start(folder, resume=True, writes=(METRICS_FILE,)) as held:
        foreign = held.record.unknown([REPORT_FILE])
        if foreign:
            raise ForeignFileError(
                f"not replacing {held.file(REPORT_FILE)}: chainrule did not write it; move "
                "it away, or evaluate with --no-page"
            )
        metrics = read_run(held.path)
        record = dict(evaluation)
        if mistakes is not None:
            record["mistakes"] = mistakes(held.path)
        key = (record.get("model_file"), record.get("data"), record.get("split"))
        kept = [
            e
            for e in metrics.get("evaluations") or []
            if isinstance(e, dict) and (e.get("model_file"), e.get("data"), e.get("split")) != key
        ]
        metrics["evaluations"] = [*kept, record]
        held.write_metrics(metrics)
        return write_run_report(held.path, to_jsonable(metrics))
