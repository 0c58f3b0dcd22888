"""Pooling as fused Functions: max and average over windows, and global pools.

Arrays are NCHW; outputs are stored channels-last, as those of `conv2d` (see
`chainrule.nn.functional.conv`), and any input layout is read through its NHWC view.
A window pool runs over the kh * kw positions of the window: each position is one
strided slice of the input holding that position of every window, so the whole pool is
kh * kw vectorised passes over output-sized arrays, per chunk of images, in threads.

Every pool is linear in its input once the positions of the maxima are known, and
each is a pair of Functions here: the pool (or its routing, `MaxPoolGather`) and its
transpose, which spreads a gradient back over the windows (`MaxPoolScatter`,
`AvgPoolSpread`, ...). The backward of each is the other, and the tangent of each is
itself applied to the tangent: so the pools are differentiable to any order, with the
same kernels on arrays.

Max pooling routes the gradient to the maximum of each window, as the lecture's max
gate. At ties the FIRST maximum in row-major window order (top row first, left to right)
gets all of it, as in PyTorch's CPU kernel and ``np.argmax``: the forward pass keeps the
position of the maximum (uint8 for windows up to 255 positions) and replaces it only by
a strictly larger value. A NaN in a window makes that window's output NaN.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.array_ops import LinearPrimitive
from chainrule.autograd.engine import Tensor
from chainrule.nn.functional._parallel import chunk_size, map_chunks
from chainrule.nn.functional._scratch import empty, scratch
from chainrule.nn.functional.conv import _nchw, _nhwc, _pair, check_images, conv_output_size

__all__ = [
    "AvgPool2d",
    "AvgPoolSpread",
    "GlobalAvgPool2d",
    "GlobalAvgSpread",
    "GlobalMaxGather",
    "GlobalMaxPool2d",
    "GlobalMaxScatter",
    "MaxPool2d",
    "MaxPoolGather",
    "MaxPoolScatter",
    "avg_pool2d",
    "global_avg_pool2d",
    "global_max_pool2d",
    "max_pool2d",
]


def _raw(a):
    return a.data if isinstance(a, Tensor) else a


def _geometry(shape, kernel, stride):
    """(ho, wo, window positions [(i, j), ...], whether the windows do not overlap)."""
    _, h, w, _ = shape
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = conv_output_size(h, kh, sh, 0), conv_output_size(w, kw, sw, 0)
    positions = [(i, j) for i in range(kh) for j in range(kw)]
    # Windows side by side: every input pixel is in at most one window.
    apart = sh >= kh and sw >= kw
    return ho, wo, positions, apart


def _at(a, i, j, stride, ho, wo):
    """Position (i, j) of every window: a strided (n, ho, wo, C) view of a (n, H, W, C)."""
    sh, sw = stride
    return a[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]


def _zero_uncovered(dc, kernel, stride, ho, wo):
    """Zero the pixels of dc (n, H, W, C) that no window covers, for windows side by side
    (the last rows and columns of an image whose side is not a multiple of the stride,
    and the gaps of a stride larger than the kernel)."""
    (kh, kw), (sh, sw) = kernel, stride
    dc[:, sh * (ho - 1) + kh :] = 0
    dc[:, :, sw * (wo - 1) + kw :] = 0
    for r in range(kh, sh):  # rows between windows
        dc[:, r::sh] = 0
    for r in range(kw, sw):
        dc[:, :, r::sw] = 0


def _spread(g, dx, weight_of, kernel, stride, geometry):
    """dx (N, H, W, C) = sum over window positions k of ``weight_of(k, g chunk)`` placed at
    position k of each window; chunked over images, in threads.

    Windows side by side write each pixel once (``weight_of(..., dest)`` writes into it);
    overlapping windows add into a zeroed dx.
    """
    n, _, _, c = dx.shape
    ho, wo, positions, apart = geometry

    def work(a, b, _slot):
        gc, dc = g[a:b], dx[a:b]
        if apart:
            _zero_uncovered(dc, kernel, stride, ho, wo)
        else:
            dc[...] = 0
        for k, (i, j) in enumerate(positions):
            dest = _at(dc, i, j, stride, ho, wo)
            if apart:
                weight_of(k, gc, a, b, dest)
            else:
                dest += weight_of(k, gc, a, b, None)

    per_image = ho * wo * c * g.itemsize * (len(positions) + 1)
    map_chunks(work, n, chunk_size(n, per_image, 1 << 21), elements=n * ho * wo * c)


def _max_positions(xh, stride, geometry):
    """For each window of xh (N, H, W, C), the index in `geometry`'s positions of its
    first maximum (uint8 for up to 255 positions), and the maxima: (where, out), both
    (N, Ho, Wo, C)."""
    n, _, _, c = xh.shape
    ho, wo, positions, _ = geometry
    out = empty((n, ho, wo, c), xh.dtype)
    where = empty((n, ho, wo, c), np.uint8 if len(positions) < 256 else np.intp)

    def work(a, b, _slot):
        o, w = out[a:b], where[a:b]
        o[...] = _at(xh[a:b], 0, 0, stride, ho, wo)
        w[...] = 0
        step = scratch("pool-step", w.shape, w.dtype)
        larger = scratch("pool-mask", w.shape, np.bool_)
        for k, (i, j) in enumerate(positions[1:], 1):
            v = _at(xh[a:b], i, j, stride, ho, wo)
            # where = k at a strictly larger value, as arithmetic: a masked copy
            # (np.copyto with where=) costs ten times as much per element.
            np.subtract(k, w, out=step)
            step *= np.greater(v, o, out=larger)
            w += step
            np.maximum(o, v, out=o)  # propagates NaN

    per_image = ho * wo * c * xh.itemsize * (len(positions) + 2)
    map_chunks(work, n, chunk_size(n, per_image, 1 << 21), elements=n * ho * wo * c)
    return where, out


class _Routing(LinearPrimitive):
    """Base of the pools' linear maps: ``x`` and the constants describing the windows
    (which the tangent rule passes on unchanged)."""

    scalar_inputs = False


class MaxPool2d(_Routing):
    """Max over kh x kw windows moved by (sh, sw): x (N, C, H, W) -> (N, C, Ho, Wo), ``Ho =
    (H - kh) // sh + 1``. Backward: each window's gradient goes to its (first) maximum
    (`MaxPoolScatter`); the tangent is the tangent at the maxima (`MaxPoolGather`)."""

    @staticmethod
    def forward(ctx, x, kernel, stride):
        xh = _nhwc(x)
        geo = _geometry(xh.shape, kernel, stride)
        where, out = _max_positions(xh, stride, geo)
        ctx.save_for_backward(where)
        ctx.window = (xh.shape, kernel, stride, geo)
        return _nchw(out)

    @staticmethod
    def backward(ctx, g):
        (where,) = ctx.saved_tensors
        return MaxPoolScatter.call(g, where, ctx.window), None, None

    @staticmethod
    def jvp(ctx, tx, _tk, _ts):
        (where,) = ctx.saved_tensors
        return MaxPoolGather.call(tx, where, ctx.window)


class MaxPoolGather(_Routing):
    """The value of each window at its maximum: x (N, C, H, W) -> (N, C, Ho, Wo) given
    `where` (the positions `MaxPool2d` found) and `window`; transpose `MaxPoolScatter`."""

    @staticmethod
    def forward(ctx, x, where, window):
        ctx.save_for_backward(where)
        ctx.window = window
        _, _, stride, geo = window
        ho, wo, positions, _ = geo
        th = _nhwc(x)
        t = np.array(_at(th, 0, 0, stride, ho, wo))
        for k, (i, j) in enumerate(positions[1:], 1):
            np.copyto(t, _at(th, i, j, stride, ho, wo), where=where == k)
        return _nchw(t)

    @staticmethod
    def backward(ctx, g):
        (where,) = ctx.saved_tensors
        return MaxPoolScatter.call(g, where, ctx.window), None, None


class MaxPoolScatter(_Routing):
    """Each window's value sent to its maximum: g (N, C, Ho, Wo) -> (N, C, H, W) given
    `where` and `window` (max pooling's backward); transpose `MaxPoolGather`."""

    @staticmethod
    def forward(ctx, g, where, window):
        ctx.save_for_backward(where)
        ctx.window = window
        shape, kernel, stride, geo = window

        def routed(k, gc, a, b, dest):
            hit = np.equal(where[a:b], k, out=scratch("pool-mask", gc.shape, np.bool_))
            return np.multiply(gc, hit, out=dest) if dest is not None else gc * hit

        dx = empty(shape, g.dtype)
        _spread(_nhwc(g), dx, routed, kernel, stride, geo)
        return _nchw(dx)

    @staticmethod
    def backward(ctx, gg):
        (where,) = ctx.saved_tensors
        return MaxPoolGather.call(gg, where, ctx.window), None, None


def _window_mean(xh, stride, geometry):
    """Mean over each window of xh (N, H, W, C) -> (N, Ho, Wo, C), in threads."""
    n, _, _, c = xh.shape
    ho, wo, positions, _ = geometry
    out = empty((n, ho, wo, c), xh.dtype)
    scale = 1.0 / len(positions)

    def work(a, b, _slot):
        o = out[a:b]
        o[...] = _at(xh[a:b], 0, 0, stride, ho, wo)
        for i, j in positions[1:]:
            o += _at(xh[a:b], i, j, stride, ho, wo)
        o *= scale

    per_image = ho * wo * c * xh.itemsize * (len(positions) + 1)
    map_chunks(work, n, chunk_size(n, per_image, 1 << 21), elements=n * ho * wo * c)
    return out


class AvgPool2d(_Routing):
    """Mean over kh x kw windows moved by (sh, sw): x (N, C, H, W) -> (N, C, Ho, Wo).
    Backward: each window's gradient is shared equally by its kh * kw pixels
    (`AvgPoolSpread`)."""

    @staticmethod
    def forward(ctx, x, kernel, stride):
        xh = _nhwc(x)
        geo = _geometry(xh.shape, kernel, stride)
        ctx.window = (xh.shape, kernel, stride, geo)
        return _nchw(_window_mean(xh, stride, geo))

    @staticmethod
    def backward(ctx, g):
        return AvgPoolSpread.call(g, ctx.window), None, None


class AvgPoolSpread(_Routing):
    """Each window's value shared equally by its pixels: g (N, C, Ho, Wo) -> (N, C, H, W)
    for `window` (average pooling's backward); transpose `AvgPool2d`."""

    @staticmethod
    def forward(ctx, g, window):
        ctx.window = window
        shape, kernel, stride, geo = window
        scale = 1.0 / len(geo[2])

        def shared(_k, gc, _a, _b, dest):
            return np.multiply(gc, scale, out=dest) if dest is not None else gc * scale

        dx = empty(shape, g.dtype)
        _spread(_nhwc(g), dx, shared, kernel, stride, geo)
        return _nchw(dx)

    @staticmethod
    def backward(ctx, gg):
        _, kernel, stride, _ = ctx.window
        return AvgPool2d.call(gg, kernel, stride), None


class GlobalAvgPool2d(_Routing):
    """Mean over all pixels of each channel: x (N, C, H, W) -> (N, C).
    Backward: ``dx[n, c, y, x] = dout[n, c] / (H * W)`` (`GlobalAvgSpread`)."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return _nhwc(x).mean(axis=(1, 2))

    @staticmethod
    def backward(ctx, g):
        return GlobalAvgSpread.call(g, ctx.shape)


class GlobalAvgSpread(_Routing):
    """g (N, C) spread evenly over the pixels of images of `shape` (N, C, H, W), stored
    channels-last; transpose `GlobalAvgPool2d`."""

    @staticmethod
    def forward(ctx, g, shape):
        n, c, h, w = shape
        dx = empty((n, h, w, c), g.dtype)
        dx[...] = (g * (1.0 / (h * w)))[:, None, None, :]
        return _nchw(dx)

    @staticmethod
    def backward(ctx, gg):
        return GlobalAvgPool2d.call(gg), None


class GlobalMaxPool2d(_Routing):
    """Maximum over all pixels of each channel: x (N, C, H, W) -> (N, C). Backward: the
    gradient goes to the first maximum in row-major pixel order (`GlobalMaxScatter`)."""

    @staticmethod
    def forward(ctx, x):
        n, c, h, w = x.shape
        rows = _nhwc(x).reshape(n, h * w, c)
        where = rows.argmax(axis=1)[:, None, :]
        ctx.save_for_backward(where)
        ctx.shape = x.shape
        return np.take_along_axis(rows, where, axis=1)[:, 0, :]

    @staticmethod
    def backward(ctx, g):
        (where,) = ctx.saved_tensors
        return GlobalMaxScatter.call(g, where, ctx.shape)

    @staticmethod
    def jvp(ctx, tx):
        (where,) = ctx.saved_tensors
        return GlobalMaxGather.call(tx, where)


class GlobalMaxGather(_Routing):
    """x (N, C, H, W) at the pixels `where` (N, 1, C) (row-major pixel indices) -> (N, C);
    transpose `GlobalMaxScatter`."""

    @staticmethod
    def forward(ctx, x, where):
        ctx.save_for_backward(where)
        ctx.shape = x.shape
        n, c, h, w = x.shape
        rows = _nhwc(x).reshape(n, h * w, c)
        return np.take_along_axis(rows, where, axis=1)[:, 0, :]

    @staticmethod
    def backward(ctx, g):
        (where,) = ctx.saved_tensors
        return GlobalMaxScatter.call(g, where, ctx.shape), None


class GlobalMaxScatter(_Routing):
    """g (N, C) placed at the pixels `where` of zero images of `shape` (N, C, H, W),
    stored channels-last; transpose `GlobalMaxGather`."""

    @staticmethod
    def forward(ctx, g, where, shape):
        ctx.save_for_backward(where)
        n, c, h, w = shape
        dx = np.zeros((n, h * w, c), dtype=g.dtype)
        np.put_along_axis(dx, where, g[:, None, :], axis=1)
        return _nchw(dx.reshape(n, h, w, c))

    @staticmethod
    def backward(ctx, gg):
        (where,) = ctx.saved_tensors
        return GlobalMaxGather.call(gg, where), None, None


# ---------------------------------------------------------------- the functions


def _window_args(name, x, kernel_size, stride):
    kernel = _pair(f"{name}: kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(f"{name}: stride", stride, 1)
    check_images(name, _raw(x), kernel)
    return kernel, stride


def max_pool2d(x, kernel_size, stride=None) -> Tensor:
    """Max pooling of x (N, C, H, W): kernel_size and stride an int or a pair (stride
    defaults to the kernel size: windows side by side). Returns (N, C, Ho, Wo), ``Ho = (H
    - kh) // sh + 1``. At ties the gradient goes to the first maximum in row-major window
    order."""
    kernel, stride = _window_args("max_pool2d", x, kernel_size, stride)
    return MaxPool2d.apply(x, kernel, stride)


def avg_pool2d(x, kernel_size, stride=None) -> Tensor:
    """Average pooling of x (N, C, H, W), as `max_pool2d` with the window's mean."""
    kernel, stride = _window_args("avg_pool2d", x, kernel_size, stride)
    return AvgPool2d.apply(x, kernel, stride)


def global_avg_pool2d(x) -> Tensor:
    """Mean of each channel over all pixels: x (N, C, H, W) -> (N, C)."""
    check_images("global_avg_pool2d", _raw(x))
    return GlobalAvgPool2d.apply(x)


def global_max_pool2d(x) -> Tensor:
    """Maximum of each channel over all pixels: x (N, C, H, W) -> (N, C). At ties the
    gradient goes to the first maximum in row-major pixel order."""
    check_images("global_max_pool2d", _raw(x))
    return GlobalMaxPool2d.apply(x)
