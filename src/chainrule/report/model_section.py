"""The section of one model on a run's page: its settings, accuracies, timings and
model file, its plots, per-class accuracy, how its settings were chosen (the search's
trials, k-NN's cross-validation) and the images it got wrong."""

from __future__ import annotations

import math

import numpy as np

from chainrule.report.html import (
    Cell,
    acc_cell,
    attr,
    esc,
    facts,
    figure,
    table,
    tile,
    time_cell,
)
from chainrule.report.text import format_accuracy, format_seconds

__all__ = ["CAPTIONS", "mistakes_grid", "model_section", "per_class_table", "settings_text"]

# What each plot shows, by the end of its file name.
CAPTIONS = {
    "loss.png": "training loss per iteration (and accuracy per epoch)",
    "accuracy_time.png": "validation accuracy after each epoch against training time",
    "confusion.png": "confusion matrix: rows true classes, columns predictions",
    "weights.png": "the learned weights as one template image per class",
    "first_layer.png": "first-layer weights as images, one per hidden unit",
    "filters.png": "first-layer convolution filters",
    "knn_cv.png": "cross-validation accuracy against k",
    "search.png": "the search: validation accuracy of every trial, the best marked",
}
SPLIT_NAMES = {"val": "validation", "test": "test", "train": "training", "all": "all"}
HIDDEN_PARAMS = ("verbose",)


def _number(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def settings_text(record: dict) -> str:
    """``k=3 metric=l2``: the settings that matter as the model's spec describes them,
    else every hyperparameter (progress switches left out)."""
    if isinstance(record.get("settings"), str):
        return record["settings"]
    return all_params(record.get("params"))


def all_params(params: dict | None) -> str:
    if not isinstance(params, dict):
        return ""
    return " ".join(f"{k}={_number(v)}" for k, v in params.items() if k not in HIDDEN_PARAMS)


def _link(name: str | None) -> str:
    return "-" if not name else f'<a href="{attr(name)}">{esc(name)}</a>'


# -- a model ------------------------------------------------------------------------------


def _predict_fact(record: dict) -> str:
    seconds = record.get("predict_time_s")
    if seconds is None:
        return "-"
    n = record.get("predict_n")
    split = "test" if record.get("test_accuracy") is not None else "validation"
    text = f"{format_seconds(seconds)} for the {split} images"
    if n:
        text += f" ({n}, {format_seconds(seconds / n)} per image)"
    return esc(text)


def _model_facts(record: dict) -> str:
    n_train = record.get("train_accuracy_n")
    train = format_accuracy(record.get("train_accuracy"))
    if n_train:
        train += f" (on {n_train} training images)"
    items = [("validation accuracy", f"<b>{esc(format_accuracy(record.get('val_accuracy')))}</b>")]
    if record.get("test_accuracy") is not None:
        items.append(("test accuracy", f"<b>{esc(format_accuracy(record['test_accuracy']))}</b>"))
    items += [
        ("training accuracy", esc(train)),
        ("fit time", esc(format_seconds(record.get("fit_time_s")))),
        ("prediction time", _predict_fact(record)),
        ("model file", _link(record.get("model_file"))),
        ("settings", f"<code>{esc(settings_text(record))}</code>"),
    ]
    every = all_params(record.get("params"))
    return facts(items) + (
        f"<details><summary>every hyperparameter</summary><p><code>{esc(every)}</code></p>"
        "</details>"
        if every
        else ""
    )


# Plots shown with the tables of the tuning, not among the model's other plots.
TUNING_PLOTS = ("search.png", "knn_cv.png")


def _figure_of(name: str, files: set[str]) -> str:
    caption = next((v for k, v in CAPTIONS.items() if name.endswith(k)), name)
    wide = name.endswith("search.png")
    return figure(name, caption, cls="wide" if wide else None) if name in files else ""


def _plots(record: dict, files: set[str]) -> str:
    names = [n for n in record.get("plots") or [] if not n.endswith(TUNING_PLOTS)]
    order = ("loss.png", "accuracy_time.png", "confusion.png")
    names.sort(key=lambda n: next((i for i, k in enumerate(order) if n.endswith(k)), len(order)))
    shown = "".join(_figure_of(n, files) for n in names)
    errors = record.get("plot_errors") or {}
    notes = "".join(
        f'<p class="muted">{esc(k)} could not be drawn: {esc(v)}</p>' for k, v in errors.items()
    )
    return (f'<div class="plots">{shown}</div>' if shown else "") + notes


def _tuning_plot(record: dict, files: set[str], suffix: str) -> str:
    found = [n for n in record.get("plots") or [] if n.endswith(suffix)]
    return "".join(_figure_of(n, files) for n in found)


def _per_class_rows(classes: list[str], matrices: dict[str, list]) -> list[list]:
    rows = []
    for c, name in enumerate(classes):
        row: list = [name]
        for cm in matrices.values():
            m = np.asarray(cm)
            total = int(m[c].sum()) if m.ndim == 2 and c < len(m) else 0
            acc = float(m[c, c]) / total if total else None
            note = f' <span class="muted">({int(m[c, c])}/{total})</span>' if total else ""
            row.append(acc_cell(acc, bar=True, note=note))
        rows.append(row)
    return rows


def per_class_table(classes: list[str], matrices: dict[str, list]) -> str:
    """Accuracy of each class (rows) in each confusion matrix (columns, by heading)."""
    matrices = {k: v for k, v in matrices.items() if v is not None}
    if not matrices or not classes:
        return ""
    rows = _per_class_rows(classes, matrices)
    return table(["class", *matrices], rows, sortable=True)


def _search_table(record: dict) -> str:
    search = record.get("search")
    if not isinstance(search, dict) or not search.get("results"):
        return ""
    rows_in = [r for r in search["results"] if isinstance(r, dict)]
    names = list(search.get("grid") or rows_in[0].get("params") or {})
    order = sorted(range(len(rows_in)), key=lambda i: (-(rows_in[i].get("val_acc") or 0), i))
    best = search.get("best_params")
    rows, marked = [], None
    for rank, i in enumerate(order):
        r = rows_in[i]
        if marked is None and r.get("params") == best:
            marked = rank
        params = [Cell(esc(_number(r["params"].get(k))), r["params"].get(k)) for k in names]
        rows.append(
            [Cell(str(i + 1), i + 1), *params, acc_cell(r.get("train_acc")),
             acc_cell(r.get("val_acc"), bar=True), time_cell(r.get("fit_time"))]
        )  # fmt: skip
    if marked is not None:
        rows[marked][0] = Cell(
            f'{rows[marked][0].content} <span class="badge">best</span>', rows[marked][0].sort
        )
    took = search.get("time_s")
    head = (
        f"<h3>Search: {len(rows)} trials"
        + (f" in {esc(format_seconds(took))}" if took is not None else "")
        + "</h3>"
        '<p class="muted">each trial trained on the training split and scored on the '
        "validation split; click a heading to sort</p>"
    )
    headers = ["trial", *names, "training acc", "validation acc", "fit time"]
    return head + table(headers, rows, sortable=True, best=marked)


def _knn_table(record: dict) -> str:
    cv = record.get("knn_cv")
    if not isinstance(cv, dict) or not isinstance(cv.get("results"), dict):
        return ""
    chosen = (record.get("params") or {}).get("k")
    rows, best = [], None
    for i, (k, folds) in enumerate(sorted(cv["results"].items(), key=lambda kv: int(kv[0]))):
        a = np.asarray(folds, dtype=np.float64)
        if str(k) == str(chosen):
            best = i
        std = Cell(esc(f"{100 * a.std():.2f}%"), float(a.std()))
        rows.append(
            [
                Cell(esc(k), int(k)),
                acc_cell(float(a.mean()), bar=True),
                std,
                Cell(esc(len(a)), len(a)),
            ]
        )
    head = (
        f"<h3>Choosing k: {cv.get('folds', '?')}-fold cross-validation on "
        f"{esc(cv.get('n', '?'))} training images</h3>"
    )
    return head + table(["k", "mean accuracy", "std", "folds"], rows, sortable=True, best=best)


def percent(p: float) -> str:
    """A probability in percent, whole unless rounding would say 100% of what is not
    certain (``99.6%``)."""
    for digits in (0, 1, 2):
        text = f"{100 * p:.{digits}f}"
        if p >= 1.0 or float(text) < 100.0:
            return f"{text}%"
    return ">99.99%"


def mistakes_grid(record: dict | None, what: str) -> str:
    """The misclassified images of a mistakes record, as a grid of tiles with captions."""
    if not isinstance(record, dict):
        return ""
    split = SPLIT_NAMES.get(record.get("split"), record.get("split"))
    total, n = record.get("total", 0), record.get("n", 0)
    head = f"<h3>Misclassified {esc(split)} images of {esc(what)}: {total} of {n}</h3>"
    items = record.get("items") or []
    if not items:
        return head + '<p class="muted">none: every image was classified correctly</p>'
    note = (
        f"the {len(items)} most confident mistakes"
        if len(items) < total
        else "most confident first"
    )
    if record.get("scored"):
        note += f" (of {record['scored']} mistakes drawn at random)"
    cards = []
    for k, item in enumerate(items):
        p = item.get("probability")
        prob = "" if p is None or (isinstance(p, float) and math.isnan(p)) else f" ({percent(p)})"
        alt = f"true {item['true']}, predicted {item['pred']}"
        file = f'<div class="file">{esc(item["file"])}</div>' if item.get("file") else ""
        cards.append(
            f'<div class="mistake">{tile(record["sheet"], record["layout"], k, alt, 96)}'
            f'<div class="truth">true: {esc(item["true"])}</div>'
            f'<div class="pred">predicted: {esc(item["pred"])}{esc(prob)}</div>{file}</div>'
        )
    return head + f'<p class="muted">{esc(note)}</p><div class="grid">{"".join(cards)}</div>'


def model_section(
    name: str, record: dict, classes: list[str], files: set[str], *, per_class: bool
) -> str:
    """The section of one model: facts, plots, per-class accuracy, tuning, mistakes."""
    out = [f'<section id="model-{attr(name)}"><h2>Model: {esc(name)}</h2>', _model_facts(record)]
    out.append(_plots(record, files))
    if per_class:
        matrices = {
            "validation": record.get("confusion_matrix_val"),
            "test": record.get("confusion_matrix_test"),
        }
        found = per_class_table(classes, matrices)
        out.append("<h3>Per-class accuracy</h3>" + found if found else "")
    out.append(_search_table(record) + _tuning_plot(record, files, "search.png"))
    out.append(_knn_table(record) + _tuning_plot(record, files, "knn_cv.png"))
    mistakes = record.get("mistakes")
    if isinstance(mistakes, dict) and (mistakes.get("sheet") in files or not mistakes.get("items")):
        out.append(mistakes_grid(mistakes, name))
    out.append("</section>")
    return "\n".join(x for x in out if x)
