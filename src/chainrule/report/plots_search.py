"""Plots of a hyperparameter search: every trial labeled with its validation accuracy,
the best one marked and named."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chainrule.report._figure import label_points, legend_below, new_figure, save

__all__ = ["plot_search_curve", "plot_search_results"]

BEST_COLOR = "#d62728"


def _rows(results) -> list[dict]:
    results = getattr(results, "results", results)
    if not results:
        raise ValueError("no search results to plot")
    return list(results)


def _values(rows: list[dict], name: str) -> np.ndarray:
    try:
        return np.array([r["params"][name] for r in rows], dtype=np.float64)
    except KeyError:
        raise ValueError(f"search results have no parameter {name!r}") from None


def _percent(v: float) -> str:
    return f"{100 * v:.1f}%"


def plot_search_results(results, path, x: str = "learning_rate", y: str = "reg") -> Path:
    """Validation accuracy of each searched setting over two parameters.

    Parameters
    ----------
    results : list of dict (or an object with ``.results``)
        Rows of a search: ``params`` (dict with keys ``x`` and ``y``), ``train_acc``
        (float or None), ``val_acc``.
    path : where to write the image
    x, y : parameter names for the axes; positive values are drawn on log scales.

    Each point is colored and labeled by its validation accuracy; the best (the first
    of equals, as the search chooses) is ringed in red and named in the legend. A second
    panel shows training accuracy when it was measured.
    """
    rows = _rows(results)
    xs, ys = _values(rows, x), _values(rows, y)
    val = np.array([r["val_acc"] for r in rows], dtype=np.float64)
    best = int(np.argmax(val))
    panels = [("validation accuracy", val)]
    if all(r.get("train_acc") is not None for r in rows):
        train = np.array([r["train_acc"] for r in rows], dtype=np.float64)
        panels.insert(0, ("training accuracy", train))

    fig = new_figure((5.8 * len(panels), 5.0))
    for i, (title, acc) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        sc = ax.scatter(xs, ys, c=acc, s=110, cmap="viridis", zorder=2)
        fig.colorbar(sc, ax=ax)
        ax.scatter(
            xs[best], ys[best], s=330, facecolors="none", edgecolors=BEST_COLOR, linewidths=2,
            zorder=3, label=f"best: {x}={xs[best]:g}, {y}={ys[best]:g} "
            f"(validation {_percent(val[best])})",
        )  # fmt: skip
        if (xs > 0).all():
            ax.set_xscale("log")
        if (ys > 0).all():
            ax.set_yscale("log")
        ax.margins(0.15)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title)
        legend_below(ax, ncol=1)
        label_points(fig, ax, xs, ys, [_percent(a) for a in acc], bold=best)
    return save(fig, path)


def plot_search_curve(results, param: str, path) -> Path:
    """Accuracy of each searched value of one parameter, as a curve.

    Parameters
    ----------
    results : list of dict (or an object with ``.results``)
        Rows of a search: ``params`` (dict with key ``param``), ``train_acc`` (float or
        None), ``val_acc``.
    param : the parameter on the x axis; positive values are drawn on a log scale
    path : where to write the image

    Validation accuracy (each point labeled, where the label covers no curve), and
    training accuracy when it was measured, against the value; the best validation
    value is marked with a star and named in the legend, which sits under the plot.
    """
    rows = _rows(results)
    xs = _values(rows, param)
    order = np.argsort(xs, kind="stable")
    curves = {"validation": np.array([r["val_acc"] for r in rows], dtype=np.float64)}
    if all(r.get("train_acc") is not None for r in rows):
        curves["training"] = np.array([r["train_acc"] for r in rows], dtype=np.float64)

    fig = new_figure((6.5, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    for label, acc in curves.items():
        ax.plot(xs[order], acc[order], marker="o", label=label)
    val = curves["validation"]
    best = int(np.argmax(val))
    ax.plot(
        xs[best], val[best], marker="*", ms=16, color=BEST_COLOR, ls="none", zorder=3,
        label=f"best: {param}={xs[best]:g} (validation {_percent(val[best])})",
    )  # fmt: skip
    if (xs > 0).all():
        ax.set_xscale("log")
    ax.margins(0.1, 0.15)
    ax.set_xlabel(param)
    ax.set_ylabel("accuracy")
    ax.set_title(f"search over {param}")
    ax.grid(alpha=0.3)
    legend_below(ax)
    label_points(fig, ax, xs, val, [_percent(a) for a in val], bold=best)
    return save(fig, path)
