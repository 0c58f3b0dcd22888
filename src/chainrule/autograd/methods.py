"""The Tensor's operators and math methods: each applies one primitive Function.

``a + b`` is ``Add.apply(a, b)``, ``x.exp()`` is ``Exp.apply(x)``, and so on. They are
defined here, above the primitives, and attached to `Tensor` when this module is loaded
(``import chainrule.autograd`` loads it), because `chainrule.autograd.tensor` sits below
the primitives: they import it to make their results, so it cannot import them back.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd import array_ops as _a
from chainrule.autograd import ops as _o
from chainrule.autograd.function import _binary_apply
from chainrule.autograd.tensor import Tensor


def _operator(cls, name: str):
    """The operator `name` of the binary Function `cls`: ``cls.apply`` unrolled for two
    arguments by `_binary_apply` (operators run once per operation of a graph)."""
    op = _binary_apply(cls)
    op.__name__ = name
    return op


__add__ = _operator(_o.Add, "__add__")
__sub__ = _operator(_o.Sub, "__sub__")
__mul__ = _operator(_o.Mul, "__mul__")
__truediv__ = _operator(_o.Div, "__truediv__")
__pow__ = _operator(_o.Pow, "__pow__")
__matmul__ = _operator(_o.MatMul, "__matmul__")


def __radd__(self, other):
    return __add__(other, self)


def __rsub__(self, other):
    return __sub__(other, self)


def __rmul__(self, other):
    return __mul__(other, self)


def __rtruediv__(self, other):
    return __truediv__(other, self)


def __rpow__(self, other):
    return __pow__(other, self)


def __rmatmul__(self, other):
    return __matmul__(other, self)


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


def _attach() -> None:
    for fn in (
        __add__, __radd__, __sub__, __rsub__, __mul__, __rmul__, __truediv__,
        __rtruediv__, __pow__, __rpow__, __matmul__, __rmatmul__, __neg__, __pos__,
        __getitem__, exp, log, sqrt, sigmoid, tanh, relu, abs, clip, sum, mean, max,
        softmax, log_softmax, reshape, transpose, flatten,
    ):  # fmt: skip
        fn.__qualname__ = f"Tensor.{fn.__name__}"
        setattr(Tensor, fn.__name__, fn)
    T.__qualname__ = "Tensor.T"
    Tensor.T = property(T)


_attach()
