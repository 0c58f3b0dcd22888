"""Winograd F(2x2, 3x3) kernels: values and gradients against a direct convolution (a
sum over the nine kernel positions, written here independently of both kernels) in
float64, the float32 error bounded by the rounding of the direct sum, and which layers
take them."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import chainrule as cr
import chainrule.nn.functional as F
from chainrule.nn.functional import conv, winograd

EPS32 = np.finfo(np.float32).eps


def direct(x, w, padding):
    """Correlation of x (N, H, W, C) with w (F, C, 3, 3), stride 1 -> (N, Ho, Wo, F)."""
    (ph, pw), (_, h, wd, _) = padding, x.shape
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    ho, wo = h + 2 * ph - 2, wd + 2 * pw - 2
    out = np.zeros((x.shape[0], ho, wo, w.shape[0]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nhwc,fc->nhwf", xp[:, i : i + ho, j : j + wo], w[:, :, i, j])
    return out


def direct_grads(x, w, g, padding):
    """dx (N, H, W, C) and dW (F, C, 3, 3) of `direct` for the output gradient g."""
    (ph, pw), (_, h, wd, _) = padding, x.shape
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    ho, wo = g.shape[1:3]
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    for i in range(3):
        for j in range(3):
            dxp[:, i : i + ho, j : j + wo] += np.einsum("nhwf,fc->nhwc", g, w[:, :, i, j])
            dw[:, :, i, j] = np.einsum("nhwf,nhwc->fc", g, xp[:, i : i + ho, j : j + wo])
    return dxp[:, ph : ph + h, pw : pw + wd], dw


SHAPES = [
    # (x (N, H, W, C), F, padding): even and odd sides, every padding the kernels take
    ((3, 8, 8, 4), 5, (1, 1)),
    ((2, 7, 9, 3), 4, (1, 1)),
    ((2, 6, 5, 2), 3, (0, 0)),
    ((2, 5, 6, 3), 2, (2, 1)),
    ((1, 3, 3, 2), 2, (1, 0)),
]


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of one or two images, so that every case runs several chunks."""
    monkeypatch.setattr(winograd, "_CHUNK_BYTES", 4096)


@pytest.mark.parametrize("x_shape, f, padding", SHAPES)
def test_values_and_gradients_match_the_direct_convolution_in_float64(
    x_shape, f, padding, small_chunks
):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((f, x_shape[3], 3, 3))
    y = winograd.winograd_conv(x, w, padding)
    np.testing.assert_allclose(y, direct(x, w, padding), rtol=0, atol=1e-10)
    g = rng.standard_normal(y.shape)
    dx, dw, db = winograd.winograd_backward(x, g, w, padding, (True, True, True))
    dx_ref, dw_ref = direct_grads(x, w, g, padding)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dw, dw_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(db, g.sum(axis=(0, 1, 2)), rtol=0, atol=1e-10)
    assert winograd.winograd_backward(x, g, w, padding, (False, True, False))[0] is None


def test_a_strided_input_and_a_bias_through_the_finisher(small_chunks):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 6, 5)).transpose(0, 2, 3, 1)  # an (N, H, W, C) view
    w = rng.standard_normal((3, 4, 3, 3))
    b = rng.standard_normal(3)

    def finish(rows):
        rows += b
        return rows.shape[0]

    y, done = winograd.winograd_conv(x, w, (1, 1), finish)
    np.testing.assert_allclose(y, direct(x, w, (1, 1)) + b, rtol=0, atol=1e-10)
    assert sum(done) == 3 * 6 * 5


@pytest.mark.parametrize("c, f", [(8, 8), (64, 128), (256, 32)])
def test_float32_error_stays_within_the_rounding_of_the_direct_sum(c, f):
    """|float32 - exact| <= 8 eps32 * (the same sums over |x| |w|), for the values and
    (with |g|) both gradients: the transforms add no error beyond a few roundings."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 9, 8, c))
    w = rng.standard_normal((f, c, 3, 3)) / np.sqrt(9 * c)
    g = rng.standard_normal((4, 9, 8, f))
    x32, w32, g32 = (a.astype(np.float32) for a in (x, w, g))
    y = winograd.winograd_conv(x32, w32, (1, 1))
    assert y.dtype == np.float32
    bound = 8 * EPS32 * direct(np.abs(x), np.abs(w), (1, 1))
    assert np.all(np.abs(y - direct(x, w, (1, 1))) <= bound)
    dx, dw, _ = winograd.winograd_backward(x32, g32, w32, (1, 1), (True, True, False))
    assert dx.dtype == dw.dtype == np.float32
    dx_ref, dw_ref = direct_grads(x, w, g, (1, 1))
    dx_abs, dw_abs = direct_grads(np.abs(x), np.abs(w), np.abs(g), (1, 1))
    assert np.all(np.abs(dx - dx_ref) <= 8 * EPS32 * dx_abs)
    assert np.all(np.abs(dw - dw_ref) <= 8 * EPS32 * dw_abs)


def test_weight_tiles_and_their_gradient_are_adjoint():
    """<U(w), dU> = <w, Gt dU G> for any w and dU: the weight gradient is exact."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 3, 3, 3))
    du = rng.standard_normal((4, 2, 2, 3, 5))
    lhs = np.sum(winograd.weight_tiles(w) * du)
    assert abs(lhs - np.sum(w * winograd.weight_grad_from_tiles(du))) < 1e-12


def test_wide_layers_take_winograd_and_the_rest_im2col():
    assert conv.conv_kernel((2, 8, 8, 64), (128, 64, 3, 3), (1, 1), (1, 1)) == "winograd"
    assert conv.conv_kernel((2, 4, 4, 128), (256, 128, 3, 3), (1, 1), (1, 1)) == "winograd"
    assert conv.conv_kernel((2, 32, 32, 16), (32, 16, 3, 3), (1, 1), (1, 1)) == "im2col"
    assert conv.conv_kernel((2, 4, 4, 64), (128, 64, 3, 3), (1, 1), (1, 1)) == "im2col"
    assert conv.conv_kernel((2, 8, 8, 64), (128, 64, 3, 3), (2, 2), (1, 1)) == "im2col"
    assert conv.conv_kernel((2, 8, 8, 64), (128, 64, 1, 1), (1, 1), (0, 0)) == "im2col"
    assert conv.conv_kernel((2, 32, 32, 3), (16, 3, 3, 3), (1, 1), (1, 1)) == "im2col-planes"


def test_conv2d_on_a_wide_layer_gives_the_direct_values_and_gradients():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 64, 8, 8))  # NCHW
    w = rng.standard_normal((128, 64, 3, 3)) / 24
    b = rng.standard_normal(128)
    g = rng.standard_normal((2, 128, 8, 8))
    xt, wt, bt = (cr.Tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(xt, wt, bt, padding=1)
    out.backward(g)
    xh, gh = x.transpose(0, 2, 3, 1), g.transpose(0, 2, 3, 1)
    ref = direct(xh, w, (1, 1)) + b
    np.testing.assert_allclose(out.data, ref.transpose(0, 3, 1, 2), rtol=0, atol=1e-10)
    dx_ref, dw_ref = direct_grads(xh, w, gh, (1, 1))
    np.testing.assert_allclose(xt.grad, dx_ref.transpose(0, 3, 1, 2), rtol=0, atol=1e-10)
    np.testing.assert_allclose(wt.grad, dw_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(bt.grad, g.sum(axis=(0, 2, 3)), rtol=0, atol=1e-10)


def test_gradients_do_not_depend_on_the_number_of_threads(small_chunks):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 8, 8, 16)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    g = rng.standard_normal((12, 8, 8, 16)).astype(np.float32)
    runs = []
    for threads in (1, 2):
        with threadpool_limits(threads, "blas"):
            y = winograd.winograd_conv(x, w, (1, 1))
            runs.append([y, *winograd.winograd_backward(x, g, w, (1, 1), (True, True, True))])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_nan_in_a_wide_layer_is_named_by_its_source():
    x = np.zeros((1, 64, 8, 8), np.float32)
    x[0, 3, 2, 2] = np.nan
    with pytest.raises(ValueError, match="x holds NaN"):
        F.conv2d(x, np.ones((128, 64, 3, 3), np.float32), padding=1)
