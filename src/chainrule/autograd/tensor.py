"""The `Tensor`: an array that remembers which operation made it.

A Tensor holds its values (``data``), whether gradients are wanted for it
(``requires_grad``) and, when an operation recorded in the graph made it, that
operation's `Context` (``_ctx``: the Function, its inputs, what forward saved). Those
contexts are the computational graph.

The arithmetic operators (``+ - * / ** @``, unary minus, indexing), the math methods
(``exp``, ``sum``, ``reshape``, ...) and `backward` are defined in
`chainrule.autograd.methods`, which attaches them to this class: each operator applies
one primitive Function, and `backward` runs the backward pass
(`chainrule.autograd.backward`). This module imports neither, because both import it
(to make their results).
"""

from __future__ import annotations

import numpy as np

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

    # `_name` and `_tangents` stay unset on the results of operations (fewer writes per
    # operation); `name` and `tangent_of` read them with a default. `_tangents` maps a
    # forward-mode level (see `chainrule.autograd.function`) to this value's tangent.
    __slots__ = ("_data", "requires_grad", "_grad", "_ctx", "_tangents", "_name", "__weakref__")
    # Makes NumPy hand `array * tensor` over to Tensor.__rmul__, so that an expression
    # mixing arrays and Tensors is a Tensor expression (and recorded).
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
        ``retain_graph=True``. After ``backward(create_graph=True)`` it is a Tensor that
        carries its own graph, so it can be differentiated again (as in PyTorch).
        """
        ctx = self._ctx
        if ctx is not None:
            g = ctx.grad_output
            if g is not None and g.__class__ is not _ndarray and not isinstance(g, Tensor):
                g = ctx.grad_output = np.asarray(g)
            return g
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None and not isinstance(value, Tensor):
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
        """A new leaf sharing this tensor's data, cut off from the graph (a constant
        where a gradient is differentiated again)."""
        t = Tensor.__new__(Tensor)
        d = self._data
        # A view: another array object over the same memory, which a rule on Tensors
        # does not mistake for this tensor's own data.
        t._data = d.view() if d.__class__ is _ndarray else d.copy()
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
