"""Spatial batch normalization (per channel over N, H and W), optionally fused with ReLU.

The statistics of channel c are taken over all N * H * W values of that channel, as in
PyTorch's ``BatchNorm2d``. The input is read as rows: the (N*H*W, C) view of its
channels-last layout (free for the outputs of `conv2d` and the pools), so each
statistic is a reduction down the rows and each normalisation a row-broadcast
``x * scale + shift``. Both passes run over chunks of images in threads; a chunk's mean
and squared deviations are taken around the chunk's own mean while it is in cache and
the chunks are combined in float64 (Chan et al.'s parallel variance), which keeps the
variance accurate without a second pass over the whole batch.

Backward in training, with ``xhat = (x - mean) * inv_std`` recomputed per chunk from
the saved input rather than stored (no extra array of the input's size)::

    dbeta = sum(dout),  dgamma = sum(dout * xhat)
    dx = gamma * inv_std * (dout - dbeta / M - xhat * dgamma / M)     (M = N*H*W)

With ``relu=True`` the output is ``max(0, bn(x))`` and ``dout`` is first masked by
``out > 0``: one Function, one output array, no separate pass for the ReLU.

Higher order: when the rule runs on Tensors (a gradient that will be differentiated
again), the same formula runs on the rows of the input Tensor as 1-D batch norm's rule
(`chainrule.nn.functional.batch_norm_rules`), recorded, with the statistics computed again from
the input; forward mode uses that formula on arrays and Tensors alike.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd import tnp
from chainrule.autograd.engine import Function, Tensor
from chainrule.nn.functional._parallel import chunk_size, map_chunks
from chainrule.nn.functional._scratch import empty, scratch
from chainrule.nn.functional.batch_norm_rules import (
    batch_norm_grads,
    batch_norm_tangent,
    normalized_rows,
)

__all__ = ["BatchNorm2d", "batch_norm2d"]


def _rows(a):
    """The (N*H*W, C) rows of an (N, C, H, W) array: a view when a is channels-last."""
    n, c, h, w = a.shape
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(n * h * w, c)


# Images per chunk: about 1 MB of input, so that a chunk's few passes stay in cache while
# the Python work per chunk (which holds the GIL the other threads wait for) stays small.
_CHUNK_BYTES = 1 << 20


def _step(n_images, rows_per_image, c, itemsize):
    return chunk_size(n_images, rows_per_image * c * itemsize, _CHUNK_BYTES)


def _chunks(work, n_images, per_image_rows, c, itemsize):
    step = _step(n_images, per_image_rows, c, itemsize)
    return map_chunks(work, n_images, step, elements=n_images * per_image_rows * c)


def _ones(n_images, rows_per_image, c, dtype):
    """A vector of ones as long as a chunk's rows: column sums as a matrix-vector
    product (``ones @ a``), which BLAS runs several times faster than ``a.sum(0)``."""
    step = _step(n_images, rows_per_image, c, np.dtype(dtype).itemsize)
    return np.ones(step * rows_per_image, dtype=dtype)


def _batch_stats(rows, n_images):
    """Per-channel mean and biased variance (float64, (C,)) of rows (M, C), chunk-wise.

    Each chunk is centred on the mean of its first image before summing, so float32
    sums of many values far from zero (a mean of 1000 with unit spread) lose nothing;
    the chunks' means and squared deviations combine in float64 (Chan et al.).
    """
    m, c = rows.shape
    hw = m // n_images
    ones = _ones(n_images, hw, c, rows.dtype)

    def work(a, b, _slot):
        r = rows[a * hw : b * hw]
        shift = (ones[:hw] @ r[:hw]) / hw
        d = np.subtract(r, shift, out=scratch("bn-d", r.shape, r.dtype))
        return [len(d)], shift, ones[: len(d)] @ d, np.einsum("ij,ij->j", d, d)

    parts = _chunks(work, n_images, hw, c, rows.itemsize)
    counts, shifts, sums, squares = (np.array(v, dtype=np.float64) for v in zip(*parts))
    means = shifts + sums / counts
    m2 = squares - sums * sums / counts  # around each chunk's mean
    mean = (counts * means).sum(axis=0) / m
    m2 = m2.sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)
    return mean, np.maximum(m2, 0.0) / m


def _affine(rows, scale, shift, relu, n_images):
    """``rows * scale + shift`` (then max(0, .) with relu), a new (M, C) array."""
    m, c = rows.shape
    hw = m // n_images
    out = empty(rows.shape, rows.dtype)

    def work(a, b, _slot):
        o = out[a * hw : b * hw]
        np.multiply(rows[a * hw : b * hw], scale, out=o)
        o += shift
        if relu:
            np.maximum(o, 0, out=o)

    _chunks(work, n_images, hw, c, rows.itemsize)
    return out


def _masked(gc, oc, relu):
    """The output gradient after ReLU's mask (a scratch array), or gc itself."""
    if not relu:
        return gc
    mask = np.greater(oc, 0, out=scratch("bn-mask", oc.shape, np.bool_))
    return np.multiply(gc, mask, out=scratch("bn-g", gc.shape, gc.dtype))


class BatchNorm2d(Function):
    """Batch normalization of x (N, C, H, W) per channel, optionally followed by ReLU.

    Training: normalise with the batch mean and biased variance over N, H, W, and update
    the running statistics in place (``running = (1 - momentum) * running + momentum *
    batch``, with the unbiased variance for ``running_var``, as PyTorch). Evaluation:
    normalise with the running statistics. gamma, beta: (C,) or None (1 and 0).
    """

    differentiable_backward = True
    jvp_takes_none = True

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps, relu):
        n, c, h, w = x.shape
        rows = _rows(x)
        dtype = x.dtype
        if training:
            mean, var = _batch_stats(rows, n)
            m = rows.shape[0]
            if running_mean is not None:
                running_mean *= 1.0 - momentum
                running_mean += momentum * mean
            if running_var is not None:
                running_var *= 1.0 - momentum
                running_var += (momentum * m / (m - 1)) * var
        else:
            mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
        inv_std = 1.0 / np.sqrt(var + eps)
        scale = inv_std if gamma is None else inv_std * gamma
        shift = -mean * scale if beta is None else beta - mean * scale
        out = _affine(rows, scale.astype(dtype), shift.astype(dtype), relu, n)
        ctx.save_for_backward(x, gamma)
        ctx.rows, ctx.out = rows, (out if relu else None)
        ctx.mean, ctx.inv_std, ctx.scale = mean, inv_std, scale
        ctx.training, ctx.relu, ctx.shape, ctx.eps = training, relu, x.shape, eps
        ctx.running_mean = running_mean
        return out.reshape(n, h, w, c).transpose(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, g):
        x, gamma = ctx.saved_tensors
        if tnp.is_tensor(g) or tnp.is_tensor(x) or tnp.is_tensor(gamma):
            return _recorded_backward(ctx, g, x, gamma)
        rows, out = ctx.rows, ctx.out
        n = ctx.shape[0]
        need_x, need_gamma, need_beta = ctx.needs_input_grad[:3]
        grows = _rows(g)
        dbeta = dgamma = dx = None
        if need_gamma or need_beta or (need_x and ctx.training):
            dbeta, dgamma = _grad_sums(ctx, rows, out, grows, n)
        if need_x:
            _, c, h, w = ctx.shape
            dx = _input_grad(ctx, rows, out, grows, dbeta, dgamma, n)
            dx = dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        dt = g.dtype
        return (
            dx,
            dgamma.astype(dt) if need_gamma else None,
            dbeta.astype(dt) if need_beta else None,
            *([None] * 6),
        )

    @staticmethod
    def jvp(ctx, tx, tgamma, tbeta, *_rest):
        x, gamma = ctx.saved_tensors
        n, c, h, w = ctx.shape
        xhat, inv_std = _normalized(ctx, x)
        t = batch_norm_tangent(
            None if tx is None else _rows_of(tx), tgamma, tbeta, xhat, inv_std, gamma, ctx.training
        )
        if ctx.relu:
            t = t * (ctx.out > 0)
        return t.reshape((n, h, w, c)).transpose((0, 3, 1, 2))


def _rows_of(a):
    """The (N*H*W, C) rows of images a (N, C, H, W): `_rows` on an array, recorded on a
    Tensor."""
    if not tnp.is_tensor(a):
        return _rows(a)
    n, c, h, w = a.shape
    return a.transpose((0, 2, 3, 1)).reshape((n * h * w, c))


def _normalized(ctx, x):
    """``(xhat, inv_std)`` over the rows of x, in x's dtype: from what forward kept on
    arrays, computed again from the input when x is a Tensor."""
    dtype = x.dtype
    running_inv_std = ctx.inv_std.astype(dtype)
    if tnp.is_tensor(x):
        rows = _rows_of(x)
        return normalized_rows(rows, ctx.training, ctx.eps, ctx.running_mean, running_inv_std)
    xhat = (ctx.rows - ctx.mean.astype(dtype)) * running_inv_std
    return xhat, running_inv_std


def _recorded_backward(ctx, g, x, gamma):
    """The gradients of `BatchNorm2d`, recorded: 1-D batch norm's rule on the rows."""
    n, c, h, w = ctx.shape
    need_x, need_gamma, need_beta = ctx.needs_input_grad[:3]
    grows = _rows_of(g)
    if ctx.relu:
        grows = grows * (ctx.out > 0)
    xhat, inv_std = _normalized(ctx, x)
    dx, dgamma, dbeta = batch_norm_grads(grows, xhat, inv_std, gamma, ctx.training, need_x)
    if dx is not None:
        dx = dx.reshape((n, h, w, c)).transpose((0, 3, 1, 2))
    return (
        dx,
        dgamma if need_gamma else None,
        dbeta if need_beta else None,
        *([None] * 6),
    )


def _grad_sums(ctx, rows, out, grows, n):
    """dbeta = sum(dout') and dgamma = sum(dout' * xhat) (float64, (C,)), dout' the
    gradient after the ReLU mask."""
    m, c = rows.shape
    hw = m // n
    mean = ctx.mean.astype(rows.dtype)
    ones = _ones(n, hw, c, rows.dtype)

    def work(a, b, _slot):
        sl = slice(a * hw, b * hw)
        gc = _masked(grows[sl], out[sl] if ctx.relu else None, ctx.relu)
        centred = np.subtract(rows[sl], mean, out=scratch("bn-d", gc.shape, gc.dtype))
        return ones[: len(gc)] @ gc, np.einsum("ij,ij->j", gc, centred)

    parts = _chunks(work, n, hw, c, rows.itemsize)
    sums, dots = (np.array(v, dtype=np.float64).sum(axis=0) for v in zip(*parts))
    return sums, dots * ctx.inv_std


def _input_grad(ctx, rows, out, grows, dbeta, dgamma, n):
    """dx rows (M, C): ``scale * dout'`` in evaluation; in training
    ``scale * dout' + (x - mean) * k + c0`` with the per-channel constants of the
    module docstring's formula (``k = -scale * inv_std * dgamma / M``, ``c0 = -scale *
    dbeta / M``)."""
    m, c = rows.shape
    hw = m // n
    dt = rows.dtype
    scale = ctx.scale.astype(dt)
    if ctx.training:
        k = (-ctx.scale * ctx.inv_std * dgamma / m).astype(dt)
        c0 = (-ctx.scale * dbeta / m).astype(dt)
        mean = ctx.mean.astype(dt)
    dx = empty(rows.shape, rows.dtype)

    def work(a, b, _slot):
        sl = slice(a * hw, b * hw)
        gc = _masked(grows[sl], out[sl] if ctx.relu else None, ctx.relu)
        d = dx[sl]
        np.multiply(gc, scale, out=d)
        if ctx.training:
            t = np.subtract(rows[sl], mean, out=scratch("bn-d", d.shape, d.dtype))
            t *= k
            d += t
            d += c0

    _chunks(work, n, hw, c, rows.itemsize)
    return dx


def _raw(a):
    return a.data if isinstance(a, Tensor) else a


def batch_norm2d(
    x,
    gamma=None,
    beta=None,
    running_mean=None,
    running_var=None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    relu: bool = False,
) -> Tensor:
    """Batch normalization of images x (N, C, H, W) per channel, over N, H and W.

    ``gamma * (x - mean) / sqrt(var + eps) + beta``, then ``max(0, .)`` with
    ``relu=True``. gamma, beta: (C,) Tensors or arrays, or None (1 and 0).
    running_mean, running_var: (C,) arrays updated IN PLACE in training (None: not
    tracked), required in evaluation (``training=False``). Returns (N, C, H, W) of x's
    dtype, stored channels-last.
    """
    xd = _raw(x)
    if not isinstance(xd, np.ndarray) or xd.ndim != 4:
        raise ValueError(f"batch_norm2d: x must be 4-D (N, C, H, W), got shape {np.shape(xd)}")
    if xd.dtype.kind != "f":
        raise TypeError(f"batch_norm2d: x must hold floats, got dtype {xd.dtype}")
    c = xd.shape[1]
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None and np.shape(_raw(a)) != (c,):
            raise ValueError(
                f"batch_norm2d: {name} must have shape ({c},) for {c} channels, "
                f"got {np.shape(_raw(a))}"
            )
    running_mean, running_var = _raw(running_mean), _raw(running_var)
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        if a is not None and (not isinstance(a, np.ndarray) or a.shape != (c,)):
            raise ValueError(f"batch_norm2d: {name} must be an array of shape ({c},)")
    if training and xd.shape[0] * xd.shape[2] * xd.shape[3] < 2:
        raise ValueError(
            "batch_norm2d: training needs more than one value per channel to estimate the "
            f"variance, got x of shape {xd.shape}"
        )
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm2d: evaluation (training=False) needs running statistics")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"batch_norm2d: momentum must be in [0, 1], got {momentum!r}")
    if not eps > 0:
        raise ValueError(f"batch_norm2d: eps must be positive, got {eps!r}")
    return BatchNorm2d.apply(
        x,
        gamma,
        beta,
        running_mean,
        running_var,
        bool(training),
        float(momentum),
        float(eps),
        bool(relu),
    )
