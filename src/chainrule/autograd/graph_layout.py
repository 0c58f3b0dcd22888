"""Where each node of a `GraphView` goes in a left-to-right drawing, as on the slides.

Columns (layers): an operation sits one column right of the furthest value it uses; a
leaf or constant sits just left of the first operation that uses it, so that its edge
is short (Graphviz does the same). Within a column, nodes are ordered by the mean row of
their neighbours (the barycenter heuristic, a few sweeps each way, which removes most
crossings of a small graph), then moved towards their neighbours' rows keeping at least
one row between two nodes. The output's label sits one column right of the output.
"""

from __future__ import annotations

from dataclasses import dataclass

from chainrule.autograd.graph_view import GraphView

__all__ = ["Layout", "layout"]

_SWEEPS = 6


@dataclass
class Layout:
    """``column[i]`` (int) and ``row[i]`` (float, >= 0) of node ``i``; the output label's
    column and row; the number of columns (output label included) and rows."""

    column: list[int]
    row: list[float]
    output_column: int
    output_row: float
    columns: int
    rows: float


def _columns(view: GraphView) -> list[int]:
    n = len(view.nodes)
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    for e in view.edges:
        if e.target is not None:
            preds[e.target].append(e.source)
            succs[e.source].append(e.target)
    column = [0] * n
    for i, node in enumerate(view.nodes):  # topological order: inputs first
        if node.kind == "op":
            column[i] = 1 + max((column[p] for p in preds[i]), default=-1)
    for i, node in enumerate(view.nodes):
        if node.kind != "op" and succs[i]:
            column[i] = max(0, min(column[s] for s in succs[i]) - 1)
    shift = min(column, default=0)
    return [c - shift for c in column]


def _neighbours(view: GraphView) -> list[list[int]]:
    n = len(view.nodes)
    near: list[list[int]] = [[] for _ in range(n)]
    for e in view.edges:
        if e.target is not None:
            near[e.target].append(e.source)
            near[e.source].append(e.target)
    return near


def _order(column: list[int], near: list[list[int]]) -> list[list[int]]:
    """Nodes of each column, top to bottom (barycenter sweeps)."""
    by_column: list[list[int]] = [[] for _ in range(max(column, default=0) + 1)]
    for i, c in enumerate(column):
        by_column[c].append(i)
    position = {}
    for nodes in by_column:
        for k, i in enumerate(nodes):
            position[i] = float(k)
    for sweep in range(_SWEEPS):
        columns = range(len(by_column)) if sweep % 2 == 0 else reversed(range(len(by_column)))
        for c in columns:
            side = c - 1 if sweep % 2 == 0 else c + 1

            def key(i, side=side):
                used = [position[j] for j in near[i] if column[j] == side]
                return sum(used) / len(used) if used else position[i]

            by_column[c].sort(key=key)
            for k, i in enumerate(by_column[c]):
                position[i] = float(k)
    return by_column


def _rows(by_column: list[list[int]], near: list[list[int]], n: int) -> list[float]:
    """Rows that follow the neighbours, one apart at least within a column."""
    row = [0.0] * n
    for nodes in by_column:
        for k, i in enumerate(nodes):
            row[i] = float(k)
    for _ in range(2 * _SWEEPS):
        for nodes in by_column:
            wanted = [
                sum(row[j] for j in near[i]) / len(near[i]) if near[i] else row[i] for i in nodes
            ]
            placed = []
            for w in wanted:
                placed.append(w if not placed else max(w, placed[-1] + 1.0))
            offset = sum(w - p for w, p in zip(wanted, placed)) / max(len(placed), 1)
            for i, p in zip(nodes, placed):
                row[i] = p + offset
    low = min(row, default=0.0)
    return [r - low for r in row]


def layout(view: GraphView) -> Layout:
    """The columns and rows of ``view``'s nodes (see the module docstring)."""
    column = _columns(view)
    near = _neighbours(view)
    by_column = _order(column, near)
    row = _rows(by_column, near, len(view.nodes))
    out_col = column[view.output] + 1 if view.nodes else 0
    out_row = row[view.output] if view.nodes else 0.0
    columns = max([*column, out_col]) + 1
    rows = max(row, default=0.0) + 1.0
    return Layout(column, row, out_col, out_row, columns, rows)
