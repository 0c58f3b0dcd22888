"""Forward mode: tangents pushed through each operation next to its value.

``jvp(fn, primals, tangents)`` opens a level: the inputs get their tangents at that
level, and while `fn` runs every operation (`Function.apply`) also runs its Function's
`jvp` rule, giving its output's tangent. Levels nest: `jvp` inside `jvp` (forward over
forward), `jvp` of a function that runs a backward pass (forward over reverse: the
operations of the backward pass push tangents too), a backward pass through tangents
(reverse over forward). A rule for one level runs with only the levels outside it
active, so the operations inside the rule give the tangents of the tangent to the
outer levels, and no level sees its own perturbation twice (JAX's levels).

A rule runs on arrays when nothing outside will differentiate the tangent (a top-level
`jvp`), and on Tensors, recorded, when something will (another level, or inputs that
require grad).
"""

from __future__ import annotations

import weakref

import numpy as np

from chainrule.autograd import function as _function
from chainrule.autograd.array_ops import BroadcastTo, Cast, Identity
from chainrule.autograd.function import _mode, run_rule
from chainrule.autograd.tensor import Tensor

__all__ = ["jvp", "tangent_of"]


class _Level:
    """One active forward-mode level (the key of the tangents it gives)."""

    __slots__ = ()


def tangent_of(t, level):
    """The tangent of Tensor `t` at `level`, or None."""
    try:
        tangents = t._tangents
    except AttributeError:
        return None
    return None if tangents is None else tangents.get(level)


def _set_tangent(t: Tensor, level, tangent) -> None:
    try:
        tangents = t._tangents
    except AttributeError:
        tangents = None
    if tangents is None:
        tangents = t._tangents = {}
    tangents[level] = tangent


def _forward_step(cls, ctx, args, out: Tensor) -> None:
    """Give `out`, the result of ``cls.apply(*args)``, its tangent at each active level
    where an argument has one."""
    levels = _mode.levels
    for k, level in enumerate(levels):
        tangents = []
        found = False
        for a in args:
            t = None
            if isinstance(a, Tensor):
                t = tangent_of(a, level)
                if t is None and not cls.jvp_takes_none:
                    t = np.zeros_like(a.data)
                found = found or t is not None
            tangents.append(t)
        if not found:
            continue
        on_tensors = k > 0 or out.requires_grad or any(isinstance(t, Tensor) for t in tangents)
        _mode.levels = levels[:k]  # the rule's own operations: only the outer levels
        try:
            if on_tensors:
                t = run_rule(cls, cls.jvp, ctx, tuple(tangents), out, "tangent")
            else:
                t = cls.jvp(ctx, *tangents)
            if t is not None:
                _set_tangent(out, level, _like(t, out._data))
        except NotImplementedError:
            raise NotImplementedError(
                f"{cls.__name__} has no forward-mode rule (define {cls.__name__}.jvp)"
            ) from None
        finally:
            _mode.levels = levels


_function._hooks.forward_step = _forward_step


def _like(t, data):
    """Tangent `t` with the shape and dtype of the value `data` (broadcast, cast)."""
    if not isinstance(t, Tensor):
        t = np.asarray(t, dtype=data.dtype)
        if t.shape != data.shape:
            t = np.broadcast_to(t, data.shape).copy()
        return t
    if t.shape != data.shape:
        t = BroadcastTo.apply(t, data.shape)
    if t.dtype != data.dtype:
        t = Cast.apply(t, data.dtype)
    return t


# The Tensors `enter` made (the inputs of transformations), and those of the
# transformations running now.
_entered = weakref.WeakSet()
_running: list = []


def enter(x, requires_grad: bool = False) -> Tensor:
    """`x` as a Tensor of its own for a transformation to attach a tangent or take a
    gradient at: a new leaf for a number or an array, an `Identity` node on a Tensor
    (so an outer transformation still sees through it)."""
    if not isinstance(x, Tensor):
        t = Tensor(x, requires_grad=requires_grad)
    else:
        t = Identity.apply(x)
        if requires_grad:
            t.requires_grad = True
    _entered.add(t)
    return t


class running:
    """Context manager: the transformation whose inputs are `inputs` runs inside it."""

    def __init__(self, inputs):
        self.ids = {id(t) for t in inputs}

    def __enter__(self):
        _running.append(self.ids)
        return self

    def __exit__(self, *exc):
        _running.pop()  # the frames nest: this one is the last
        return False


def is_nested(values) -> bool:
    """Whether a transformation called with `values` runs inside another: a value is a
    Tensor, or a forward-mode level is active."""
    return bool(_mode.levels) or any(isinstance(v, Tensor) for v in values)


def depends_on_outer(outs, own) -> bool:
    """Whether the graph of `outs` reaches, besides a transformation's own inputs `own`,
    a leaf that requires grad and is not the finished input of another transformation:
    then something outside follows this computation (an outer transformation, or a
    backward pass to that leaf), and results must carry their graph."""
    own = {id(t) for t in own}
    todo = [o for o in outs if isinstance(o, Tensor)]
    seen = set()
    while todo:
        t = todo.pop()
        if id(t) in own:
            continue
        c = t._ctx
        if c is None:
            if t.requires_grad and (t not in _entered or any(id(t) in r for r in _running)):
                return True
            continue
        if id(c) not in seen:
            seen.add(id(c))
            todo.extend(a for a in c.inputs if isinstance(a, Tensor))
    return False


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def jvp(fn, primals, tangents):
    """Jacobian-vector product in one forward pass (JAX's ``jax.jvp``).

    ``jvp(f, (x, y), (tx, ty))`` returns ``(f(x, y), J tx + J ty)``: every operation of
    `fn` pushes the tangents of its inputs through its own `jvp` rule next to its value,
    with no finite differences and no reverse pass. `fn` takes one Tensor per primal and
    returns a Tensor or a tuple of them (the result is then a tuple of values and a
    tuple of tangents). Called on numbers or arrays, the results are arrays; inside
    another transformation (a Tensor among the primals or tangents) they are Tensors
    that carry the graph, so they can be differentiated again.
    """
    primals = _as_tuple(primals)
    tangents = _as_tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    nested = is_nested(primals + tangents)
    level = _Level()
    inputs = []
    for i, (p, t) in enumerate(zip(primals, tangents)):
        x = enter(p)
        if not isinstance(t, Tensor):
            t = np.asarray(t, dtype=x.dtype)
            if t.dtype.kind != "f":
                t = t.astype(np.float64)
        if t.shape != x.shape:
            raise ValueError(
                f"jvp: tangent {i} has shape {tuple(t.shape)} but its primal has shape {x.shape}"
            )
        _set_tangent(x, level, t)
        inputs.append(x)
    outer = _mode.levels
    _mode.levels = outer + (level,)
    try:
        with running(inputs):
            out = fn(*inputs)
    finally:
        _mode.levels = outer
    outs = _as_tuple(out)
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"jvp: fn must return Tensors, got {type(o).__name__}")
    # An output that does not depend on the inputs has a zero tangent.
    out_tangents = [tangent_of(o, level) for o in outs]
    out_tangents = [np.zeros_like(o.data) if t is None else t for o, t in zip(outs, out_tangents)]
    keep = nested or depends_on_outer(list(outs) + out_tangents, inputs)
    values = [o if keep else o.data for o in outs]
    if keep:
        out_tangents = [t if isinstance(t, Tensor) else Tensor(t) for t in out_tangents]
    else:
        out_tangents = [t.data if isinstance(t, Tensor) else t for t in out_tangents]
    if isinstance(out, (tuple, list)):
        return tuple(values), tuple(out_tangents)
    return values[0], out_tangents[0]
