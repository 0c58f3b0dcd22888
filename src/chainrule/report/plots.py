"""Plots for run folders: independent functions ``plot_xxx(..., path)`` that write an image.

matplotlib is imported inside each function and figures are drawn with the Agg canvas
(no pyplot, no window, no global state), so importing this module costs nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_weight_templates(W, image_shape, classes, path) -> Path:
    """Draw a linear classifier's weights as one template image per class.

    Parameters
    ----------
    W : ndarray (D, C) or (D + 1, C)
        Weights with one column per class, rows in the flattened (H, W, channels) order of
        the features; a trailing bias row (the bias trick) is dropped.
    image_shape : tuple (H, W) or (H, W, channels), channels 1 or 3
    classes : sequence of C class names
    path : where to write the image (PNG by its extension)

    All templates are rescaled together to 0..255 (as in the course notebooks), so their
    brightness is comparable across classes.
    """
    W = np.asarray(W, dtype=np.float64)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise ValueError(f"image_shape must be (H, W) or (H, W, 1|3), got {image_shape!r}")
    d = math.prod(shape)
    if W.ndim != 2 or W.shape[0] not in (d, d + 1):
        raise ValueError(
            f"W of shape {W.shape} does not fit images of shape {shape}: expected "
            f"({d}, C) or ({d + 1}, C) with a bias row"
        )
    classes = [str(c) for c in classes]
    n_classes = W.shape[1]
    if len(classes) != n_classes:
        raise ValueError(f"{len(classes)} class names for {n_classes} columns of W")
    w = W[:d]
    lo, hi = w.min(), w.max()
    scaled = 255.0 * (w - lo) / (hi - lo) if hi > lo else np.zeros_like(w)

    cols = min(n_classes, 10)
    rows = math.ceil(n_classes / cols)
    fig = _new_figure((1.6 * cols, 1.8 * rows))
    for i in range(n_classes):
        ax = fig.add_subplot(rows, cols, i + 1)
        img = scaled[:, i].reshape(shape).astype(np.uint8)
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        ax.set_title(classes[i], fontsize=9)
        ax.axis("off")
    return _save(fig, path)


def plot_loss_curve(history, path) -> Path:
    """Plot the training loss per iteration (and accuracy per epoch when available).

    Parameters
    ----------
    history : sequence of float, or dict
        Loss per iteration; or a dict with ``"loss"`` (per iteration) and optionally
        ``"train_acc"`` / ``"val_acc"`` (per epoch), which adds an accuracy panel.
    path : where to write the image
    """
    if isinstance(history, dict):
        if "loss" not in history:
            raise ValueError("history dict needs a 'loss' entry (loss per iteration)")
        loss = np.asarray(history["loss"], dtype=np.float64).ravel()
        accs = {k: history[k] for k in ("train_acc", "val_acc") if len(history.get(k) or []) > 0}
    else:
        loss = np.asarray(history, dtype=np.float64).ravel()
        accs = {}
    if loss.size == 0:
        raise ValueError("no loss values to plot")

    fig = _new_figure((10 if accs else 6, 4))
    ax = fig.add_subplot(1, 2 if accs else 1, 1)
    ax.plot(np.arange(1, loss.size + 1), loss, lw=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    ax.grid(alpha=0.3)
    if accs:
        ax2 = fig.add_subplot(1, 2, 2)
        for name, values in accs.items():
            values = np.asarray(values, dtype=np.float64)
            ax2.plot(np.arange(1, values.size + 1), values, marker="o", label=name)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("accuracy")
        ax2.set_title("accuracy")
        ax2.legend()
        ax2.grid(alpha=0.3)
    return _save(fig, path)


def plot_search_results(results, path, x: str = "learning_rate", y: str = "reg") -> Path:
    """Accuracy of each searched setting as a colored scatter over two parameters.

    Parameters
    ----------
    results : list of dict (or an object with ``.results``)
        Rows of a search: ``params`` (dict with keys ``x`` and ``y``), ``train_acc``
        (float or None), ``val_acc``.
    path : where to write the image
    x, y : parameter names for the axes; positive values are drawn on log scales.

    One panel for validation accuracy, and one for training accuracy when it was measured.
    """
    results = getattr(results, "results", results)
    if not results:
        raise ValueError("no search results to plot")
    try:
        xs = np.array([r["params"][x] for r in results], dtype=np.float64)
        ys = np.array([r["params"][y] for r in results], dtype=np.float64)
    except KeyError as e:
        raise ValueError(f"search results have no parameter {e.args[0]!r}") from None
    panels = [("validation accuracy", [r["val_acc"] for r in results])]
    if all(r.get("train_acc") is not None for r in results):
        panels.insert(0, ("training accuracy", [r["train_acc"] for r in results]))

    fig = _new_figure((5.5 * len(panels), 4.5))
    for i, (title, acc) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        sc = ax.scatter(xs, ys, c=np.asarray(acc, dtype=np.float64), s=100, cmap="viridis")
        fig.colorbar(sc, ax=ax)
        if (xs > 0).all():
            ax.set_xscale("log")
        if (ys > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title)
    return _save(fig, path)
