"""Spatial batch normalization (per channel over N, H and W), optionally fused with ReLU.

The statistics of channel c are taken over all N * H * W values of that channel, as in
PyTorch's ``BatchNorm2d``. The input is read as rows: the (N*H*W, C) view of its
channels-last layout (free for the outputs of `conv2d` and the pools), so each
statistic is a reduction down the rows and each normalisation a row-broadcast
``x * scale + shift``. The kernels are plain functions on rows, which the Function
calls: `batch_stats`, `normalize` and `batch_norm_backward`. Their passes run over
chunks of rows in threads; a chunk's mean and squared deviations are taken around the
chunk's own mean while it is in cache and the chunks are combined in float64 (Chan et
al.'s parallel variance), which keeps the variance accurate without a second pass over
the whole batch.

Backward in training, with ``xhat = (x - mean) * inv_std`` recomputed per chunk from
the saved input rather than stored (no extra array of the input's size)::

    dbeta = sum(dout),  dgamma = sum(dout * xhat)
    dx = gamma * inv_std * (dout - dbeta / M - xhat * dgamma / M)     (M = N*H*W)

With ``relu=True`` the output is ``max(0, bn(x))`` and ``dout`` is first masked by
``out > 0``: one Function, one output array, no separate pass for the ReLU. The masked
gradient is written once, into dx's buffer, by the pass that sums it, and the second
pass turns it into dx in place: four passes over the rows in all, each over long
contiguous runs of numbers (see the kernels' section below), where composing the
formula from row-broadcasts took twelve, most over runs of C numbers (measured in the
training step of ``benchmarks/bench_cnn.py``: batch norm's backward took a fraction of
its former time).

Higher order: when the rule runs on Tensors (a gradient that will be differentiated
again), the same formula runs on the rows of the input Tensor as 1-D batch norm's rule
(`chainrule.nn.functional.batch_norm_rules`), recorded, with the statistics computed again from
the input; forward mode uses that formula on arrays and Tensors alike.
"""

from __future__ import annotations

from typing import NamedTuple

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


# ---------------------------------------------------------------- the kernels (rows)
#
# Every pass reads the rows (M, C) as blocks of p whole pixels, (M / p, p * C), with the
# per-channel vectors tiled p times: with few channels a row-broadcast ``rows * scale``
# runs NumPy's inner loop over only C numbers, and over p * C numbers this way. The
# blocks hold at least `_BLOCK` numbers: measured with NumPy 2.4, broadcasting a vector
# of one to a few thousand numbers over the rows of a matrix runs several times slower
# per number than a longer or a shorter one.

# Numbers per block of pixels (p * C, at least), and bytes of rows per chunk: about
# 1 MB, so that a chunk's few passes stay in cache while the Python work per chunk
# (which holds the GIL the other threads wait for) stays small.
_BLOCK = 8192
_CHUNK_BYTES = 1 << 20


def _block_pixels(m, c):
    """The smallest divisor p of M with p * C >= `_BLOCK` (M itself if none)."""
    need = -(-_BLOCK // c)
    best = m
    d = 1
    while d * d <= m:
        if m % d == 0:
            for q in (d, m // d):
                if need <= q < best:
                    best = q
        d += 1
    return best


class _Blocks(NamedTuple):
    """Rows (M, C) viewed as (M / p, p * C) blocks, chunked for `map_chunks`."""

    p: int
    c: int
    n: int  # blocks
    step: int  # blocks per chunk

    def view(self, rows):
        return rows.reshape(self.n, self.p * self.c)

    def tile(self, vec, dtype):
        return np.tile(np.asarray(vec, dtype=dtype), self.p)

    def fold(self, sums):
        """Per-channel totals (C,) float64 of per-block-column sums (p * C,)."""
        return sums.reshape(self.p, self.c).sum(axis=0, dtype=np.float64)

    def run(self, work):
        return map_chunks(work, self.n, self.step, elements=self.n * self.p * self.c)


def _blocks(rows) -> _Blocks:
    m, c = rows.shape
    p = _block_pixels(m, c)
    n = m // p
    return _Blocks(p, c, n, chunk_size(n, p * c * rows.itemsize, _CHUNK_BYTES))


def batch_stats(rows):
    """Per-channel mean and biased variance (float64, (C,)) of rows (M, C), chunk-wise.

    Each chunk is centred on the mean of its first block of pixels before summing, so
    float32 sums of many values far from zero (a mean of 1000 with unit spread) lose
    nothing; the chunks' means and squared deviations combine in float64 (Chan et al.).
    """
    m, c = rows.shape
    bl = _blocks(rows)
    r2 = bl.view(rows)
    dt = rows.dtype

    def work(a, b, _slot):
        shift = bl.fold(r2[a]) / bl.p
        d = np.subtract(r2[a:b], bl.tile(shift, dt), out=scratch("bn-d", (b - a, r2.shape[1]), dt))
        ones = np.ones(b - a, dt)
        s1 = bl.fold(ones @ d)
        np.multiply(d, d, out=d)
        return (b - a) * bl.p, shift, s1, bl.fold(ones @ d)

    counts, shifts, sums, squares = (np.array(v, dtype=np.float64) for v in zip(*bl.run(work)))
    counts = counts[:, None]
    means = shifts + sums / counts
    m2 = squares - sums * sums / counts  # around each chunk's mean
    mean = (counts * means).sum(axis=0) / m
    m2 = m2.sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)
    return mean, np.maximum(m2, 0.0) / m


def normalize(rows, scale, shift, relu):
    """``rows * scale + shift`` (then max(0, .) with relu): rows (M, C), scale and shift
    (C,) -> a new (M, C) array of rows' dtype."""
    bl = _blocks(rows)
    r2 = bl.view(rows)
    out = empty(rows.shape, rows.dtype)
    o2 = bl.view(out)
    scale_t, shift_t = bl.tile(scale, rows.dtype), bl.tile(shift, rows.dtype)

    def work(a, b, _slot):
        o = o2[a:b]
        np.multiply(r2[a:b], scale_t, out=o)
        o += shift_t
        if relu:
            np.maximum(o, 0, out=o)

    bl.run(work)
    return out


def batch_norm_backward(rows, out, grows, mean, inv_std, scale, training, need_x):
    """Gradients of ``y = (rows - mean) * scale + shift`` (``scale = gamma * inv_std``;
    then max(0, y) when `out`, the saved output, is given): rows, grows (M, C); mean,
    inv_std, scale (C,) float64. In training mean and inv_std are the batch's and
    depend on rows too.

    Returns (dx (M, C) or None, dgamma_sum, dbeta) with ``dbeta = sum dout'`` and
    ``dgamma_sum = sum dout' * xhat`` (float64, (C,)), dout' the gradient after the
    ReLU mask. Two passes over chunks: the first writes dout' into dx's buffer and sums,
    the second turns it into ``dx = scale * dout' + (x - mean) * k + c0`` in place
    (``k = -scale * inv_std * dgamma_sum / M``, ``c0 = -scale * dbeta / M``).
    """
    m, c = rows.shape
    dt = rows.dtype
    bl = _blocks(rows)
    r2, g2 = bl.view(rows), bl.view(grows)
    dx = empty(rows.shape, dt) if need_x else None
    d2 = bl.view(dx) if need_x else None
    mean_t = bl.tile(mean, dt)

    def sums(a, b, _slot):
        shape = (b - a, r2.shape[1])
        gm = d2[a:b] if need_x else scratch("bn-g", shape, dt)
        if out is not None:
            mask = np.greater(bl.view(out)[a:b], 0, out=scratch("bn-mask", shape, np.bool_))
            np.multiply(g2[a:b], mask, out=gm)
        elif need_x:
            gm[...] = g2[a:b]
        else:
            gm = g2[a:b]
        ones = np.ones(b - a, dt)
        t = np.subtract(r2[a:b], mean_t, out=scratch("bn-d", shape, dt))
        t *= gm
        return ones @ gm, ones @ t

    parts = bl.run(sums)
    dbeta = bl.fold(np.sum([p[0] for p in parts], axis=0, dtype=np.float64))
    dgamma = bl.fold(np.sum([p[1] for p in parts], axis=0, dtype=np.float64)) * inv_std
    if not need_x:
        return None, dgamma, dbeta
    scale_t = bl.tile(scale, dt)
    if training:
        k = -scale * inv_std * dgamma / m
        k_t, c_t = bl.tile(k, dt), bl.tile(-scale * dbeta / m - mean * k, dt)

    def grad(a, b, _slot):
        d = d2[a:b]
        d *= scale_t
        if training:
            t = np.multiply(r2[a:b], k_t, out=scratch("bn-d", d.shape, dt))
            d += t
            d += c_t

    bl.run(grad)
    return dx, dgamma, dbeta


def _batch_stats(rows, _n_images):
    """`batch_stats` as the Function calls it."""
    return batch_stats(rows)


def _affine(rows, scale, shift, relu, _n_images):
    """`normalize` as the Function calls it."""
    return normalize(rows, scale, shift, relu)


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
        dx, dgamma, dbeta = batch_norm_backward(
            rows, out, grows, ctx.mean, ctx.inv_std, ctx.scale, ctx.training, need_x
        )
        if need_x:
            _, c, h, w = ctx.shape
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
