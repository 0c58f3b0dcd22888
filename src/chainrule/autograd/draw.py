"""Drawing a computational graph as the lecture does, in Graphviz's DOT language.

Inputs and operations are nodes; every edge carries a value from where it is computed
to where it is used, labeled with that value (green, above) and, once known, the
gradient that flowed back along that edge (red, below). Where a value is used several
times (a fork: the lecture's copy gate), each edge carries its own branch's gradient
and the value's node shows their sum, its total gradient.

Which gradients are known: after ``backward(retain_graph=True)`` every edge's (each
operation keeps what it sent to each input, `Context.grad_inputs`). After a plain
backward, the total gradient of each leaf, and of intermediate values kept with
``t.retain_grad()``: on the edge of a value used once, at the node of a value used
several times.
"""

from __future__ import annotations

import os

from chainrule._files import write_file
from chainrule.autograd.graph_view import GraphView, read_graph, summary
from chainrule.autograd.tensor import Tensor

__all__ = ["draw_graph", "to_dot"]

VALUE_COLOR = "#2e7d32"  # green: forward values
GRAD_COLOR = "#c62828"  # red: gradients


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _red(g) -> str:
    return f'<font color="{GRAD_COLOR}">{_html(summary(g))}</font>'


def _edge_label(value, grad) -> str:
    """The value an edge carries and, when known, the gradient along it."""
    green = f'<font color="{VALUE_COLOR}">{_html(summary(value))}</font>'
    if grad is None:
        return f"<{green}>"
    return f"<{green}<br/>{_red(grad)}>"


def _node_label(text: str, grad, uses: int) -> str:
    """A node's label: its name, with its total gradient when its value forks."""
    if grad is None or uses <= 1:
        return f'"{_escape(text)}"'
    return f"<{_html(text)}<br/>{_red(grad)}>"


def view_to_dot(view: GraphView) -> str:
    """The Graphviz DOT text of a `GraphView`."""
    lines = [
        "digraph chainrule {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=11];',
    ]
    for i, node in enumerate(view.nodes):
        if node.kind == "const":
            lines.append(f'  n{i} [label="{_escape(node.label)}", shape=plaintext];')
        else:
            shape = "box" if node.kind == "leaf" else "circle"
            lines.append(
                f"  n{i} [label={_node_label(node.label, node.grad, node.uses)}, shape={shape}];"
            )
    lines.append(f'  out [label="{_escape(view.output_name)}", shape=plaintext];')
    for e in view.edges:
        target = "out" if e.target is None else f"n{e.target}"
        if e.dashed:
            lines.append(f"  n{e.source} -> {target} [style=dashed];")
        else:
            lines.append(f"  n{e.source} -> {target} [label={_edge_label(e.value, e.grad)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_dot(output: Tensor) -> str:
    """The Graphviz DOT text of the graph that produced `output` (see `draw_graph`)."""
    return view_to_dot(read_graph(output))


_RENDERED = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
_FORMATS = ("dot", "html", "svg", "png", "pdf")
_ENGINES = ("auto", "graphviz", "matplotlib")


def _format_of(path: str | None, format: str | None) -> str:
    if format is not None:
        if format not in _FORMATS:
            raise ValueError(
                f"draw_graph: format must be one of {', '.join(_FORMATS)}, got {format!r}"
            )
        return format
    if path is None:
        return "dot"
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".dot", ".gv"):
        return "dot"
    if suffix in (".html", ".htm"):
        return "html"
    if suffix in _RENDERED:
        return _RENDERED[suffix]
    raise ValueError(
        f"draw_graph: cannot write {path!r}: use a .dot or .gv file (DOT text), .html (the "
        "stepping page) or .svg, .png or .pdf (a drawing)"
    )


def draw_graph(
    output: Tensor,
    path: str | os.PathLike | None = None,
    *,
    format: str | None = None,
    engine: str = "auto",
    title: str | None = None,
) -> str:
    """Draw the computational graph that produced `output`.

    Inputs (leaves, labeled by their ``name``: ``Tensor(2.0, requires_grad=True,
    name="w0")``) and operations are nodes; each edge is labeled with the value it
    carries (green) and, after backward, its gradient (red): always for leaves, for
    intermediate values when kept (``retain_graph=True`` or ``retain_grad()``). Arrays
    with more than a few entries are shown by dtype and shape.

    path : None, or a file to write: ``.dot``/``.gv`` (DOT text), ``.html`` (the stepping
        page), ``.svg``, ``.png`` or ``.pdf`` (a drawing).
    format : ``"dot"``, ``"html"``, ``"svg"``, ``"png"`` or ``"pdf"``; by default the
        path's suffix decides (DOT text without a path). ``"html"`` makes one
        self-contained page that steps through the forward pass node by node and the
        backward pass gate by gate (upstream, local and product gradient on each edge, the
        sum at a fork); it opens at ``page.html#step=N`` or ``#step=end``. Every gate's
        gradients are known after ``backward(retain_graph=True)``.
    engine : for a drawing: ``"auto"`` uses Graphviz's ``dot`` program when it is
        installed and matplotlib otherwise; ``"graphviz"`` or ``"matplotlib"`` chooses.
    title : the page's heading (``"html"``)

    Returns the HTML text for ``"html"``, the DOT text otherwise.
    """
    path = None if path is None else os.fspath(path)
    fmt = _format_of(path, format)
    if engine not in _ENGINES:
        raise ValueError(f"draw_graph: engine must be one of {', '.join(_ENGINES)}, got {engine!r}")
    view = read_graph(output)
    if fmt == "html":
        from chainrule.autograd.graph_page import graph_page

        text = graph_page(view, title)
    else:
        text = view_to_dot(view)
    if path is None:
        if fmt in _RENDERED.values():
            raise ValueError(f"draw_graph: a {fmt} drawing needs a path to write it to")
        return text
    if fmt in ("dot", "html"):
        write_file(path, text)  # atomically, never through a link
        return text
    import shutil

    dot = shutil.which("dot") if engine != "matplotlib" else None
    if dot is None and engine == "graphviz":
        raise RuntimeError(
            f"cannot draw {path}: Graphviz's `dot` program is not installed (not found on "
            "PATH). Install Graphviz (e.g. `sudo apt-get install graphviz`, `brew install "
            "graphviz` or `conda install graphviz`), or use engine='matplotlib'"
        )
    if dot is None:
        from chainrule.autograd.graph_mpl import draw_with_matplotlib

        draw_with_matplotlib(view, path, fmt)
    else:
        _run_dot(dot, fmt, path, text)
    return text


def _run_dot(dot: str, fmt: str, path: str, text: str) -> None:
    """dot draws to its standard output; chainrule writes the file (atomically, never
    through a link at ``path``, no half drawing left when dot fails)."""
    import subprocess

    done = subprocess.run(
        [dot, f"-T{fmt}"], input=text.encode("utf-8"), capture_output=True, check=False
    )
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(
            f"Graphviz's dot failed to draw {path} (exit status {done.returncode})"
            + (f": {message[-1]}" if message else "")
        )
    write_file(path, done.stdout)
