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
    After a backward pass without ``retain_graph=True`` everything saved is released
    (`released` becomes True); `fn` and `inputs` stay, so the graph can still be drawn.

    A Context can also be made by hand, ``ctx = Context()``, to call a Function's
    ``forward(ctx, ...)`` and ``backward(ctx, dout)`` without any graph, as the course's
    ``forward -> cache`` / ``backward(dout, cache)`` pairs.
    """

    __slots__ = (
        "saved_tensors",
        "needs_input_grad",
        "fn",
        "inputs",
        "retain_grad",
        "grad_output",
        # How many recorded operations consume this output (counted by `apply`), and
        # the bookkeeping of a running backward pass: pass marker, consumers still to
        # send their gradient, the gradient summed so far.
        "_consumers",
        "_visit",
        "_left",
        "_gsum",
        "__dict__",
    )

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()
        self.fn = None
        self.inputs = ()
        self.retain_grad = False
        self.grad_output = None
        self._consumers = 0
        self._visit = None

    def save_for_backward(self, *arrays) -> None:
        self.saved_tensors = arrays

    @property
    def released(self) -> bool:
        """True once a backward pass has freed what forward saved."""
        return self.saved_tensors is None

    def _release(self) -> None:
        self.saved_tensors = None
        self.__dict__.clear()


_new = object.__new__
_ndarray = np.ndarray
# 0-d results are kept as NumPy scalars inside the engine: arithmetic on them costs a
# fraction of the same arithmetic on 0-d arrays, which is what makes graphs of scalars
# fast. `Tensor.data` still always hands out an ndarray.
_SCALARS = (np.float64, np.float32, np.float16, np.longdouble)


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

    # Whether forward/backward accept NumPy scalars (np.float64, ...) where a 0-d array
    # could appear. The built-in operations do; a subclass gets 0-d ndarrays unless it
    # sets this to True.
    scalar_inputs = False

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
        ctx = _new(Context)
        ctx.saved_tensors = ()
        if len(args) == 2 and cls.scalar_inputs:
            # The common binary case, unrolled: it runs once per operation of a graph.
            a, b = args
            if isinstance(a, Tensor):
                ra = a._data
                na = a.requires_grad
            else:
                ra = a
                na = False
            if isinstance(b, Tensor):
                rb = b._data
                nb = b.requires_grad
            else:
                rb = b
                nb = False
            ctx.needs_input_grad = [na, nb]
            result = cls.forward(ctx, ra, rb)
            record = (na or nb) and _Mode.grad_enabled
            if record:
                # Tell the operations that made the inputs that one more consumer waits
                # for their gradient (the backward pass runs an operation once all its
                # consumers have sent theirs).
                if na:
                    pc = a._ctx
                    if pc is not None:
                        pc._consumers += 1
                if nb:
                    pc = b._ctx
                    if pc is not None:
                        pc._consumers += 1
        else:
            raw = []
            needs = []
            wanted = False
            scalars_ok = cls.scalar_inputs
            for a in args:
                if isinstance(a, Tensor):
                    d = a._data
                    if not scalars_ok and d.__class__ is not _ndarray:
                        d = a.data
                    raw.append(d)
                    if a.requires_grad:
                        needs.append(True)
                        wanted = True
                    else:
                        needs.append(False)
                else:
                    raw.append(a)
                    needs.append(False)
            ctx.needs_input_grad = needs
            result = cls.forward(ctx, *raw)
            record = wanted and _Mode.grad_enabled
            if record:
                for a, need in zip(args, needs):
                    if need:
                        pc = a._ctx
                        if pc is not None:
                            pc._consumers += 1
        rc = result.__class__
        if rc is not _ndarray and rc not in _SCALARS:
            result = np.asarray(result)
        out = _new(Tensor)
        out._data = result
        out._grad = None
        if record:
            out.requires_grad = True
            ctx.fn = cls
            ctx.inputs = args
            ctx.retain_grad = False
            ctx.grad_output = None
            ctx._consumers = 0
            ctx._visit = None
            out._ctx = ctx
        else:
            out.requires_grad = False
            out._ctx = None
        if _Mode.forward_ad:
            _forward_mode_step(cls, ctx, args, out)
        return out


def _tangent_of(t: Tensor):
    """The forward-mode tangent carried by `t`, or None (operations leave it unset)."""
    try:
        return t._tangent
    except AttributeError:
        return None


def _forward_mode_step(cls, ctx, args, out) -> None:
    tangents = []
    any_tangent = False
    for a in args:
        if isinstance(a, Tensor):
            t = _tangent_of(a)
            if t is None:
                tangents.append(np.zeros_like(a.data))
            else:
                tangents.append(t)
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
    dtype = out._data.dtype
    t = np.asarray(t, dtype=dtype)
    shape = out._data.shape
    if t.shape != shape:
        t = np.broadcast_to(t, shape).copy()
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


def _conform(ig, data, fn_name: str):
    """The gradient `ig` with the shape and dtype of the input value `data`."""
    if not isinstance(ig, (_ndarray, np.generic)):
        ig = np.asarray(ig)
    if ig.shape != data.shape:
        ig = _sum_to_shape(np.asarray(ig), data.shape, fn_name)
    if ig.dtype != data.dtype:
        ig = ig.astype(data.dtype)
    return ig


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

    # ----------------------------------------------------------------- operators
    def __add__(self, other):
        return _add(self, other)

    def __radd__(self, other):
        return _add(other, self)

    def __sub__(self, other):
        return _sub(self, other)

    def __rsub__(self, other):
        return _sub(other, self)

    def __mul__(self, other):
        return _mul(self, other)

    def __rmul__(self, other):
        return _mul(other, self)

    def __truediv__(self, other):
        return _div(self, other)

    def __rtruediv__(self, other):
        return _div(other, self)

    def __pow__(self, other):
        return _pow(self, other)

    def __rpow__(self, other):
        return _pow(other, self)

    def __matmul__(self, other):
        return _matmul(self, other)

    def __rmatmul__(self, other):
        return _matmul(other, self)

    def __neg__(self):
        return _ops.Neg.apply(self)

    def __pos__(self):
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

    def clip(self, lo=None, hi=None):
        return _ops.Clip.apply(self, lo, hi)

    def softmax(self, axis: int = -1):
        return _ops.Softmax.apply(self, axis)

    def log_softmax(self, axis: int = -1):
        return _ops.LogSoftmax.apply(self, axis)


def _data(x):
    return x._data if isinstance(x, Tensor) else x


_RELEASED_MESSAGE = (
    "trying to backward through the graph a second time: its saved values were "
    "released by the first backward; use backward(retain_graph=True) the first time "
    "to keep them"
)


def run_backward(root: Tensor, grad, retain_graph: bool = False) -> None:
    """Backpropagate `grad` (dL/d root, shaped like root) through the graph of `root`.

    Upstream gradient x local gradient = downstream gradient: every operation runs its
    backward once, after all the operations that consumed its output have sent their
    gradient (a reverse topological order, without recursion), and gradients reaching
    the same value add up. The leaves' ``.grad`` grow by the gradients that reach them.

    The number of consumers of each output is counted as the graph is built, so no
    extra pass over the graph is needed. Consumers that are not part of this backward
    pass (an output also used by another loss) never send a gradient; if the pass stalls
    on them, the consumers still to come are counted exactly and it goes on.
    """
    ctx = root._ctx
    if ctx is None:  # a leaf: its gradient is the upstream gradient itself
        g = np.array(grad, dtype=root._data.dtype)
        root._grad = g if root._grad is None else root._grad + g
        return

    # Operations reached by this pass carry this marker; those that have run (or are
    # queued to) also have _left == 0.
    visit = object()
    ctx._visit = visit
    ctx._left = 0
    ctx._gsum = grad
    ready = [ctx]
    push = ready.append
    pop = ready.pop
    waiting = 0  # operations reached by this pass that still wait for a consumer
    leaf_grads = {}
    while True:
        while ready:
            c = pop()
            g = c._gsum
            c._gsum = None
            inputs = c.inputs
            n_in = len(inputs)
            fn = c.fn
            if g is None:
                # Every consumer sent None: there is nothing to pass on, but the inputs
                # must still hear from this consumer.
                in_grads = (None,) * n_in
            else:
                if c.saved_tensors is None:
                    raise RuntimeError(_RELEASED_MESSAGE)
                if retain_graph or c.retain_grad:
                    prev = c.grad_output
                    c.grad_output = g if prev is None else prev + g
                if fn.scalar_inputs or g.__class__ is _ndarray:
                    in_grads = fn.backward(c, g)
                else:
                    in_grads = fn.backward(c, np.asarray(g))
                if in_grads.__class__ is not tuple:
                    in_grads = (in_grads,)
                if len(in_grads) != n_in:
                    raise RuntimeError(
                        f"{fn.__name__}.backward returned {len(in_grads)} gradients for "
                        f"{n_in} inputs"
                    )
            if not retain_graph:
                # Free what forward saved as soon as it has been used.
                c.saved_tensors = None
                c.__dict__.clear()
            # The same delivery as in the loop below, unrolled for the common two-input
            # operations (half the bookkeeping time of a graph of scalars).
            if n_in == 2:
                ta, tb = inputs
                ga, gb = in_grads
                na, nb = c.needs_input_grad
                if na:
                    if ga is not None:
                        d = ta._data
                        cls = ga.__class__
                        if cls is not d.__class__ or (
                            cls is _ndarray and (ga.shape != d.shape or ga.dtype != d.dtype)
                        ):
                            ga = _conform(ga, d, fn.__name__)
                    pc = ta._ctx
                    if pc is None:
                        if ga is not None:
                            prev = leaf_grads.get(ta)
                            leaf_grads[ta] = ga if prev is None else prev + ga
                    elif pc._visit is visit:
                        if ga is not None:
                            prev = pc._gsum
                            pc._gsum = ga if prev is None else prev + ga
                        left = pc._left - 1
                        pc._left = left
                        if left == 0:
                            waiting -= 1
                            push(pc)
                    else:
                        pc._visit = visit
                        pc._gsum = ga
                        left = pc._consumers - 1
                        pc._left = left
                        if left == 0:
                            push(pc)
                        else:
                            waiting += 1
                if nb:
                    if gb is not None:
                        d = tb._data
                        cls = gb.__class__
                        if cls is not d.__class__ or (
                            cls is _ndarray and (gb.shape != d.shape or gb.dtype != d.dtype)
                        ):
                            gb = _conform(gb, d, fn.__name__)
                    pc = tb._ctx
                    if pc is None:
                        if gb is not None:
                            prev = leaf_grads.get(tb)
                            leaf_grads[tb] = gb if prev is None else prev + gb
                    elif pc._visit is visit:
                        if gb is not None:
                            prev = pc._gsum
                            pc._gsum = gb if prev is None else prev + gb
                        left = pc._left - 1
                        pc._left = left
                        if left == 0:
                            waiting -= 1
                            push(pc)
                    else:
                        pc._visit = visit
                        pc._gsum = gb
                        left = pc._consumers - 1
                        pc._left = left
                        if left == 0:
                            push(pc)
                        else:
                            waiting += 1
                continue
            for t, ig, need in zip(inputs, in_grads, c.needs_input_grad):
                if not need:
                    continue
                if ig is not None:
                    d = t._data
                    cls = ig.__class__
                    if cls is not d.__class__ or (
                        cls is _ndarray and (ig.shape != d.shape or ig.dtype != d.dtype)
                    ):
                        ig = _conform(ig, d, fn.__name__)
                pc = t._ctx
                if pc is None:
                    if ig is not None:
                        prev = leaf_grads.get(t)
                        leaf_grads[t] = ig if prev is None else prev + ig
                elif pc._visit is visit:
                    if ig is not None:
                        prev = pc._gsum
                        pc._gsum = ig if prev is None else prev + ig
                    left = pc._left - 1
                    pc._left = left
                    if left == 0:
                        waiting -= 1
                        push(pc)
                else:
                    pc._visit = visit
                    pc._gsum = ig
                    left = pc._consumers - 1
                    pc._left = left
                    if left == 0:
                        push(pc)
                    else:
                        waiting += 1
        if not waiting:
            break
        waiting = _recount(ctx, visit, push)
        if not ready:
            raise RuntimeError("backward: the graph has a cycle")

    # A leaf owns its gradient: a view, or an array also handed elsewhere, is copied, so
    # changing one .grad in place never changes another.
    handed = set()
    for t, g in leaf_grads.items():
        if g.__class__ is not _ndarray:
            g = np.asarray(g)
        elif g.base is not None or id(g) in handed:
            g = g.copy()
        handed.add(id(g))
        prev = t._grad
        if prev is None:
            t._grad = g
        else:
            s = prev + g
            t._grad = s if s.__class__ is _ndarray else np.asarray(s)


def _recount(root_ctx, visit, push) -> int:
    """Count exactly which consumers are still to send a gradient, for every operation
    of the graph below `root_ctx` that has not run yet; queue those that wait for none.

    Called when the pass stalls (nothing queued): then an operation has run exactly when
    it was reached (marked `visit`) and waits for nobody (``_left == 0``).
    Returns how many operations still wait for a consumer.
    """
    pending = [c for c in _graph_contexts(root_ctx) if not (c._visit is visit and c._left == 0)]
    for c in pending:
        if c._visit is not visit:  # not reached yet
            c._visit = visit
            c._gsum = None
        c._left = 0
    for c in pending:
        for t, need in zip(c.inputs, c.needs_input_grad):
            if need and t._ctx is not None:
                t._ctx._left += 1
    waiting = 0
    for c in pending:
        if c._left == 0:
            push(c)
        else:
            waiting += 1
    return waiting


def _graph_contexts(root_ctx) -> list:
    """The contexts of every recorded operation that `root_ctx` depends on (itself
    included), found without recursion."""
    seen = {root_ctx}
    stack = [root_ctx]
    found = []
    while stack:
        c = stack.pop()
        found.append(c)
        for t, need in zip(c.inputs, c.needs_input_grad):
            if need:
                pc = t._ctx
                if pc is not None and pc not in seen:
                    seen.add(pc)
                    stack.append(pc)
    return found


# The operators call the bound `apply` of their Function directly (one lookup less per
# operation); ops.py sets these when it is loaded, whichever module is imported first.
_add = _sub = _mul = _div = _pow = _matmul = None

from chainrule.autograd import ops as _ops  # noqa: E402  (ops need Tensor and Function)
