"""Operations on whole arrays: reductions, softmax, reshaping, indexing and joining.

Each is a `Function` with its rules written once: `forward` on arrays, `backward` turning
the upstream gradient into one downstream gradient per input, `jvp` pushing tangents
forward. The elementwise primitives (and the conventions at ties) are in
`chainrule.autograd.ops`.

At ties, ``max`` shares the gradient equally among the entries equal to the maximum
(each gets upstream / count), so the gradient sums to the upstream value.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.arraymath import log_softmax, softmax
from chainrule.autograd.function import Primitive
from chainrule.autograd.tensor import Tensor

__all__ = [
    "Concatenate",
    "GetItem",
    "LogSoftmax",
    "Max",
    "Mean",
    "Reshape",
    "Softmax",
    "Stack",
    "Sum",
    "Transpose",
    "concatenate",
    "stack",
]

# ------------------------------------------------------------------ reductions


def _expand(g, shape, axis, keepdims):
    """Broadcast a reduced gradient back to the input's shape."""
    if axis is not None and not keepdims:
        g = np.expand_dims(g, axis)
    return np.broadcast_to(g, shape)


def _normalize_axis(axis, ndim):
    if axis is None:
        return None
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    try:
        return tuple(int(a) % ndim if ndim else int(a) for a in axes)
    except (TypeError, ValueError):
        raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}") from None


class Sum(Primitive):
    """x.sum(axis, keepdims); the gradient is the upstream value copied to every entry."""

    @staticmethod
    def forward(ctx, x, axis, keepdims):
        axis = _normalize_axis(axis, np.ndim(x))
        ctx.shape = np.shape(x)
        ctx.axis = axis
        ctx.keepdims = keepdims
        return np.sum(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return _expand(g, ctx.shape, ctx.axis, ctx.keepdims), None, None

    @staticmethod
    def jvp(ctx, t, _ta, _tk):
        return np.sum(t, axis=ctx.axis, keepdims=ctx.keepdims)


class Mean(Primitive):
    """x.mean(axis, keepdims)."""

    @staticmethod
    def forward(ctx, x, axis, keepdims):
        axis = _normalize_axis(axis, np.ndim(x))
        ctx.shape = np.shape(x)
        ctx.axis = axis
        ctx.keepdims = keepdims
        out = np.mean(x, axis=axis, keepdims=keepdims)
        ctx.count = np.size(x) // max(np.size(out), 1) if np.size(x) else 1
        return out

    @staticmethod
    def backward(ctx, g):
        return _expand(g / ctx.count, ctx.shape, ctx.axis, ctx.keepdims), None, None

    @staticmethod
    def jvp(ctx, t, _ta, _tk):
        return np.mean(t, axis=ctx.axis, keepdims=ctx.keepdims)


class Max(Primitive):
    """x.max(axis, keepdims): the max gate routes the gradient to the largest entry
    (shared equally among tied maxima)."""

    @staticmethod
    def forward(ctx, x, axis, keepdims):
        axis = _normalize_axis(axis, np.ndim(x))
        out = np.max(x, axis=axis, keepdims=True)
        weights = (x == out).astype(out.dtype)
        weights /= weights.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(weights)
        ctx.axis = axis
        ctx.keepdims = keepdims
        return out if keepdims else (np.squeeze(out, axis) if axis is not None else out.reshape(()))

    @staticmethod
    def backward(ctx, g):
        (weights,) = ctx.saved_tensors
        if ctx.axis is None:
            g = np.reshape(g, (1,) * weights.ndim)
        elif not ctx.keepdims:
            g = np.expand_dims(g, ctx.axis)
        return (g * weights).astype(weights.dtype, copy=False), None, None

    @staticmethod
    def jvp(ctx, t, _ta, _tk):
        (weights,) = ctx.saved_tensors
        return np.sum(weights * t, axis=ctx.axis, keepdims=ctx.keepdims)


# ------------------------------------------------------------------ softmax


class Softmax(Primitive):
    """softmax(x) along `axis`: ds = s * (g - sum(g * s))."""

    @staticmethod
    def forward(ctx, x, axis):
        s = softmax(x, axis)
        ctx.save_for_backward(s)
        ctx.axis = axis
        return s

    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        gs = g * s
        return gs - s * gs.sum(axis=ctx.axis, keepdims=True), None

    @staticmethod
    def jvp(ctx, t, _ta):
        (s,) = ctx.saved_tensors
        return s * (t - (s * t).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Primitive):
    """log(softmax(x)) along `axis`, computed as z - log(sum(exp(z))) with z = x - max."""

    @staticmethod
    def forward(ctx, x, axis):
        out = log_softmax(x, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g - np.exp(out) * g.sum(axis=ctx.axis, keepdims=True), None

    @staticmethod
    def jvp(ctx, t, _ta):
        (out,) = ctx.saved_tensors
        return t - (np.exp(out) * t).sum(axis=ctx.axis, keepdims=True)


# ------------------------------------------------------------------ shape


class Reshape(Primitive):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = np.shape(x)
        try:
            out = np.reshape(x, shape)
            ctx.out_shape = out.shape
            return out
        except ValueError:
            raise ValueError(
                f"cannot reshape a tensor of shape {np.shape(x)} into shape {shape}"
            ) from None

    @staticmethod
    def backward(ctx, g):
        return np.reshape(g, ctx.shape), None

    @staticmethod
    def jvp(ctx, t, _ts):
        return np.reshape(t, ctx.out_shape)


class Transpose(Primitive):
    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return np.transpose(x, axes)

    @staticmethod
    def backward(ctx, g):
        if ctx.axes is None:
            return np.transpose(g), None
        return np.transpose(g, np.argsort(ctx.axes)), None

    @staticmethod
    def jvp(ctx, t, _ta):
        return np.transpose(t, ctx.axes)


def _selects_each_entry_once(index) -> bool:
    """True when `x[index]` cannot select one entry twice, so the backward pass may
    write the gradient with a plain assignment instead of the slower ``np.add.at``.

    Basic indexing (ints, slices, ``...``, None) and boolean masks never repeat an
    entry; integer arrays do not when one of them (not broadcast) is strictly monotonic
    with all entries of one sign, like ``np.arange(N)`` in ``x[np.arange(N), y]``.
    """
    parts = index if isinstance(index, tuple) else (index,)
    arrays = []
    for p in parts:
        if p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)):
            continue
        a = np.asarray(p)
        if a.dtype == bool:
            if len(parts) > 1:
                return False
            continue
        if a.ndim == 0:
            continue
        arrays.append(a)
    if not arrays:
        return True
    n = int(np.prod(np.broadcast_shapes(*(a.shape for a in arrays))))
    if n <= 1:
        return True
    for a in arrays:
        if a.size != n:
            continue
        flat = a.reshape(-1)
        if not (flat[0] >= 0 and flat[-1] >= 0) and not (flat[0] < 0 and flat[-1] < 0):
            continue
        step = np.diff(flat)
        if (step > 0).all() or (step < 0).all():
            return True
    return False


class GetItem(Primitive):
    """x[index] with slices, integers, masks and integer arrays.

    Entries selected several times by an integer array receive the sum of their
    gradients.
    """

    @staticmethod
    def forward(ctx, x, index):
        x = np.asarray(x)
        ctx.shape = x.shape
        ctx.index = index
        return x[index]

    @staticmethod
    def backward(ctx, g):
        out = np.zeros(ctx.shape, dtype=np.result_type(g))
        index = ctx.index
        if _selects_each_entry_once(index):
            out[index] = g
        else:
            np.add.at(out, index, g)
        return out, None

    @staticmethod
    def jvp(ctx, t, _ti):
        return t[ctx.index]


class Concatenate(Primitive):
    """concatenate(tensors, axis); apply as Concatenate.apply(axis, *tensors)."""

    @staticmethod
    def forward(ctx, axis, *xs):
        ctx.axis = axis
        ctx.splits = np.cumsum([np.shape(x)[axis] for x in xs])[:-1]
        return np.concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return (None, *np.split(g, ctx.splits, axis=ctx.axis))

    @staticmethod
    def jvp(ctx, _ta, *ts):
        return np.concatenate(ts, axis=ctx.axis)


class Stack(Primitive):
    """stack(tensors, axis); apply as Stack.apply(axis, *tensors)."""

    @staticmethod
    def forward(ctx, axis, *xs):
        ctx.axis = axis
        return np.stack(xs, axis=axis)

    @staticmethod
    def backward(ctx, g):
        n = g.shape[ctx.axis]
        return (None, *(np.take(g, i, axis=ctx.axis) for i in range(n)))

    @staticmethod
    def jvp(ctx, _ta, *ts):
        return np.stack(ts, axis=ctx.axis)


# ------------------------------------------------------------------ functions


def _check_tensors(tensors, what):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{what} needs at least one tensor")
    return tensors


def concatenate(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    tensors = _check_tensors(tensors, "concatenate")
    try:
        return Concatenate.apply(axis, *tensors)
    except ValueError as e:
        shapes = [tuple(np.shape(getattr(t, "data", t))) for t in tensors]
        raise ValueError(f"concatenate: cannot join shapes {shapes} on axis {axis}: {e}") from None


def stack(tensors, axis: int = 0) -> Tensor:
    """Join tensors of equal shape along a new axis."""
    tensors = _check_tensors(tensors, "stack")
    try:
        return Stack.apply(axis, *tensors)
    except ValueError as e:
        shapes = [tuple(np.shape(getattr(t, "data", t))) for t in tensors]
        raise ValueError(f"stack: cannot stack shapes {shapes} on axis {axis}: {e}") from None
