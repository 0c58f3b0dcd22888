"""Writing the report pages: ``report.html`` in a run folder, and one page comparing
several run folders.

`write_file` is the one function through which the pages and their pictures reach the
disk (atomically: the old file or the complete new one, never half of it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from chainrule._files import atomic_write
from chainrule.report.html import GENERATOR, REPORT_FILE

__all__ = [
    "REPORT_FILE",  # from chainrule.report.html
    "ReportError",
    "is_report_page",
    "read_run",
    "write_file",
    "write_run_report",
    "write_runs_report",
]

METRICS_FILE = "metrics.json"
_MAX_METRICS_BYTES = 256 * 1024 * 1024  # a metrics.json larger than this is not chainrule's


class ReportError(ValueError):
    """A folder or file a page cannot be made from or written to; one line for the user."""


def write_file(path: str | os.PathLike, content: bytes | str) -> Path:
    """Write ``content`` (text as UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path


def read_run(folder: str | os.PathLike) -> dict:
    """The ``metrics.json`` of a chainrule run folder; `ReportError` for a folder that is
    not one (missing, no metrics, damaged, or not written by ``train``/``compare``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder} is not a folder")
    path = folder / METRICS_FILE
    if not path.is_file():
        raise ReportError(f"{folder} is not a run folder: it has no {METRICS_FILE}")
    if path.stat().st_size > _MAX_METRICS_BYTES:
        raise ReportError(f"{path} is too large to be a run's metrics")
    try:
        with open(path, encoding="utf-8") as f:
            metrics = json.load(f)
    except (OSError, ValueError) as e:
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
    try:
        with open(path, "rb") as f:
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
    if out.is_dir():
        raise ReportError(f"{out} is a folder; name the page to write, e.g. {out / 'runs.html'}")
    if out.is_symlink() or (out.exists() and not force and not is_report_page(out)):
        raise ReportError(
            f"{out} exists and is not a page chainrule wrote; choose another file, or "
            "replace it with --force"
        )
    runs = [(Path(f), read_run(f)) for f in folders]
    return write_file(out, runs_page(runs, out.parent))
