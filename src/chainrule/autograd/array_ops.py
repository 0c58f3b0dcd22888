"""Operations on whole arrays: reductions, softmax, reshaping, indexing and joining.

Each is a `Function` with its rules written once, on arrays or Tensors alike (see
`chainrule.autograd.function`): `forward` on arrays, `backward` turning the upstream
gradient into one downstream gradient per input, `jvp` pushing tangents forward. The
elementwise primitives (and the conventions at ties) are in `chainrule.autograd.ops`.

Most of these operations are linear (`LinearPrimitive`): a sum, a reshape, a
transpose, picking entries, joining arrays. Such an operation needs no derivative rule
of its own: its tangent is the operation itself applied to the tangent, and its
backward is its transpose, another linear operation of this module (the transpose of
a sum is a broadcast, of picking entries is adding into zeros, ...), whose own
backward is the first again: every order of derivative stays in this closed family.

At ties, ``max`` shares the gradient equally among the entries equal to the maximum
(each gets upstream / count), so the gradient sums to the upstream value.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.arraymath import log_softmax, softmax
from chainrule.autograd.function import Primitive
from chainrule.autograd.ops import Exp
from chainrule.autograd.tensor import Tensor

__all__ = [
    "BroadcastTo",
    "Cast",
    "Concatenate",
    "GetItem",
    "Identity",
    "IndexAdd",
    "LinearPrimitive",
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
    "sum_to",
]


class LinearPrimitive(Primitive):
    """An operation linear in its Tensor arguments (the others are constants: an axis, a
    shape, an index). Its tangent comes from its definition: the operation applied to
    the tangents in place of the inputs (zeros for an input without one). A subclass
    writes `forward` and `backward`, the transpose."""

    @classmethod
    def jvp(cls, ctx, *tangents):
        args = [
            raw if not isinstance(a, Tensor) else (np.zeros_like(raw) if t is None else t)
            for a, raw, t in zip(ctx.inputs, ctx._raw, tangents)
        ]
        return cls.call(*args)


# ------------------------------------------------------------------ reductions


def _expand(g, shape, axis, keepdims):
    """Broadcast a reduced gradient (of ``sum(axis, keepdims)`` of an input of `shape`)
    back to the input's shape."""
    if not keepdims:
        kept = tuple(1 if axis is None or i in axis else n for i, n in enumerate(shape))
        g = g.reshape(kept)
    return BroadcastTo.call(g, shape)


def sum_to(g, shape):
    """`g` summed over the axes along which an array of `shape` was broadcast to g's
    shape (the transpose of broadcasting)."""
    gshape = np.shape(g)
    if gshape == tuple(shape):
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and gshape[lead + i] != 1
    )
    return g.sum(axis=axes).reshape(shape)


def _normalize_axis(axis, ndim):
    if axis is None:
        return None
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    try:
        return tuple(int(a) % ndim if ndim else int(a) for a in axes)
    except (TypeError, ValueError):
        raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}") from None


class Sum(LinearPrimitive):
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


class Mean(LinearPrimitive):
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
        if not ctx.keepdims:
            axis = ctx.axis
            g = g.reshape(
                tuple(1 if axis is None or i in axis else n for i, n in enumerate(weights.shape))
            )
        return g * weights, None, None

    @staticmethod
    def jvp(ctx, t, _ta, _tk):
        (weights,) = ctx.saved_tensors
        return (t * weights).sum(axis=ctx.axis, keepdims=ctx.keepdims)


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

    @classmethod
    def jvp(cls, ctx, t, _ta):
        # The Jacobian diag(s) - s s^T is symmetric: pushing a tangent forward is the
        # same product as pulling a gradient back.
        return cls.backward(ctx, t)[0]


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
        return g - Exp.call(out) * g.sum(axis=ctx.axis, keepdims=True), None

    @staticmethod
    def jvp(ctx, t, _ta):
        (out,) = ctx.saved_tensors
        return t - (Exp.call(out) * t).sum(axis=ctx.axis, keepdims=True)


# ------------------------------------------------------------------ shape


class Reshape(LinearPrimitive):
    """x.reshape(shape); its transpose reshapes back."""

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
        return Reshape.call(g, ctx.shape), None


class Transpose(LinearPrimitive):
    """x.transpose(axes); its transpose permutes back."""

    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return np.transpose(x, axes)

    @staticmethod
    def backward(ctx, g):
        axes = ctx.axes
        return Transpose.call(g, None if axes is None else tuple(np.argsort(axes))), None


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


class GetItem(LinearPrimitive):
    """x[index] with slices, integers, masks and integer arrays; its transpose is
    `IndexAdd`.

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
        return IndexAdd.call(g, ctx.shape, ctx.index), None


class IndexAdd(LinearPrimitive):
    """``zeros(shape)`` with `g` added at `index` (``np.add.at``): the transpose of
    ``x[index]``, whose own transpose is `GetItem` again."""

    @staticmethod
    def forward(ctx, g, shape, index):
        ctx.index = index
        out = np.zeros(shape, dtype=np.result_type(g))
        if _selects_each_entry_once(index):
            out[index] = g
        else:
            np.add.at(out, index, g)
        return out

    @staticmethod
    def backward(ctx, g):
        return GetItem.call(g, ctx.index), None, None


class BroadcastTo(LinearPrimitive):
    """x broadcast to `shape` (a read-only view for arrays); its transpose sums back."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = np.shape(x)
        return np.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, g):
        return sum_to(g, ctx.shape), None


class Identity(LinearPrimitive):
    """x itself as a node of its own (a view of its array): where a transformation takes
    its input, so that its tangent or gradient belongs to a value of its own while the
    computations around it still see through it."""

    @staticmethod
    def forward(ctx, x):
        return np.asarray(x).view()

    @staticmethod
    def backward(ctx, g):
        return g


class Cast(LinearPrimitive):
    """x as `dtype` (float32 <-> float64); its transpose casts back."""

    @staticmethod
    def forward(ctx, x, dtype):
        ctx.dtype = np.result_type(x)
        return np.asarray(x).astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return Cast.call(g, ctx.dtype), None


class Concatenate(LinearPrimitive):
    """concatenate(tensors, axis); apply as Concatenate.apply(axis, *tensors)."""

    @staticmethod
    def forward(ctx, axis, *xs):
        ctx.axis = axis
        ctx.splits = [int(v) for v in np.cumsum([np.shape(x)[axis] for x in xs])[:-1]]
        return np.concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, g):
        before = (slice(None),) * (ctx.axis % g.ndim)
        bounds = zip([0, *ctx.splits], [*ctx.splits, g.shape[ctx.axis]])
        return (None, *(GetItem.call(g, (*before, slice(a, b))) for a, b in bounds))


class Stack(LinearPrimitive):
    """stack(tensors, axis); apply as Stack.apply(axis, *tensors)."""

    @staticmethod
    def forward(ctx, axis, *xs):
        ctx.axis = axis
        return np.stack(xs, axis=axis)

    @staticmethod
    def backward(ctx, g):
        before = (slice(None),) * (ctx.axis % g.ndim)
        return (None, *(GetItem.call(g, (*before, i)) for i in range(g.shape[ctx.axis])))


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
