"""`Function` and its `Context`: one differentiable operation, and how it is recorded.

A `Function` computes on raw NumPy arrays. `Function.apply` unwraps the Tensor arguments,
runs `forward`, wraps the result in a new Tensor and, when a gradient will be needed,
records the Function and its context on that Tensor. Those records form the
computational graph: each Tensor knows the context of the operation that made it, each
context knows its inputs. The Tensor's binary operators (``a + b``, ``a * b``, ...) take
the same steps through `_binary_apply`: `apply` unrolled for two arguments, tested to give
exactly what `apply` gives. The same module holds the switches read on every operation
(`no_grad`, forward mode) and the forward-mode step, which runs a Function's `jvp` next
to its `forward`.
"""

from __future__ import annotations

import functools

import numpy as np

from chainrule.autograd.tensor import Tensor

__all__ = [
    "Context",
    "Function",
    "Primitive",
    "enable_grad",
    "is_grad_enabled",
    "no_grad",
]


class _Mode:
    """The global switches read on every operation. There is one, `_mode`: reading a slot
    of an instance costs less than reading an attribute of a class."""

    __slots__ = ("grad_enabled", "forward_ad")

    def __init__(self):
        self.grad_enabled = True
        # Depth of nested forward-mode evaluations; > 0 while `jvp` runs a function.
        self.forward_ad = 0


_mode = _Mode()


class no_grad:
    """Context manager (and decorator) that stops recording operations for backward.

    Inside it, results of operations never require grad: use it for evaluation and for
    parameter updates.
    """

    def __enter__(self):
        self._prev = _mode.grad_enabled
        _mode.grad_enabled = False
        return self

    def __exit__(self, *exc):
        _mode.grad_enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class enable_grad(no_grad):
    """Context manager that turns recording back on inside a `no_grad` block."""

    def __enter__(self):
        self._prev = _mode.grad_enabled
        _mode.grad_enabled = True
        return self


def is_grad_enabled() -> bool:
    return _mode.grad_enabled


class Context:
    """What a Function's forward leaves for its backward (and for its jvp).

    `save_for_backward(*arrays)` stores arrays, read back as `ctx.saved_tensors`; any
    other attribute may be set freely (`ctx.axis = axis`). `needs_input_grad` tells, per
    argument of `apply`, whether a gradient is wanted for it, so backward can skip work.
    After a backward pass without ``retain_graph=True`` everything saved is released
    (`released` becomes True); `fn` and `inputs` stay, so the graph can still be drawn.
    A pass with ``retain_graph=True`` also keeps, in `grad_output`, the gradient of this
    operation's output and, in `grad_inputs`, the gradient it sent to each input (summed
    over such passes): the gradient that flowed along each edge of the graph.

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
        "grad_inputs",
        # How many recorded operations consume this output (counted by `apply`), and
        # the bookkeeping of a running backward pass: pass marker, consumers still to
        # send their gradient, the gradient summed so far.
        "_consumers",
        "_visit",
        "_left",
        "_gsum",
        # For a context made by a binary operator (`_binary_apply`), its Function's
        # backward, read once when the operator was made; None for one made by
        # `Function.apply`. Such a Function takes NumPy scalars and keeps nothing but
        # `saved_tensors`, so the backward pass calls this without converting the
        # gradient or clearing the instance dict (each costs more than the rest of its
        # step for a scalar operation).
        "_operator_backward",
        "__dict__",
    )

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()
        self.fn = None
        self.inputs = ()
        self.retain_grad = False
        self.grad_output = None
        self.grad_inputs = None
        self._consumers = 0
        self._visit = None
        self._operator_backward = None

    def save_for_backward(self, *arrays) -> None:
        self.saved_tensors = arrays

    @property
    def released(self) -> bool:
        """True once a backward pass has freed what forward saved."""
        return self.saved_tensors is None


class _OpContext(Context):
    """The Context that `Function.apply` makes for one operation. apply sets every
    field itself, so making one runs no Python code: calling a class without an
    ``__init__`` costs less than ``object.__new__(Context)``, once per operation."""

    __slots__ = ()
    __init__ = object.__init__


_new = object.__new__
_ndarray = np.ndarray
# 0-d results are kept as NumPy scalars inside the engine: arithmetic on them costs a
# fraction of the same arithmetic on 0-d arrays, which is what makes graphs of scalars
# fast. `Tensor.data` still always hands out an ndarray.
_SCALARS = (np.float64, np.float32, np.float16, np.longdouble)
_float64 = np.float64


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

    `forward` returns one floating-point array (a Tensor holds floats): an integer or
    boolean result becomes float64, as ``Tensor(data)`` makes it; any other dtype is an
    error naming the Function.

    `backward(ctx, grad_output)` returns one gradient per argument of `apply` (a single
    value when there is one argument), None where there is none. A gradient has the
    shape of its input, or the shape that input was broadcast to in forward (the engine
    then sums it back); any other shape is an error naming the Function and both shapes.
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
    def apply(cls, *args) -> Tensor:
        """Run `forward` on the arrays of `args` and return the result as a Tensor, which
        records this operation when an argument requires grad (and grad mode is on)."""
        scalars_ok = cls.scalar_inputs
        ctx = _OpContext()
        ctx.saved_tensors = ()
        if len(args) == 1:
            # The loop below for one argument (``x.relu()``, ``x.exp()``, ...), which in
            # a graph of scalars runs once per operation.
            (a,) = args
            if isinstance(a, Tensor):
                d = a._data
                if not scalars_ok and d.__class__ is not _ndarray:
                    d = a.data
                need = a.requires_grad
            else:
                d, need = a, False
            ctx.needs_input_grad = (need,)
            result = cls.forward(ctx, d)
            record = need and _mode.grad_enabled
            if record and a._ctx is not None:
                a._ctx._consumers += 1
        else:
            raw = []
            needs = []
            for a in args:
                if isinstance(a, Tensor):
                    d = a._data
                    if not scalars_ok and d.__class__ is not _ndarray:
                        d = a.data
                    raw.append(d)
                    needs.append(a.requires_grad)
                else:
                    raw.append(a)
                    needs.append(False)
            needs = ctx.needs_input_grad = tuple(needs)
            result = cls.forward(ctx, *raw)
            record = True in needs and _mode.grad_enabled
            if record:
                # One more consumer waits for each input's gradient (the backward pass
                # runs an operation once all consumers of its output have sent theirs).
                for a, need in zip(args, needs):
                    if need and a._ctx is not None:
                        a._ctx._consumers += 1
        rc = result.__class__
        if rc is not _float64 and (
            result.dtype.kind != "f" if rc is _ndarray else rc not in _SCALARS
        ):
            result = _float_result(cls, result)
        out = _new(Tensor)
        out._data = result
        out._grad = None
        if record:
            out.requires_grad = True
            ctx.fn = cls
            ctx.inputs = args
            ctx.retain_grad = False
            ctx.grad_output = ctx.grad_inputs = None
            ctx._consumers = 0
            ctx._visit = None
            ctx._operator_backward = None
            out._ctx = ctx
        else:
            out.requires_grad = False
            out._ctx = None
        if _mode.forward_ad:
            _forward_mode_step(cls, ctx, args, out)
        return out


class Primitive(Function):
    """Base of the built-in operations: their rules also accept NumPy scalars for 0-d
    values (see `Function.scalar_inputs`), which keeps graphs of scalars fast."""

    scalar_inputs = True


def _binary_apply(cls):
    """``cls.apply`` for exactly two arguments, as a plain function ``apply(a, b)``: the
    Tensor's binary operators (``a + b`` is ``_binary_apply(Add)(a, b)``).

    The same steps as `Function.apply`, unrolled for two arguments, with ``cls.forward``
    and ``cls.backward`` read once, here: an operator runs once per operation of a
    graph, and in a graph of scalars that bookkeeping (a loop over the arguments, class
    attributes read on each call, one more call between the operator and `apply`) is a
    good part of the time. It gives exactly what ``cls.apply(a, b)`` gives (tested
    operator by operator). `cls` must take NumPy scalars (`Function.scalar_inputs`), keep
    what its backward needs in ``saved_tensors`` only and return a tuple of two
    gradients from backward: the backward pass releases nothing else of these contexts
    and checks no other return (see ``Context._operator_backward``).
    """
    if not cls.scalar_inputs:
        raise TypeError(f"_binary_apply: {cls.__name__} does not take NumPy scalars")
    forward = cls.forward
    backward = cls.backward

    def apply(a, b):
        ctx = _OpContext()
        ctx.saved_tensors = ()
        if isinstance(a, Tensor):
            ra, na = a._data, a.requires_grad
        else:
            ra, na = a, False
        if isinstance(b, Tensor):
            rb, nb = b._data, b.requires_grad
        else:
            rb, nb = b, False
        ctx.needs_input_grad = (na, nb)
        result = forward(ctx, ra, rb)
        record = (na or nb) and _mode.grad_enabled
        if record:
            if na and a._ctx is not None:
                a._ctx._consumers += 1
            if nb and b._ctx is not None:
                b._ctx._consumers += 1
        rc = result.__class__
        if rc is not _float64 and (
            result.dtype.kind != "f" if rc is _ndarray else rc not in _SCALARS
        ):
            result = _float_result(cls, result)
        out = _new(Tensor)
        out._data = result
        out._grad = None
        if record:
            out.requires_grad = True
            ctx.fn = cls
            ctx.inputs = (a, b)
            ctx.retain_grad = False
            ctx.grad_output = ctx.grad_inputs = None
            ctx._consumers = 0
            ctx._visit = None
            ctx._operator_backward = backward
            out._ctx = ctx
        else:
            out.requires_grad = False
            out._ctx = None
        if _mode.forward_ad:
            _forward_mode_step(cls, ctx, (a, b), out)
        return out

    return apply


def _float_result(cls, result):
    """`result` of `cls.forward` as a floating-point array (integers become float64)."""
    arr = np.asarray(result)
    kind = arr.dtype.kind
    if kind == "f":
        return arr
    if kind in "biu":
        return arr.astype(np.float64)
    raise TypeError(
        f"{cls.__name__}.forward returned {type(result).__name__} of dtype {arr.dtype}; "
        "a Tensor holds floating-point numbers"
    )


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
