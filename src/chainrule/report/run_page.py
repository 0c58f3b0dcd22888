"""The page of a run folder (``report.html``), made from its ``metrics.json`` alone.

A training run's page shows its result, the data (with sample images of each class),
the model (`chainrule.report.model_section`) and what ``chainrule eval`` measured since;
a comparison's page puts a leaderboard naming the best model first, then the per-class
accuracy of every model and a section per model.
"""

from __future__ import annotations

from chainrule.report.html import (
    Cell,
    acc_cell,
    attr,
    document,
    esc,
    facts,
    table,
    tile,
    time_cell,
)
from chainrule.report.model_section import (
    SPLIT_NAMES,
    mistakes_grid,
    model_section,
    per_class_table,
    settings_text,
)
from chainrule.report.text import format_accuracy, format_seconds

__all__ = ["models_of", "run_page", "title_of"]


def models_of(metrics: dict) -> dict[str, dict]:
    """The model records of a run: ``{name: record}`` (one for a training run)."""
    if metrics.get("command") == "compare":
        models = metrics.get("models")
        return (
            {str(k): v for k, v in models.items() if isinstance(v, dict)}
            if isinstance(models, dict)
            else {}
        )
    name = metrics.get("model") or (metrics.get("args") or {}).get("model")
    return {str(name): metrics} if name else {}


# -- the head of the page -------------------------------------------------------------------


def _title(metrics: dict) -> str:
    data = (metrics.get("data") or {}).get("name") or "?"
    if metrics.get("command") == "compare":
        return f"chainrule compare on {data}"
    model = metrics.get("model") or (metrics.get("args") or {}).get("model")
    return f"chainrule train {model} on {data}"


def _head(metrics: dict, folder_name: str) -> str:
    env = metrics.get("environment") or {}
    status = metrics.get("status") or "unknown"
    when = metrics.get("finished") or env.get("started") or ""
    parts = [f"<h1>{esc(_title(metrics))}</h1>"]
    line = f"run folder <code>{esc(folder_name)}</code> · status <b>{esc(status)}</b>"
    if when:
        line += f" · {esc(when)}"
    if metrics.get("total_time_s") is not None:
        line += f" · total {esc(format_seconds(metrics['total_time_s']))}"
    parts.append(f'<p class="muted">{line}</p>')
    if env.get("command_line"):
        parts.append(f'<p class="muted">command: <code>{esc(env["command_line"])}</code></p>')
    if status != "done":
        why = f": {esc(metrics['error'])}" if metrics.get("error") else ""
        parts.append(
            f'<p class="status bad">This run is <b>{esc(status)}</b>{why}; the page shows '
            "what it recorded.</p>"
        )
    return "\n".join(parts)


# -- data ---------------------------------------------------------------------------------


def _data_section(metrics: dict, files: set[str]) -> str:
    data = metrics.get("data") or {}
    classes = [str(c) for c in data.get("classes") or []]
    shape = data.get("image_shape") or []
    sizes = [f"{data.get('n_train', 0)} training", f"{data.get('n_val', 0)} validation"]
    if data.get("n_test"):
        sizes.append(f"{data['n_test']} test")
    shown = ", ".join(classes[:30]) + (f" ... ({len(classes)} in all)" if len(classes) > 30 else "")
    items = [
        ("source", f"<code>{esc(data.get('name'))}</code>"),
        ("images", esc(" x ".join(str(s) for s in shape)) + " (height x width x channels)"),
        ("split", esc(", ".join(sizes)) + " images"),
        (
            "validation",
            esc(f"{data.get('val_fraction')} of the training images, seed {data.get('seed')}"),
        ),
        ("classes", f"{len(classes)}: {esc(shown)}"),
    ]
    out = ['<section id="data"><h2>Data</h2>', facts(items)]
    samples = metrics.get("samples")
    if isinstance(samples, dict) and samples.get("sheet") in files:
        out.append(_samples_table(samples, classes))
    out.append("</section>")
    return "\n".join(out)


def _samples_table(samples: dict, classes: list[str]) -> str:
    counts = samples.get("counts") or {}
    splits = [s for s in ("train", "val", "test") if s in counts]
    layout, sheet = samples["layout"], samples["sheet"]
    columns = layout["columns"]
    rows = []
    for c, n_shown in enumerate(samples.get("per_class") or []):
        tiles = "".join(
            tile(sheet, layout, c * columns + k, f"a training image of class {classes[c]}", 48)
            for k in range(n_shown)
        )
        rows.append(
            [classes[c]]
            + [Cell(f'<div class="tilebox">{tiles or "no training images"}</div>', cls="tiles")]
            + [Cell(esc(counts[s][c]), counts[s][c]) for s in splits]
        )
    headers = ["class", "samples", *(f"{SPLIT_NAMES[s]} images" for s in splits)]
    note = ""
    if samples.get("classes_shown", len(classes)) < len(classes):
        note = f'<p class="muted">the first {samples["classes_shown"]} classes are shown</p>'
    return table(headers, rows, cls="samples") + note


# -- a comparison's leaderboard -----------------------------------------------------------


def _ranked(models: dict[str, dict]) -> list[tuple[str, dict]]:
    """Best validation accuracy first (then test accuracy, then the order run)."""

    def key(item):
        i, (_, r) = item
        val, test = r.get("val_accuracy"), r.get("test_accuracy")
        return (-(val if val is not None else -1.0), -(test if test is not None else -1.0), i)

    return [kv for _, kv in sorted(enumerate(models.items()), key=key)]


def _leaderboard(models: dict[str, dict]) -> str:
    ranked = _ranked(models)
    if not ranked:
        return ""
    tested = any(r.get("test_accuracy") is not None for _, r in ranked)
    rows = []
    for rank, (name, r) in enumerate(ranked, 1):
        label = f'<a href="#model-{attr(name)}">{esc(name)}</a>'
        if rank == 1:
            label += ' <span class="badge">best</span>'
        rows.append([
            Cell(str(rank), rank), Cell(label, name, "text"),
            acc_cell(r.get("val_accuracy"), bar=True), acc_cell(r.get("test_accuracy"), bar=True),
            time_cell(r.get("fit_time_s")), time_cell(r.get("predict_time_s")),
            Cell(_file_link(r.get("model_file")), r.get("model_file"), "text"),
            Cell(esc(settings_text(r)), cls="wrap"),
        ])  # fmt: skip
    name, best = ranked[0]
    callout = (
        f'<p class="callout">Best on the validation split: <b>{esc(name)}</b> '
        f"({esc(format_accuracy(best.get('val_accuracy')))}"
        + (
            f", test {esc(format_accuracy(best['test_accuracy']))}"
            if best.get("test_accuracy") is not None
            else ""
        )
        + f"), model file {_file_link(best.get('model_file'))}</p>"
    )
    headers = [
        "rank",
        "model",
        "validation acc",
        "test acc",
        "fit time",
        "predict time",
        "model file",
        "settings",
    ]
    if not tested:  # no test split: no column of dashes
        headers.remove("test acc")
        rows = [row[:3] + row[4:] for row in rows]
    return (
        '<section id="leaderboard"><h2>Leaderboard</h2>' + callout
        + table(headers, rows, sortable=True, best=0) + "</section>"
    )  # fmt: skip


def _file_link(name: str | None) -> str:
    return "-" if not name else f'<a href="{attr(name)}">{esc(name)}</a>'


def _compare_per_class(models: dict[str, dict], classes: list[str]) -> str:
    out = ['<section id="per-class"><h2>Per-class accuracy</h2>']
    for split, key in (("validation", "confusion_matrix_val"), ("test", "confusion_matrix_test")):
        matrices = {name: r.get(key) for name, r in models.items() if r.get(key) is not None}
        if matrices:
            out.append(f"<h3>{split} images</h3>" + per_class_table(classes, matrices))
    out.append("</section>")
    return "\n".join(out)


# -- evaluations and environment ----------------------------------------------------------


def _evaluation(e: dict, classes: list[str], files: set[str]) -> str:
    split = SPLIT_NAMES.get(e.get("split"), e.get("split"))
    count = f"{esc(e.get('correct'))} of {esc(e.get('n'))}"
    items = [
        ("model", f"{esc(e.get('model'))} ({_file_link(e.get('model_file'))})"),
        ("data", f"<code>{esc(e.get('data'))}</code>, {esc(split)} ({esc(e.get('n'))} images)"),
        ("accuracy", f"<b>{esc(format_accuracy(e.get('accuracy')))}</b> ({count})"),
        ("prediction time", esc(format_seconds(e.get("predict_time_s")))),
        ("evaluated", esc(e.get("time") or "")),
    ]
    names = [str(c) for c in e.get("classes") or classes]
    out = [f"<h3>{esc(e.get('model'))} on {esc(e.get('data'))} ({esc(split)})</h3>", facts(items)]
    out.append(per_class_table(names, {"accuracy": e.get("confusion_matrix")}))
    mistakes = e.get("mistakes")
    if isinstance(mistakes, dict) and (mistakes.get("sheet") in files or not mistakes.get("items")):
        out.append(mistakes_grid(mistakes, f"{e.get('model')} on {e.get('data')}"))
    return "\n".join(out)


def _evaluations(metrics: dict, classes: list[str], files: set[str]) -> str:
    found = [e for e in metrics.get("evaluations") or [] if isinstance(e, dict)]
    if not found:
        return ""
    body = "\n".join(_evaluation(e, classes, files) for e in found)
    return f'<section id="evaluations"><h2>Evaluations (chainrule eval)</h2>{body}</section>'


def _environment(metrics: dict) -> str:
    env = metrics.get("environment")
    if not isinstance(env, dict):
        return ""
    blas = env.get("blas") or []
    blas_text = "; ".join(
        f"{b.get('internal_api')} {b.get('version') or ''}".strip()
        + f", {b.get('num_threads')} threads"
        for b in blas
        if isinstance(b, dict)
    )
    items = [
        ("chainrule", esc(env.get("chainrule"))),
        ("Python, NumPy", esc(f"{env.get('python')}, {env.get('numpy')}")),
        ("BLAS", esc(blas_text or "-")),
        ("machine", esc(f"{env.get('platform')} ({env.get('cpu_count')} CPUs)")),
        ("started", esc(env.get("started"))),
    ]
    return (
        '<section id="environment"><details><summary>Environment</summary>'
        + facts(items) + "</details></section>"
    )  # fmt: skip


# -- the page -------------------------------------------------------------------------------


def _toc(links: list[tuple[str, str]]) -> str:
    return (
        '<nav class="toc">'
        + "".join(f'<a href="#{attr(i)}">{esc(t)}</a>' for i, t in links)
        + "</nav>"
    )


def run_page(metrics: dict, files: set[str], folder_name: str) -> str:
    """The HTML of a run folder's page: ``metrics`` its ``metrics.json``, ``files`` the
    names of the files in it (pictures not there are left out), ``folder_name`` how
    the page names the folder."""
    classes = [str(c) for c in (metrics.get("data") or {}).get("classes") or []]
    models = models_of(metrics)
    compare = metrics.get("command") == "compare"
    sections, links = [], []
    if compare:
        sections.append(_leaderboard(models))
        links.append(("leaderboard", "leaderboard"))
    sections.append(_data_section(metrics, files))
    links.append(("data", "data"))
    if compare and models:
        sections.append(_compare_per_class(models, classes))
        links.append(("per-class", "per-class accuracy"))
    for name, record in _ranked(models) if compare else models.items():
        sections.append(model_section(name, record, classes, files, per_class=not compare))
        links.append((f"model-{name}", name))
    evaluations = _evaluations(metrics, classes, files)
    if evaluations:
        sections.append(evaluations)
        links.append(("evaluations", "evaluations"))
    sections.append(_environment(metrics))
    body = "\n".join([_head(metrics, folder_name), _toc(links), *sections, _footer()])
    return document(_title(metrics), body)


def _footer() -> str:
    return (
        "<footer>written by chainrule; <code>chainrule report RUN_DIR</code> writes it "
        "again from metrics.json</footer>"
    )


def title_of(metrics: dict) -> str:
    """The page's title: the command, model and data of the run."""
    return _title(metrics)
