"""Layers as fused Functions with hand-derived backward passes.

Each layer is one `Function`: `forward` computes on arrays, `backward` is the flat,
vectorized gradient of the course's ``layer_backward(dout, cache)`` (with ``ctx`` as
the cache) and `jvp` pushes tangents forward. One fused Function instead of a chain of
primitives means fewer temporary arrays and fewer passes over memory, which is where
the time of a fully connected network goes besides the matrix products.

The rules are written with operations that run on arrays and on Tensors (see
`chainrule.autograd.function`): on arrays in a first-order pass, recorded when a
gradient is differentiated again, so every layer is differentiable to any order. A
value a rule needs that forward derived from an input (batch norm's normalised
``xhat``) is kept as an array for the first order and computed again from the input
Tensor when the rule runs on Tensors, so that its own derivative is not lost.

Conventions
- Arrays are ``(N, D)``: N examples of D features. Weights are stored ``(D_in, D_out)``
  as in the course (``out = x @ W + b``), not PyTorch's ``(D_out, D_in)``.
- Arguments may be Tensors or plain arrays; a plain array is a constant (no gradient).
- dtypes follow NumPy: float32 inputs give float32 outputs and gradients.
- Gradients that ``ctx.needs_input_grad`` says nobody wants are not computed (the first
  layer never computes ``dx`` for the data).
"""

from __future__ import annotations

import numbers

import numpy as np

from chainrule._random import as_generator
from chainrule.autograd import tnp
from chainrule.autograd.engine import Function, Tensor
from chainrule.autograd.ops import ReLU
from chainrule.nn.functional._matmul import matmul
from chainrule.nn.functional.batch_norm_rules import (
    batch_norm_grads,
    batch_norm_tangent,
    normalized_rows,
)

__all__ = [
    "BatchNorm",
    "Dropout",
    "LeakyReLU",
    "Linear",
    "LinearReLU",
    "ReLU",
    "batch_norm",
    "dropout",
    "leaky_relu",
    "linear",
    "linear_relu",
    "relu",
]


def _raw(a):
    return a.data if isinstance(a, Tensor) else a


def _check_linear(name, x, W, b):
    x, W, b = _raw(x), _raw(W), _raw(b)
    for what, a in (("x", x), ("W", W)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: {what} must be an array or Tensor, got {type(a).__name__}")
        if a.dtype.kind != "f":
            raise TypeError(f"{name}: {what} must hold floats, got dtype {a.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name}: x must be 2-D (N, D), got shape {x.shape}")
    if W.ndim != 2:
        raise ValueError(f"{name}: W must be 2-D (D, M), got shape {W.shape}")
    if x.shape[1] != W.shape[0]:
        raise ValueError(
            f"{name}: x has {x.shape[1]} features but W of shape {W.shape} expects {W.shape[0]}"
        )
    if b is not None:
        if not isinstance(b, np.ndarray) or b.shape != (W.shape[1],):
            raise ValueError(f"{name}: b must have shape ({W.shape[1]},), got {np.shape(b)}")


def _linear_backward(ctx, dz, x, W):
    """dx = dz W^T, dW = x^T dz, db = sum_n dz (only those that are needed)."""
    need_x, need_W, need_b = ctx.needs_input_grad
    dx = matmul(dz, W.T) if need_x else None
    dW = matmul(x.T, dz) if need_W else None
    db = dz.sum(axis=0) if need_b else None
    return dx, dW, db


def _linear_jvp(ctx, tx, tW, tb, x, W):
    """The product rule of ``x @ W + b``: ``tx @ W + x @ tW + tb``."""
    t = None
    if tx is not None:
        t = tx @ W
    if tW is not None:
        t = x @ tW if t is None else t + x @ tW
    if tb is not None:
        t = tnp.broadcast_to(tb, (x.shape[0], W.shape[1])) if t is None else t + tb
    return t


class _Layer(Function):
    """Base of the layers: rules that run on Tensors too, forward-mode rules that take
    None for an input without a tangent."""

    differentiable_backward = True
    jvp_takes_none = True


class Linear(_Layer):
    """Affine layer ``out = x @ W + b``.

    x: (N, D), W: (D, M), b: (M,) or None -> out: (N, M).
    Backward: ``dx = dout @ W.T``, ``dW = x.T @ dout``, ``db = dout.sum(0)``.
    """

    @staticmethod
    def forward(ctx, x, W, b):
        out = matmul(x, W)
        if b is not None:
            out += b
        ctx.save_for_backward(x, W)
        return out

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        return _linear_backward(ctx, g, x, W)

    @staticmethod
    def jvp(ctx, tx, tW, tb):
        x, W = ctx.saved_tensors
        return _linear_jvp(ctx, tx, tW, tb, x, W)


class LinearReLU(_Layer):
    """``relu(x @ W + b)`` in one Function: the ReLU runs in place on the product and its
    mask is read from the output, so no pre-activation array is kept.

    x: (N, D), W: (D, M), b: (M,) or None -> out: (N, M).
    """

    @staticmethod
    def forward(ctx, x, W, b):
        out = matmul(x, W)
        if b is not None:
            out += b
        np.maximum(out, 0, out=out)
        ctx.save_for_backward(x, W, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, W, out = ctx.saved_tensors
        dz = g * (tnp.value(out) > 0)
        return _linear_backward(ctx, dz, x, W)

    @staticmethod
    def jvp(ctx, tx, tW, tb):
        x, W, out = ctx.saved_tensors
        t = _linear_jvp(ctx, tx, tW, tb, x, W)
        return t * (tnp.value(out) > 0)


def linear(x, W, b=None) -> Tensor:
    """Affine layer ``x @ W + b``: x (N, D), W (D, M), b (M,) or None -> (N, M)."""
    _check_linear("linear", x, W, b)
    return Linear.apply(x, W, b)


def linear_relu(x, W, b=None) -> Tensor:
    """``relu(x @ W + b)`` as one fused Function: x (N, D), W (D, M), b (M,) -> (N, M)."""
    _check_linear("linear_relu", x, W, b)
    return LinearReLU.apply(x, W, b)


def relu(x) -> Tensor:
    """Elementwise ``max(0, x)`` of any shape."""
    return ReLU.apply(x)


class LeakyReLU(_Layer):
    """``x`` where ``x > 0``, ``negative_slope * x`` elsewhere."""

    @staticmethod
    def forward(ctx, x, negative_slope):
        pos = x > 0
        out = np.asarray(x * negative_slope)  # an array also for a 0-d x
        np.copyto(out, x, where=pos)
        ctx.save_for_backward(pos)
        ctx.slope = negative_slope
        return out

    @staticmethod
    def backward(ctx, g):
        (pos,) = ctx.saved_tensors
        return tnp.where(pos, g, g * ctx.slope), None

    @staticmethod
    def jvp(ctx, t, _ts):
        (pos,) = ctx.saved_tensors
        return tnp.where(pos, t, t * ctx.slope)


def leaky_relu(x, negative_slope: float = 0.01) -> Tensor:
    """Leaky ReLU of any shape: ``x`` if ``x > 0`` else ``negative_slope * x``."""
    if not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {negative_slope!r}")
    return LeakyReLU.apply(x, float(negative_slope))


class Dropout(_Layer):
    """Inverted dropout with a given keep mask: ``out = x * mask / (1 - p)``.

    The mask (bool, shaped like x) is drawn by `dropout` and saved for backward, where
    the same entries are zeroed and the same scale applied: linear in x, its backward
    and its tangent are the same product.
    """

    @staticmethod
    def forward(ctx, x, mask, scale):
        out = np.multiply(x, mask)
        out *= scale
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        dx = g * mask
        dx *= ctx.scale  # in place on an array; a new Tensor on a Tensor
        return dx, None, None

    @classmethod
    def jvp(cls, ctx, t, _tm, _ts):
        return cls.backward(ctx, t)[0]


def dropout(x, p: float = 0.5, training: bool = True, rng=None) -> Tensor:
    """Inverted dropout: each entry is zeroed with probability ``p`` and the survivors are
    scaled by ``1 / (1 - p)``, so the expected output equals the input and evaluation
    (``training=False``) is the identity.

    x: any shape, float. rng: a `numpy.random.Generator` (or an int seed; None draws a
    fresh unseeded generator). The same generator state gives the same mask.
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    if not training or p == 0.0:
        return x if isinstance(x, Tensor) else Tensor(x)
    data = _raw(x)
    shape = np.shape(data)
    if p == 1.0:
        mask = np.zeros(shape, dtype=bool)
        scale = 0.0
    else:
        gen = as_generator(rng, "dropout: rng")
        # float32 uniforms are twice as fast to draw as float64 and resolve p to 2^-24.
        mask = gen.random(shape, dtype=np.float32) >= np.float32(p)
        scale = 1.0 / (1.0 - p)
    return Dropout.apply(x, mask, scale)


class BatchNorm(_Layer):
    """Batch normalization over the first axis of x (N, D), per feature.

    Training: normalise with the batch mean and (biased) variance, and update the
    running statistics in place (``running = (1 - momentum) * running + momentum *
    batch``, with the unbiased batch variance for ``running_var``, as PyTorch does).
    Evaluation: normalise with the running statistics.

    Backward in training is the compact form of cs231n's ``batchnorm_backward_alt``::

        dx = gamma / (N * std) * (N * dout - dout.sum(0) - xhat * (dout * xhat).sum(0))
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps):
        n = x.shape[0]
        dtype = x.dtype
        if training:
            mean = x.mean(axis=0)
            xhat = x - mean
            var = np.einsum("ij,ij->j", xhat, xhat) / n
            var = var.astype(dtype, copy=False)
            inv_std = 1.0 / np.sqrt(var + eps)
            xhat *= inv_std
            if running_mean is not None:
                running_mean *= 1.0 - momentum
                running_mean += momentum * mean
            if running_var is not None:
                running_var *= 1.0 - momentum
                running_var += (momentum * n / (n - 1)) * var
        else:
            inv_std = (1.0 / np.sqrt(running_var + eps)).astype(dtype, copy=False)
            xhat = x - running_mean
            xhat *= inv_std
        out = xhat * gamma if gamma is not None else xhat.copy()
        if beta is not None:
            out += beta
        ctx.save_for_backward(x, gamma)
        ctx.xhat, ctx.inv_std = xhat, inv_std
        ctx.training, ctx.eps, ctx.running_mean = training, eps, running_mean
        return out

    @staticmethod
    def backward(ctx, g):
        x, gamma = ctx.saved_tensors
        xhat, inv_std = normalized(ctx, x)
        need_x, need_gamma, need_beta = ctx.needs_input_grad[:3]
        dx, dgamma, dbeta = batch_norm_grads(g, xhat, inv_std, gamma, ctx.training, need_x)
        return (
            dx,
            dgamma if need_gamma else None,
            dbeta if need_beta else None,
            *(None,) * 5,
        )

    @staticmethod
    def jvp(ctx, tx, tgamma, tbeta, *_rest):
        x, gamma = ctx.saved_tensors
        xhat, inv_std = normalized(ctx, x)
        return batch_norm_tangent(tx, tgamma, tbeta, xhat, inv_std, gamma, ctx.training)


def normalized(ctx, x):
    """``(xhat, inv_std)`` of `BatchNorm`'s forward: the arrays forward kept, or, when
    the rule runs on Tensors, computed again from the Tensor x (`normalized_rows`)."""
    if not tnp.is_tensor(x):
        return ctx.xhat, ctx.inv_std
    return normalized_rows(x, ctx.training, ctx.eps, ctx.running_mean, ctx.inv_std)


def batch_norm(
    x,
    gamma=None,
    beta=None,
    running_mean=None,
    running_var=None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization of x (N, D) or (N, C, H, W): ``gamma * (x - mean) / sqrt(var +
    eps) + beta``.

    gamma, beta: (D,) Tensors or arrays (None: 1 and 0). running_mean, running_var: (D,)
    arrays of x's dtype updated IN PLACE in training (None: not tracked); required in
    evaluation (``training=False``), where they replace the batch statistics.

    Images x (N, C, H, W) are normalised per channel over N, H and W (`batch_norm2d`).
    """
    xd = _raw(x)
    if np.ndim(xd) == 4:
        from chainrule.nn.functional.norm import batch_norm2d

        return batch_norm2d(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    if not isinstance(xd, np.ndarray) or xd.ndim != 2:
        raise ValueError(f"batch_norm: x must be a 2-D array (N, D), got shape {np.shape(xd)}")
    if xd.dtype.kind != "f":
        raise TypeError(f"batch_norm: x must hold floats, got dtype {xd.dtype}")
    d = xd.shape[1]
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None and np.shape(_raw(a)) != (d,):
            raise ValueError(f"batch_norm: {name} must have shape ({d},), got {np.shape(_raw(a))}")
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        if a is None:
            continue
        if isinstance(a, Tensor):
            a = a.data
        if not isinstance(a, np.ndarray) or a.shape != (d,):
            raise ValueError(f"batch_norm: {name} must be an array of shape ({d},)")
    if isinstance(running_mean, Tensor):
        running_mean = running_mean.data
    if isinstance(running_var, Tensor):
        running_var = running_var.data
    if training:
        if xd.shape[0] < 2:
            raise ValueError(
                "batch_norm: training needs more than one example per batch to estimate "
                f"the variance, got x of shape {xd.shape}"
            )
    elif running_mean is None or running_var is None:
        raise ValueError(
            "batch_norm: evaluation (training=False) needs running_mean and running_var"
        )
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"batch_norm: momentum must be in [0, 1], got {momentum!r}")
    if not eps > 0:
        raise ValueError(f"batch_norm: eps must be positive, got {eps!r}")
    return BatchNorm.apply(
        x, gamma, beta, running_mean, running_var, bool(training), float(momentum), float(eps)
    )
