"""The backward pass: upstream gradient x local gradient = downstream gradient.

`run_backward` walks the graph of recorded operations from the output to the leaves in
reverse topological order, without recursion. Each operation runs its Function's
`backward` once, after every operation that consumed its output has sent its gradient,
and hands the resulting gradients to its inputs (`_run_ready`, the one place where
gradients are delivered), where gradients reaching the same value add up (the lecture's
"copy gate").

How the order is found without a separate pass over the graph: `Function.apply` counts,
on each operation's context, how many recorded operations consume its output
(``_consumers``). A pass marks the operations it reaches (``_visit``) and counts down the
consumers each still waits for (``_left``); an operation whose count reaches 0 is ready.
Consumers that are not part of this pass (an output also used by another loss) never
send a gradient; if the pass stalls on them, `_recount` counts exactly which consumers
are still to come and the pass goes on.

The pass works on the engine's private fields (``_data``, ``_ctx``, ``_grad`` of a
Tensor; the fields of a `Context`) and imports neither: it runs below both.
"""

from __future__ import annotations

import numpy as np

__all__ = ["run_backward"]

_ndarray = np.ndarray

_RELEASED_MESSAGE = (
    "trying to backward through the graph a second time: its saved values were "
    "released by the first backward; use backward(retain_graph=True) the first time "
    "to keep them"
)


def run_backward(root, grad, retain_graph: bool = False) -> None:
    """Backpropagate `grad` (dL/d root, shaped like root) through the graph of `root`.

    The leaves' ``.grad`` grow by the gradients that reach them. Unless `retain_graph`,
    what each forward saved is released as soon as its backward has run.
    """
    ctx = root._ctx
    if ctx is None:  # a leaf: its gradient is the upstream gradient itself
        g = np.array(grad, dtype=root._data.dtype)
        root._grad = g if root._grad is None else root._grad + g
        return

    visit = object()  # marks the operations this pass has reached
    ctx._visit = visit
    ctx._left = 0
    ctx._gsum = grad
    ready = [ctx]
    leaf_grads = {}
    waiting = _run_ready(ready, visit, retain_graph, leaf_grads)
    while waiting:
        # Stalled on consumers outside this pass: count exactly which are still to come.
        waiting = _recount(ctx, visit, ready.append)
        if not ready:
            raise RuntimeError("backward: the graph has a cycle")
        waiting += _run_ready(ready, visit, retain_graph, leaf_grads)
    _store_leaf_gradients(leaf_grads)


def _run_ready(ready: list, visit, retain_graph: bool, leaf_grads: dict) -> int:
    """Run the backward of every operation in `ready`, and of every operation that
    becomes ready meanwhile, until none is left.

    An operation takes the gradient of its output (``_gsum``, summed over its consumers),
    runs its Function's backward (upstream x local) and hands each input that wants a
    gradient its own: a leaf's add up in `leaf_grads`, an operation's in its ``_gsum``;
    once an operation's last consumer has sent its part, it joins `ready`. Returns the
    change in the number of reached operations that still wait for consumers.
    """
    push = ready.append
    pop = ready.pop
    waiting = 0
    while ready:
        c = pop()
        inputs = c.inputs
        g = c._gsum
        if g is None:
            # Every consumer sent None: nothing to pass on, but the inputs must still hear
            # from this consumer.
            in_grads = (None,) * len(inputs)
        else:
            if c.saved_tensors is None:
                raise RuntimeError(_RELEASED_MESSAGE)
            if retain_graph or c.retain_grad:
                prev = c.grad_output
                c.grad_output = g if prev is None else prev + g
            backward = c._operator_backward
            if backward is not None:
                # A binary operator's Function (see Context._operator_backward): it
                # takes NumPy scalars and returns two gradients.
                in_grads = backward(c, g)
            else:
                fn = c.fn
                if not (g.__class__ is _ndarray or fn.scalar_inputs):
                    g = np.asarray(g)
                in_grads = fn.backward(c, g)
                if in_grads.__class__ is not tuple:
                    in_grads = (in_grads,)
                if len(in_grads) != len(inputs):
                    raise _count_error(fn, in_grads, inputs)
        if retain_graph:
            in_grads = _keep_edge_gradients(c, in_grads)
        else:
            # Free what forward saved as soon as it has been used.
            c.saved_tensors = None
            if c._operator_backward is None:
                c.__dict__.clear()
        # Downstream: each input that wants a gradient gets its own (None: this consumer
        # sends none), with the input's shape and dtype.
        needs = c.needs_input_grad
        i = 0
        for t in inputs:
            if needs[i]:
                ig = in_grads[i]
                if ig is not None:
                    d = t._data
                    cls = ig.__class__
                    if cls is not d.__class__ or (
                        cls is _ndarray and (ig.shape != d.shape or ig.dtype != d.dtype)
                    ):
                        ig = _conform(ig, d, c)
                pc = t._ctx
                if pc is None:  # a leaf
                    if ig is not None:
                        prev = leaf_grads.get(t)
                        leaf_grads[t] = ig if prev is None else prev + ig
                elif pc._visit is visit:
                    if ig is not None:
                        prev = pc._gsum
                        pc._gsum = ig if prev is None else prev + ig
                    left = pc._left - 1
                    pc._left = left
                    if left == 0:
                        push(pc)
                        waiting -= 1
                else:  # the first consumer to reach this operation in this pass
                    pc._visit = visit
                    pc._gsum = ig
                    left = pc._consumers - 1
                    pc._left = left
                    if left == 0:
                        push(pc)
                    else:
                        waiting += 1
            i += 1
        c._gsum = None
    return waiting


def _count_error(fn, in_grads, inputs) -> RuntimeError:
    return RuntimeError(
        f"{fn.__name__}.backward returned {len(in_grads)} gradients for {len(inputs)} inputs"
    )


def _keep_edge_gradients(c, in_grads) -> tuple:
    """The gradients operation `c` sends its inputs, given their inputs' shapes and
    added to ``c.grad_inputs`` (summed over the passes that retain the graph): the
    gradient along each edge of the graph, for drawings."""
    in_grads = tuple(
        _conform(ig, t._data, c) if need and ig is not None else None
        for t, ig, need in zip(c.inputs, in_grads, c.needs_input_grad)
    )
    prev = c.grad_inputs
    c.grad_inputs = in_grads if prev is None else tuple(map(_add_or_none, prev, in_grads))
    return in_grads


def _add_or_none(a, b):
    if a is None:
        return b
    return a if b is None else a + b


def _conform(ig, data, c):
    """The gradient `ig` that operation `c` sends to an input of value `data`, with that
    input's shape and dtype.

    A gradient may have a larger shape only where forward broadcast the input to the
    output's shape (that of ``c._gsum``, the output's gradient): over axes the input
    lacked, and axes where it had length 1, each as long as the output's. There it is
    summed back; any other shape is an error naming the Function and both shapes.
    """
    if not isinstance(ig, (_ndarray, np.generic)):
        ig = np.asarray(ig)
    shape = data.shape
    if ig.shape != shape:
        out_shape = np.shape(c._gsum)
        if not _broadcast_from(shape, ig.shape, out_shape):
            raise RuntimeError(
                f"{c.fn.__name__}.backward returned a gradient of shape {ig.shape} for an "
                f"input of shape {shape} (the output has shape {out_shape}): a gradient "
                "has its input's shape, or the shape forward broadcast that input to"
            )
        lead = ig.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and ig.shape[lead + i] != 1
        )
        ig = np.asarray(ig).sum(axis=axes).reshape(shape)
    if ig.dtype != data.dtype:
        ig = ig.astype(data.dtype)
    return ig


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


def _store_leaf_gradients(leaf_grads: dict) -> None:
    """Add the gradients of this pass to the leaves' ``.grad``.

    A leaf owns its gradient: a view, or an array also handed to another leaf, is
    copied, so changing one ``.grad`` in place never changes another.
    """
    handed = set()
    for t, g in leaf_grads.items():
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
            t._grad = s if s.__class__ is _ndarray else np.asarray(s)


def _recount(root_ctx, visit, push) -> int:
    """Count exactly which consumers are still to send a gradient, for every operation
    of the graph below `root_ctx` that has not run yet; queue those that wait for none.

    Called when the pass stalls (nothing queued): then an operation has run exactly when
    it was reached (marked `visit`) and waits for nobody (``_left == 0``).
    Returns how many operations still wait for a consumer.
    """
    pending = [c for c in _graph_contexts(root_ctx) if not (c._visit is visit and c._left == 0)]
    for c in pending:
        if c._visit is not visit:  # not reached yet
            c._visit = visit
            c._gsum = None
        c._left = 0
    for c in pending:
        for t, need in zip(c.inputs, c.needs_input_grad):
            if need and t._ctx is not None:
                t._ctx._left += 1
    waiting = 0
    for c in pending:
        if c._left == 0:
            push(c)
        else:
            waiting += 1
    return waiting


def _graph_contexts(root_ctx) -> list:
    """The contexts of every recorded operation that `root_ctx` depends on (itself
    included), found without recursion."""
    seen = {root_ctx}
    stack = [root_ctx]
    found = []
    while stack:
        c = stack.pop()
        found.append(c)
        for t, need in zip(c.inputs, c.needs_input_grad):
            if need:
                pc = t._ctx
                if pc is not None and pc not in seen:
                    seen.add(pc)
                    stack.append(pc)
    return found
