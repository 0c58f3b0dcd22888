"""The core of the engine: `Tensor`, `Function` with its `Context`, and the backward pass.

A `Function` computes on raw NumPy arrays. `Function.apply` unwraps the Tensor arguments,
runs `forward`, wraps the result in a new Tensor and, when a gradient will be needed,
records the Function and its context on that Tensor. Those records form the
computational graph: each Tensor knows the context of the operation that made it, each
context knows its inputs.

`Tensor.backward` walks that graph from the output to the leaves in reverse topological
order (without recursion): every operation receives the upstream gradient, its
`backward` multiplies by the local gradient and hands one downstream gradient to each
input; where a value feeds several operations (the "copy gate") the gradients add up.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "Context",
    "Function",
    "Tensor",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
]


class _Mode:
    """Global switches read on every operation (plain attributes: cheap to read)."""

    grad_enabled = True
    # Depth of nested forward-mode evaluations; > 0 while `jvp` runs a function.
    forward_ad = 0


class no_grad:
    """Context manager (and decorator) that stops recording operations for backward.

    Inside it, results of operations never require grad: use it for evaluation and for
    parameter updates.
    """

    def __enter__(self):
        self._prev = _Mode.grad_enabled
        _Mode.grad_enabled = False
        return self

    def __exit__(self, *exc):
        _Mode.grad_enabled = self._prev
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class enable_grad(no_grad):
    """Context manager that turns recording back on inside a `no_grad` block."""

    def __enter__(self):
        self._prev = _Mode.grad_enabled
        _Mode.grad_enabled = True
        return self


def is_grad_enabled() -> bool:
    return _Mode.grad_enabled


class Context:
    """What a Function's forward leaves for its backward (and for its jvp).

    `save_for_backward(*arrays)` stores arrays, read back as `ctx.saved_tensors`; any
    other attribute may be set freely (`ctx.axis = axis`). `needs_input_grad` tells, per
    argument of `apply`, whether a gradient is wanted for it, so backward can skip work.
    After a backward pass without ``retain_graph=True`` everything saved is released.
    """

    __slots__ = (
        "saved_tensors",
        "needs_input_grad",
        "fn",
        "inputs",
        "released",
        "retain_grad",
        "grad_output",
        "__dict__",
    )

    def __init__(self):
        self.saved_tensors = ()
        self.released = False
        self.retain_grad = False
        self.grad_output = None

    def save_for_backward(self, *arrays) -> None:
        self.saved_tensors = arrays

    def _release(self) -> None:
        self.saved_tensors = None
        self.__dict__.clear()
        self.released = True


class Function:
    """A differentiable operation, with every local gradient formula written once.

    Subclasses define static methods on raw arrays::

        class Multiply(Function):
            @staticmethod
            def forward(ctx, x, y):
                ctx.save_for_backward(x, y)
                return x * y

            @staticmethod
            def backward(ctx, grad_z):
                x, y = ctx.saved_tensors
                return y * grad_z, x * grad_z

            @staticmethod
            def jvp(ctx, tx, ty):           # optional: forward mode
                x, y = ctx.saved_tensors
                return tx * y + x * ty

    and are used as ``z = Multiply.apply(x, y)``. Arguments of `apply` that are Tensors
    are unwrapped to their arrays; any other argument (a number, an array, an axis) is
    passed to `forward` as it is and treated as a constant.

    `backward(ctx, grad_output)` returns one gradient per argument of `apply` (a single
    value when there is one argument), None where there is none. A gradient may have
    the broadcast shape of the output: the engine sums it back to the input's shape.
    `backward` must not modify `grad_output` in place.

    `jvp(ctx, *tangents)` receives one tangent per argument (an array shaped like that
    argument for Tensor arguments, None for constants) and returns the output's tangent.
    """

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError

    @staticmethod
    def jvp(ctx, *tangents):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        ctx = Context()
        raw = []
        needs = []
        for a in args:
            if isinstance(a, Tensor):
                raw.append(a.data)
                needs.append(a.requires_grad)
            else:
                raw.append(a)
                needs.append(False)
        ctx.needs_input_grad = needs
        result = cls.forward(ctx, *raw)
        if type(result) is not np.ndarray:
            result = np.asarray(result)
        out = Tensor.__new__(Tensor)
        out.data = result
        out._grad = None
        out._tangent = None
        out.name = None
        if _Mode.grad_enabled and True in needs:
            out.requires_grad = True
            ctx.fn = cls
            ctx.inputs = args
            out._ctx = ctx
        else:
            out.requires_grad = False
            out._ctx = None
        if _Mode.forward_ad:
            _forward_mode_step(cls, ctx, args, out)
        return out


def _forward_mode_step(cls, ctx, args, out) -> None:
    tangents = []
    any_tangent = False
    for a in args:
        if isinstance(a, Tensor):
            if a._tangent is None:
                tangents.append(np.zeros_like(a.data))
            else:
                tangents.append(a._tangent)
                any_tangent = True
        else:
            tangents.append(None)
    if not any_tangent:
        return
    try:
        t = cls.jvp(ctx, *tangents)
    except NotImplementedError:
        raise NotImplementedError(
            f"{cls.__name__} has no forward-mode rule (define {cls.__name__}.jvp)"
        ) from None
    t = np.asarray(t, dtype=out.data.dtype)
    if t.shape != out.data.shape:
        t = np.broadcast_to(t, out.data.shape).copy()
    out._tangent = t


def _sum_to_shape(g: np.ndarray, shape: tuple, fn_name: str) -> np.ndarray:
    """Sum a gradient of a broadcast result back to the shape of the input."""
    if g.ndim > len(shape):
        g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if g.shape != shape:
        raise RuntimeError(
            f"{fn_name}.backward returned a gradient of shape {g.shape} "
            f"for an input of shape {shape}"
        )
    return g


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

    Operations follow NumPy broadcasting; the gradient reaching an input is summed back
    to that input's shape.
    """

    __slots__ = ("data", "requires_grad", "_grad", "_ctx", "_tangent", "name", "__weakref__")
    # Makes NumPy hand `array * tensor` over to Tensor.__rmul__.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        self.data = _as_float_array(data, dtype)
        self.requires_grad = bool(requires_grad)
        self._grad = None
        self._ctx = None
        self._tangent = None
        self.name = name

    # ----------------------------------------------------------------- attributes
    @property
    def grad(self):
        """The accumulated gradient (ndarray of this tensor's shape) or None.

        Leaves keep theirs across backward calls until `zero_grad`. For a tensor made
        by an operation it is kept only after `retain_grad()` or a backward pass with
        ``retain_graph=True``.
        """
        if self._ctx is not None:
            return self._ctx.grad_output
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            value = np.asarray(value, dtype=self.data.dtype)
            if value.shape != self.data.shape:
                raise ValueError(
                    f"gradient of shape {value.shape} for a tensor of shape {self.data.shape}"
                )
        if self._ctx is not None:
            self._ctx.grad_output = value
        else:
            self._grad = value

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

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
        body = np.array2string(self.data, precision=4, separator=", ", prefix="Tensor(")
        extra = ""
        if self.data.dtype != np.float64:
            extra += f", dtype={self.data.dtype}"
        if self._ctx is not None:
            extra += f", grad_fn={self._ctx.fn.__name__}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and dtype != self.data.dtype:
            return self.data.astype(dtype)
        if copy:
            return self.data.copy()
        return self.data

    def item(self) -> float:
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The data as an ndarray (shared, not copied)."""
        return self.data

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data, cut off from the graph."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if self._ctx is not None and not flag:
            raise RuntimeError("only a leaf tensor can stop requiring grad; use detach()")
        self.requires_grad = flag
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
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() on a non-scalar output of shape {self.data.shape} needs "
                    "an upstream gradient of that shape: call backward(grad)"
                )
            grad = np.ones_like(self.data)
        else:
            grad = np.array(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(
                    f"backward(grad): grad has shape {grad.shape} but the output has "
                    f"shape {self.data.shape}"
                )
        run_backward(self, grad, retain_graph)

    # ----------------------------------------------------------------- operators
    def __add__(self, other):
        return _ops.Add.apply(self, other)

    def __radd__(self, other):
        return _ops.Add.apply(other, self)

    def __sub__(self, other):
        return _ops.Sub.apply(self, other)

    def __rsub__(self, other):
        return _ops.Sub.apply(other, self)

    def __mul__(self, other):
        return _ops.Mul.apply(self, other)

    def __rmul__(self, other):
        return _ops.Mul.apply(other, self)

    def __truediv__(self, other):
        return _ops.Div.apply(self, other)

    def __rtruediv__(self, other):
        return _ops.Div.apply(other, self)

    def __pow__(self, other):
        return _ops.Pow.apply(self, other)

    def __rpow__(self, other):
        return _ops.Pow.apply(other, self)

    def __matmul__(self, other):
        return _ops.MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return _ops.MatMul.apply(other, self)

    def __neg__(self):
        return _ops.Neg.apply(self)

    def __pos__(self):
        return self

    # Comparisons give plain boolean arrays: they have no gradient.
    def __lt__(self, other):
        return self.data < _data(other)

    def __le__(self, other):
        return self.data <= _data(other)

    def __gt__(self, other):
        return self.data > _data(other)

    def __ge__(self, other):
        return self.data >= _data(other)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        return _ops.GetItem.apply(self, index)

    # ----------------------------------------------------------------- methods
    def exp(self):
        return _ops.Exp.apply(self)

    def log(self):
        return _ops.Log.apply(self)

    def sqrt(self):
        return _ops.Sqrt.apply(self)

    def sigmoid(self):
        return _ops.Sigmoid.apply(self)

    def tanh(self):
        return _ops.Tanh.apply(self)

    def relu(self):
        return _ops.ReLU.apply(self)

    def abs(self):
        return _ops.Abs.apply(self)

    def sum(self, axis=None, keepdims: bool = False):
        return _ops.Sum.apply(self, axis, keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        return _ops.Mean.apply(self, axis, keepdims)

    def max(self, axis=None, keepdims: bool = False):
        return _ops.Max.apply(self, axis, keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.Reshape.apply(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _ops.Transpose.apply(self, axes or None)

    @property
    def T(self):
        return _ops.Transpose.apply(self, None)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        shape = self.data.shape
        if self.data.ndim == 0:
            return self.reshape(1)
        start = start_dim % self.data.ndim
        end = end_dim % self.data.ndim
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        new_shape = shape[:start] + (int(np.prod(shape[start : end + 1])),) + shape[end + 1 :]
        return self.reshape(new_shape)

    def clip(self, lo=None, hi=None):
        return _ops.Clip.apply(self, lo, hi)

    def softmax(self, axis: int = -1):
        return _ops.Softmax.apply(self, axis)

    def log_softmax(self, axis: int = -1):
        return _ops.LogSoftmax.apply(self, axis)


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def run_backward(root: Tensor, grad: np.ndarray, retain_graph: bool = False) -> None:
    """Backpropagate `grad` (dL/d root) through the graph that produced `root`."""
    ctx = root._ctx
    if ctx is None:  # a leaf: its gradient is the upstream gradient itself
        root._grad = grad if root._grad is None else root._grad + grad
        return

    # Pass 1: for every operation in the graph, count the operations that consume its
    # output. An operation is ready for its backward once all of them have sent their
    # gradient: that is a reverse topological order, found without recursion.
    pending = {ctx: 0}
    stack = [ctx]
    while stack:
        c = stack.pop()
        for t in c.inputs:
            if isinstance(t, Tensor) and t._ctx is not None:
                pc = t._ctx
                if pc in pending:
                    pending[pc] += 1
                else:
                    pending[pc] = 1
                    stack.append(pc)

    # Pass 2: upstream gradient x local gradient = downstream gradient.
    grads = {ctx: grad}
    ready = [ctx]
    handed_to_leaves = set()
    while ready:
        c = ready.pop()
        g = grads.pop(c)
        if c.released:
            raise RuntimeError(
                "trying to backward through the graph a second time: its saved values "
                "were released by the first backward; use backward(retain_graph=True) "
                "the first time to keep them"
            )
        if retain_graph or c.retain_grad:
            c.grad_output = g if c.grad_output is None else c.grad_output + g
        fn = c.fn
        in_grads = fn.backward(c, g)
        if type(in_grads) is not tuple:
            in_grads = (in_grads,)
        inputs = c.inputs
        if len(in_grads) != len(inputs):
            raise RuntimeError(
                f"{fn.__name__}.backward returned {len(in_grads)} gradients for "
                f"{len(inputs)} inputs"
            )
        for t, ig in zip(inputs, in_grads):
            if ig is None or not isinstance(t, Tensor) or not t.requires_grad:
                continue
            if type(ig) is not np.ndarray:
                ig = np.asarray(ig)
            tdata = t.data
            if ig.shape != tdata.shape:
                ig = _sum_to_shape(ig, tdata.shape, fn.__name__)
            if ig.dtype != tdata.dtype:
                ig = ig.astype(tdata.dtype)
            pc = t._ctx
            if pc is None:
                if t._grad is None:
                    # A leaf must own its gradient: a view or an array already given to
                    # another leaf is copied, so changing one .grad never changes another.
                    if ig.base is not None or id(ig) in handed_to_leaves:
                        ig = ig.copy()
                    handed_to_leaves.add(id(ig))
                    t._grad = ig
                else:
                    t._grad = t._grad + ig
            else:
                if pc in grads:
                    grads[pc] = grads[pc] + ig
                else:
                    grads[pc] = ig
                left = pending[pc] - 1
                pending[pc] = left
                if left == 0:
                    ready.append(pc)
        if not retain_graph:
            c._release()


from chainrule.autograd import ops as _ops  # noqa: E402  (ops need Tensor and Function)
