"""NumPy functions for derivative rules that run on arrays and on Tensors alike.

A rule written with these (and with the operators, ``.sum``, ``.reshape``, ``.T``,
which arrays and Tensors both have) computes with NumPy on arrays, in a first-order
backward pass, and records itself on Tensors, when its result will be differentiated
again (see `chainrule.autograd.function`). Each is the `call` of one Function: NumPy's
function on arrays, the Function's `apply` on Tensors.

A twice-differentiable `Function` of one's own::

    from chainrule.autograd import Function, tnp

    class Softplus(Function):
        differentiable_backward = True

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return np.logaddexp(0, x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors         # arrays, or Tensors
            return g * tnp.sigmoid(x)        # recorded on Tensors
"""

from __future__ import annotations

from chainrule.autograd import array_ops as _a
from chainrule.autograd import ops as _o
from chainrule.autograd.function import value
from chainrule.autograd.tensor import Tensor

__all__ = [
    "abs",
    "astype",
    "broadcast_to",
    "concatenate",
    "cos",
    "exp",
    "index_add",
    "is_tensor",
    "log",
    "log_softmax",
    "maximum",
    "relu",
    "reshape",
    "sigmoid",
    "sin",
    "softmax",
    "sqrt",
    "stack",
    "sum_to",
    "take",
    "tanh",
    "transpose",
    "value",
    "where",
]


def is_tensor(x) -> bool:
    """Whether `x` is a Tensor (a rule running on Tensors) rather than an array."""
    return isinstance(x, Tensor)


def exp(x):
    return _o.Exp.call(x)


def log(x):
    return _o.Log.call(x)


def sqrt(x):
    return _o.Sqrt.call(x)


def sin(x):
    return _o.Sin.call(x)


def cos(x):
    return _o.Cos.call(x)


def tanh(x):
    return _o.Tanh.call(x)


def sigmoid(x):
    return _o.Sigmoid.call(x)


def relu(x):
    return _o.ReLU.call(x)


def abs(x):  # noqa: A001
    return _o.Abs.call(x)


def maximum(a, b):
    return _o.Maximum.call(a, b)


def where(cond, a, b):
    """``np.where(cond, a, b)``; `cond` is a constant (an array of booleans)."""
    return _o.Where.call(value(cond), a, b)


def softmax(x, axis: int = -1):
    return _a.Softmax.call(x, axis)


def log_softmax(x, axis: int = -1):
    return _a.LogSoftmax.call(x, axis)


def reshape(x, shape):
    return _a.Reshape.call(x, tuple(shape))


def transpose(x, axes=None):
    return _a.Transpose.call(x, axes)


def broadcast_to(x, shape):
    return _a.BroadcastTo.call(x, tuple(shape))


def sum_to(x, shape):
    """`x` summed back to `shape` over the axes it was broadcast along."""
    return _a.sum_to(x, tuple(shape))


def take(x, index):
    """``x[index]``."""
    return _a.GetItem.call(x, index)


def index_add(g, shape, index):
    """``zeros(shape)`` with `g` added at `index` (``np.add.at``)."""
    return _a.IndexAdd.call(g, tuple(shape), index)


def astype(x, dtype):
    return _a.Cast.call(x, dtype)


def stack(xs, axis: int = 0):
    return _a.Stack.call(axis, *xs)


def concatenate(xs, axis: int = 0):
    return _a.Concatenate.call(axis, *xs)
