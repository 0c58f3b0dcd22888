"""2-D convolution as a fused Function: im2col and one matrix product per chunk of images.

Layout. The public arrays are NCHW with PyTorch's weight layout (F, C, kh, kw), so
weights and gradients compare one to one with PyTorch and the course. Inside, images are
channels-last: the output is a (N, Ho, Wo, F) C-contiguous buffer handed out as its
(N, F, Ho, Wo) transposed view (PyTorch's ``channels_last`` memory format), and any
input is read through its (N, H, W, C) view. A channels-last input -- the output of
another convolution, pooling or batch norm -- is then read without a copy, and a
pixel's C channels are adjacent in memory, which is what makes im2col cheap.

Algorithm. For a chunk of a few images (about 2 MB of im2col matrix, so that it stays
in cache), the padded images are copied once into a scratch buffer and the im2col
matrix A (rows: output pixels, columns: the kh * kw * C values of the receptive field)
is gathered from it with kh copies, each moving runs of kw * C contiguous numbers. One
matrix product ``A @ Wmat`` with ``Wmat`` (kh*kw*C, F) gives the chunk's output pixels
in channels-last order. With few channels (the colour input: runs of 3 * 3 numbers) A
is gathered along channel planes instead, in runs of a whole image row. Chunks are
spread over threads (`_parallel`); their temporaries live in per-thread scratch buffers
(`_scratch`).

Backward, per chunk, reading each chunk of the output gradient dY once. For stride 1
the input gradient is itself a correlation -- dY, padded by ``k - 1 - padding``,
correlated with the flipped kernel with input and output channels swapped -- computed
as ``B @ Wflip`` from the im2col matrix B of padded dY; the same B gives the weight
gradient, ``B^T @ x_rows`` being dW with its kernel flipped, so x is not gathered
again. Otherwise ``dW = A^T @ dY`` (A gathered again: recomputing it costs less than
writing and reading back a matrix kh*kw times the input's size), and ``dA = dY @
Wmat^T`` is scattered back over the receptive fields (col2im). ``db = sum dY``.

Higher order. The convolution is bilinear in x and W, and so are its two gradients:
the input gradient (of dY and W) and the weight gradient (of x and dY). Each of the
three is a Function here whose forward is the fast kernel above (`Conv2d`,
`ConvInputGrad`, `ConvWeightGrad`), and whose backward is two of the others: the
family is closed, so a convolution is differentiable to any order. Forward mode takes
the product rule from the definition: the tangent of ``F(a, b)`` is ``F(ta, b) + F(a,
tb)``, through the same kernels. A first-order backward pass runs the fused kernel
that gives all three gradients in one pass over dY.

Kernels. `_conv_nhwc` and `_conv_backward` are the plain-array entry points the Function
calls; `conv_kernel` names the kernel they run for a layer. Stride-1 3x3 convolutions
with many channels take Winograd's F(2x2, 3x3) (`winograd`), 2.25 times fewer
multiplications; the rest take im2col. Measured with ``benchmarks/bench_cnn.py`` and
per-layer timings on this project's 2-core machine (NumPy's OpenBLAS), the Winograd
transforms, a dozen NumPy passes over tiles 4 times the size of a layer's input and
output, cost about what the saved multiplications do below 64 input x 128 output
channels, so narrower layers (all of bench_cnn's default network) keep im2col, whose
gather is a few memcpy-like copies. Fusing the 2x2 max pooling into the convolution's
chunks was measured too: no faster than the separate pass, so the pool stays its own
Function.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from chainrule.autograd import tnp
from chainrule.autograd.engine import Function, Tensor
from chainrule.nn.functional import winograd
from chainrule.nn.functional._parallel import chunk_size, map_chunks
from chainrule.nn.functional._scratch import empty, padded, scratch

__all__ = [
    "Conv2d",
    "ConvInputGrad",
    "ConvWeightGrad",
    "conv2d",
    "conv_kernel",
    "conv_output_size",
]


def _raw(a):
    return a.data if isinstance(a, Tensor) else a


def _pair(name, v, minimum):
    """An int or a pair of ints -> a pair of ints >= minimum (clear error otherwise)."""
    vals = (v, v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v
    try:
        a, b = vals
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    for x in (a, b):
        if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < minimum:
            what = "positive" if minimum > 0 else "non-negative"
            raise ValueError(f"{name} must be {what} (an int or a pair of ints), got {v!r}")
    return int(a), int(b)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling along one axis:
    ``(size + 2 * padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


# ---------------------------------------------------------------- the kernels (NHWC)

# Bytes of im2col matrix per chunk of images: in the cache, the matrix product reads it
# back from; each product also packs the weight matrix again, which costs less the
# longer the chunk. Measured on bench_cnn's training step against 1 MB: 4% less CPU
# time per step at one thread, 7% at two; 4 MB and more were slower.
_CHUNK_BYTES = 2 << 20


class _Window(NamedTuple):
    """Where a kernel goes over images (N, H, W, C), and how im2col gathers it."""

    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    ho: int
    wo: int
    # Gather whole image rows of channel planes instead of runs of kw * C numbers.
    planes: bool


def _window(shape, kernel, stride, padding) -> _Window:
    _, h, w, c = shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    # Channels-last im2col copies runs of kw * C numbers; with few channels (the colours
    # of the first layer: runs of 9) the runs of wo numbers along channel planes are
    # longer, and gathering them is 2-3 times faster.
    return _Window(kh, kw, sh, sw, ph, pw, ho, wo, planes=2 * kw * c <= wo)


def _padded(xc, ph, pw):
    """Chunk (n, H, W, C) with ph, pw zeros around H and W, C-contiguous (a scratch
    array, or the chunk itself when it needs no padding and is contiguous)."""
    if ph == 0 and pw == 0 and xc.flags.c_contiguous:
        return xc
    return padded("conv-pad", xc, ((0, 0), (ph, ph), (pw, pw), (0, 0)))


def _im2col_pixels(p, win):
    """im2col of padded images p (n, Hp, Wp, C) -> A (n*ho*wo, kh*kw*C), C-contiguous.

    Row (i, y, x) holds the receptive field of output pixel (y, x) of image i in
    (kernel row, kernel column, channel) order: for each kernel row, the kw * C values
    are contiguous in p, so each of the kh copies moves whole runs of them.
    """
    n, _, _, c = p.shape
    kh, kw, sh, sw, _, _, ho, wo, _ = win
    if kh == 1 and kw == 1 and sh == 1 and sw == 1:
        return p.reshape(n * ho * wo, c)
    a = scratch("conv-cols", (n, ho, wo, kh, kw * c), p.dtype)
    # Each run of kw * c numbers moves as one opaque item (a void dtype): NumPy copies it
    # with one memcpy instead of an inner loop, 20-30% faster. The strides of the
    # C-contiguous p are written out: NumPy may report any stride for an axis of length 1.
    run = np.dtype((np.void, kw * c * p.itemsize))
    s2 = c * p.itemsize
    s1 = p.shape[2] * s2
    s0 = p.shape[1] * s1
    runs = a.view(run).reshape(n, ho, wo, kh)
    for i in range(kh):
        # np.ndarray over p's memory: the window view without as_strided's Python layers
        # (these few microseconds hold the GIL that the other threads wait for).
        runs[:, :, :, i] = np.ndarray((n, ho, wo), run, p, i * s1, (s0, sh * s1, sw * s2))
    return a.reshape(n * ho * wo, kh * kw * c)


def _im2col_planes(xc, win):
    """im2col of images xc (n, H, W, C) gathered along channel planes -> A^T (C*kh*kw,
    n*ho*wo), C-contiguous; row (c, i, j) is kernel position (i, j) of channel c."""
    n, h, w, c = xc.shape
    kh, kw, sh, sw, ph, pw, ho, wo, _ = win
    p = padded("conv-planes", xc.transpose(3, 0, 1, 2), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    at = scratch("conv-cols", (c, kh, kw, n, ho, wo), xc.dtype)
    for i in range(kh):
        for j in range(kw):
            at[:, i, j] = p[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
    return at.reshape(c * kh * kw, n * ho * wo)


def _columns(xc, win):
    """The im2col matrix (n*ho*wo, K) of a chunk xc (n, H, W, C), in the column order of
    ``_weight_matrix(weight, win)`` (a transposed view when gathered along planes)."""
    if win.planes:
        return _im2col_planes(xc, win).T
    return _im2col_pixels(_padded(xc, win.ph, win.pw), win)


def _weight_matrix(weight, win):
    """(F, C, kh, kw) -> (K, F) in the row order of `_columns`' columns: (kernel row,
    kernel column, channel), or (channel, kernel row, kernel column) for planes."""
    f = weight.shape[0]
    if win.planes:
        return weight.reshape(f, -1).T
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(-1, f)


def _finisher(bias, finite):
    """What each chunk of output rows (m, F) gets after its product: the bias, and, when
    `finite` is a list, a check for NaN and infinity (one cheap reduction while the chunk
    is in cache; a float32 sum of finite values overflows only past 1e38, so then look
    closer)."""

    def finish(rows):
        if bias is not None:
            rows += bias
        return finite is None or np.isfinite(rows.sum()) or bool(np.isfinite(rows).all())

    return finish


def conv_kernel(x_shape, w_shape, stride, padding) -> str:
    """The kernel that computes a convolution of images (N, H, W, C) with filters (F, C,
    kh, kw): ``"winograd"`` (F(2x2, 3x3), see `winograd`), ``"im2col-planes"`` (gathered
    along channel planes) or ``"im2col"``."""
    if winograd.pays(x_shape, w_shape, stride, padding):
        return "winograd"
    win = _window(x_shape, w_shape[2:], stride, padding)
    return "im2col-planes" if win.planes else "im2col"


def _conv_nhwc(x, weight, kernel, stride, padding, bias=None, finite=None):
    """Correlation of images x (N, H, W, C) (any strides) with weight (F, C, kh, kw).

    Returns (N, Ho, Wo, F), C-contiguous, of x's dtype. With a list `finite`, whether
    the output is free of NaN and infinity is appended to it. Runs the kernel that
    `conv_kernel` names.
    """
    finish = _finisher(bias, finite)
    if conv_kernel(x.shape, weight.shape, stride, padding) == "winograd":
        out, ok = winograd.winograd_conv(x, weight, padding, finish)
    else:
        out, ok = _im2col_conv(x, weight, kernel, stride, padding, finish)
    if finite is not None:
        finite.append(all(ok))
    return out


def _im2col_conv(x, weight, kernel, stride, padding, finish):
    """`_conv_nhwc` by im2col: (out, [finish(rows) of each chunk])."""
    n, _, _, c = x.shape
    f = weight.shape[0]
    win = _window(x.shape, kernel, stride, padding)
    wmat = _weight_matrix(weight, win)
    out = empty((n, win.ho, win.wo, f), x.dtype)

    def work(a, b, _slot):
        dest = out[a:b].reshape(-1, f)
        np.matmul(_columns(x[a:b], win), wmat, out=dest)
        return finish(dest)

    per_image = win.ho * win.wo * wmat.shape[0] * x.itemsize  # im2col: ~2 MB per chunk
    return out, map_chunks(work, n, chunk_size(n, per_image, _CHUNK_BYTES), elements=out.size * c)


def _conv_backward(x, g, weight, stride, padding, needs):
    """Gradients of the correlation of x (N, H, W, C) with weight (F, C, kh, kw), given
    the output gradient g (N, Ho, Wo, F): (dx (N, H, W, C) or None, dW (F, C, kh, kw) or
    None, db (F,) or None), for the inputs flagged in needs = (x, weight, bias).

    One pass over chunks of images: each chunk of g is read once, while in cache, for
    all three gradients. For stride 1 the input gradient is the correlation of dY,
    padded by k - 1 - p, with the flipped kernel (F and C swapped), and the im2col
    matrix B of padded dY that it needs also gives the weight gradient without an
    im2col of x: ``B^T @ x_rows`` is dW with its kernel flipped (both sum dY[y] x[y +
    i - p] over the pixels). Otherwise ``dW = A^T @ dY`` from the im2col A of x, and
    ``dA = dY @ Wmat^T`` goes back to dx by col2im.
    """
    if conv_kernel(x.shape, weight.shape, stride, padding) == "winograd":
        return winograd.winograd_backward(x, g, weight, padding, needs)
    need_x, need_w, need_b = needs
    n, h, w, c = x.shape
    f, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    win = _window(x.shape, (kh, kw), stride, padding)
    transposed = need_x and sh == 1 and sw == 1 and ph < kh and pw < kw
    if transposed:
        win_back = _window(g.shape, (kh, kw), (1, 1), (kh - 1 - ph, kw - 1 - pw))
        wflip = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        wback = _weight_matrix(wflip, win_back)
    else:
        wback = _weight_matrix(weight, win._replace(planes=False)).T
    dx = empty((n, h, w, c), g.dtype) if need_x else None

    def work(a, b, _slot):
        gc = np.ascontiguousarray(g[a:b])
        g2 = gc.reshape(-1, f)
        dw = None
        if transposed:
            cols = _columns(gc, win_back)
            np.matmul(cols, wback, out=dx[a:b].reshape(-1, c))
            if need_w:
                # (x_rows^T @ B)^T rather than B^T @ x_rows: the same product, with
                # OpenBLAS's kernel tiles along B's K columns instead of x's C: measured
                # 10-20% faster for C = 16 and for K = 576 (bench_cnn's shapes), the same
                # elsewhere; 1-2% less CPU time per training step.
                dw = (np.ascontiguousarray(x[a:b]).reshape(-1, c).T @ cols).T
        else:
            if need_w:
                dw = _columns(x[a:b], win).T @ g2
            if need_x:
                _col2im(g2 @ wback, dx[a:b], (kh, kw), stride, padding, (win.ho, win.wo))
        return dw, (g2.sum(axis=0) if need_b else None)

    per_image = win.ho * win.wo * kh * kw * (f if transposed else c) * x.itemsize
    chunk = chunk_size(n, per_image, _CHUNK_BYTES)
    parts = map_chunks(work, n, chunk, elements=g.size * kh * kw * c)
    dw = _total([p[0] for p in parts]) if need_w else None
    if need_w:
        dw = _weight_from_matrix(dw, (f, c, kh, kw), win_back if transposed else win, transposed)
    db = _total([p[1] for p in parts]) if need_b else None
    return dx, dw, db


def _weight_from_matrix(m, shape, win, flipped):
    """dW (F, C, kh, kw) from the product of im2col columns and rows: ``A^T @ dY`` (K, F)
    with K in `win`'s column order, or, `flipped`, ``B^T @ x_rows`` (K', C) with K' the
    column order of padded dY's im2col and the kernel upside down and mirrored."""
    f, c, kh, kw = shape
    if flipped:
        # rows (f, i, j) for planes, (i, j, f) for pixels; then flip i and j back
        t = (
            m.reshape(f, kh, kw, c).transpose(0, 3, 1, 2)
            if win.planes
            else (m.reshape(kh, kw, f, c).transpose(2, 3, 0, 1))
        )
        t = t[:, :, ::-1, ::-1]
    else:
        t = (
            m.T.reshape(f, c, kh, kw)
            if win.planes
            else m.reshape(kh, kw, c, f).transpose(3, 2, 0, 1)
        )
    return np.ascontiguousarray(t)


def _total(arrays):
    out = arrays[0]
    for a in arrays[1:]:
        out += a
    return out


def _col2im(da, dx, kernel, stride, padding, out_size):
    """Scatter-add dA (n*Ho*Wo, kh*kw*C) over the receptive fields into dx (n, H, W, C)."""
    n, h, w, c = dx.shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out_size
    da = da.reshape(n, ho, wo, kh, kw, c)
    dp = scratch("conv-col2im", (n, h + 2 * ph, w + 2 * pw, c), dx.dtype)
    dp[...] = 0
    for i in range(kh):
        for j in range(kw):
            dp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += da[
                :, :, :, i, j
            ]
    dx[...] = dp[:, ph : ph + h, pw : pw + w]


def _nchw(a_nhwc):
    """The (N, C, H, W) view of a channels-last buffer (N, H, W, C)."""
    return a_nhwc.transpose(0, 3, 1, 2)


def _nhwc(a_nchw):
    """The (N, H, W, C) view of an (N, C, H, W) array (no copy)."""
    return a_nchw.transpose(0, 2, 3, 1)


# ---------------------------------------------------------------- the Function


class _Bilinear(Function):
    """A Function bilinear in its first two arguments (the others are constants): its
    tangent is ``F(ta, b) + F(a, tb)``, the product rule, from its definition."""

    differentiable_backward = True
    jvp_takes_none = True

    @classmethod
    def _product_rule(cls, ctx, ta, tb, *constants):
        a, b = ctx.saved_tensors[:2]
        t = None
        if ta is not None:
            t = cls.call(ta, b, *constants)
        if tb is not None:
            u = cls.call(a, tb, *constants)
            t = u if t is None else t + u
        return t


class Conv2d(_Bilinear):
    """2-D cross-correlation (what deep learning calls convolution), as PyTorch's.

    x: (N, C, H, W), weight: (F, C, kh, kw), bias: (F,) or None, stride and padding:
    pairs of ints -> out: (N, F, Ho, Wo) with ``Ho = (H + 2 ph - kh) // sh + 1`` (and Wo
    alike), ``out[n, f, y, x] = b[f] + sum_{c,i,j} W[f, c, i, j] * xpad[n, c, y*sh + i,
    x*sw + j]``. The output is a channels-last view (see the module docstring).

    Backward: ``dW[f, c, i, j] = sum_{n,y,x} dout[n, f, y, x] xpad[n, c, y*sh+i, x*sw+j]``,
    ``db = dout.sum((0, 2, 3))``, ``dxpad[n, c, y*sh+i, x*sw+j] += sum_f W[f, c, i, j]
    dout[n, f, y, x]`` (cropped to the unpadded image).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        finite = []
        out = _conv_nhwc(_nhwc(x), weight, weight.shape[2:], stride, padding, bias, finite)
        if not finite[0]:
            _raise_nonfinite("conv2d", x, weight)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return _nchw(out)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        s, p = ctx.stride, ctx.padding
        if not (tnp.is_tensor(g) or tnp.is_tensor(x) or tnp.is_tensor(weight)):
            # The three gradients in one pass over g (the kernels' fused backward).
            needs = (need_x, need_w, need_b)
            dx, dw, db = _conv_backward(_nhwc(x), _nhwc(g), weight, s, p, needs)
            return (None if dx is None else _nchw(dx)), dw, db, None, None
        dx = ConvInputGrad.call(g, weight, tuple(x.shape), s, p) if need_x else None
        dw = ConvWeightGrad.call(x, g, tuple(weight.shape), s, p) if need_w else None
        db = g.sum(axis=(0, 2, 3)) if need_b else None
        return dx, dw, db, None, None

    @classmethod
    def jvp(cls, ctx, tx, tw, tb, _ts, _tp):
        t = cls._product_rule(ctx, tx, tw, None, ctx.stride, ctx.padding)
        if tb is not None:
            tb = tb.reshape((1, -1, 1, 1))
            t = tb if t is None else t + tb
        return t


class ConvInputGrad(_Bilinear):
    """The input gradient of `Conv2d`: dx (N, C, H, W) of the output gradient g (N, F,
    Ho, Wo) and weight (F, C, kh, kw), for an input of shape `x_shape`. Bilinear in g
    and weight; its gradients are a convolution (for g) and `ConvWeightGrad` (for W)."""

    @staticmethod
    def forward(ctx, g, weight, x_shape, stride, padding):
        ctx.save_for_backward(g, weight)
        ctx.x_shape, ctx.stride, ctx.padding = x_shape, stride, padding
        shape_only = _shape_only(_nhwc_shape(x_shape), g.dtype)
        needs = (True, False, False)
        dx, _, _ = _conv_backward(shape_only, _nhwc(g), weight, stride, padding, needs)
        return _nchw(dx)

    @staticmethod
    def backward(ctx, gg):
        g, weight = ctx.saved_tensors
        need_g, need_w = ctx.needs_input_grad[:2]
        s, p = ctx.stride, ctx.padding
        dg = Conv2d.call(gg, weight, None, s, p) if need_g else None
        dw = ConvWeightGrad.call(gg, g, tuple(weight.shape), s, p) if need_w else None
        return dg, dw, None, None, None

    @classmethod
    def jvp(cls, ctx, tg, tw, *_constants):
        return cls._product_rule(ctx, tg, tw, ctx.x_shape, ctx.stride, ctx.padding)


class ConvWeightGrad(_Bilinear):
    """The weight gradient of `Conv2d`: dW (F, C, kh, kw) of the input x (N, C, H, W) and
    the output gradient g (N, F, Ho, Wo), for a weight of shape `w_shape`. Bilinear in x
    and g; its gradients are `ConvInputGrad` (for x) and a convolution (for g)."""

    @staticmethod
    def forward(ctx, x, g, w_shape, stride, padding):
        ctx.save_for_backward(x, g)
        ctx.w_shape, ctx.stride, ctx.padding = w_shape, stride, padding
        shape_only = _shape_only(w_shape, x.dtype)
        needs = (False, True, False)
        _, dw, _ = _conv_backward(_nhwc(x), _nhwc(g), shape_only, stride, padding, needs)
        return dw

    @staticmethod
    def backward(ctx, gw):
        x, g = ctx.saved_tensors
        need_x, need_g = ctx.needs_input_grad[:2]
        s, p = ctx.stride, ctx.padding
        dx = ConvInputGrad.call(g, gw, tuple(x.shape), s, p) if need_x else None
        dg = Conv2d.call(x, gw, None, s, p) if need_g else None
        return dx, dg, None, None, None

    @classmethod
    def jvp(cls, ctx, tx, tg, *_constants):
        return cls._product_rule(ctx, tx, tg, ctx.w_shape, ctx.stride, ctx.padding)


def _nhwc_shape(shape):
    n, c, h, w = shape
    return (n, h, w, c)


def _shape_only(shape, dtype):
    """A read-only array of `shape` that takes no memory (every entry is one zero): the
    kernels' argument whose shape, not its values, a gradient depends on."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


# ---------------------------------------------------------------- checks and the function


def _check_float(name, what, a, ndim, shape_text):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: {what} must be an array or Tensor, got {type(a).__name__}")
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: {what} must hold floats, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name}: {what} must be {ndim}-D {shape_text}, got shape {a.shape}")


def check_images(name, x, kernel=None, padding=(0, 0)):
    """Raise a clear error unless x is a float (N, C, H, W) array at least as large as
    `kernel` once padded."""
    _check_float(name, "x", x, 4, "(N, C, H, W)")
    if min(x.shape) == 0:
        raise ValueError(f"{name}: x must not be empty, got shape {x.shape}")
    if kernel is not None:
        hp, wp = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
        if kernel[0] > hp or kernel[1] > wp:
            raise ValueError(
                f"{name}: kernel {kernel[0]}x{kernel[1]} is larger than the padded image "
                f"{hp}x{wp} (x of shape {x.shape}, padding {padding})"
            )


def _raise_nonfinite(name, x, weight):
    """Name the source of a NaN or infinity found in the output."""
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: x holds NaN or infinity")
    if not np.isfinite(weight).all():
        raise ValueError(f"{name}: weight holds NaN or infinity")
    raise FloatingPointError(f"{name}: the output overflowed to infinity")


def conv2d(x, weight, bias=None, stride=1, padding=0) -> Tensor:
    """2-D convolution (cross-correlation) of a batch of images, as PyTorch's.

    x: (N, C, H, W) float Tensor or array; weight: (F, C, kh, kw) of the same dtype;
    bias: (F,) or None; stride: int or (sh, sw), positive; padding: int or (ph, pw),
    zeros added on both sides. Returns (N, F, Ho, Wo) of x's dtype, ``Ho = (H + 2 ph -
    kh) // sh + 1``, stored channels-last (a transposed view of an (N, Ho, Wo, F) array).
    """
    xd, wd, bd = _raw(x), _raw(weight), _raw(bias)
    stride = _pair("conv2d: stride", stride, 1)
    padding = _pair("conv2d: padding", padding, 0)
    _check_float("conv2d", "weight", wd, 4, "(F, C, kh, kw)")
    check_images("conv2d", xd, wd.shape[2:], padding)
    if xd.shape[1] != wd.shape[1]:
        raise ValueError(
            f"conv2d: x has {xd.shape[1]} channels but weight of shape {wd.shape} expects "
            f"{wd.shape[1]}"
        )
    if xd.dtype != wd.dtype:
        raise TypeError(f"conv2d: x is {xd.dtype} but weight is {wd.dtype}; use one dtype")
    if bd is not None:
        if not isinstance(bd, np.ndarray) or bd.shape != (wd.shape[0],):
            raise ValueError(f"conv2d: bias must have shape ({wd.shape[0]},), got {np.shape(bd)}")
        if bd.dtype != wd.dtype:
            raise TypeError(f"conv2d: bias is {bd.dtype} but weight is {wd.dtype}")
    return Conv2d.apply(x, weight, bias, stride, padding)
