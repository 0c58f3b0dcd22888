"""The Tensor's operators, math methods and `backward`, attached to `Tensor` here.

``a + b`` is ``Add.apply(a, b)``, ``x.exp()`` is ``Exp.apply(x)``, and so on: each
applies one primitive Function. ``t.backward()`` runs the backward pass
(`chainrule.autograd.backward`). They are defined here, above the primitives and the
backward pass, and attached to `Tensor` when this module is loaded (``import
chainrule.autograd`` loads it), because `chainrule.autograd.tensor` sits below them:
they import it to make their results, so it cannot import them back.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd import array_ops as _a
from chainrule.autograd import ops as _o
from chainrule.autograd.backward import run_backward
from chainrule.autograd.fast_backward import first_order_backward
from chainrule.autograd.tensor import Tensor

# The binary operators: ``a + b`` is ``Add.apply2(a, b)`` (`Function.apply` for two
# arguments, as one function of them).
_add, _sub, _mul = _o.Add.apply2, _o.Sub.apply2, _o.Mul.apply2
_div, _pow, _matmul = _o.Div.apply2, _o.Pow.apply2, _o.MatMul.apply2


def __radd__(self, other):
    return _add(other, self)


def __rsub__(self, other):
    return _sub(other, self)


def __rmul__(self, other):
    return _mul(other, self)


def __rtruediv__(self, other):
    return _div(other, self)


def __rpow__(self, other):
    return _pow(other, self)


def __rmatmul__(self, other):
    return _matmul(other, self)


def __neg__(self):
    return _o.Neg.apply(self)


def __pos__(self):
    return self


def __getitem__(self, index):
    if isinstance(index, Tensor):
        index = index.data
    return _a.GetItem.apply(self, index)


def exp(self):
    return _o.Exp.apply(self)


def log(self):
    return _o.Log.apply(self)


def sqrt(self):
    return _o.Sqrt.apply(self)


def sin(self):
    return _o.Sin.apply(self)


def cos(self):
    return _o.Cos.apply(self)


def sigmoid(self):
    return _o.Sigmoid.apply(self)


def tanh(self):
    return _o.Tanh.apply(self)


def relu(self):
    return _o.ReLU.apply(self)


def abs(self):  # noqa: A001  (the method x.abs())
    return _o.Abs.apply(self)


def clip(self, lo=None, hi=None):
    return _o.Clip.apply(self, lo, hi)


def sum(self, axis=None, keepdims: bool = False):  # noqa: A001
    return _a.Sum.apply(self, axis, keepdims)


def mean(self, axis=None, keepdims: bool = False):
    return _a.Mean.apply(self, axis, keepdims)


def max(self, axis=None, keepdims: bool = False):  # noqa: A001
    return _a.Max.apply(self, axis, keepdims)


def softmax(self, axis: int = -1):
    return _a.Softmax.apply(self, axis)


def log_softmax(self, axis: int = -1):
    return _a.LogSoftmax.apply(self, axis)


def reshape(self, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return _a.Reshape.apply(self, shape)


def transpose(self, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return _a.Transpose.apply(self, axes or None)


def T(self):  # noqa: N802  (the property x.T)
    return _a.Transpose.apply(self, None)


def astype(self, dtype):
    """This tensor as `dtype` (float32 <-> float64), differentiably."""
    if np.dtype(dtype) == self.dtype:
        return self
    return _a.Cast.apply(self, np.dtype(dtype))


def flatten(self, start_dim: int = 0, end_dim: int = -1):
    shape = self._data.shape
    ndim = len(shape)
    if ndim == 0:
        return self.reshape(1)
    start = start_dim % ndim
    end = end_dim % ndim
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    new_shape = shape[:start] + (int(np.prod(shape[start : end + 1])),) + shape[end + 1 :]
    return self.reshape(new_shape)


def backward(self, grad=None, retain_graph=None, create_graph: bool = False) -> None:
    """Compute the gradient of this tensor with respect to every leaf that requires grad.

    ``grad`` is the upstream gradient dL/d(self): implicitly 1 for a single-element
    tensor, otherwise an array (or Tensor) of this tensor's shape. Gradients add up in
    the leaves' ``.grad``. Saved buffers are released afterwards unless `retain_graph`
    (which defaults to `create_graph`). With ``create_graph=True`` the gradients are
    recorded as they are computed: each ``.grad`` is then a Tensor with a graph of its
    own, which can be differentiated again (as in PyTorch).
    """
    if not self.requires_grad:
        raise RuntimeError(
            "backward() on a tensor that does not require grad: no input of the "
            "computation has requires_grad=True"
        )
    data = self._data
    if grad is None:
        if data.size != 1:
            raise RuntimeError(
                f"backward() on a non-scalar output of shape {data.shape} needs "
                "an upstream gradient of that shape: call backward(grad)"
            )
        grad = np.ones(data.shape, dtype=data.dtype)
    elif not (create_graph and isinstance(grad, Tensor)):
        grad = np.array(grad._data if isinstance(grad, Tensor) else grad, dtype=data.dtype)
    if tuple(grad.shape) != data.shape:
        raise ValueError(
            f"backward(grad): grad has shape {tuple(grad.shape)} but the output has "
            f"shape {data.shape}"
        )
    if create_graph and not isinstance(grad, Tensor):
        grad = Tensor(grad)
    keep = create_graph if retain_graph is None else retain_graph
    if keep or create_graph or self._ctx is None:
        run_backward([self], [grad], retain_graph=keep, create_graph=create_graph)
    else:  # the same pass, scheduled for speed (see fast_backward)
        first_order_backward(self, grad)


def _attach() -> None:
    for name, fn in (
        ("__add__", _add), ("__sub__", _sub), ("__mul__", _mul), ("__truediv__", _div),
        ("__pow__", _pow), ("__matmul__", _matmul),
    ):  # fmt: skip
        setattr(Tensor, name, fn)
    for fn in (
        __radd__, __rsub__, __rmul__, __rtruediv__, __rpow__, __rmatmul__, __neg__,
        __pos__, __getitem__, exp, log, sqrt, sin, cos, sigmoid, tanh, relu, abs, clip,
        sum, mean, max, softmax, log_softmax, reshape, transpose, astype, flatten,
        backward,
    ):  # fmt: skip
        fn.__qualname__ = f"Tensor.{fn.__name__}"
        setattr(Tensor, fn.__name__, fn)
    T.__qualname__ = "Tensor.T"
    Tensor.T = property(T)


_attach()
