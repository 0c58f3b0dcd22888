"""Writing the report pages: ``report.html`` in a run folder, and one page comparing
several run folders.

The pages and their pictures reach the disk through `write_file`, chainrule's one safe
writer (`chainrule._files.write_file`): atomically (the old file or the complete new one,
never half of it), never through a link, and, in a run folder that this process holds
(a run, ``chainrule report RUN_DIR``, ``chainrule eval``), checked against and added to
the folder's record of the files chainrule wrote, so that ``--force`` clears them with
the run and a file chainrule did not write is never replaced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from chainrule._files import open_file, read_file, write_file
from chainrule.report.html import GENERATOR, REPORT_FILE

__all__ = [
    "REPORT_FILE",  # from chainrule.report.html
    "ReportError",
    "is_report_page",
    "read_run",
    "write_file",  # from chainrule._files
    "write_run_report",
    "write_runs_report",
]

METRICS_FILE = "metrics.json"
_MAX_METRICS_BYTES = 256 * 1024 * 1024  # a metrics.json larger than this is not chainrule's


class ReportError(ValueError):
    """A folder or file a page cannot be made from or written to; one line for the user."""


def read_run(folder: str | os.PathLike) -> dict:
    """The ``metrics.json`` of a chainrule run folder; `ReportError` for a folder that is
    not one (missing, no metrics, damaged, or not written by ``train``/``compare``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder} is not a folder")
    path = folder / METRICS_FILE
    if not path.exists() and not path.is_symlink():
        raise ReportError(f"{folder} is not a run folder: it has no {METRICS_FILE}")
    try:  # a plain file only: never through a link, never a FIFO, within bounds
        metrics = json.loads(read_file(path, _MAX_METRICS_BYTES).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise ReportError(f"cannot read {path}: {e}") from None
    if not isinstance(metrics, dict) or metrics.get("command") not in ("train", "compare"):
        raise ReportError(f"{folder} is not a run folder written by chainrule train or compare")
    return metrics


def _files(folder: Path) -> set[str]:
    """Plain files in ``folder`` (links are not followed: a page shows only what is there)."""
    return {p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()}


def write_run_report(folder: str | os.PathLike, metrics: dict | None = None) -> Path:
    """(Re)write ``folder/report.html`` from the run's ``metrics.json`` (or ``metrics``
    given); returns its path."""
    from chainrule.report.run_page import run_page

    folder = Path(folder)
    if metrics is None:
        metrics = read_run(folder)
    try:
        page = run_page(metrics, _files(folder), folder.name or str(folder))
    except (TypeError, KeyError, AttributeError, ValueError, IndexError) as e:
        raise ReportError(
            f"cannot make the page of {folder}: its metrics.json is damaged "
            f"({type(e).__name__}: {e})"
        ) from None
    return write_file(folder / REPORT_FILE, page)


def is_report_page(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a page chainrule wrote (its generator tag says so)."""
    try:  # a plain file, not a link, a FIFO or a device
        with open_file(path, follow_symlinks=False) as f:
            head = f.read(4096)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}">'.encode() in head


def write_runs_report(
    folders: list[str | os.PathLike], out: str | os.PathLike, *, force: bool = False
) -> Path:
    """One page comparing the run folders ``folders`` (a leaderboard of every model of
    every run, linking each run's page and model files), written to ``out``. An existing
    ``out`` that chainrule did not write is left alone unless ``force``."""
    from chainrule.report.runs_page import runs_page

    out = Path(out)
    if out.is_symlink():
        raise ReportError(
            f"{out} is a symbolic link; chainrule does not write through links: choose "
            "another file, or remove the link"
        )
    if out.is_dir():
        raise ReportError(f"{out} is a folder; name the page to write, e.g. {out / 'runs.html'}")
    if out.exists() and not force and not is_report_page(out):
        raise ReportError(
            f"{out} exists and is not a page chainrule wrote; choose another file, or "
            "replace it with --force"
        )
    runs = [(Path(f), read_run(f)) for f in folders]
    return write_file(out, runs_page(runs, out.parent))
