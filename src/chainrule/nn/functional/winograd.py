"""Winograd's minimal filtering F(2x2, 3x3): stride-1 3x3 convolutions of NHWC images.

Each 2x2 block of output pixels (a tile) is computed from the 4x4 block of input
pixels under it (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
2016)::

    Y = At [ (G g Gt) * (Bt d B) ] A          (d: 4x4 input tile, g: 3x3 filter)

    Bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G  = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    At = [[1, 1, 1, 0], [0, 1, -1, -1]]

Summed over the C input channels, the elementwise product becomes, for each of the 16
positions (k, l) of the 4x4 transformed tile, one matrix product ``V[k, l] @ U[k, l]``
of (tiles, C) by (C, F): 16 * C * F multiplications per tile of 4 outputs, 2.25 times
fewer than im2col's 36 * C * F. The transforms hold only 0, +-1 and +-1/2, so float32
results stay within a few units in the last place of the direct convolution's.

The backward pass is the exact adjoint of these three linear steps, so it computes the
gradients of the convolution itself (any difference from im2col's is rounding)::

    dM = A dY At (per tile),   dU[k, l] = V[k, l]^T @ dM[k, l],   dW = Gt dU G
    dV[k, l] = dM[k, l] @ U[k, l]^T,   dx = B dV Bt, tiles added where they overlap

The weight gradient is 16 products with the tiles as the long inner dimension, and the
input gradient 16 products like the forward ones: each 2.25 times fewer multiplications
than im2col's. The input tiles V (4 times the size of x) are computed again from x, per
chunk, in the backward pass: the Functions save only x, and training holds no extra
memory for them.

The transforms are NumPy passes, per chunk of images small enough that a chunk's tiles
stay in cache, laid out (see the section on transforms below) so that most passes run
over long contiguous rows of numbers, two of the 16 tile positions at a time; only the
butterflies (a + b and a - b) between the middle two positions read runs of C numbers.
Where the transforms cost more than the multiplications they save (few channels, small
images) the convolution keeps im2col; `pays` is that decision and the module docstring
of `conv` says what it rests on.
"""

from __future__ import annotations

import numpy as np

from chainrule.nn.functional._parallel import OrderedSum, chunk_size, map_chunks
from chainrule.nn.functional._scratch import empty, padded, scratch

__all__ = [
    "pays",
    "weight_grad_from_tiles",
    "weight_tiles",
    "winograd_backward",
    "winograd_conv",
]

# G of F(2x2, 3x3): the filter transform.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])

# Bytes of tiles (input tiles V and products M of a chunk) per chunk of images.
_CHUNK_BYTES = 1 << 20
# C * F from which the kernels beat im2col on outputs of 8x8 pixels and more.
_WIDE = 8192


def pays(x_shape, w_shape, stride, padding) -> bool:
    """Whether the F(2x2, 3x3) kernels apply and beat im2col for images (N, H, W, C) and
    filters (F, C, kh, kw): stride 1, a 3x3 kernel, at most 2 pixels of padding, and
    C * F of at least 8,192 on outputs of at least 8x8 pixels (64 -> 128 channels) or of
    at least 32,768 on outputs of at least 4x4."""
    _, h, w, c = x_shape
    f, _, kh, kw = w_shape
    if (kh, kw) != (3, 3) or tuple(stride) != (1, 1) or max(padding) > 2:
        return False
    side = min(h + 2 * padding[0] - 2, w + 2 * padding[1] - 2)
    return (c * f >= _WIDE and side >= 8) or (c * f >= 4 * _WIDE and side >= 4)


def _tiles(h, w, padding):
    """(tile rows, tile columns, padded height, padded width) of an H x W image."""
    ph, pw = padding
    th, tw = (h + 2 * ph - 1) // 2, (w + 2 * pw - 1) // 2
    return th, tw, 2 * th + 2, 2 * tw + 2


def weight_tiles(weight) -> np.ndarray:
    """``G g Gt`` of every filter in the paired layout: weight (F, C, 3, 3) -> U2 (4, 2,
    2, C, F), position (k, l) of the 4x4 transformed tile at [k, group, half] (see
    `_input_tiles`; the tiles of column 3 negated), in the weight's dtype."""
    g = _G.astype(weight.dtype)
    u = np.einsum("ki,fcij,lj->klcf", g, weight, g, optimize=True)
    signs = _SIGNS.astype(weight.dtype)[None, :, :, None, None]
    return np.ascontiguousarray(u[:, _PAIRS] * signs)


def weight_grad_from_tiles(du2) -> np.ndarray:
    """The weight gradient ``Gt dU G`` from dU2 (4, 2, 2, C, F) in the paired layout ->
    (F, C, 3, 3): the adjoint of `weight_tiles`."""
    _, _, _, c, f = du2.shape
    du = np.empty((4, 4, c, f), du2.dtype)
    du[:, _PAIRS] = du2 * _SIGNS.astype(du2.dtype)[None, :, :, None, None]
    g = _G.astype(du2.dtype)
    return np.ascontiguousarray(np.einsum("ki,klcf,lj->fcij", g, du, g, optimize=True))


# ---------------------------------------------------------------- transforms of a chunk
#
# Layout of the transformed tiles, chosen so that most NumPy passes run over long
# contiguous rows: the 16 positions (k, l) of a 4x4 transformed tile are held as
# (k, group, ..., half) with the columns l paired by group, (0, 3) and (1, 2), the two
# halves of a pair side by side in memory: V2 (4, 2, n, th, tw, 2, C). Column transform
# l = 0 and l = 3 of every tile are then one subtraction of two shifted views of the
# padded rows (pixel pairs 2b, 2b + 1 minus pairs 2b + 2, 2b + 3), and each row
# transform is one pass over both groups and halves. The 16 products are matrix products
# of (tiles, C) matrices whose rows are 2 C apart, which BLAS reads as they lie.
# Position (k, 3) is stored negated (its filter tile U[k, 3] is negated), so that the
# output transform of the pair (0, 3) is one addition too.

_PAIRS = ((0, 3), (1, 2))
_SIGNS = np.array([[1.0, -1.0], [1.0, 1.0]])


def _as_products(a):
    """(4, 2, n, th, tw, 2, X) -> its (4, 2, 2, T, X) view: one (T, X) matrix per position,
    rows 2 X apart."""
    k, g, n, th, tw, h, x = a.shape
    return a.reshape(k, g, n * th * tw, h, x).transpose(0, 1, 3, 2, 4)


def _input_tiles(xc, padding, th, tw):
    """``Bt d B`` of every 4x4 input tile of images xc (n, H, W, C) -> V2 (4, 2, n, th,
    tw, 2, C) in the paired layout above; a scratch array."""
    n, h, w, c = xc.shape
    ph, pw = padding
    hp, wp = 2 * th + 2, 2 * tw + 2
    p = padded("wino-pad", xc, ((0, 0), (ph, hp - h - ph), (pw, wp - w - pw), (0, 0)))
    # columns: c2[0] = (d0 - d2, d1 - d3), c2[1] = (d1 + d2, d2 - d1) of each tile's columns
    c2 = scratch("wino-c", (2, n, hp, tw, 2, c), xc.dtype)
    q = p.reshape(n, hp, tw + 1, 2, c)
    np.subtract(q[:, :, :tw], q[:, :, 1:], out=c2[0])
    r = p[:, :, 1 : 1 + 2 * tw].reshape(n, hp, tw, 2, c)
    np.add(r[..., 0, :], r[..., 1, :], out=c2[1, ..., 0, :])
    np.subtract(r[..., 1, :], r[..., 0, :], out=c2[1, ..., 1, :])
    # rows, both groups at once
    v2 = scratch("wino-v", (4, 2, n, th, tw, 2, c), xc.dtype)
    z = [c2[:, :, i : i + 2 * th : 2] for i in range(4)]
    np.subtract(z[0], z[2], out=v2[0])
    np.add(z[1], z[2], out=v2[1])
    np.subtract(z[2], z[1], out=v2[2])
    np.subtract(z[1], z[3], out=v2[3])
    return v2


def _output_tiles(m2, dest):
    """``At M A`` of every tile: M2 (4, 2, n, th, tw, 2, F) in the paired layout ->
    dest (n, 2 th, 2 tw, F), written."""
    _, _, n, th, tw, _, f = m2.shape
    # over the rows k of the tile: s2[i] = sum_k At[i, k] M[k], both groups at once
    s2 = scratch("wino-s", (2, 2, n, th, tw, 2, f), m2.dtype)
    np.add(m2[0], m2[1], out=s2[0])
    s2[0] += m2[2]
    np.subtract(m2[1], m2[2], out=s2[1])
    s2[1] -= m2[3]
    # over the columns: y[i] = (s1 + s2, s1 - s2) + (s0, -s3)
    y = dest.reshape(n, th, 2, tw, 2, f).transpose(2, 0, 1, 3, 4, 5)
    np.add(s2[:, 1, ..., 0, :], s2[:, 1, ..., 1, :], out=y[..., 0, :])
    np.subtract(s2[:, 1, ..., 0, :], s2[:, 1, ..., 1, :], out=y[..., 1, :])
    y += s2[:, 0]


def _output_grad_tiles(gc, th, tw):
    """``A dY At`` of every 2x2 tile of the output gradient gc (n, 2 th, 2 tw, F) -> dM2
    (4, 2, n, th, tw, 2, F), the adjoint of `_output_tiles`; a scratch array."""
    n, _, _, f = gc.shape
    g = gc.reshape(n, th, 2, tw, 2, f).transpose(2, 0, 1, 3, 4, 5)
    ds = scratch("wino-ds", (2, 2, n, th, tw, 2, f), gc.dtype)
    ds[:, 0] = g
    np.add(g[..., 0, :], g[..., 1, :], out=ds[:, 1, ..., 0, :])
    np.subtract(g[..., 0, :], g[..., 1, :], out=ds[:, 1, ..., 1, :])
    dm = scratch("wino-dm", (4, 2, n, th, tw, 2, f), gc.dtype)
    dm[0] = ds[0]
    np.add(ds[0], ds[1], out=dm[1])
    np.subtract(ds[0], ds[1], out=dm[2])
    np.negative(ds[1], out=dm[3])
    return dm


def _input_grad_tiles(dv2, dxc, padding):
    """``B dV Bt`` of every tile, added where the 4x4 tiles overlap, cropped to the image:
    dV2 (4, 2, n, th, tw, 2, C) -> dxc (n, H, W, C), written; the adjoint of
    `_input_tiles`."""
    _, _, n, th, tw, _, c = dv2.shape
    h, w = dxc.shape[1:3]
    ph, pw = padding
    hp, wp = 2 * th + 2, 2 * tw + 2
    # rows: row 2a gets (v0)[a] + (v1 + v2 - v0)[a - 1], row 2a + 1 (v1 - v2 + v3)[a] - v3[a - 1]
    dc = scratch("wino-c", (2, n, th + 1, 2, tw, 2, c), dv2.dtype)
    even, odd = dc[:, :, :, 0], dc[:, :, :, 1]
    q = scratch("wino-q", (2, n, th, tw, 2, c), dv2.dtype)
    np.add(dv2[1], dv2[2], out=q)
    q -= dv2[0]
    even[:, :, :th] = dv2[0]
    even[:, :, th] = 0
    even[:, :, 1:] += q
    np.subtract(dv2[1], dv2[2], out=odd[:, :, :th])
    odd[:, :, :th] += dv2[3]
    odd[:, :, th] = 0
    odd[:, :, 1:] -= dv2[3]
    dc = dc.reshape(2, n, hp, tw, 2, c)
    # columns: the pairs (d0 - d2, d1 - d3) and (d1 + d2, d2 - d1) back onto the pixels
    dp = scratch("wino-dp", (n, hp, wp, c), dv2.dtype)
    dq = dp.reshape(n, hp, tw + 1, 2, c)
    dq[:, :, :tw] = dc[0]
    dq[:, :, tw] = 0
    dq[:, :, 1:] -= dc[0]
    bb = scratch("wino-bb", (n, hp, tw, 2, c), dv2.dtype)
    np.subtract(dc[1, ..., 0, :], dc[1, ..., 1, :], out=bb[..., 0, :])
    np.add(dc[1, ..., 0, :], dc[1, ..., 1, :], out=bb[..., 1, :])
    dp[:, :, 1 : 1 + 2 * tw].reshape(n, hp, tw, 2, c)[...] += bb
    dxc[...] = dp[:, ph : ph + h, pw : pw + w]


# ---------------------------------------------------------------- the convolution


def _chunk(n, th, tw, c, f, itemsize):
    """Images per chunk: about `_CHUNK_BYTES` of input tiles and products."""
    return chunk_size(n, 16 * th * tw * (c + f) * itemsize, _CHUNK_BYTES)


def winograd_conv(x, weight, padding, finish=None) -> np.ndarray:
    """Correlation of images x (N, H, W, C) (any strides) with weight (F, C, 3, 3), stride
    1, padding (ph, pw) -> (N, Ho, Wo, F), C-contiguous, Ho = H + 2 ph - 2.

    finish: optional callable applied to each chunk's output rows (m, F) after they are
    written (adding a bias, checking for NaN); its results are returned as a list too:
    ``(out, [finish(rows) for each chunk])``, or just ``out`` without `finish`.
    """
    n, h, w, c = x.shape
    f = weight.shape[0]
    ph, pw = padding
    ho, wo = h + 2 * ph - 2, w + 2 * pw - 2
    th, tw, _, _ = _tiles(h, w, padding)
    u2 = weight_tiles(weight)
    out = empty((n, ho, wo, f), x.dtype)
    exact = ho == 2 * th and wo == 2 * tw

    def work(a, b, _slot):
        v2 = _input_tiles(x[a:b], padding, th, tw)
        m2 = scratch("wino-m", (4, 2, b - a, th, tw, 2, f), x.dtype)
        np.matmul(_as_products(v2), u2, out=_as_products(m2))
        if exact:
            _output_tiles(m2, out[a:b])
        else:
            full = scratch("wino-y", (b - a, 2 * th, 2 * tw, f), x.dtype)
            _output_tiles(m2, full)
            out[a:b] = full[:, :ho, :wo]
        return None if finish is None else finish(out[a:b].reshape(-1, f))

    done = map_chunks(work, n, _chunk(n, th, tw, c, f, x.itemsize), elements=out.size * c)
    return out if finish is None else (out, done)


def winograd_backward(x, g, weight, padding, needs):
    """Gradients of `winograd_conv` (that is, of the convolution) given the output
    gradient g (N, Ho, Wo, F): (dx (N, H, W, C) or None, dW (F, C, 3, 3) or None, db (F,)
    or None) for the inputs flagged in needs = (x, weight, bias). One pass over chunks of
    images, each chunk's output gradient transformed once for all three."""
    need_x, need_w, need_b = needs
    n, h, w, c = x.shape
    f = weight.shape[0]
    th, tw, _, _ = _tiles(h, w, padding)
    ho, wo = g.shape[1:3]
    u2t = weight_tiles(weight).swapaxes(-1, -2) if need_x else None
    dx = empty((n, h, w, c), g.dtype) if need_x else None
    step = _chunk(n, th, tw, c, f, x.itemsize)
    du2, db = OrderedSum(), OrderedSum()

    def work(a, b, _slot):
        gc = g[a:b]
        if ho != 2 * th or wo != 2 * tw:
            gc = padded("wino-gpad", gc, ((0, 0), (0, 2 * th - ho), (0, 2 * tw - wo), (0, 0)))
        dm2 = _output_grad_tiles(gc, th, tw)
        if need_w:
            v2 = _input_tiles(x[a:b], padding, th, tw)
            du2.add(a // step, np.matmul(_as_products(v2).swapaxes(-1, -2), _as_products(dm2)))
        if need_x:
            dv2 = scratch("wino-v", (4, 2, b - a, th, tw, 2, c), g.dtype)
            np.matmul(_as_products(dm2), u2t, out=_as_products(dv2))
            _input_grad_tiles(dv2, dx[a:b], padding)
        if need_b:
            db.add(a // step, gc.reshape(-1, f).sum(axis=0, dtype=np.float64))

    map_chunks(work, n, step, elements=g.size * 9 * c)
    dw = weight_grad_from_tiles(du2.total) if need_w else None
    return dx, dw, (db.total.astype(g.dtype) if need_b else None)
