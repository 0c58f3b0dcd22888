"""`Function` and its `Context`: one differentiable operation, and how it is recorded.

A `Function` computes on raw NumPy arrays. `Function.apply` unwraps the Tensor arguments,
runs `forward`, wraps the result in a new Tensor and, when a gradient will be needed,
records the Function and its context on that Tensor. Those records form the
computational graph: each Tensor knows the context of the operation that made it, each
context knows its inputs.

Rules on arrays, or on Tensors. A derivative rule (`backward`, `jvp`) reads what forward
saved through ``ctx.saved_tensors``. In a first-order backward pass nobody will
differentiate the gradient, so a rule gets plain arrays and computes on arrays, at
NumPy's speed. When somebody will (``backward(create_graph=True)``, a transformation
inside another, forward mode through a backward pass), the same rule gets Tensors: the
upstream gradient is a Tensor and ``saved_tensors`` gives back the very Tensors that
were the operation's inputs and output, so every operation of the rule is recorded and
can be differentiated again, to any order. The built-in rules are written with
operations that work on both: the operators, ``.sum``, ``.T``, ``.reshape``, and for the
rest `Function.call` (``Exp.call(x)`` is ``np.exp`` on an array, a recorded Exp on a
Tensor; `chainrule.autograd.tnp` names them). Such a Function sets
``differentiable_backward = True``.

A Function whose rules work on arrays only (the lecture's way, the default) is
first-order: its gradients are correct, and a graph that would differentiate them again
stops there with an error naming the Function, never with a silent zero.

The module also holds the switches read on every operation: grad mode (`no_grad`) and
which forward-mode levels are active.
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

    __slots__ = ("grad_enabled", "levels")

    def __init__(self):
        self.grad_enabled = True
        # The forward-mode levels active now, outermost first (see
        # `chainrule.autograd.forward`); empty outside `jvp`.
        self.levels = ()


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


class recording(no_grad):
    """Context manager: grad mode on when `on` (rules running on Tensors record their
    operations), left as it is otherwise."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        self._prev = _mode.grad_enabled
        _mode.grad_enabled = _mode.grad_enabled or self.on
        return self


_RELEASED_MESSAGE = (
    "trying to backward through the graph a second time: its saved values were "
    "released by the first backward; use backward(retain_graph=True) the first time "
    "to keep them"
)


class Context:
    """What a Function's forward leaves for its backward (and for its jvp).

    `save_for_backward(*arrays)` stores arrays, read back as `ctx.saved_tensors`; any
    other attribute may be set freely (``ctx.axis = axis``). `needs_input_grad` tells,
    per argument of `apply`, whether a gradient is wanted for it, so backward can skip
    work. While a rule runs on Tensors (see the module docstring), ``saved_tensors``
    holds the input Tensor for each saved input array and the output Tensor for the
    saved output; anything else saved stays a constant array.

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
        "fn",
        "inputs",
        "needs_input_grad",
        "retain_grad",
        # Left unset by `apply` (read through `grad_output`, `grad_inputs`).
        "_grad_output",
        "_grad_inputs",
        "saved_tensors",
        # The raw arguments forward got and the raw result it returned (to tell, when a
        # rule runs on Tensors, which saved value is which).
        "_raw",
        "_result",
        # How many recorded operations use the output (counted by `apply`), and the
        # bookkeeping of a first-order pass (`chainrule.autograd.fast_backward`).
        "_consumers",
        "_visit",
        "_left",
        "_gsum",
        "__dict__",
    )
    # The output Tensor, set while a rule runs on Tensors (read with this default).
    output = None

    def __init__(self):
        self.fn = None
        self.inputs = ()
        self.needs_input_grad = ()
        self.retain_grad = False
        self.saved_tensors = ()
        self._raw = ()
        self._result = None
        self._consumers = 0
        self._visit = None

    @property
    def grad_output(self):
        """The gradient of the output kept by passes that retain it (or None)."""
        return getattr(self, "_grad_output", None)

    @grad_output.setter
    def grad_output(self, value) -> None:
        self._grad_output = value

    @property
    def grad_inputs(self):
        """The gradients sent to each input, kept by passes that retain the graph."""
        return getattr(self, "_grad_inputs", None)

    @grad_inputs.setter
    def grad_inputs(self, value) -> None:
        self._grad_inputs = value

    def save_for_backward(self, *arrays) -> None:
        """Keep `arrays` for backward: a Function's inputs and its output themselves (not
        views or copies of them), and any constants (masks, indices)."""
        self.saved_tensors = arrays

    def as_tensors(self, saved: tuple) -> tuple:
        """`saved` (what forward saved) with each input array replaced by its input
        Tensor and the output array by the output Tensor (``self.output``)."""
        return tuple(self._as_tensor(v, i) for i, v in enumerate(saved))

    def _as_tensor(self, value, i: int):
        """The Tensor whose data `value` (the `i`-th array forward saved) is, or `value`.

        The input in the same position is preferred, so that ``x * x.detach()`` (two
        Tensors, one array) keeps its constant."""
        raw, inputs = self._raw, self.inputs
        if i < len(raw) and raw[i] is value and isinstance(inputs[i], Tensor):
            return inputs[i]
        for r, arg in zip(raw, inputs):
            if r is value and isinstance(arg, Tensor):
                return arg
        if value is self._result and self.output is not None:
            return self.output
        return value

    @property
    def released(self) -> bool:
        """True once a backward pass has freed what forward saved."""
        return self.saved_tensors is None

    def release(self) -> None:
        """Free what forward saved and set (the record of the graph stays)."""
        self.saved_tensors = None
        if not self.fn.trusted_rule:
            self.__dict__.clear()


class _Record(Context):
    """The Context that `Function.apply` makes: apply sets every field itself, so making
    one runs no Python code (calling a class without an ``__init__`` costs less: 4-5% of
    micrograd's demo)."""

    __slots__ = ()
    __init__ = object.__init__


_new = object.__new__
_ndarray = np.ndarray
# 0-d values are NumPy scalars inside the engine: arithmetic on them costs a sixth to a
# ninth of the same arithmetic on 0-d arrays (measured with timeit), which is what makes
# graphs of scalars fast. `Tensor.data` still always hands out an ndarray.
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
    argument for Tensor arguments, None for constants) and returns the output's tangent;
    with ``jvp_takes_none = True`` a Tensor argument without a tangent gets None rather
    than an array of zeros (the rule skips it).

    Twice differentiable: the rules above work on arrays and on Tensors alike (``*`` of
    two Tensors is recorded), so this Multiply may set ``differentiable_backward = True``
    and its gradients can then be differentiated again (``backward(create_graph=True)``,
    `chainrule.hessian`, ...). A rule that calls NumPy functions writes them as
    `Function.call` of the matching Function (``Exp.call(x)`` for ``np.exp(x)``, see
    `chainrule.autograd.tnp`), computes masks from the arrays (``tnp.value(x) > 0``),
    and uses an in-place operator only on an array it made itself with an array or a
    number on the right (on a Tensor ``a *= b`` is ``a = a * b``; NumPy refuses an
    array ``a *= b`` with a Tensor ``b``). With the default, False, the rules get arrays always;
    differentiating their result again raises an error that says so.
    """

    # Whether forward/backward accept NumPy scalars (np.float64, ...) where a 0-d array
    # could appear. The built-in operations do; a subclass gets 0-d ndarrays unless it
    # sets this to True.
    scalar_inputs = False
    # Whether backward and jvp are written to run on Tensors too (see the docstring).
    differentiable_backward = False
    # Whether jvp takes None for a Tensor argument without a tangent (the built-in rules
    # do); otherwise it gets an array of zeros.
    jvp_takes_none = False
    # Whether the first-order backward pass may call backward without its checks: the
    # engine's elementwise primitives, whose forward sets no attributes on the context
    # and whose backward takes NumPy scalars and returns one gradient per argument
    # (measured: the checks cost a fifth of a scalar graph's backward pass).
    trusted_rule = False
    trusted_backward = None  # set for each subclass (see __init_subclass__)

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError

    @staticmethod
    def jvp(ctx, *tangents):
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.apply2 = staticmethod(_two_argument_apply(cls))
        # The backward the first-order pass may call without checks (see trusted_rule).
        cls.trusted_backward = staticmethod(cls.backward) if cls.trusted_rule else None

    @classmethod
    def apply(cls, *args) -> Tensor:
        """Run `forward` on the arrays of `args` and return the result as a Tensor, which
        records this operation when an argument requires grad (and grad mode is on)."""
        if len(args) == 2:
            return cls.apply2(*args)
        raw, needs = _unwrap(cls, args)
        ctx = _Record()
        ctx.saved_tensors = ()
        ctx.needs_input_grad = needs
        result = cls.forward(ctx, *raw)
        record = True in needs and _mode.grad_enabled
        if record:  # one more consumer of each input's output (see fast_backward)
            for a, need in zip(args, needs):
                if need and a._ctx is not None:
                    a._ctx._consumers += 1
        return _result(cls, ctx, args, raw, result, record)

    @classmethod
    def call(cls, *args):
        """`apply` when an argument is a Tensor; otherwise `forward` on the arguments as
        they are, returning its array (nothing recorded). The way a rule that must run
        on arrays and on Tensors calls another Function."""
        for a in args:
            if isinstance(a, Tensor):
                return cls.apply(*args)
        return cls.forward(Context(), *args)


def _result(cls, ctx, args, raw, result, record: bool) -> Tensor:
    """The Tensor of `result`, the value ``cls.forward(ctx, *raw)`` returned for `args`,
    recording the operation on it when `record`."""
    rc = result.__class__
    if rc is not _float64 and (result.dtype.kind != "f" if rc is _ndarray else rc not in _SCALARS):
        result = _float_result(cls, result)
    out = _new(Tensor)
    out._data = result
    ctx.fn = cls
    ctx.inputs = args
    ctx._raw = raw
    ctx._result = result
    if record:
        out.requires_grad = True
        out._ctx = ctx
        ctx.retain_grad = False
        ctx._consumers = 0
        ctx._visit = None
    else:  # a leaf: `_grad` is read (an operation's result keeps it unset)
        out.requires_grad = False
        out._ctx = None
        out._grad = None
    if _mode.levels:
        _hooks.forward_step(cls, ctx, args, out)
    return out


def _two_argument_apply(cls):
    """``cls.apply(a, b)`` as a plain function of two arguments: `Function.apply` with
    its steps for two arguments written out in one function, made once per Function
    class (``cls.apply2``; ``forward`` and ``scalar_inputs`` are read then). The
    Tensor's binary operators are these functions (``a * b`` is ``Mul.apply2(a, b)``):
    in a graph of scalars an operator runs once per operation, and the general steps (a
    loop over the arguments, a second call) make micrograd's demo 1.3-1.4 times as slow
    (``bench_engine.py --only scalar``). Tested to give exactly what they give."""

    scalars_ok = cls.scalar_inputs
    forward = cls.forward

    def apply2(a, b):
        ctx = _Record()
        ctx.saved_tensors = ()
        if isinstance(a, Tensor):
            ra, na = a._data, a.requires_grad
            if ra.__class__ is not _ndarray and not scalars_ok:
                ra = a.data
        else:
            ra, na = a, False
        if isinstance(b, Tensor):
            rb, nb = b._data, b.requires_grad
            if rb.__class__ is not _ndarray and not scalars_ok:
                rb = b.data
        else:
            rb, nb = b, False
        ctx.needs_input_grad = (na, nb)
        result = forward(ctx, ra, rb)
        record = (na or nb) and _mode.grad_enabled
        if record:  # one more consumer of each input's output (see fast_backward)
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
        ctx.fn = cls
        ctx.inputs = (a, b)
        ctx._raw = (ra, rb)
        ctx._result = result
        if record:
            out.requires_grad = True
            out._ctx = ctx
            ctx.retain_grad = False
            ctx._consumers = 0
            ctx._visit = None
        else:  # a leaf: `_grad` is read (an operation's result keeps it unset)
            out.requires_grad = False
            out._ctx = None
            out._grad = None
        if _mode.levels:
            _hooks.forward_step(cls, ctx, (a, b), out)
        return out

    apply2.__qualname__ = f"{cls.__name__}.apply2"
    return apply2


def _unwrap(cls, args) -> tuple:
    """(the raw arguments for ``cls.forward``, whether each wants a gradient)."""
    raw = []
    needs = []
    for a in args:
        if isinstance(a, Tensor):
            d = a._data
            if d.__class__ is not _ndarray and not cls.scalar_inputs:
                d = a.data
            raw.append(d)
            needs.append(a.requires_grad)
        else:
            raw.append(a)
            needs.append(False)
    return raw, tuple(needs)


class Primitive(Function):
    """Base of the engine's built-in operations: they take NumPy scalars for 0-d values
    (see `Function.scalar_inputs`), which keeps graphs of scalars fast, and their rules
    run on Tensors too."""

    scalar_inputs = True
    differentiable_backward = True
    jvp_takes_none = True


class _Hooks:
    """Where forward mode (`chainrule.autograd.forward`, a module above this one)
    installs the step `apply` runs while a forward-mode level is active."""

    forward_step = None


_hooks = _Hooks()


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


def value(x):
    """The array of `x` if it is a Tensor, else `x`: for masks and other constants that
    a rule computes from its inputs (``value(x) > 0``)."""
    return x._data if isinstance(x, Tensor) else x


class OnceDifferentiable(Function):
    """The node that stands for a gradient (or tangent) computed by a first-order rule
    (one that works on arrays only) in a graph that records gradients: its value is that
    gradient, its inputs the Tensors it was computed from, and differentiating it again
    is an error naming the Function (instead of a silent zero)."""

    differentiable_backward = True
    jvp_takes_none = True

    @staticmethod
    def forward(ctx, result, message, *_depends_on):
        ctx.message = message
        return result

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError(ctx.message)

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError(ctx.message)


def first_order_message(cls, rule: str, what: str) -> str:
    name = cls.__name__
    return (
        f"{name}.{rule} works on arrays, so the {what} it computes cannot be differentiated "
        f"again; to make {name} twice differentiable, write its {rule} with Tensor "
        f"operations (see chainrule.autograd.tnp) and set {name}.differentiable_backward "
        "= True"
    )


def run_rule(cls, rule, ctx, values: tuple, output, what: str):
    """Run `rule` (cls.backward or cls.jvp) of the operation `ctx` on `values` (the
    upstream gradient, or the tangents) so that its result is recorded: on Tensors for a
    Function whose rules run on Tensors, else on arrays, each result then standing as a
    `OnceDifferentiable` node on the Tensors it came from."""
    saved = ctx.saved_tensors
    if saved is None:
        raise RuntimeError(_RELEASED_MESSAGE)
    if cls.differentiable_backward:
        with recording(True):
            ctx.output = output
            ctx.saved_tensors = ctx.as_tensors(saved)
            try:
                return rule(ctx, *values)
            finally:
                ctx.saved_tensors = saved
                del ctx.output
    result = rule(ctx, *(value(v) for v in values))
    depends = [v for v in values if isinstance(v, Tensor)]
    depends += [a for a in ctx.inputs if isinstance(a, Tensor)]
    message = first_order_message(cls, rule.__name__, what)
    single = not isinstance(result, tuple)

    def wrap(r):
        if r is None:
            return None
        return OnceDifferentiable.apply(r, message, *depends)

    return wrap(result) if single else tuple(map(wrap, result))
