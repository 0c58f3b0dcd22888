"""One page comparing several run folders: every model of every run in one leaderboard,
each row linking its run's page and its model file."""

from __future__ import annotations

import os
from pathlib import Path

from chainrule.report.html import REPORT_FILE, Cell, acc_cell, attr, document, esc, table, time_cell
from chainrule.report.model_section import settings_text
from chainrule.report.run_page import models_of, title_of

__all__ = ["runs_page"]


def _href(target: Path, base: Path) -> str:
    """``target`` as a link from a page in folder ``base`` (relative where possible)."""
    try:
        rel = os.path.relpath(target.resolve(), base.resolve())
    except ValueError:  # another drive
        return target.resolve().as_uri()
    return Path(rel).as_posix()


def _rows(runs: list[tuple[Path, dict]], base: Path) -> list[tuple[float, int, list]]:
    found = []
    for folder, metrics in runs:
        data = (metrics.get("data") or {}).get("name")
        page = folder / REPORT_FILE
        run_link = f'<a href="{attr(_href(page, base))}">{esc(_href(folder, base))}</a>'
        if metrics.get("status") != "done":
            run_link += f' <span class="muted">({esc(metrics.get("status"))})</span>'
        for name, rec in models_of(metrics).items():
            model_file = rec.get("model_file")
            file_link = (
                f'<a href="{attr(_href(folder / model_file, base))}">{esc(model_file)}</a>'
                if model_file
                else "-"
            )
            val = rec.get("val_accuracy")
            row = [
                Cell(run_link, str(folder), "text"),
                Cell(esc(name), name, "text"),
                Cell(f"<code>{esc(data)}</code>", str(data), "text"),
                acc_cell(val, bar=True),
                acc_cell(rec.get("test_accuracy"), bar=True),
                time_cell(rec.get("fit_time_s")),
                Cell(file_link, model_file, "text"),
                Cell(esc(settings_text(rec)), cls="wrap"),
            ]
            found.append((-(val if val is not None else -1.0), len(found), row))
    return sorted(found, key=lambda t: t[:2])


def _split_of(metrics: dict) -> str:
    """The data and validation split a run measured on, in words."""
    d = metrics.get("data") or {}
    return f"{d.get('name')}, validation {d.get('val_fraction')} seed {d.get('seed')}"


def runs_page(runs: list[tuple[Path, dict]], base: Path) -> str:
    """The page comparing ``runs`` (``(folder, metrics)`` pairs), links relative to the
    folder ``base`` the page is written in."""
    rows = [row for _, _, row in _rows(runs, base)]
    datasets = {_split_of(m) for _, m in runs}
    parts = [f"<h1>{esc(len(runs))} runs compared</h1>"]
    if rows:
        best = rows[0]
        parts.append(
            f'<p class="callout">Best on its validation split: <b>{best[1].content}</b> of run '
            f"{best[0].content}, model file {best[6].content}</p>"
        )
        top = rows[0][1]
        rows[0][1] = Cell(f'{top.content} <span class="badge">best</span>', top.sort, top.cls)
    if len(datasets) > 1:
        parts.append(
            '<p class="status bad">These runs used different data or validation splits ('
            + esc("; ".join(sorted(datasets)))
            + "): their accuracies are not measured on the same images.</p>"
        )
    headers = ["run", "model", "data", "validation acc", "test acc", "fit time", "model file",
               "settings"]  # fmt: skip
    parts.append(table(headers, rows, sortable=True, best=0 if rows else None))
    items = "".join(
        f'<li><a href="{attr(_href(f / REPORT_FILE, base))}">{esc(title_of(m))}</a> '
        f'<span class="muted">{esc(f)} · {esc(m.get("status"))}</span></li>'
        for f, m in runs
    )
    parts.append(f"<h2>Runs</h2><ul>{items}</ul>")
    parts.append("<footer>written by chainrule report</footer>")
    return document(f"{len(runs)} chainrule runs compared", "\n".join(parts))
