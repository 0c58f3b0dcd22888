"""Gradient checking: finite differences, relative error, and reverse/forward mode checks.

The numeric derivative is the centered difference of the lecture,
``df/dx ~ (f(x + h) - f(x - h)) / 2h``, which is accurate to O(h^2). For a function with
a vector output, the chain rule is checked with an upstream gradient ``u``: the gradient
of the scalar ``sum(u * f(x))`` is the vector-Jacobian product ``u^T J``, which is what
reverse mode computes.

`gradcheck` checks a function built from `Function`s three ways along random directions:
for an input direction ``v`` and an output direction ``u``, the number ``u^T J v`` is

- reverse mode: ``(u^T J) . v`` (one backward pass, `vjp`),
- forward mode: ``u . (J v)`` (one forward pass with tangents, `jvp`),
- finite differences: ``u . (f(x + eps v) - f(x - eps v)) / 2 eps`` (and again with
  step 2 eps, the two combined by Richardson extrapolation to cancel the O(eps^2) error),

and the three must agree. Each input is checked separately, so a failure names the input.
Forward mode needs a ``jvp`` rule in every Function on the way, which is optional: without
one, reverse mode is checked alone, and a `GradcheckWarning` says so.
"""

from __future__ import annotations

import warnings

import numpy as np

from chainrule.autograd.engine import Tensor, no_grad
from chainrule.autograd.transforms import jvp, vjp

__all__ = [
    "GradcheckError",
    "GradcheckWarning",
    "gradcheck",
    "gradgradcheck",
    "numeric_gradient",
    "rel_error",
]


class GradcheckError(AssertionError):
    """Raised by `gradcheck` when two ways of computing a derivative disagree.

    Attributes: ``input_index`` (which input), ``check`` (e.g. ``"rev vs numeric"``),
    ``error`` (the worst relative error) and ``values`` (the numbers compared).
    """

    def __init__(self, message, input_index=None, check=None, error=None, values=None):
        super().__init__(message)
        self.input_index = input_index
        self.check = check
        self.error = error
        self.values = values


def rel_error(a, b) -> float:
    """Worst relative error ``max |a - b| / max(1e-8, |a| + |b|)`` (elementwise, as in cs231n).

    a, b: numbers or arrays of the same shape. Returns a Python float (0.0 for empty arrays).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes {a.shape} and {b.shape} differ")
    if a.size == 0:
        return 0.0
    err = np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))
    return float(np.max(err))


def _value(f, x) -> np.ndarray:
    # A copy: f may return a view of a buffer it reuses or of x itself.
    return np.array(f(x), dtype=np.float64)


def numeric_gradient(f, x, upstream=None, h: float = 1e-6) -> np.ndarray:
    """Centered-difference gradient of `f` at `x`.

    f : callable taking an array shaped like x and returning a number or an array.
    x : float array (any shape). A float64 ndarray is perturbed in place, one entry at a
        time, and restored, so `f` may also ignore its argument and read `x` through a
        closure (as in cs231n). Anything else is copied to a float64 array first.
    upstream : None when f returns a single number; otherwise an array of f's output
        shape, the upstream gradient u: the result is then the gradient of
        ``sum(u * f(x))``, that is ``u^T J`` (the chain rule for a vector output).
    h : step size, a positive number (a step of 0 would divide 0 by 0).

    Returns a float64 array of x's shape.
    """
    _check_step("numeric_gradient", "h", h)
    if not (isinstance(x, np.ndarray) and x.dtype == np.float64):
        x = np.array(x, dtype=np.float64)
    if not x.flags.writeable:
        x = x.copy()
    if upstream is not None:
        upstream = np.asarray(upstream, dtype=np.float64)
    grad = np.zeros(x.shape, dtype=np.float64)
    for i in np.ndindex(x.shape):
        old = x[i]
        try:
            x[i] = old + h
            fp = _value(f, x)
            x[i] = old - h
            fm = _value(f, x)
        finally:
            x[i] = old
        diff = fp - fm
        if upstream is None:
            if diff.size != 1:
                raise ValueError(
                    f"numeric_gradient: f returned an array of shape {diff.shape}; "
                    "pass upstream (an array of that shape) for a vector output"
                )
            grad[i] = diff.reshape(()) / (2 * h)
        else:
            if diff.shape != upstream.shape:
                raise ValueError(
                    f"numeric_gradient: upstream has shape {upstream.shape} but f "
                    f"returned shape {diff.shape}"
                )
            grad[i] = np.sum(upstream * diff) / (2 * h)
    return grad


def _check_step(where: str, name: str, step) -> None:
    if not (isinstance(step, (int, float, np.number)) and step > 0 and np.isfinite(step)):
        raise ValueError(f"{where}: {name} must be a positive step, got {step!r}")


def _check_inputs(inputs):
    if isinstance(inputs, np.ndarray) or np.isscalar(inputs):
        inputs = (inputs,)
    arrays = []
    for i, a in enumerate(inputs):
        arr = np.array(a.data if isinstance(a, Tensor) else a)
        if arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
        if arr.dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {arr.dtype}; finite differences need "
                "float64 inputs (pass non-differentiable arguments through a closure)"
            )
        arrays.append(arr)
    if not arrays:
        raise ValueError("gradcheck: no inputs to check")
    return arrays


def _agree(values: dict, tol: float, noise: float, i: int, shape: tuple) -> None:
    """Raise `GradcheckError` unless the ways of computing u^T J v in `values` (numeric,
    and rev and/or fwd) agree within `tol` (or, against finite differences, within the
    rounding `noise` of the finite difference itself)."""
    pairs = [(m, "numeric") for m in ("rev", "fwd") if m in values]
    if "rev" in values and "fwd" in values:
        pairs.append(("rev", "fwd"))
    for a, b in pairs:
        va, vb = values[a], values[b]
        err = rel_error(va, vb)
        allowed = noise if b == "numeric" else 0.0
        if err > tol and abs(va - vb) > allowed:
            raise GradcheckError(
                f"gradcheck failed for input {i} (shape {shape}): {a} mode vs "
                f"{'finite differences' if b == 'numeric' else b + ' mode'}: "
                f"worst relative error {err:.3e} > tol {tol:.1e} "
                f"(u^T J v = {va!r} vs {vb!r})",
                input_index=i,
                check=f"{a} vs {b}",
                error=err,
                values=values,
            )


class GradcheckWarning(UserWarning):
    """`gradcheck` checked less than it was asked to (and says what)."""


def _forward_mode(fn, arrays, i, v):
    """J v for input ``i`` along ``v`` (forward mode)."""
    tangents = [np.zeros_like(a) for a in arrays]
    tangents[i] = v
    return jvp(fn, tuple(arrays), tuple(tangents))[1]


def gradcheck(
    fn,
    inputs,
    modes=None,
    tol: float = 1e-6,
    eps: float = 1e-6,
    random_state=0,
    n_directions: int = 2,
) -> bool:
    """Check the derivatives of `fn` at `inputs` along random directions.

    fn : callable taking one Tensor per input and returning a Tensor (any shape). Bind
        arguments that are not differentiated (labels, axes, constants) with a closure:
        ``gradcheck(lambda s: cross_entropy(s, y), [scores])``.
    inputs : sequence of float64 arrays (or one array).
    modes : which of ``"rev"`` (reverse mode, backward) and ``"fwd"`` (forward mode, jvp)
        to check against finite differences; with both, they are also checked against
        each other. None (default): both, where every Function on the way has a ``jvp``
        (``jvp`` is optional); where one has none, reverse mode alone, with a
        `GradcheckWarning` naming it. ``("fwd",)`` asked explicitly of such a Function
        raises ``NotImplementedError`` naming it.
    tol : largest accepted relative error ``|a - b| / (|a| + |b|)`` between two ways of
        computing ``u^T J v``. A difference within the rounding noise of the finite
        difference itself (estimated from the size of ``u * f(x)`` and `eps`) also passes.
    eps : finite-difference step, a positive number.
    random_state : int seed or numpy.random.Generator for the directions u and v.
    n_directions : random (u, v) pairs per input.

    Returns True, or raises `GradcheckError` naming the input, the two computations that
    disagree and the worst relative error.
    """
    fwd_if_defined = modes is None
    modes = ("rev", "fwd") if modes is None else tuple(modes)
    bad = [m for m in modes if m not in ("rev", "fwd")]
    if bad or not modes:
        raise ValueError(
            f"gradcheck: modes must be a non-empty subset of ('rev', 'fwd'), got {modes}"
        )
    _check_step("gradcheck", "eps", eps)
    arrays = _check_inputs(inputs)
    rng = np.random.default_rng(random_state)

    def f(*xs):
        with no_grad():
            out = fn(*(Tensor(x) for x in xs))
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
        return np.array(out.data, dtype=np.float64)

    y0 = f(*arrays)
    if not np.all(np.isfinite(y0)):
        raise ValueError("gradcheck: fn returned NaN or infinity at the given inputs")

    for _ in range(n_directions):
        u = rng.standard_normal(y0.shape)
        grads = None
        if "rev" in modes:
            out, vjp_fn = vjp(fn, *arrays)
            grads = vjp_fn(u)
            for i, (g, x) in enumerate(zip(grads, arrays)):
                if np.shape(g) != x.shape:
                    raise GradcheckError(
                        f"gradcheck: reverse mode gave a gradient of shape {np.shape(g)} "
                        f"for input {i} of shape {x.shape}",
                        input_index=i,
                        check="rev shape",
                    )
        for i, x in enumerate(arrays):
            if x.size == 0:
                continue
            v = rng.standard_normal(x.shape)

            def g(t, i=i, v=v, u=u):
                xs = list(arrays)
                xs[i] = arrays[i] + t * v
                return float(np.sum(u * f(*xs)))

            # Centered differences with steps eps and 2 eps, combined by Richardson
            # extrapolation: the O(eps^2) truncation error cancels, so smooth functions
            # agree to rounding error even where the derivative is 0.
            d1 = (g(eps) - g(-eps)) / (2 * eps)
            d2 = (g(2 * eps) - g(-2 * eps)) / (4 * eps)
            numeric = (4 * d1 - d2) / 3
            # Rounding in f(x +- eps v) is amplified by 1/eps; differences below this
            # noise level cannot be told apart from exact agreement.
            noise = 1e2 * np.finfo(np.float64).eps * float(np.sum(np.abs(u * y0))) / eps
            values = {"numeric": numeric}
            if grads is not None:
                values["rev"] = float(np.sum(np.asarray(grads[i], dtype=np.float64) * v))
            if "fwd" in modes:
                try:
                    jv = _forward_mode(fn, arrays, i, v)
                except NotImplementedError as e:
                    if not fwd_if_defined:
                        raise
                    modes = ("rev",)
                    warnings.warn(
                        GradcheckWarning(
                            f"{e}: gradcheck checked reverse mode against finite "
                            "differences only, not forward mode"
                        ),
                        stacklevel=2,
                    )
                else:
                    values["fwd"] = float(np.sum(u * np.asarray(jv, dtype=np.float64)))
            _agree(values, tol, noise, i, x.shape)
    return True


def gradgradcheck(
    fn,
    inputs,
    modes=None,
    tol: float = 1e-6,
    eps: float = 1e-6,
    random_state=0,
    n_directions: int = 2,
) -> bool:
    """Check the second derivatives of `fn` at `inputs`, as PyTorch's ``gradgradcheck``.

    The gradient of ``sum(u * fn(*inputs))`` with respect to the inputs, for a random
    upstream gradient ``u``, is a function of the inputs and of ``u``; its derivatives
    with respect to both (reverse over reverse: the gradient's own graph, recorded with
    ``create_graph``; forward over reverse: tangents pushed through the backward pass)
    are checked by `gradcheck` against finite differences of the gradient. First, the
    gradient computed by rules running on Tensors (recorded) must equal the one from
    the first-order pass (on arrays).

    Arguments as `gradcheck`'s. Returns True or raises `GradcheckError`.
    """
    from chainrule.autograd.function import enable_grad
    from chainrule.autograd.tensor import Tensor as _Tensor

    arrays = _check_inputs(inputs)
    rng = np.random.default_rng(random_state)
    with no_grad():
        y0 = fn(*(_Tensor(a) for a in arrays))
    if not isinstance(y0, _Tensor):
        raise TypeError(f"gradgradcheck: fn must return a Tensor, got {type(y0).__name__}")
    u = rng.standard_normal(y0.shape)

    def first_order(*args):
        """The gradients of sum(u * fn(xs)) w.r.t. xs, flattened into one Tensor."""
        *xs, upstream = args
        with enable_grad():
            _, pull = vjp(fn, *xs)
            grads = pull(upstream)
            return _flat(grads)

    _, pull = vjp(fn, *arrays)
    on_arrays = np.concatenate([np.ravel(g) for g in pull(u)])
    recorded = first_order(*(_Tensor(a) for a in arrays), _Tensor(u)).data
    err = rel_error(recorded, on_arrays)
    if err > tol:
        raise GradcheckError(
            f"gradgradcheck: the gradient recorded on Tensors differs from the first-order "
            f"gradient: worst relative error {err:.3e} > tol {tol:.1e}",
            check="recorded vs first order",
            error=err,
        )
    return gradcheck(first_order, [*arrays, u], modes, tol, eps, rng, n_directions)


def _flat(grads):
    from chainrule.autograd.array_ops import concatenate

    return concatenate([g.reshape(-1) for g in grads])
