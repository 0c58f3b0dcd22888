"""``chainrule report RUN_DIR [RUN_DIR ...]``: write the page of a run folder, or one
page comparing several.

With one run folder, its ``report.html`` is written again from its ``metrics.json``,
while the folder is held as a run holds it: no run is writing into it (the folder's lock
is taken), and the page replaces only a page chainrule wrote and goes into the folder's
record of chainrule's files (``--force`` of a later run clears it). With several (or with
``--out``), one page (``--out``, default ``runs.html``) puts every model of every run in a
leaderboard, linking each run's page and model file; it is never written through a
link, and replaces only a page chainrule wrote unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path

from chainrule._text import escaped
from chainrule.cli import CommandError

DEFAULT_OUT = "runs.html"


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders")
    parser.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help=f"the page comparing the runs (default {DEFAULT_OUT} with several run folders)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace --out even when it is not a page chainrule wrote",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="accepted as by every command (nothing to hide)"
    )


def _one(run: str) -> Path:
    from chainrule.report.lock import RunFolderBusy
    from chainrule.report.pages import read_run, write_run_report
    from chainrule.report.run import RunFolder, RunFolderError

    read_run(run)  # a folder that is not a run is refused before it is held
    try:
        # Held as a run holds it: locked, and its record of chainrule's files open, so
        # that the page is written only over chainrule's own page, and recorded.
        with RunFolder.start(run, resume=True) as folder:
            metrics = read_run(folder.path)
            if metrics.get("status") == "running":  # yet nobody holds its lock: killed
                metrics["status"] = "interrupted"
            return write_run_report(folder.path, metrics)
    except RunFolderBusy as e:
        raise CommandError(f"{e}; its page is written when the run ends") from None
    except RunFolderError as e:
        raise CommandError(str(e)) from None


def run(args) -> int:
    from chainrule.report.pages import ReportError, write_runs_report

    try:
        if len(args.runs) == 1 and args.out is None:
            path = _one(args.runs[0])
        else:
            out = args.out or DEFAULT_OUT
            path = write_runs_report(args.runs, out, force=args.force)
    except ReportError as e:
        raise CommandError(str(e)) from None
    print(f"written: {escaped(path)}")
    return 0
