"""The backward pass: upstream gradient x local gradient = downstream gradient.

`run_backward` is the chain rule over a whole graph, as the lecture runs it by hand:

1. put the recorded operations in reverse topological order, each after every
   operation that uses its output (`topological_order`, a depth-first search without
   recursion, so a chain of any length works);
2. visit them in that order: call the Function's backward with the gradient of its
   output (upstream x local), shape each gradient like its input, and add gradients
   where a value is used more than once (the lecture's copy gate).

The loop is the same whether the gradients are arrays (a first-order pass, at NumPy's
speed) or Tensors (``create_graph=True``: every operation of every rule is recorded, so
the gradients can be differentiated again); `chainrule.autograd.function` explains how
one rule serves both.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.array_ops import Cast
from chainrule.autograd.function import _RELEASED_MESSAGE, recording, run_rule
from chainrule.autograd.tensor import Tensor

__all__ = ["run_backward", "topological_order"]

_ndarray = np.ndarray


def run_backward(roots, grads, inputs=None, retain_graph=False, create_graph=False):
    """Backpropagate `grads` (dL/d root for each of `roots`, shaped like it) through the
    graph of the roots.

    inputs : None: every leaf that requires grad gets its gradient added to ``.grad``.
        Otherwise a sequence of Tensors: their gradients are returned (a list, None
        where no path leads to one) and no ``.grad`` changes.
    retain_graph : keep what forward saved (by default it is released as each operation's
        backward has run), so another backward pass can run through the graph.
    create_graph : run the rules on Tensors, recording them: the gradients are Tensors
        with a graph of their own.
    """
    order = topological_order(roots, inputs)
    outputs = _output_tensors(order, roots) if create_graph else None
    grad_of = {}  # node (an operation's context, or a leaf) -> gradient of its value
    for root, g in zip(roots, grads):
        _add(grad_of, root._ctx or root, g)
    wanted = () if inputs is None else {t._ctx or t for t in inputs}
    reached = {}
    with recording(create_graph):
        for ctx in order:
            g = grad_of.pop(ctx, None)  # the gradient of this operation's output
            if ctx in wanted:
                reached[ctx] = g
            if g is None:
                continue
            in_grads = _local_gradients(ctx, g, outputs)  # upstream x local
            for x, gx in zip(ctx.inputs, in_grads):
                if gx is not None:
                    gx = _shaped(gx, x, ctx, g)  # like its input
                    _add(grad_of, x._ctx or x, gx)  # add where a value is used twice
            _keep_or_release(ctx, g, in_grads, inputs is None, retain_graph)
    if inputs is None:
        _store_leaf_gradients(grad_of)
        return None
    return [reached.get(n, grad_of.get(n)) for n in (t._ctx or t for t in inputs)]


def _add(grad_of: dict, node, g) -> None:
    prev = grad_of.get(node)
    grad_of[node] = g if prev is None else prev + g


def _sum(a, b):
    return b if a is None else a + b


def _local_gradients(ctx, g, outputs) -> tuple:
    """The gradients operation `ctx` sends its inputs for the gradient `g` of its output:
    its Function's backward, recorded when `outputs` (the output Tensor of each
    operation) is given, None for the inputs that want none."""
    if ctx.saved_tensors is None:
        raise RuntimeError(_RELEASED_MESSAGE)
    fn = ctx.fn
    if outputs is not None:
        grads = run_rule(fn, fn.backward, ctx, (g,), outputs[ctx], "gradient")
    else:
        if not (g.__class__ is _ndarray or fn.scalar_inputs):
            g = np.asarray(g)
        grads = fn.backward(ctx, g)
    if grads.__class__ is not tuple:
        grads = (grads,)
    if len(grads) != len(ctx.inputs):
        raise wrong_gradient_count(fn, grads, ctx.inputs)
    return tuple(gx if need else None for gx, need in zip(grads, ctx.needs_input_grad))


def wrong_gradient_count(fn, grads: tuple, inputs: tuple) -> RuntimeError:
    """The error for a backward that returned another number of gradients than its
    Function had inputs (both passes raise it)."""
    return RuntimeError(
        f"{fn.__name__}.backward returned {len(grads)} gradients for {len(inputs)} inputs"
    )


def _keep_or_release(ctx, g, in_grads, backward_pass: bool, retain_graph: bool) -> None:
    """After operation `ctx` has sent its gradients: a backward pass that retains the
    graph (or a value kept by ``retain_grad()``) keeps them for drawings (`gradients`
    keeps none); a pass that does not retain the graph frees what forward saved."""
    if backward_pass and (retain_graph or ctx.retain_grad):
        ctx.grad_output = _sum(ctx.grad_output, g)
        if retain_graph:
            _keep_edge_gradients(ctx, in_grads, g)
    if not retain_graph:
        ctx.release()


def topological_order(roots, inputs=None) -> list:
    """The contexts of every recorded operation the roots depend on, each after every
    operation that uses its output (reverse topological order).

    A depth-first search without recursion: an operation is listed once everything
    below it is (it comes off the stack a second time, after them); the list reversed
    puts the outputs first. With `inputs` (Tensors), only the operations on a path to
    one of them are kept.
    """
    post = []  # operations after the operations they use
    state = {}  # 1: what is below it is being searched; 2: listed
    stack = [r._ctx for r in roots if r._ctx is not None]
    while stack:
        c = stack.pop()
        seen = state.get(c)
        if seen is None:
            state[c] = 1
            stack.append(c)  # comes off again once everything below it is listed
            for a, need in zip(c.inputs, c.needs_input_grad):
                if need and a._ctx is not None and a._ctx not in state:
                    stack.append(a._ctx)
        elif seen == 1:
            state[c] = 2
            post.append(c)
    if inputs is not None:
        post = _leading_to(post, {t._ctx or t for t in inputs})
    post.reverse()
    return post


def _leading_to(post: list, targets: set) -> list:
    """The operations of `post` (inputs first) that are, or use, one of `targets`."""
    useful = set(targets)
    kept = []
    for c in post:
        if c in useful or any(
            need and (a._ctx or a) in useful for a, need in zip(c.inputs, c.needs_input_grad)
        ):
            useful.add(c)
            kept.append(c)
    return kept


def _output_tensors(order: list, roots) -> dict:
    """The output Tensor of each operation of `order` (rules on Tensors read it)."""
    outputs = {r._ctx: r for r in roots if r._ctx is not None}
    for c in order:
        for a in c.inputs:
            if isinstance(a, Tensor) and a._ctx is not None:
                outputs.setdefault(a._ctx, a)
    return outputs


def _keep_edge_gradients(ctx, in_grads, g) -> None:
    """Add the gradients operation `ctx` sent its inputs (shaped like them) to
    ``ctx.grad_inputs``, summed over the passes that retain the graph: the gradient
    along each edge of the graph, for drawings."""
    shaped = tuple(
        None if gx is None else _shaped(gx, x, ctx, g) for x, gx in zip(ctx.inputs, in_grads)
    )
    prev = ctx.grad_inputs
    ctx.grad_inputs = shaped if prev is None else tuple(map(_add_or_none, prev, shaped))


def _add_or_none(a, b):
    if a is None:
        return b
    return a if b is None else a + b


def _shaped(gx, x, ctx, g):
    """The gradient `gx` that operation `ctx` sends to its input `x`, with that input's
    shape and dtype.

    A gradient may have a larger shape only where forward broadcast the input to the
    output's shape (that of `g`, the output's gradient): over axes the input lacked, and
    axes where it had length 1, each as long as the output's. There it is summed back;
    any other shape is an error naming the Function and both shapes.
    """
    d = x._data
    cls = gx.__class__
    if cls is d.__class__ and (cls is not _ndarray or gx.shape == d.shape and gx.dtype == d.dtype):
        return gx  # already like its input
    if not isinstance(gx, (_ndarray, np.generic, Tensor)):
        gx = np.asarray(gx)
    shape = d.shape
    if gx.shape != shape:
        out_shape = np.shape(g)
        if not _broadcast_from(shape, gx.shape, out_shape):
            raise RuntimeError(
                f"{ctx.fn.__name__}.backward returned a gradient of shape {gx.shape} for an "
                f"input of shape {shape} (the output has shape {out_shape}): a gradient "
                "has its input's shape, or the shape forward broadcast that input to"
            )
        lead = gx.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and gx.shape[lead + i] != 1
        )
        gx = gx.sum(axis=axes).reshape(shape)
    if gx.dtype != d.dtype:
        gx = Cast.call(gx, d.dtype)
    return gx


def _broadcast_from(shape: tuple, gshape: tuple, out_shape: tuple) -> bool:
    """Whether `gshape` is `shape` broadcast along axes of `out_shape` (right-aligned)."""
    lead = len(gshape) - len(shape)
    offset = len(out_shape) - len(gshape)
    if lead < 0 or offset < 0:
        return False
    for i, n in enumerate(gshape):
        if i < lead:  # an axis the input lacked
            ok = n == out_shape[offset + i]
        else:
            s = shape[i - lead]
            ok = n == s or (s == 1 and n == out_shape[offset + i])
        if not ok:
            return False
    return True


def _store_leaf_gradients(grad_of: dict) -> None:
    """Add the gradients of this pass to the leaves' ``.grad``.

    A leaf owns its gradient: a view, or an array also handed to another leaf, is
    copied, so changing one ``.grad`` in place never changes another.
    """
    handed = set()
    for t, g in grad_of.items():
        if not isinstance(t, Tensor):
            continue  # an operation no pass reached (its gradient is None)
        if isinstance(g, Tensor):
            t._grad = _sum(t._grad, g)
            continue
        if g.__class__ is not _ndarray:
            g = np.asarray(g)
        elif g.base is not None or id(g) in handed:
            g = g.copy()
        handed.add(id(g))
        prev = t._grad
        if prev is None:
            t._grad = g
        else:
            s = prev + g
            t._grad = s if s.__class__ is _ndarray or isinstance(s, Tensor) else np.asarray(s)
