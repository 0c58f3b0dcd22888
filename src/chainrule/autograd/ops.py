"""The primitive operations, each a `Function` with its local gradient written once.

For each operation: `forward` computes the value on arrays, `backward` turns the
upstream gradient into one downstream gradient per input (upstream x local), and `jvp`
pushes tangents forward (forward mode). Broadcasting is handled by the engine, which
sums a gradient back to its input's shape, so a rule may return the broadcast shape.

Conventions at ties (where the function has no derivative):
- ``relu`` at 0: gradient 0 (the subgradient PyTorch also uses).
- ``max``: when several entries equal the maximum, the gradient is shared equally
  among them (each gets upstream / count), so the gradient sums to the upstream value.
- ``maximum(a, b)`` where ``a == b``: each side gets half of the upstream gradient.
- ``clip(x, lo, hi)``: gradient 1 on the closed interval ``lo <= x <= hi``.
- ``abs`` at 0: gradient 0.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.arraymath import log_softmax, softmax
from chainrule.autograd.engine import Function, Tensor

# ------------------------------------------------------------------ helpers


class Primitive(Function):
    """Base of the built-in operations: their rules also accept NumPy scalars for 0-d
    values (see `Function.scalar_inputs`), which keeps graphs of scalars fast."""

    scalar_inputs = True


def _add_t(a, b):
    """Sum of two tangents, either of which may be None (a constant's zero tangent)."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _broadcast_error(op, a, b):
    return ValueError(f"{op}: shapes {np.shape(a)} and {np.shape(b)} cannot be broadcast together")


def _zero_if_none(t, like):
    return np.zeros(np.shape(like), dtype=np.result_type(like)) if t is None else t


# ------------------------------------------------------------------ arithmetic


class Add(Primitive):
    """a + b. Local gradients 1 and 1: the add gate distributes the upstream gradient."""

    @staticmethod
    def forward(ctx, a, b):
        try:
            return a + b
        except ValueError:
            raise _broadcast_error("add", a, b) from None

    @staticmethod
    def backward(ctx, g):
        return g, g

    @staticmethod
    def jvp(ctx, ta, tb):
        return _add_t(ta, tb)


class Sub(Primitive):
    """a - b."""

    @staticmethod
    def forward(ctx, a, b):
        try:
            return a - b
        except ValueError:
            raise _broadcast_error("sub", a, b) from None

    @staticmethod
    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)

    @staticmethod
    def jvp(ctx, ta, tb):
        return _add_t(ta, None if tb is None else -tb)


class Neg(Primitive):
    """-a."""

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g

    @staticmethod
    def jvp(ctx, t):
        return -t


class Mul(Primitive):
    """a * b. The mul gate swaps: da = b * upstream, db = a * upstream."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        try:
            return a * b
        except ValueError:
            raise _broadcast_error("mul", a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (g * b if need_a else None), (g * a if need_b else None)

    @staticmethod
    def jvp(ctx, ta, tb):
        a, b = ctx.saved_tensors
        return _add_t(None if ta is None else ta * b, None if tb is None else a * tb)


class Div(Primitive):
    """a / b: da = upstream / b, db = -upstream * a / b**2."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        try:
            return a / b
        except ValueError:
            raise _broadcast_error("div", a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = g / b if need_a else None
        gb = -g * a / (b * b) if need_b else None
        return ga, gb

    @staticmethod
    def jvp(ctx, ta, tb):
        a, b = ctx.saved_tensors
        return _add_t(None if ta is None else ta / b, None if tb is None else -tb * a / (b * b))


class Pow(Primitive):
    """a ** b: da = b * a**(b-1) * upstream, db = a**b * log(a) * upstream."""

    @staticmethod
    def forward(ctx, a, b):
        try:
            out = a**b
        except ValueError:
            raise _broadcast_error("pow", a, b) from None
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = g * b * a ** (b - 1) if need_a else None
        gb = g * out * np.log(a) if need_b else None
        return ga, gb

    @staticmethod
    def jvp(ctx, ta, tb):
        a, b, out = ctx.saved_tensors
        return _add_t(
            None if ta is None else ta * b * a ** (b - 1),
            None if tb is None else tb * out * np.log(a),
        )


class MatMul(Primitive):
    """a @ b (NumPy matmul semantics: 1-D, 2-D and batched).

    For y = x w: dL/dx = dL/dy w^T and dL/dw = x^T dL/dy.
    """

    @staticmethod
    def forward(ctx, a, b):
        a = np.asarray(a)
        b = np.asarray(b)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: both operands need at least one dimension, got a scalar")
        ka = a.shape[-1]
        kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if ka != kb:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not match "
                f"(inner dimensions {ka} != {kb})"
            )
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = gb = None
        if a.ndim >= 2 and b.ndim >= 2:
            # Batch dimensions that were broadcast are summed back by the engine.
            if need_a:
                ga = g @ np.swapaxes(b, -1, -2)
            if need_b:
                gb = np.swapaxes(a, -1, -2) @ g
        elif a.ndim == 1 and b.ndim == 1:  # inner product, g is a number
            if need_a:
                ga = g * b
            if need_b:
                gb = g * a
        elif b.ndim == 1:  # (..., n, k) @ (k,) -> (..., n)
            if need_a:
                ga = g[..., None] * b
            if need_b:
                gb = a.reshape(-1, a.shape[-1]).T @ g.reshape(-1)
        else:  # (k,) @ (..., k, m) -> (..., m)
            if need_a:
                ga = (b @ g[..., None])[..., 0]
            if need_b:
                gb = a[:, None] * g[..., None, :]
        return ga, gb

    @staticmethod
    def jvp(ctx, ta, tb):
        a, b = ctx.saved_tensors
        return _add_t(None if ta is None else ta @ b, None if tb is None else a @ tb)


# ------------------------------------------------------------------ elementwise


class Exp(Primitive):
    """exp(x); local gradient exp(x)."""

    @staticmethod
    def forward(ctx, x):
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out

    @staticmethod
    def jvp(ctx, t):
        (out,) = ctx.saved_tensors
        return t * out


class Log(Primitive):
    """log(x); local gradient 1/x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / x

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t / x


class Sqrt(Primitive):
    """sqrt(x); local gradient 1 / (2 sqrt(x))."""

    @staticmethod
    def forward(ctx, x):
        out = np.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g / (2 * out)

    @staticmethod
    def jvp(ctx, t):
        (out,) = ctx.saved_tensors
        return t / (2 * out)


def _sigmoid(x):
    # exp of a non-positive number only: no overflow for logits of any size.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Primitive):
    """sigma(x) = 1 / (1 + e^-x); local gradient (1 - sigma) sigma."""

    @staticmethod
    def forward(ctx, x):
        out = _sigmoid(x).astype(np.result_type(x), copy=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        return g * (1 - s) * s

    @staticmethod
    def jvp(ctx, t):
        (s,) = ctx.saved_tensors
        return t * (1 - s) * s


class Tanh(Primitive):
    """tanh(x); local gradient 1 - tanh(x)^2."""

    @staticmethod
    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)

    @staticmethod
    def jvp(ctx, t):
        (out,) = ctx.saved_tensors
        return t * (1 - out * out)


class ReLU(Primitive):
    """max(0, x); the gradient passes where x > 0 and is 0 elsewhere (0 at x = 0)."""

    @staticmethod
    def forward(ctx, x):
        if x.__class__ is np.ndarray:
            out = np.maximum(x, 0)
        else:  # a NumPy scalar: a comparison costs less than a ufunc call
            out = x if not x <= 0 else x.dtype.type(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (out > 0)

    @staticmethod
    def jvp(ctx, t):
        (out,) = ctx.saved_tensors
        return t * (out > 0)


class Abs(Primitive):
    """|x|; local gradient sign(x) (0 at x = 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * np.sign(x)

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t * np.sign(x)


class Clip(Primitive):
    """clip(x, lo, hi); gradient 1 where lo <= x <= hi, 0 outside."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        mask = np.ones(np.shape(x), dtype=bool)
        if lo is not None:
            mask &= x >= lo
        if hi is not None:
            mask &= x <= hi
        ctx.save_for_backward(mask)
        return np.clip(x, lo, hi)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask, None, None

    @staticmethod
    def jvp(ctx, t, _tlo, _thi):
        (mask,) = ctx.saved_tensors
        return t * mask


class Maximum(Primitive):
    """Elementwise max(a, b): the gradient goes to the larger input, split in half at ties."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        try:
            return np.maximum(a, b)
        except ValueError:
            raise _broadcast_error("maximum", a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        wa = np.asarray((a > b) + 0.5 * (a == b), dtype=np.result_type(g))
        need_a, need_b = ctx.needs_input_grad
        return (g * wa if need_a else None), (g * (1 - wa) if need_b else None)

    @staticmethod
    def jvp(ctx, ta, tb):
        a, b = ctx.saved_tensors
        wa = np.asarray((a > b) + 0.5 * (a == b), dtype=np.result_type(a, b))
        ta = _zero_if_none(ta, a)
        tb = _zero_if_none(tb, b)
        return wa * ta + (1 - wa) * tb


class Where(Primitive):
    """where(cond, a, b): the gradient goes to a where cond holds, to b elsewhere."""

    @staticmethod
    def forward(ctx, cond, a, b):
        cond = np.asarray(cond, dtype=bool)
        ctx.save_for_backward(cond)
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[1:]
        return (
            None,
            np.where(cond, g, 0) if need_a else None,
            np.where(cond, 0, g) if need_b else None,
        )

    @staticmethod
    def jvp(ctx, _tc, ta, tb):
        (cond,) = ctx.saved_tensors
        return np.where(cond, 0 if ta is None else ta, 0 if tb is None else tb)


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


def maximum(a, b) -> Tensor:
    """Elementwise maximum of two tensors (or a tensor and a number or array)."""
    return Maximum.apply(a, b)


def where(cond, a, b) -> Tensor:
    """Choose from `a` where `cond` is true and from `b` elsewhere (with broadcasting)."""
    if isinstance(cond, Tensor):
        cond = cond.data
    return Where.apply(cond, a, b)


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


def _bind_operators() -> None:
    from chainrule.autograd import engine

    engine._add = Add.apply
    engine._sub = Sub.apply
    engine._mul = Mul.apply
    engine._div = Div.apply
    engine._pow = Pow.apply
    engine._matmul = MatMul.apply


_bind_operators()
