"""Plots for run folders: independent functions ``plot_xxx(..., path)`` that write an image.

matplotlib is imported inside each function and figures are drawn with the Agg canvas
(no pyplot, no window, no global state), so importing this module costs nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from chainrule.report._figure import legend_below, time_unit
from chainrule.report._figure import new_figure as _new_figure
from chainrule.report._figure import save as _save
from chainrule.report.plots_search import plot_search_curve, plot_search_results
from chainrule.report.text import format_seconds

__all__ = [
    "accuracy_time_curve",
    "plot_accuracy_vs_time",
    "plot_confusion_matrix",
    "plot_conv_filters",
    "plot_first_layer_weights",
    "plot_knn_cv",
    "plot_loss_curve",
    "plot_search_curve",
    "plot_search_results",
    "plot_weight_templates",
]


def _label(name) -> str:
    """A class name as plot text: escaped as the terminal shows it (matplotlib's warnings
    about missing glyphs would print its control characters raw), ``$`` drawn as itself
    rather than starting mathematical text."""
    from chainrule._text import shown

    return shown(name).replace("$", r"\$")


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
    classes = [_label(c) for c in classes]
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
    steps = np.arange(1, loss.size + 1)
    ax.plot(steps, loss, lw=0.6, alpha=0.5 if loss.size > 50 else 1.0, label="per iteration")
    if loss.size > 50:
        # A moving average shows the trend through the minibatch noise.
        w = max(5, loss.size // 50)
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, lw=1.5, label=f"mean of {w}")
        legend_below(ax)
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
        legend_below(ax2)
        ax2.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_time_curve(history) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, validation accuracy) after each epoch: the cumulative ``epoch_time``
    (seconds of training including each epoch's accuracy checks) and ``val_acc``.
    ValueError if either is missing or their lengths differ."""
    times = np.asarray(history.get("epoch_time") or [], dtype=np.float64).ravel()
    accs = np.asarray(history.get("val_acc") or [], dtype=np.float64).ravel()
    if times.size == 0 or accs.size == 0:
        raise ValueError("history needs 'epoch_time' and 'val_acc' entries per epoch")
    if times.size != accs.size:
        raise ValueError(
            f"history has {times.size} epoch times but {accs.size} validation accuracies"
        )
    return np.cumsum(times), accs


def plot_accuracy_vs_time(history, path) -> Path:
    """Validation accuracy after each epoch against the training time so far
    (`accuracy_time_curve`): how much accuracy a time budget buys. The time axis is in
    milliseconds, seconds, minutes or hours, whichever reads best; the best epoch is
    marked and named in the legend under the plot. The per-epoch accuracies are the
    `Solver`'s, one view per image (no test-time flips)."""
    seconds, accs = accuracy_time_curve(history)
    scale, unit = time_unit(seconds)
    t = seconds / scale
    fig = _new_figure((6, 4.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(t, 100 * accs, marker="o", label="after each epoch")
    best = int(np.argmax(accs))
    ax.plot(
        t[best], 100 * accs[best], marker="*", ms=15, color="#d62728", ls="none",
        label=f"best: {100 * accs[best]:.2f}% after {format_seconds(seconds[best])} "
        f"(epoch {best + 1})",
    )  # fmt: skip
    ax.set_xlabel(f"training time ({unit}, including validation)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("validation accuracy after each epoch (one view per image)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    legend_below(ax, ncol=2)
    return _save(fig, path)


def plot_confusion_matrix(cm, classes, path, title: str = "confusion matrix") -> Path:
    """Draw a confusion matrix with counts, rows true classes, columns predictions.

    Parameters
    ----------
    cm : int array (C, C), ``cm[i, j]`` samples of class ``i`` predicted as ``j``
        (see :func:`chainrule.report.metrics.confusion_matrix`)
    classes : sequence of C class names
    path : where to write the image
    title : heading; the accuracy ``trace(cm) / sum(cm)`` is appended

    Cell colors are row-normalized (the share of each true class), so small classes are as
    visible as large ones; the numbers are the raw counts.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"a confusion matrix must be square (C, C), got shape {cm.shape}")
    classes = [_label(c) for c in classes]
    n = cm.shape[0]
    if len(classes) != n:
        raise ValueError(f"{len(classes)} class names for a {n}x{n} confusion matrix")
    total = cm.sum()
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    shares = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)

    size = max(4.0, 0.45 * n + 2.0)
    fig = _new_figure((size + 1.0, size))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(cm[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7 if n > 12 else 9,
                        color="white" if shares[i, j] > 0.5 else "black",
                    )
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(classes, rotation=45 if max(map(len, classes)) > 3 else 0, ha="right")
    ax.set_yticklabels(classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = np.trace(cm) / total if total else float("nan")
    ax.set_title(f"{title} (accuracy {acc:.1%})")
    return _save(fig, path)


def plot_first_layer_weights(W, image_shape, path, max_units: int = 100) -> Path:
    """Draw the first layer's weights of a network as images, one per hidden unit.

    Parameters
    ----------
    W : ndarray (D, H) or (D + 1, H)
        First-layer weights, one column per hidden unit, rows in the flattened
        (height, width, channels) order of the input; a trailing bias row is dropped.
    image_shape : tuple (height, width) or (height, width, channels), channels 1 or 3
    path : where to write the image
    max_units : draw at most this many units (the first ones)

    Each unit is rescaled to 0..255 on its own (as the course's ``show_net_weights``), so
    the pattern of every unit is visible whatever its scale.
    """
    W = np.asarray(W, dtype=np.float64)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise ValueError(f"image_shape must be (H, W) or (H, W, 1|3), got {image_shape!r}")
    d = math.prod(shape)
    if W.ndim != 2 or W.shape[0] not in (d, d + 1) or W.shape[1] == 0:
        raise ValueError(
            f"W of shape {W.shape} does not fit images of shape {shape}: expected "
            f"({d}, units) or ({d + 1}, units)"
        )
    if max_units < 1:
        raise ValueError(f"max_units must be positive, got {max_units}")
    w = W[:d, : int(max_units)]
    units = w.shape[1]
    lo = w.min(axis=0)
    span = w.max(axis=0) - lo
    scaled = 255.0 * (w - lo) / np.where(span > 0, span, 1.0)

    cols = math.ceil(math.sqrt(units))
    rows = math.ceil(units / cols)
    h, wd = shape[0], shape[1]
    c = shape[2] if len(shape) == 3 else 1
    # One mosaic with a 1-pixel gap between units keeps this fast for hundreds of units.
    grid = np.full((rows * (h + 1) - 1, cols * (wd + 1) - 1, c), 255.0)
    for u in range(units):
        r, q = divmod(u, cols)
        grid[r * (h + 1) : r * (h + 1) + h, q * (wd + 1) : q * (wd + 1) + wd] = scaled[
            :, u
        ].reshape(h, wd, c)
    img = grid.astype(np.uint8)
    fig = _new_figure((min(12.0, 0.5 * cols + 2), min(12.0, 0.5 * rows + 2)))
    ax = fig.add_subplot(1, 1, 1)
    if c == 1:
        ax.imshow(img[:, :, 0], cmap="gray", interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    ax.set_title(f"first-layer weights ({units} of {W.shape[1]} units)")
    ax.axis("off")
    return _save(fig, path)


def plot_conv_filters(weights, path, title: str = "filters", max_filters: int = 64) -> Path:
    """Draw convolution filters as small images, one per filter (the lecture's templates).

    Parameters
    ----------
    weights : ndarray (F, C, kh, kw), C 1 (gray) or 3 (RGB): a convolution's weight in
        PyTorch's layout
    path : where to write the image
    title : heading; say what the filters are (trained, or fixed as a whitening layer)
    max_filters : draw at most this many filters (the first ones)

    Each filter is rescaled to [0, 1] on its own (its minimum black, its maximum white),
    so the pattern of every filter is visible whatever its scale; a constant filter is
    drawn black.
    """
    W = np.asarray(weights, dtype=np.float64)
    if W.ndim != 4 or W.shape[1] not in (1, 3) or W.shape[0] == 0:
        raise ValueError(
            f"weights must be (F, C, kh, kw) with C 1 or 3 and F >= 1, got shape {W.shape}"
        )
    if max_filters < 1:
        raise ValueError(f"max_filters must be positive, got {max_filters}")
    W = W[: int(max_filters)]
    n, c, kh, kw = W.shape
    flat = W.reshape(n, -1)
    lo = flat.min(axis=1)[:, None, None, None]
    span = flat.max(axis=1)[:, None, None, None] - lo
    scaled = (W - lo) / np.where(span > 0, span, 1.0)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    # One mosaic with a 1-pixel white gap between filters.
    grid = np.ones((rows * (kh + 1) - 1, cols * (kw + 1) - 1, c))
    for f in range(n):
        r, q = divmod(f, cols)
        grid[r * (kh + 1) : r * (kh + 1) + kh, q * (kw + 1) : q * (kw + 1) + kw] = scaled[
            f
        ].transpose(1, 2, 0)
    fig = _new_figure((min(12.0, 0.6 * cols + 2), min(12.0, 0.6 * rows + 2)))
    ax = fig.add_subplot(1, 1, 1)
    if c == 1:
        ax.imshow(grid[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    shown = f" ({n} of {len(np.asarray(weights))})" if n < len(np.asarray(weights)) else ""
    ax.set_title(f"{title}{shown}", fontsize=9)
    ax.axis("off")
    return _save(fig, path)


def plot_knn_cv(results, path, title: str = "k-NN cross-validation") -> Path:
    """Cross-validation accuracy of k-NN against k, as in the course figure.

    Parameters
    ----------
    results : dict ``k -> fold accuracies`` (1-D array-like of fractions in [0, 1]), as
        returned by :func:`chainrule.models.knn_cross_validate`
    path : where to write the image
    title : heading; the best k (highest mean, smallest k on ties) is appended

    Each fold's accuracy is a dot; the line connects the means, with error bars of one
    standard deviation across folds.
    """
    if not isinstance(results, dict) or not results:
        raise ValueError("results must be a non-empty dict k -> fold accuracies")
    ks = sorted(results)
    accs = []
    for k in ks:
        a = np.asarray(results[k], dtype=np.float64).ravel()
        if a.size == 0 or not np.isfinite(a).all():
            raise ValueError(f"results[{k!r}] must hold finite fold accuracies, got {a!r}")
        accs.append(a)
    means = np.array([a.mean() for a in accs])
    stds = np.array([a.std() for a in accs])
    best = min(k for k, m in zip(ks, means) if m >= means.max() - 1e-12)

    fig = _new_figure((6.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for k, a in zip(ks, accs):
        ax.scatter(np.full(a.size, k), a, s=14, color="tab:blue", alpha=0.6)
    ax.errorbar(ks, means, yerr=stds, color="tab:orange", marker="o", capsize=3, label="mean ± std")
    ax.axvline(best, color="gray", ls=":", lw=1)
    if len(ks) > 2 and ks[0] > 0 and ks[-1] / ks[0] >= 20:
        ax.set_xscale("log")
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks], fontsize=8)
        ax.minorticks_off()
    ax.set_xlabel("k")
    ax.set_ylabel("cross-validation accuracy")
    ax.set_title(f"{title} (best k = {best}, {means[ks.index(best)]:.1%})")
    ax.grid(alpha=0.3)
    legend_below(ax)
    return _save(fig, path)
