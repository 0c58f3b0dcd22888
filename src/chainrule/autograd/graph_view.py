"""The computational graph of a Tensor, read once into plain records for the drawings.

This is the one place that reads the recorded graph (a Tensor's `_ctx`, and a Context's
`fn`, `inputs`, `grad_output` and `grad_inputs`); the DOT text, the matplotlib drawing
and the stepping HTML page all draw a `GraphView`.

Nodes are the graph's values: a leaf (an input or parameter Tensor), an operation's
output (one node per operation), or a constant array operand. Every edge carries a
value from the node that computes it to an operation that uses it (``target`` None: the
edge out of the output). Gradients, where the graph kept them:

- ``Edge.grad``: what the operation sent back along that edge. Every edge's is known
  after ``backward(retain_graph=True)`` (the operation's `Context.grad_inputs`); after a
  plain backward only where the value is used once and its total is kept (leaves, and
  values with ``retain_grad()``).
- ``Node.grad``: the value's total gradient (a leaf's ``grad``, an operation's
  `Context.grad_output`): the sum of its edges' gradients where it forks (the copy gate).
- ``Node.upstream`` of an operation: the gradient of its output, which it multiplied by
  its local gradients (None where not kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chainrule.autograd import array_ops as _a
from chainrule.autograd import ops as _ops
from chainrule.autograd.tensor import Tensor

__all__ = ["Edge", "GraphView", "Node", "read_graph", "summary"]

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
    _ops.Sin: "sin",
    _ops.Cos: "cos",
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
# Operations whose constant array operands are drawn as nodes of their own.
_ARRAY_OPERANDS = (*_ARITHMETIC, _ops.Where, _ops.MatMul)
MAX_LISTED = 6  # arrays with more entries are summarised by their shape


def number(v) -> str:
    """A number as the lecture writes it: two decimals (``-0.20``), or 3 significant
    digits in exponent notation when that would hide it (``1.23e-05``)."""
    v = float(v)
    if v == 0:
        return "0.00"
    if not np.isfinite(v) or 1e-2 <= abs(v) < 1e5:
        return f"{v:.2f}"
    return f"{v:.2e}"


def summary(a) -> str:
    """A short text for a value: the number, a few entries, or the dtype and shape."""
    a = np.asarray(a)
    if a.ndim == 0:
        return number(a)
    if a.size <= MAX_LISTED:
        text = np.array2string(
            a, separator=", ", formatter={"float_kind": number, "int": str}, max_line_width=200
        )
        return " ".join(text.split())
    shape = "x".join(str(n) for n in a.shape)
    return f"{a.dtype} ({shape})"


@dataclass
class Node:
    """One value of the graph.

    kind : ``"leaf"``, ``"op"`` or ``"const"``
    label : a leaf's name (or ``param (3x2)``), an operation's symbol (``*``, ``+1``,
        ``1/x``), a constant's value
    value : the value (ndarray)
    grad : its total gradient, or None where not kept
    upstream : for an operation, the gradient of its output as its backward received it
    uses : edges leaving the node (the output's own edge included)
    named : a leaf whose label is the name the user gave it
    """

    kind: str
    label: str
    value: np.ndarray
    grad: np.ndarray | None = None
    upstream: np.ndarray | None = None
    uses: int = 0
    named: bool = False


@dataclass
class Edge:
    """A value carried from node ``source`` to the operation ``target`` (its argument
    number ``slot``); ``target`` None for the output's edge. ``grad``: the gradient
    sent back along it, None where not kept. ``dashed``: a constant operand's edge."""

    source: int
    target: int | None
    slot: int
    value: np.ndarray
    grad: np.ndarray | None = None
    dashed: bool = False


@dataclass
class GraphView:
    """Nodes in a topological order (every node after the nodes it uses), edges, the
    output node's index and name, and whether every edge's gradient was kept."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    output: int = 0
    output_name: str = "output"
    edge_grads_kept: bool = False

    def inputs_of(self, node: int) -> list[Edge]:
        """The edges into operation ``node``, in argument order."""
        return sorted(self._index()[0].get(node, []), key=lambda e: e.slot)

    def uses_of(self, node: int) -> list[Edge]:
        """The edges leaving ``node``."""
        return list(self._index()[1].get(node, []))

    def _index(self) -> tuple[dict, dict]:
        """Edges by target and by source, made once (a long chain stays linear)."""
        if getattr(self, "_by", None) is None or self._by[2] != len(self.edges):
            into: dict[int, list[Edge]] = {}
            out: dict[int, list[Edge]] = {}
            for e in self.edges:
                into.setdefault(e.target, []).append(e)
                out.setdefault(e.source, []).append(e)
            self._by = (into, out, len(self.edges))
        return self._by[0], self._by[1]


def _key(t: Tensor) -> int:
    """One node per value: an operation's output is its context, a leaf itself."""
    return id(t._ctx) if t._ctx is not None else id(t)


def _graph_order(output: Tensor) -> list[Tensor]:
    """The Tensors of the graph of ``output``, one per node, each after the ones it uses
    (iterative depth-first search: no recursion limit)."""
    order: list[Tensor] = []
    seen = set()
    stack = [(output, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if _key(t) in seen:
            continue
        seen.add(_key(t))
        stack.append((t, True))
        if t._ctx is not None:
            for a in reversed(t._ctx.inputs):
                if isinstance(a, Tensor):
                    stack.append((a, False))
    return order


def _is_constant_operand(a) -> bool:
    return isinstance(a, (int, float, np.number)) and not isinstance(a, bool)


def _compact(v) -> str:
    """A constant as written in an expression: 1 rather than 1.00."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _operand_label(fn, a, b, symbol: str) -> str | None:
    """``+1``, ``*-1``, ``1/x``: an arithmetic operation with a number folded in."""
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
    return None


def _op_label(fn, args) -> str:
    symbol = _SYMBOLS.get(fn, getattr(fn, "__name__", str(fn)))
    if fn in _ARITHMETIC and len(args) == 2:
        folded = _operand_label(fn, args[0], args[1], symbol)
        if folded is not None:
            return folded
    if fn in (_a.Sum, _a.Mean, _a.Max) and args[1] is not None:
        return f"{symbol}(axis={args[1]})"
    if fn in (_a.Softmax, _a.LogSoftmax) and args[1] != -1:
        return f"{symbol}(axis={args[1]})"
    if fn is _ops.Clip:
        return f"clip[{args[1]}, {args[2]}]"
    return symbol


def _leaf_label(t: Tensor) -> str:
    if t.name is not None:
        return t.name
    label = "param" if t.requires_grad else "input"
    if t.ndim:
        label += " (" + "x".join(str(n) for n in t.shape) + ")"
    return label


def read_graph(output: Tensor) -> GraphView:
    """The graph that produced ``output`` as a `GraphView`."""
    if not isinstance(output, Tensor):
        raise TypeError(f"draw_graph needs a Tensor, got {type(output).__name__}")
    view = GraphView(output_name=output.name if output.name is not None else "output")
    index: dict[int, int] = {}
    contexts = []
    for t in _graph_order(output):
        ctx = t._ctx
        if ctx is None:
            index[_key(t)] = len(view.nodes)
            named = t.name is not None
            view.nodes.append(
                Node("leaf", _leaf_label(t), np.asarray(t._data), t.grad, named=named)
            )
        else:
            contexts.append(ctx)
            index[_key(t)] = _add_operation(view, index, ctx, np.asarray(t._data))
    view.output = index[_key(output)]
    view.edges.append(Edge(view.output, None, 0, np.asarray(output._data), output.grad))
    for e in view.edges:
        view.nodes[e.source].uses += 1
    _fill_single_use_grads(view)
    view.edge_grads_kept = bool(contexts) and all(c.grad_inputs is not None for c in contexts)
    return view


def _add_operation(view: GraphView, index: dict, ctx, value: np.ndarray) -> int:
    """Append operation ``ctx``'s node (after nodes for its constant array operands) and
    the edges into it; returns its index."""
    consts = {}
    for slot, a in enumerate(ctx.inputs):
        if isinstance(a, np.ndarray) and ctx.fn in _ARRAY_OPERANDS:
            consts[slot] = len(view.nodes)
            view.nodes.append(Node("const", summary(a), a))
    target = len(view.nodes)
    grad_out = None if ctx.grad_output is None else np.asarray(ctx.grad_output)
    view.nodes.append(Node("op", _op_label(ctx.fn, ctx.inputs), value, grad_out, grad_out))
    sent = ctx.grad_inputs
    for slot, a in enumerate(ctx.inputs):
        if isinstance(a, Tensor):
            grad = None if sent is None or sent[slot] is None else np.asarray(sent[slot])
            view.edges.append(Edge(index[_key(a)], target, slot, np.asarray(a._data), grad))
        elif slot in consts:
            view.edges.append(Edge(consts[slot], target, slot, a, dashed=True))
    return target


def _fill_single_use_grads(view: GraphView) -> None:
    """Without the per-edge record, a value used once still shows its total gradient
    (a leaf's, or one kept with ``retain_grad()``) on its one edge."""
    for e in view.edges:
        node = view.nodes[e.source]
        if e.grad is None and not e.dashed and node.uses == 1 and node.grad is not None:
            e.grad = node.grad
