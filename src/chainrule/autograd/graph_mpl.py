"""A computational graph drawn with matplotlib: the drawing when Graphviz is missing.

The same picture as the DOT text (values in green on the edges, gradients in red below
them, a fork's total gradient under its node) on the left-to-right layout of the
stepping page. matplotlib is imported here only, when a drawing is asked for.
"""

from __future__ import annotations

import os

from chainrule._files import atomic_write
from chainrule.autograd.graph_layout import layout
from chainrule.autograd.graph_view import GraphView, summary

__all__ = ["draw_with_matplotlib"]

VALUE_COLOR = "#2e7d32"
GRAD_COLOR = "#c62828"
_COL, _ROW = 2.3, 1.25  # inches between columns, rows
_DPI = 110
_MAX_PIXELS = 30000  # a side of the picture (matplotlib's Agg stops at 65536)


def _node_box(kind: str, label: str) -> tuple[float, float]:
    """Width and height (inches) of a node with this label."""
    if kind == "op" and len(label) <= 3:
        return 0.5, 0.5
    return max(0.6, 0.11 * len(label) + 0.25), 0.42


def _draw_nodes(ax, view: GraphView, pos: list[tuple[float, float]]) -> None:
    from matplotlib.patches import Circle, FancyBboxPatch

    for i, node in enumerate(view.nodes):
        x, y = pos[i]
        w, h = _node_box(node.kind, node.label)
        if node.kind == "op" and w == h:
            ax.add_patch(Circle((x, y), w / 2, fc="white", ec="#333", lw=1.2, zorder=3))
        elif node.kind != "const":
            style = "round,pad=0.02,rounding_size=0.18" if node.kind == "op" else "square,pad=0.02"
            fc = "#eef3fb" if node.kind == "leaf" else "white"
            ax.add_patch(
                FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=style, fc=fc, ec="#333",
                               lw=1.2, zorder=3)
            )  # fmt: skip
        color = "#666" if node.kind == "const" else "#111"
        ax.text(x, y, node.label, ha="center", va="center", fontsize=10, color=color, zorder=4)
        uses = view.uses_of(i)
        if len(uses) > 1 and node.grad is not None:
            ax.text(x, y - h / 2 - 0.08, summary(node.grad), ha="center", va="top",
                    fontsize=9, color=GRAD_COLOR, zorder=4)  # fmt: skip


def _draw_edges(ax, view: GraphView, pos, out_pos) -> None:
    from matplotlib.patches import FancyArrowPatch

    halo = {"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85}
    for e in view.edges:
        sx, sy = pos[e.source]
        sw, _ = _node_box(view.nodes[e.source].kind, view.nodes[e.source].label)
        if e.target is None:
            tx, ty, tw = out_pos[0] - 0.35, out_pos[1], 0.0
        else:
            tx, ty = pos[e.target]
            tw, _ = _node_box(view.nodes[e.target].kind, view.nodes[e.target].label)
        start, end = (sx + sw / 2, sy), (tx - tw / 2, ty)
        ax.add_patch(
            FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="#777",
                            lw=1.1, ls="--" if e.dashed else "-", zorder=2)
        )  # fmt: skip
        if e.dashed:
            continue
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        ax.text(mx, my + 0.06, summary(e.value), ha="center", va="bottom", fontsize=9,
                color=VALUE_COLOR, bbox=halo, zorder=5)  # fmt: skip
        if e.grad is not None:
            ax.text(mx, my - 0.06, summary(e.grad), ha="center", va="top", fontsize=9,
                    color=GRAD_COLOR, bbox=halo, zorder=5)  # fmt: skip


def draw_with_matplotlib(view: GraphView, path: str | os.PathLike, fmt: str) -> None:
    """Draw ``view`` into ``path`` as ``fmt`` (``"svg"``, ``"png"`` or ``"pdf"``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lay = layout(view)
    if lay.columns * _COL * _DPI > _MAX_PIXELS or lay.rows * _ROW * _DPI > _MAX_PIXELS:
        raise ValueError(
            f"the graph ({len(view.nodes)} nodes in {lay.columns} columns) is too large to "
            "draw with matplotlib; install Graphviz (its dot program draws it), or write a "
            ".dot file or an .html page"
        )
    pos = [(c * _COL, -r * _ROW) for c, r in zip(lay.column, lay.row)]
    out_pos = (lay.output_column * _COL, -lay.output_row * _ROW)
    width = max(3.0, (lay.columns - 1) * _COL + 1.6)
    height = max(1.6, (lay.rows - 1) * _ROW + 1.4)
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.8, width - 0.8)
    ax.set_ylim(-(height - 0.7), 0.7)
    ax.set_aspect("equal")
    ax.axis("off")
    _draw_edges(ax, view, pos, out_pos)
    _draw_nodes(ax, view, pos)
    ax.text(out_pos[0] - 0.3, out_pos[1], view.output_name, ha="left", va="center",
            fontsize=11, fontweight="bold")  # fmt: skip
    # atomically, never through a link at ``path``, no half drawing left on a failure
    with atomic_write(path) as f:
        fig.savefig(f, format=fmt, dpi=_DPI)
