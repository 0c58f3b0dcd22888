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

import numpy as np

from chainrule._files import write_file
from chainrule.autograd import array_ops as _a
from chainrule.autograd import ops as _ops
from chainrule.autograd.tensor import Tensor

__all__ = ["draw_graph"]

VALUE_COLOR = "#2e7d32"  # green: forward values
GRAD_COLOR = "#c62828"  # red: gradients

_SYMBOLS = {
    _ops.Add: "+",
    _ops.Sub: "-",
    _ops.Neg: "neg",
    _ops.Mul: "*",
    _ops.Div: "/",
    _ops.Pow: "**",
    _ops.MatMul: "@",
    _ops.Exp: "exp",
    _ops.Log: "log",
    _ops.Sqrt: "sqrt",
    _ops.Sigmoid: "sigmoid",
    _ops.Tanh: "tanh",
    _ops.ReLU: "relu",
    _ops.Abs: "abs",
    _ops.Clip: "clip",
    _ops.Maximum: "max",
    _ops.Where: "where",
    _a.Sum: "sum",
    _a.Mean: "mean",
    _a.Max: "max",
    _a.Softmax: "softmax",
    _a.LogSoftmax: "log_softmax",
    _a.Reshape: "reshape",
    _a.Transpose: "transpose",
    _a.GetItem: "[ ]",
    _a.Concatenate: "concatenate",
    _a.Stack: "stack",
}
# Operations whose constant arguments are operands (numbers shown in the node, as the
# lecture's "*-1", "+1", "1/x"), not options such as an axis.
_ARITHMETIC = (_ops.Add, _ops.Sub, _ops.Mul, _ops.Div, _ops.Pow, _ops.Maximum)
_MAX_LISTED = 6  # arrays with more entries are summarised by their shape


def _number(v) -> str:
    v = float(v)
    if v == 0:
        return "0.00"
    if not np.isfinite(v) or 1e-2 <= abs(v) < 1e5:
        return f"{v:.2f}"
    return f"{v:.2e}"


def _summary(a) -> str:
    """A short text for a value: the number, a few entries, or the shape and dtype."""
    a = np.asarray(a)
    if a.ndim == 0:
        return _number(a)
    if a.size <= _MAX_LISTED:
        text = np.array2string(
            a, separator=", ", formatter={"float_kind": _number, "int": str}, max_line_width=200
        )
        return " ".join(text.split())
    shape = "x".join(str(n) for n in a.shape)
    return f"{a.dtype} ({shape})"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _red(g) -> str:
    return f'<font color="{GRAD_COLOR}">{_html(_summary(g))}</font>'


def _edge_label(t: Tensor, grad) -> str:
    """The value `t` carries along an edge and, when known, the gradient along it."""
    value = f'<font color="{VALUE_COLOR}">{_html(_summary(t._data))}</font>'
    if grad is None:
        return f"<{value}>"
    return f"<{value}<br/>{_red(grad)}>"


def _node_label(text: str, t: Tensor, uses: int) -> str:
    """A node's label: its name, with its total gradient when its value forks."""
    g = t.grad if uses > 1 else None
    if g is None:
        return f'"{_escape(text)}"'
    return f"<{_html(text)}<br/>{_red(g)}>"


def _is_constant_operand(a) -> bool:
    return isinstance(a, (int, float, np.number)) and not isinstance(a, bool)


def _op_label(ctx) -> str:
    fn = ctx.fn
    symbol = _SYMBOLS.get(fn, fn.__name__)
    args = ctx.inputs
    if fn in _ARITHMETIC and len(args) == 2:
        a, b = args
        if fn is _ops.Maximum:
            c = a if _is_constant_operand(a) else b
            return f"max({_compact(c)})" if _is_constant_operand(c) else symbol
        if not isinstance(a, Tensor) and _is_constant_operand(a):
            if fn is _ops.Div:
                return f"{_compact(a)}/x"
            if fn is _ops.Sub:
                return f"{_compact(a)}-x"
            if fn is _ops.Pow:
                return f"{_compact(a)}**x"
            return f"{symbol}{_compact(a)}"
        if not isinstance(b, Tensor) and _is_constant_operand(b):
            return f"{symbol}{_compact(b)}"
    if fn in (_a.Sum, _a.Mean, _a.Max) and args[1] is not None:
        return f"{symbol}(axis={args[1]})"
    if fn in (_a.Softmax, _a.LogSoftmax) and args[1] != -1:
        return f"{symbol}(axis={args[1]})"
    if fn is _ops.Clip:
        return f"clip[{args[1]}, {args[2]}]"
    return symbol


def _compact(v) -> str:
    """A constant as written in an expression: 1 rather than 1.00."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _graph_order(output: Tensor):
    """Tensors and contexts of the graph of `output`, inputs first (iterative DFS)."""
    order = []  # ("leaf", tensor) or ("op", ctx), each once, before its users
    seen = set()
    stack = [(output, False)]
    while stack:
        t, expanded = stack.pop()
        key = id(t._ctx) if t._ctx is not None else id(t)
        if expanded:
            order.append(("op", t._ctx) if t._ctx is not None else ("leaf", t))
            continue
        if key in seen:
            continue
        seen.add(key)
        stack.append((t, True))
        if t._ctx is not None:
            for a in reversed(t._ctx.inputs):
                if isinstance(a, Tensor):
                    stack.append((a, False))
    return order


def _key(t: Tensor) -> int:
    """One node per value: an operation's output is its context, a leaf itself."""
    return id(t._ctx) if t._ctx is not None else id(t)


def _uses(order) -> dict:
    """How many edges leave each value's node (the output's edge included)."""
    uses = {}
    for kind, obj in order:
        if kind == "op":
            for a in obj.inputs:
                if isinstance(a, Tensor):
                    uses[_key(a)] = uses.get(_key(a), 0) + 1
    return uses


def to_dot(output: Tensor) -> str:
    """The Graphviz DOT text of the graph that produced `output` (see `draw_graph`)."""
    if not isinstance(output, Tensor):
        raise TypeError(f"draw_graph needs a Tensor, got {type(output).__name__}")
    lines = [
        "digraph chainrule {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=11];',
    ]
    order = _graph_order(output)
    uses = _uses(order)
    uses[_key(output)] = uses.get(_key(output), 0) + 1
    ids = {}
    for kind, obj in order:
        nid = f"n{len(ids)}"
        ids[id(obj)] = nid
        if kind == "leaf":
            lines.append(
                f"  {nid} [label={_node_label(_leaf_name(obj), obj, uses[id(obj)])}, shape=box];"
            )
        else:
            lines.extend(_operation_lines(nid, obj, ids, uses))
    name = output.name if output.name is not None else "output"
    lines.append(f'  out [label="{_escape(name)}", shape=plaintext];')
    lines.append(f"  {ids[_key(output)]} -> out [label={_edge_label(output, output.grad)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _leaf_name(t: Tensor) -> str:
    if t.name is not None:
        return t.name
    label = "param" if t.requires_grad else "input"
    if t.ndim:
        label += " (" + "x".join(str(n) for n in t.shape) + ")"
    return label


def _operation_lines(nid: str, ctx, ids: dict, uses: dict) -> list:
    """The node of operation `ctx`, its incoming edges and its constant operands."""
    lines = []
    label = _escape(_op_label(ctx))
    out_grad = None
    if uses.get(id(ctx), 0) > 1:
        out_grad = ctx.grad_output  # the total gradient of a forked intermediate value
    if out_grad is None:
        lines.append(f'  {nid} [label="{label}", shape=circle];')
    else:
        lines.append(
            f"  {nid} [label=<{_html(_op_label(ctx))}<br/>{_red(out_grad)}>, shape=circle];"
        )
    folded = ctx.fn in _ARITHMETIC
    for i, a in enumerate(ctx.inputs):
        if isinstance(a, Tensor):
            if ctx.grad_inputs is not None:
                grad = ctx.grad_inputs[i]  # what this operation sent back along this edge
            else:
                grad = a.grad if uses[_key(a)] == 1 else None
            lines.append(f"  {ids[_key(a)]} -> {nid} [label={_edge_label(a, grad)}];")
        elif isinstance(a, np.ndarray) and (folded or ctx.fn in (_ops.Where, _ops.MatMul)):
            cid = f"c{nid}_{i}"
            lines.append(
                f'  {cid} [label="{_escape(_summary(a))}", shape=plaintext];\n'
                f"  {cid} -> {nid} [style=dashed];"
            )
    return lines


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


_RENDERED = {".svg": "svg", ".png": "png", ".pdf": "pdf"}


def draw_graph(output: Tensor, path: str | os.PathLike | None = None) -> str:
    """Draw the computational graph that produced `output`.

    Inputs (leaves, labeled by their ``name``) and operations are nodes; each edge is
    labeled with the value it carries (green) and, after backward, its gradient (red):
    always for leaves, for intermediate values when kept (``retain_graph=True`` or
    ``retain_grad()``). Arrays with more than a few entries are shown by shape.

    path : None, or a file name. ``.dot``/``.gv`` files get the DOT text; ``.svg``,
        ``.png`` and ``.pdf`` are rendered by Graphviz's ``dot`` program, which must be
        installed.

    Returns the DOT text.
    """
    text = to_dot(output)
    if path is None:
        return text
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".dot", ".gv"):
        write_file(path, text)  # atomically, never through a link
        return text
    import shutil
    import subprocess

    fmt = _RENDERED.get(suffix)
    if fmt is None:
        raise ValueError(
            f"draw_graph: cannot write {path!r}: use a .dot or .gv file (DOT text) or "
            ".svg, .png or .pdf (drawn by Graphviz)"
        )
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            f"cannot draw {path}: Graphviz's `dot` program is not installed (not found on "
            "PATH). Install Graphviz (e.g. `sudo apt-get install graphviz`, `brew install "
            "graphviz` or `conda install graphviz`), or write a .dot file instead"
        )
    # dot draws to its standard output; chainrule writes the file (atomically, never
    # through a link at ``path``, no half drawing left when dot fails).
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
    return text
