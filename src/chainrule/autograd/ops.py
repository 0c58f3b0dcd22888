"""The elementwise primitives, each a `Function` whose local derivative is written once.

An elementwise operation ``z = f(a, b, ...)`` states its partial derivatives dz/da,
dz/db, ... once, in `backward`: downstream = upstream x local derivative, per input
(reverse mode). Its Jacobian is diagonal, so the same products give forward mode: the
`Elementwise` base's `jvp` sums ``backward`` applied to each input's tangent. The
rules are written with operations that run on arrays and on Tensors (see
`chainrule.autograd.function`), so every primitive is differentiable to any order.

Broadcasting is handled by the engine, which sums a gradient back to its input's shape,
so a derivative may have the broadcast shape. Operations on whole arrays (reductions,
softmax, reshaping, indexing, joining) are in `chainrule.autograd.array_ops`.

Conventions at ties (where the function has no derivative), as PyTorch's:
- ``relu`` at 0: gradient 0.
- ``abs`` at 0: gradient 0.
- ``clip(x, lo, hi)``: gradient 1 on the closed interval ``lo <= x <= hi``.
- ``maximum(a, b)`` where ``a == b``: each side gets half of the upstream gradient.
- ``a ** b``: where ``b == 0``, dz/da is 0 (``a ** 0`` is 1 for every a, 0 included);
  where ``a == 0`` and ``b >= 0``, dz/db is 0 (``0 ** b`` is 0 for b > 0, 1 at b = 0),
  not ``0 * log 0``. Elsewhere at ``a == 0`` the derivatives are infinite or NaN, as
  their formulas give (``x ** 0.5`` at 0: inf).
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.function import Primitive, value
from chainrule.autograd.tensor import Tensor

__all__ = [
    "Abs",
    "Add",
    "Clip",
    "Div",
    "Elementwise",
    "Exp",
    "Log",
    "MatMul",
    "Maximum",
    "Mul",
    "Neg",
    "Pow",
    "ReLU",
    "Sigmoid",
    "Sin",
    "Cos",
    "Sqrt",
    "Sub",
    "Tanh",
    "Where",
    "maximum",
    "where",
]


def _add_t(a, b):
    """Sum of two tangents, either of which may be None (a constant's zero tangent)."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _anywhere(mask) -> bool:
    """Whether a comparison's result (a bool, NumPy bool or bool array) holds anywhere."""
    return mask is True or (mask is not False and bool(np.any(mask)))


def _broadcast_error(op, a, b):
    return ValueError(f"{op}: shapes {np.shape(a)} and {np.shape(b)} cannot be broadcast together")


class _Wanted:
    """A view of a Context in which exactly the inputs in `needs` want a gradient, so
    that `Elementwise.jvp` can run `backward` on tangents; everything else (what forward
    saved, attributes such as ``ctx.axis``) is the Context's own."""

    __slots__ = ("_ctx", "saved_tensors", "needs_input_grad")

    def __init__(self, ctx, needs):
        self._ctx = ctx
        self.saved_tensors = ctx.saved_tensors
        self.needs_input_grad = needs

    def __getattr__(self, name):
        return getattr(self._ctx, name)


class Elementwise(Primitive):
    """Base of the elementwise operations: a subclass writes `forward` and `backward`
    (and keeps what backward needs in ``save_for_backward``, setting no attributes).

    ``backward(ctx, g)`` multiplies the upstream gradient by the local derivative with
    respect to each argument whose gradient is wanted (``ctx.needs_input_grad``): the
    one place the derivative is written. The Jacobian of an elementwise operation is
    diagonal, so the same products push tangents forward: the output's tangent is
    ``sum_i backward(ctx, tangent_i)[i]``, which is the `jvp` every subclass inherits.
    """

    trusted_rule = True

    @classmethod
    def jvp(cls, ctx, *tangents):
        if len(tangents) == 1:
            return cls.backward(ctx, tangents[0])
        out = None
        for i, t in enumerate(tangents):
            if t is not None:
                wanted = [j == i for j in range(len(tangents))]
                out = _add_t(out, cls.backward(_Wanted(ctx, wanted), t)[i])
        return out


# ------------------------------------------------------------------ arithmetic


class Add(Elementwise):
    """a + b. Local derivatives 1 and 1: the add gate distributes the upstream gradient."""

    @staticmethod
    def forward(ctx, a, b):
        try:
            return a + b
        except ValueError:
            raise _broadcast_error("add", a, b) from None

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Elementwise):
    """a - b. Local derivatives 1 and -1."""

    @staticmethod
    def forward(ctx, a, b):
        try:
            return a - b
        except ValueError:
            raise _broadcast_error("sub", a, b) from None

    @staticmethod
    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)


class Neg(Elementwise):
    """-a. Local derivative -1."""

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Mul(Elementwise):
    """a * b. The mul gate swaps: dz/da = b, dz/db = a."""

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


class Div(Elementwise):
    """a / b: dz/da = 1 / b, dz/db = -a / b**2."""

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
        return (g / b if need_a else None), (-g * a / (b * b) if need_b else None)


class Pow(Elementwise):
    """a ** b: dz/da = b a**(b-1), dz/db = a**b log(a) (see the conventions at 0 above)."""

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
        ga = gb = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if need_a:
                da = b * a ** (b - 1)
                # b * a**(b-1) is 0 * inf = nan at a = 0 (elsewhere it is 0 at b = 0, and
                # its derivative with respect to b is not)
                zero_exponent = (value(b) == 0) & (value(a) == 0)
                if _anywhere(zero_exponent):
                    da = Where.call(zero_exponent, 0, da)
                ga = g * da
            if need_b:
                db = out * Log.call(a)
                zero_base = (value(a) == 0) & (value(b) >= 0)
                if _anywhere(zero_base):  # 0 * log 0 = nan where 0**b is constant
                    db = Where.call(zero_base, 0, db)
                gb = g * db
        return ga, gb


class MatMul(Primitive):
    """a @ b (NumPy matmul semantics: 1-D, 2-D and batched).

    For y = x w: dL/dx = dL/dy w^T and dL/dw = x^T dL/dy. Bilinear: the tangent is
    ``ta @ b + a @ tb``, the product itself applied to each tangent.
    """

    trusted_rule = True

    @staticmethod
    def forward(ctx, a, b):
        # The same arrays when a and b are arrays (saved: a rule on Tensors finds them).
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
                ga = g @ _swap_last(b)
            if need_b:
                gb = _swap_last(a) @ g
        elif a.ndim == 1 and b.ndim == 1:  # inner product, g is a number
            if need_a:
                ga = g * b
            if need_b:
                gb = g * a
        elif b.ndim == 1:  # (..., n, k) @ (k,) -> (..., n)
            if need_a:
                ga = g.reshape(g.shape + (1,)) * b
            if need_b:
                gb = a.reshape(-1, a.shape[-1]).T @ g.reshape(-1)
        else:  # (k,) @ (..., k, m) -> (..., m)
            if need_a:
                ga = (b @ g.reshape(g.shape + (1,))).reshape(g.shape[:-1] + (b.shape[-2],))
            if need_b:
                gb = a.reshape(-1, 1) * g.reshape(g.shape[:-1] + (1, g.shape[-1]))
        return ga, gb

    @staticmethod
    def jvp(ctx, ta, tb):
        a, b = ctx.saved_tensors
        return _add_t(None if ta is None else ta @ b, None if tb is None else a @ tb)


def _swap_last(x):
    """x with its last two axes swapped (a matrix transposed, a batch of them each)."""
    if x.ndim == 2:
        return x.T
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return x.transpose(axes)


# ------------------------------------------------------------------ functions of one value


class Exp(Elementwise):
    """exp(x); local derivative exp(x), the output itself."""

    @staticmethod
    def forward(ctx, x):
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out


class Log(Elementwise):
    """log(x); local derivative 1/x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / x


class Sqrt(Elementwise):
    """sqrt(x); local derivative 1 / (2 sqrt(x))."""

    @staticmethod
    def forward(ctx, x):
        out = np.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g / (2 * out)


class Sin(Elementwise):
    """sin(x); local derivative cos(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * Cos.call(x)


class Cos(Elementwise):
    """cos(x); local derivative -sin(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.cos(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -(g * Sin.call(x))


def _sigmoid(x):
    # exp of a non-positive number only: no overflow for logits of any size.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Elementwise):
    """sigma(x) = 1 / (1 + e^-x); local derivative (1 - sigma) sigma."""

    @staticmethod
    def forward(ctx, x):
        out = _sigmoid(x).astype(np.result_type(x), copy=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        return g * (1 - s) * s


class Tanh(Elementwise):
    """tanh(x); local derivative 1 - tanh(x)^2."""

    @staticmethod
    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)


class ReLU(Elementwise):
    """max(0, x), any shape; local derivative 1 where x > 0, 0 elsewhere (0 at x = 0).

    The one ReLU of the package (``x.relu()``, ``nn.functional.relu``, ``nn.ReLU``).
    """

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


class Abs(Elementwise):
    """|x|; local derivative sign(x) (0 at x = 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * np.sign(value(x))


class Clip(Elementwise):
    """clip(x, lo, hi); local derivative 1 where lo <= x <= hi, 0 outside."""

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


class Maximum(Elementwise):
    """Elementwise max(a, b): derivative 1 for the larger input, 1/2 each at ties."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        try:
            return np.maximum(a, b)
        except ValueError:
            raise _broadcast_error("maximum", a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = (value(v) for v in ctx.saved_tensors)
        wa = np.asarray((a > b) + 0.5 * (a == b), dtype=np.result_type(a, b))
        need_a, need_b = ctx.needs_input_grad
        return (g * wa if need_a else None), (g * (1 - wa) if need_b else None)


class Where(Primitive):
    """where(cond, a, b): selects, so the gradient goes to a where cond holds and to b
    elsewhere. Selecting (rather than multiplying by a 0/1 mask) keeps an infinite
    upstream gradient on the unselected side from becoming NaN."""

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
            Where.call(cond, g, 0) if need_a else None,
            Where.call(cond, 0, g) if need_b else None,
        )

    @staticmethod
    def jvp(ctx, _tc, ta, tb):
        (cond,) = ctx.saved_tensors
        return Where.call(cond, 0 if ta is None else ta, 0 if tb is None else tb)


def maximum(a, b) -> Tensor:
    """Elementwise maximum of two tensors (or a tensor and a number or array)."""
    return Maximum.apply(a, b)


def where(cond, a, b) -> Tensor:
    """Choose from `a` where `cond` is true and from `b` elsewhere (with broadcasting)."""
    if isinstance(cond, Tensor):
        cond = cond.data
    return Where.apply(cond, a, b)
