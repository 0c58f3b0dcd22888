"""The first-order backward pass, scheduled for speed: the engine's one speed trick.

It computes what `chainrule.autograd.backward.run_backward` computes for a first-order
pass that releases the graph (``loss.backward()``), and is tested to give the same
gradients; `Tensor.backward` runs it for those passes, `run_backward` for all others.

Why it exists: in a graph of scalars (micrograd's demo: 65,000 operations) the plain
pass spends as much time finding the order and looking gradients up in a dictionary as
running the rules. This pass needs no search: as the graph is recorded,
`Function.apply` counts on each operation's context how many recorded operations use
its output (``_consumers``), and here an operation runs as soon as every operation that
uses its output has sent its gradient (Kahn's algorithm), taking the gradients from
slots of the contexts. Measured with ``bench_engine.py --only scalar``: the demo's step
(build + backward) takes 0.90-0.95 of micrograd's time with this pass, and 2.2 times as
long with the plain pass alone.

An output also used by an operation outside this pass (a second loss that is never
backpropagated) would wait forever for that consumer's gradient: when the pass stalls,
`_count_in_pass` counts exactly the consumers inside the pass and it goes on.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.backward import _shaped, _store_leaf_gradients, wrong_gradient_count
from chainrule.autograd.function import _RELEASED_MESSAGE

__all__ = ["first_order_backward"]

_ndarray = np.ndarray


def first_order_backward(root, grad) -> None:
    """Add to each leaf's ``.grad`` its gradient from the graph of `root` (an operation's
    output) for the upstream gradient `grad` (an array of root's shape), releasing what
    forward saved; `run_backward(retain_graph=False, create_graph=False)`, faster."""
    start = root._ctx
    visit = object()  # marks the operations this pass has reached
    start._visit = visit
    start._left = 0
    start._gsum = grad
    ready = [start]
    leaf_grads = {}
    waiting = _run_ready(ready, visit, leaf_grads)
    while waiting:  # stalled on consumers outside this pass
        waiting = _count_in_pass(start, visit, ready)
        waiting += _run_ready(ready, visit, leaf_grads)
    _store_leaf_gradients(leaf_grads)


def _run_ready(ready: list, visit, leaf_grads: dict) -> int:
    """Run every operation in `ready`, and each that becomes ready meanwhile: the same
    steps as the plain loop (backward, shape, add at forks), then each input's operation
    joins `ready` once its last consumer in this pass has sent its gradient. Returns how
    many operations reached are still waiting for a consumer."""
    push = ready.append
    pop = ready.pop
    waiting = 0
    while ready:
        c = pop()
        g = c._gsum
        c._gsum = None
        inputs = c.inputs
        if g is None:  # every consumer sent None: the inputs still hear from this one
            in_grads = (None,) * len(inputs)
        else:
            if c.saved_tensors is None:
                raise RuntimeError(_RELEASED_MESSAGE)
            if c.retain_grad:  # t.retain_grad(): keep the gradient of its output
                c.grad_output = g if c.grad_output is None else c.grad_output + g
            fn = c.fn
            rule = fn.trusted_backward  # see Function.trusted_rule
            if rule is not None:
                in_grads = rule(c, g)
                if in_grads.__class__ is not tuple:
                    in_grads = (in_grads,)
            else:
                in_grads = _checked_backward(fn, c, g)
            c.saved_tensors = None  # free what forward saved as soon as it has been used
        needs = c.needs_input_grad
        i = 0
        for x in inputs:
            if needs[i]:
                gx = in_grads[i]
                if gx is not None:
                    d = x._data
                    if (
                        gx.__class__ is not d.__class__
                        or gx.__class__ is _ndarray
                        and (gx.shape != d.shape or gx.dtype != d.dtype)
                    ):
                        gx = _shaped(gx, x, c, g)
                pc = x._ctx
                if pc is None:  # a leaf
                    if gx is not None:
                        prev = leaf_grads.get(x)
                        leaf_grads[x] = gx if prev is None else prev + gx
                elif pc._visit is visit:
                    if gx is not None:
                        prev = pc._gsum
                        pc._gsum = gx if prev is None else prev + gx
                    left = pc._left = pc._left - 1
                    if left == 0:
                        push(pc)
                        waiting -= 1
                else:  # the first consumer to reach this operation in this pass
                    pc._visit = visit
                    pc._gsum = gx
                    left = pc._left = pc._consumers - 1
                    if left == 0:
                        push(pc)
                    else:
                        waiting += 1
            i += 1
    return waiting


def _checked_backward(fn, c, g) -> tuple:
    """``fn.backward(c, g)`` as a tuple of one gradient per input, checked, with the
    attributes forward set on `c` cleared."""
    if not (g.__class__ is _ndarray or fn.scalar_inputs):
        g = np.asarray(g)
    in_grads = fn.backward(c, g)
    if in_grads.__class__ is not tuple:
        in_grads = (in_grads,)
    if len(in_grads) != len(c.inputs):
        raise wrong_gradient_count(fn, in_grads, c.inputs)
    c.__dict__.clear()
    return in_grads


def _count_in_pass(start, visit, ready: list) -> int:
    """When the pass stalls: count, for every operation below `start` that has not run,
    how many of its consumers inside this pass have not run either, and queue those
    that wait for none. Returns how many still wait."""
    pending = []  # reached but waiting, or not reached yet
    seen = {start}
    todo = [start]
    while todo:
        c = todo.pop()
        if not (c._visit is visit and c._left == 0):
            pending.append(c)
        for a, need in zip(c.inputs, c.needs_input_grad):
            pc = a._ctx if need else None
            if pc is not None and pc not in seen:
                seen.add(pc)
                todo.append(pc)
    for c in pending:
        if c._visit is not visit:
            c._visit = visit
            c._gsum = None
        c._left = 0
    for c in pending:
        for a, need in zip(c.inputs, c.needs_input_grad):
            if need and a._ctx is not None and a._ctx._visit is visit:
                a._ctx._left += 1
    ready.extend(c for c in pending if c._left == 0)
    if not ready:
        raise RuntimeError("backward: the graph has a cycle")
    return len(pending) - len(ready)
