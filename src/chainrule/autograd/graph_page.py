"""The stepping page of a computational graph: one self-contained HTML file.

The graph is drawn left to right (`graph_layout`) as an inline SVG; buttons and the
arrow keys step through the forward pass node by node, then the backward pass gate by
gate (`graph_steps`), and the address ``page.html#step=N`` (or ``#step=end``) opens it at
a step. The page's script writes the values and gradients reached at the current step
into the document and removes the others, so the document holds only what has been
reached; the script's data is kept base64-encoded for the same reason. No network: the
style and script are inlined.
"""

from __future__ import annotations

import base64
import html
import json
from importlib import resources

from chainrule.autograd.graph_layout import layout
from chainrule.autograd.graph_steps import edge_texts, node_texts, steps
from chainrule.autograd.graph_view import GraphView

__all__ = ["graph_page"]

MIN_GAP = 100  # px between two columns' nodes, at least
ROW = 130  # px between rows
LABEL_CHAR = 8.6  # px per character of a 16px edge label, about
MARGIN = 60
CHAR = 10.0  # px per character of a 17px label, about


def _asset(name: str) -> str:
    return resources.files("chainrule.autograd").joinpath("page", name).read_text("utf-8")


def _size(kind: str, label: str) -> tuple[float, float]:
    if kind == "const":
        return max(40.0, CHAR * len(label)), 24.0
    if kind == "op" and len(label) <= 3:
        return 50.0, 50.0
    return max(60.0 if kind == "leaf" else 50.0, CHAR * len(label) + 22), 42.0


def _column_x(lay, sizes: list[tuple[float, float]], texts: list[dict], view) -> list[float]:
    """The x of each column: room between two columns for the widest label of the edges
    that cross the gap (an edge spanning several columns shares its room among them)."""
    n = lay.columns
    half = [0.0] * n
    for i, (w, _) in enumerate(sizes):
        half[lay.column[i]] = max(half[lay.column[i]], w / 2)
    half[lay.output_column] = max(half[lay.output_column], 30.0)
    gap = [half[c] + half[c + 1] + MIN_GAP for c in range(n - 1)]
    for e, t in zip(view.edges, texts):
        a = lay.column[e.source]
        b = lay.output_column if e.target is None else lay.column[e.target]
        if b <= a or e.dashed:
            continue
        # The values and gradients fit between the columns; the longer upstream x local
        # line is shown at one gate at a time, over its neighbours if need be.
        longest = max(len(t["value"]), len(t["grad"] or ""))
        need = (LABEL_CHAR * longest + half[a] + half[b] + 24) / (b - a)
        for c in range(a, b):
            gap[c] = max(gap[c], need)
    # A fork's sum is written over its node: the labels of its edges keep clear of it.
    for i, t in enumerate(node_texts(view)):
        c = lay.column[i]
        if t["sum"] is not None and c < n - 1:
            gap[c] = max(gap[c], LABEL_CHAR * len("sum: " + t["sum"]) + half[c + 1] + 40)
    xs = [MARGIN + half[0]]
    for g in gap:
        xs.append(xs[-1] + g)
    return xs


def _geometry(view: GraphView, texts: list[dict]) -> dict:
    """Positions of nodes, the paths of edges and where their labels go (pixels)."""
    lay = layout(view)
    sizes = [_size(node.kind, node.label) for node in view.nodes]
    xs = _column_x(lay, sizes, texts, view)
    nodes = []
    for i, node in enumerate(view.nodes):
        w, h = sizes[i]
        x, y = xs[lay.column[i]], MARGIN + lay.row[i] * ROW
        nodes.append({"kind": node.kind, "label": node.label, "x": x, "y": y, "w": w, "h": h})
    out = {"x": xs[lay.output_column], "y": MARGIN + lay.output_row * ROW}
    pairs: dict[tuple, list[int]] = {}
    for k, e in enumerate(view.edges):
        pairs.setdefault((e.source, e.target), []).append(k)
    edges = []
    for k, e in enumerate(view.edges):
        s = nodes[e.source]
        x0, y0 = s["x"] + s["w"] / 2, s["y"]
        if e.target is None:
            x3, y3 = out["x"] - 30, out["y"]
        else:
            t = nodes[e.target]
            x3, y3 = t["x"] - t["w"] / 2, t["y"]
        same = pairs[(e.source, e.target)]
        bend = (same.index(k) - (len(same) - 1) / 2) * 44.0  # parallel edges: x * x
        c = (x3 - x0) / 2
        path = (
            f"M{x0:.1f},{y0:.1f} C{x0 + c:.1f},{y0 + bend * 1.3:.1f} "
            f"{x3 - c:.1f},{y3 + bend * 1.3:.1f} {x3:.1f},{y3:.1f}"
        )
        lx, ly = (x0 + x3) / 2, (y0 + y3) / 2 + bend
        edges.append({"s": e.source, "t": e.target, "d": path, "lx": lx, "ly": ly})
        edges[-1]["dashed"] = e.dashed
    width = xs[-1] + 60 + MARGIN
    height = MARGIN * 2 + (lay.rows - 1) * ROW + 40
    return {"nodes": nodes, "edges": edges, "out": out, "width": width, "height": height}


def _svg(geo: dict, output_name: str) -> str:
    """The graph's structure (no values): edges, nodes and their labels."""
    esc = html.escape
    parts = [
        # Scaled down to fit the window, to 60% at most (then the box scrolls sideways).
        f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {geo["width"]:.0f} {geo["height"]:.0f}" role="img" '
        f'aria-label="computational graph" style="width: 100%; '
        f'max-width: {geo["width"]:.0f}px; min-width: {0.6 * geo["width"]:.0f}px">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#555"/></marker></defs>',
        '<g id="edges">',
    ]
    for k, e in enumerate(geo["edges"]):
        dashed = ' stroke-dasharray="5,4"' if e["dashed"] else ""
        parts.append(
            f'<path id="e{k}" class="edge" d="{e["d"]}"{dashed} marker-end="url(#arrow)"/>'
        )
    parts.append('</g><g id="nodes">')
    for i, n in enumerate(geo["nodes"]):
        x, y, w, h = n["x"], n["y"], n["w"], n["h"]
        label = esc(n["label"])
        if n["kind"] == "op" and w == h:
            shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{w / 2:.1f}"/>'
        elif n["kind"] == "const":
            shape = ""
        else:
            r = 18 if n["kind"] == "op" else 4
            shape = (
                f'<rect x="{x - w / 2:.1f}" y="{y - h / 2:.1f}" width="{w:.1f}" '
                f'height="{h:.1f}" rx="{r}"/>'
            )
        parts.append(
            f'<g id="n{i}" class="node {n["kind"]}">{shape}'
            f'<text x="{x:.1f}" y="{y:.1f}" dy="0.35em">{label}</text></g>'
        )
    out = geo["out"]
    parts.append(
        f'</g><text class="output-name" x="{out["x"] - 24:.1f}" y="{out["y"]:.1f}" '
        f'dy="0.35em">{esc(output_name)}</text><g id="labels"></g></svg>'
    )
    return "".join(parts)


def graph_page(view: GraphView, title: str | None = None) -> str:
    """The HTML text of the stepping page of ``view`` (see the module docstring)."""
    title = title or f"computational graph of {view.output_name}"
    texts = edge_texts(view)
    geo = _geometry(view, texts)
    data = {
        "nodes": [{k: n[k] for k in ("kind", "label", "x", "y", "w", "h")} for n in geo["nodes"]],
        "edges": [
            {**{k: e[k] for k in ("s", "t", "lx", "ly", "dashed")}, **t}
            for e, t in zip(geo["edges"], texts)
        ],
        "nodeTexts": node_texts(view),
        "steps": steps(view),
        "output": view.output,
        "outputName": view.output_name,
    }
    payload = base64.b64encode(json.dumps(data).encode("utf-8")).decode("ascii")
    esc = html.escape
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="chainrule draw_graph">\n'
        f"<title>{esc(title)}</title>\n"
        f"<style>{_asset('graph.css')}</style>\n"
        f'<script id="graph-data" type="application/octet-stream">{payload}</script>\n'
        f"<script>{_asset('graph.js')}</script>\n"
        "</head><body>\n"
        f"<h1>{esc(title)}</h1>\n"
        '<nav class="controls" aria-label="steps">'
        '<button id="first" title="step 0 (Home)">&laquo; start</button>'
        '<button id="prev" title="one step back (left arrow)">&lsaquo; back</button>'
        '<button id="next" title="one step forward (right arrow)">forward &rsaquo;</button>'
        '<button id="last" title="every value and gradient (End)">end &raquo;</button>'
        '<span id="counter" aria-live="polite"></span></nav>\n'
        '<p id="step-text" aria-live="polite"></p>\n'
        f'<div class="graph-box">{_svg(geo, view.output_name)}</div>\n'
        '<p class="legend"><span class="value">green: value (forward)</span> '
        '<span class="grad">red: gradient (backward)</span> '
        "at the current gate: upstream \u00d7 local = gradient sent back; "
        "at a fork, the sum of its gradients</p>\n"
        '<table id="leaves"><thead><tr><th>input</th><th>value</th><th>gradient</th>'
        "</tr></thead><tbody></tbody></table>\n"
        "</body></html>\n"
    )
