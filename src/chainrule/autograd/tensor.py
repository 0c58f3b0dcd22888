"""The `Tensor`: an array that remembers which operation made it.

A Tensor holds its values (``data``), whether gradients are wanted for it
(``requires_grad``) and, when an operation recorded in the graph made it, that
operation's `Context` (``_ctx``: the Function, its inputs, what forward saved). Those
contexts are the computational graph; `Tensor.backward` hands it to the backward pass
(`chainrule.autograd.backward`).

The arithmetic operators (``+ - * / ** @``, unary minus, indexing) and the math methods
(``exp``, ``sum``, ``reshape``, ...) each apply one primitive Function; they are defined
in `chainrule.autograd.methods`, which attaches them to this class. This module does not
import the primitives, because the primitives import it (to make their results).
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.backward import run_backward

__all__ = ["Tensor"]

_ndarray = np.ndarray


def _as_float_array(data, dtype=None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    arr = np.asarray(data, dtype=dtype)
    if arr.dtype.kind != "f":
        if arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
        else:
            raise TypeError(f"a Tensor holds floating-point numbers, got dtype {arr.dtype}")
    return arr


class Tensor:
    """An array that remembers how it was computed, so gradients can flow back to it.

    Parameters
    ----------
    data : number, sequence or ndarray
        Python numbers and integer data become float64 arrays; floating NumPy arrays
        keep their dtype (float32 stays float32 through every operation).
    requires_grad : bool
        Whether `backward` should compute ``.grad`` for this tensor.

    Notes
    -----
    Operations follow NumPy broadcasting; the gradient reaching an input is summed back
    to that input's shape. Operators and math methods come from
    `chainrule.autograd.methods` (see the module docstring).
    """

    # `_name` and `_tangent` stay unset on the results of operations (fewer writes per
    # operation); `name` and `_tangent_of` read them with a default.
    __slots__ = ("_data", "requires_grad", "_grad", "_ctx", "_tangent", "_name", "__weakref__")
    # Makes NumPy hand `array * tensor` over to Tensor.__rmul__.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        if data.__class__ is float and dtype is None:
            self._data = np.float64(data)
        else:
            arr = _as_float_array(data, dtype)
            self._data = arr[()] if arr.ndim == 0 and arr is not data else arr
        self.requires_grad = bool(requires_grad)
        self._grad = None
        self._ctx = None
        self._name = name

    # ----------------------------------------------------------------- attributes
    @property
    def data(self) -> np.ndarray:
        """The values, an ndarray (0-d for a single number)."""
        d = self._data
        if d.__class__ is not _ndarray:
            # Kept as a NumPy scalar so far; from now on it is this 0-d array, so that
            # writes into it (``t.data[...] = v``) are seen by later operations.
            d = self._data = np.asarray(d)
        return d

    @data.setter
    def data(self, value) -> None:
        self._data = value if value.__class__ is _ndarray else np.asarray(value)

    @property
    def grad(self):
        """The accumulated gradient (ndarray of this tensor's shape) or None.

        Leaves keep theirs across backward calls until `zero_grad`. For a tensor made
        by an operation it is kept only after `retain_grad()` or a backward pass with
        ``retain_graph=True``.
        """
        ctx = self._ctx
        if ctx is not None:
            g = ctx.grad_output
            if g is not None and g.__class__ is not _ndarray:
                g = ctx.grad_output = np.asarray(g)
            return g
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            value = np.asarray(value, dtype=self._data.dtype)
            if value.shape != self._data.shape:
                raise ValueError(
                    f"gradient of shape {value.shape} for a tensor of shape {self._data.shape}"
                )
        if self._ctx is not None:
            self._ctx.grad_output = value
        else:
            self._grad = value

    @property
    def name(self) -> str | None:
        """A label for drawings (e.g. the variable name in ``chainrule graph``)."""
        try:
            return self._name
        except AttributeError:
            return None

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = value

    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        """The Function that made this tensor, or None for a leaf."""
        return None if self._ctx is None else self._ctx.fn

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = np.array2string(
            np.asarray(self._data), precision=4, separator=", ", prefix="Tensor("
        )
        extra = ""
        if self._data.dtype != np.float64:
            extra += f", dtype={self._data.dtype}"
        if self._ctx is not None:
            extra += f", grad_fn={self._ctx.fn.__name__}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        if self.name is not None:
            extra += f", name={self.name!r}"
        return f"Tensor({body}{extra})"

    def __array__(self, dtype=None, copy=None):
        d = self.data
        if dtype is not None and dtype != d.dtype:
            return d.astype(dtype)
        if copy:
            return d.copy()
        return d

    def item(self) -> float:
        return self._data.item()

    def numpy(self) -> np.ndarray:
        """The data as an ndarray (shared, not copied)."""
        return self.data

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data, cut off from the graph."""
        t = Tensor.__new__(Tensor)
        t._data = self._data
        t.requires_grad = False
        t._grad = t._ctx = None
        return t

    def zero_grad(self) -> None:
        if self._ctx is None:
            self._grad = None
        else:
            self._ctx.grad_output = None

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if self._ctx is not None and not flag:
            raise RuntimeError("only a leaf tensor can stop requiring grad; use detach()")
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self) -> Tensor:
        """Keep this intermediate tensor's gradient after backward (in ``.grad``)."""
        if self._ctx is not None:
            self._ctx.retain_grad = True
        return self

    # ----------------------------------------------------------------- backward
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Compute the gradient of this tensor with respect to every leaf that requires grad.

        ``grad`` is the upstream gradient dL/d(self): implicitly 1 for a single-element
        tensor, otherwise an array of this tensor's shape. Gradients add up in the
        leaves' ``.grad``. Saved buffers are released afterwards unless
        ``retain_graph=True``.
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
        else:
            grad = np.array(grad._data if isinstance(grad, Tensor) else grad, dtype=data.dtype)
            if grad.shape != data.shape:
                raise ValueError(
                    f"backward(grad): grad has shape {grad.shape} but the output has "
                    f"shape {data.shape}"
                )
        run_backward(self, grad, retain_graph)

    # Comparisons give plain boolean arrays: they have no gradient.
    def __lt__(self, other):
        return np.asarray(self._data < _data(other))

    def __le__(self, other):
        return np.asarray(self._data <= _data(other))

    def __gt__(self, other):
        return np.asarray(self._data > _data(other))

    def __ge__(self, other):
        return np.asarray(self._data >= _data(other))


def _data(x):
    return x._data if isinstance(x, Tensor) else x
