"""What every plot shares: a figure without pyplot, saving it, legends and point labels
kept off the data, and time axes in units a person reads (ms, s, min, h)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["label_points", "legend_below", "new_figure", "save", "time_unit"]


def new_figure(figsize):
    """A matplotlib Figure on the Agg canvas (no pyplot, no window, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path) -> Path:
    """Write ``fig`` to ``path`` (its format from the extension, PNG without one) with the
    one safe writer: atomically, its parent folder made, never through a link, checked
    against and added to a run folder's record of chainrule's files."""
    from chainrule._files import atomic_write

    path = Path(path)
    kind = path.suffix.lstrip(".").lower() or "png"
    with atomic_write(path) as f:
        fig.savefig(f, format=kind, dpi=100, bbox_inches="tight")
    return path


def legend_below(ax, ncol: int | None = None) -> None:
    """The legend under the axes, outside them: it never covers a curve or a point."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=ncol or min(len(handles), 3),
        frameon=False,
        fontsize=9,
    )


def time_unit(seconds) -> tuple[float, str]:
    """(divisor, unit name) for a time axis whose largest value is ``seconds``:
    milliseconds under a second, seconds under two minutes, minutes under two hours,
    hours beyond."""
    top = float(np.max(seconds)) if np.size(seconds) else 0.0
    if top < 1.0:
        return 1e-3, "ms"
    if top < 120.0:
        return 1.0, "s"
    if top < 7200.0:
        return 60.0, "min"
    return 3600.0, "h"


def _curve_points(ax) -> np.ndarray:
    """Display coordinates along every line of ``ax`` (vertices and points between)."""
    found = [np.zeros((0, 2))]
    for line in ax.get_lines():
        xy = ax.transData.transform(np.asarray(line.get_xydata(), dtype=np.float64))
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) > 1 and line.get_linestyle() not in ("None", "none", " ", ""):
            t = np.linspace(0.0, 1.0, 40)[:, None, None]
            found.append((xy[:-1] + t * (xy[1:] - xy[:-1])).reshape(-1, 2))
        found.append(xy)
    return np.concatenate(found)


def _hits(box, points: np.ndarray) -> bool:
    if not len(points):
        return False
    inside = (
        (points[:, 0] >= box.x0)
        & (points[:, 0] <= box.x1)
        & (points[:, 1] >= box.y0)
        & (points[:, 1] <= box.y1)
    )
    return bool(inside.any())


# Where a point's label may go (offset points), tried in this order.
_OFFSETS = ((0, 10), (0, -16), (12, 4), (-12, 4), (12, -10), (-12, -10), (0, 22), (0, -28))


def label_points(fig, ax, xs, ys, texts, bold: int | None = None) -> list:
    """Write ``texts[i]`` next to the point ``(xs[i], ys[i])``: the first place around it
    where the label covers no line, no other point and no label already placed (above it
    when none is free). Call it once the axes' limits and scales are final. Returns the
    annotations."""
    renderer = fig.canvas.get_renderer()
    curves = _curve_points(ax)
    centres = ax.transData.transform(np.column_stack([xs, ys]).astype(np.float64))
    placed, notes = [], []

    def put(i, x, y, text, dx, dy):
        ha = "center" if dx == 0 else ("left" if dx > 0 else "right")
        note = ax.annotate(
            text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va="center",
            fontsize=8, fontweight="bold" if i == bold else "normal",
        )  # fmt: skip
        return note, note.get_window_extent(renderer).expanded(1.05, 1.1)

    for i, (x, y, text) in enumerate(zip(xs, ys, texts)):
        others = np.delete(centres, i, axis=0)
        chosen = None
        for dx, dy in _OFFSETS:
            note, box = put(i, x, y, text, dx, dy)
            if not (
                _hits(box, curves) or _hits(box, others) or any(box.overlaps(b) for b in placed)
            ):
                chosen = (note, box)
                break
            note.remove()
        if chosen is None:  # nowhere free: above the point
            chosen = put(i, x, y, text, *_OFFSETS[0])
        notes.append(chosen[0])
        placed.append(chosen[1])
    return notes
