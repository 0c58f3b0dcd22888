"""Function transformations: forward mode (`jvp`), reverse mode (`vjp`) and `grad`.

`fn` takes Tensors and returns a Tensor (or a tuple of Tensors); primals, tangents and
cotangents are numbers or arrays.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.backward import run_backward
from chainrule.autograd.function import _mode, _tangent_of
from chainrule.autograd.tensor import Tensor, _as_float_array


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def jvp(fn, primals, tangents):
    """Jacobian-vector product in one forward pass.

    Every operation of `fn` pushes the tangents of its inputs through its own `jvp`
    rule next to its value: no finite differences and no reverse pass.

    Returns ``(outputs, output_tangents)``: arrays (tuples when `fn` returns a tuple).
    """
    primals = _as_tuple(primals)
    tangents = _as_tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    inputs = []
    for i, (p, t) in enumerate(zip(primals, tangents)):
        x = Tensor(p)
        tx = _as_float_array(t, x.dtype)
        if tx.shape != x.shape:
            raise ValueError(
                f"jvp: tangent {i} has shape {tx.shape} but its primal has shape {x.shape}"
            )
        x._tangent = tx
        inputs.append(x)
    _mode.forward_ad += 1
    try:
        out = fn(*inputs)
    finally:
        _mode.forward_ad -= 1
    outs = _as_tuple(out)
    values = []
    out_tangents = []
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"jvp: fn must return Tensors, got {type(o).__name__}")
        values.append(o.data)
        # An output that does not depend on the inputs has a zero tangent.
        t = _tangent_of(o)
        out_tangents.append(t if t is not None else np.zeros_like(o.data))
    if isinstance(out, (tuple, list)):
        return tuple(values), tuple(out_tangents)
    return values[0], out_tangents[0]


def vjp(fn, *primals):
    """Vector-Jacobian product: ``outputs, vjp_fn = vjp(fn, x, y)``.

    ``vjp_fn(cotangent)`` returns the gradients of ``sum(cotangent * fn(x, y))`` with
    respect to each primal, as a tuple of arrays. It can be called any number of times.
    """
    inputs = [Tensor(p, requires_grad=True) for p in primals]
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"vjp: fn must return a Tensor, got {type(out).__name__}")

    def vjp_fn(cotangent):
        ct = np.array(cotangent, dtype=out.dtype)
        if ct.shape != out.shape:
            raise ValueError(
                f"vjp: cotangent has shape {ct.shape} but the output has shape {out.shape}"
            )
        for x in inputs:
            x._grad = None
        if out.requires_grad:
            run_backward(out, ct, retain_graph=True)
        return tuple(x._grad if x._grad is not None else np.zeros_like(x.data) for x in inputs)

    return out.data, vjp_fn


def grad(fn, argnums=0):
    """Return a function computing the gradient of scalar-valued `fn`.

    ``grad(f)(x, y)`` is df/dx; ``grad(f, argnums=(0, 1))(x, y)`` is (df/dx, df/dy).
    """
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)

    def grad_fn(*args):
        inputs = [Tensor(a, requires_grad=i in nums) for i, a in enumerate(args)]
        for n in nums:
            if not 0 <= n < len(inputs):
                raise ValueError(f"grad: argnums {n} out of range for {len(args)} arguments")
        out = fn(*inputs)
        if not isinstance(out, Tensor):
            raise TypeError(f"grad: fn must return a Tensor, got {type(out).__name__}")
        if out.size != 1:
            raise ValueError(
                f"grad: fn must return a single number, got shape {out.shape}; use vjp"
            )
        grads = [np.zeros_like(inputs[n].data) for n in nums]
        if out.requires_grad:
            out.backward()
            grads = [
                inputs[n]._grad if inputs[n]._grad is not None else g for n, g in zip(nums, grads)
            ]
        return grads[0] if single else tuple(grads)

    return grad_fn
