"""Convolution, pooling and spatial batch norm Functions: values and gradients against
PyTorch (recorded in tests/fixtures, and live where PyTorch is installed), ties in max
pooling, channels-last outputs, threads, dtypes and errors. The gradient checks against
numeric differentiation are rows of tests/autograd/test_autograd_ops.py."""

from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import chainrule as cr
import chainrule.nn.functional as F

REFERENCES = Path(__file__).resolve().parents[1] / "fixtures" / "conv_torch_references.npz"


@pytest.fixture(scope="module")
def ref():
    with np.load(REFERENCES, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _cases(ref, prefix):
    return sorted({k.split("/")[1] for k in ref if k.startswith(prefix + "/")})


def close(a, b, tol=1e-12):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _grads(fn, *arrays, upstream):
    tensors = [cr.Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(upstream)
    return out.data, [t.grad for t in tensors]


# ----------------------------------------------------------------- recorded PyTorch values


def test_conv2d_matches_recorded_torch(ref):
    names = _cases(ref, "conv")
    assert len(names) == 11
    for name in names:
        p = f"conv/{name}/"
        sh, sw, ph, pw = ref[p + "geometry"].tolist()
        arrays = [ref[p + "x"], ref[p + "w"]] + ([ref[p + "b"]] if p + "b" in ref else [])

        def fn(*ts, sh=sh, sw=sw, ph=ph, pw=pw):
            return F.conv2d(*ts, stride=(sh, sw), padding=(ph, pw))

        out, grads = _grads(fn, *arrays, upstream=ref[p + "g"])
        close(out, ref[p + "out"])
        for g, key in zip(grads, ("dx", "dw", "db")):
            close(g, ref[p + key])


def test_pools_match_recorded_torch_ties_included(ref):
    names = _cases(ref, "pool")
    assert len(names) == 5
    for name in names:
        p = f"pool/{name}/"
        kh, kw, sh, sw = ref[p + "geometry"].tolist()
        fn = F.max_pool2d if name.startswith("max") else F.avg_pool2d
        out, (dx,) = _grads(
            lambda t, fn=fn, k=(kh, kw), s=(sh, sw): fn(t, k, s),
            ref[p + "x"],
            upstream=ref[p + "g"],
        )
        close(out, ref[p + "out"])
        close(dx, ref[p + "dx"])
    # the recorded max-pool inputs hold ties, so the gradient routing at ties is checked
    x = ref["pool/max_2x2/x"]
    windows = x.reshape(2, 3, 4, 2, 4, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 4, 4, 4)
    assert (np.sum(windows == windows.max(axis=-1, keepdims=True), axis=-1) > 1).any()


def test_global_pools_match_recorded_torch(ref):
    for kind, fn in (("avg", F.global_avg_pool2d), ("max", F.global_max_pool2d)):
        p = f"global/{kind}/"
        out, (dx,) = _grads(fn, ref[p + "x"], upstream=ref[p + "g"])
        close(out, ref[p + "out"])
        close(dx, ref[p + "dx"])


@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm2d_matches_recorded_torch(ref, relu):
    p = f"bn/relu{int(relu)}/"
    rm, rv = ref[p + "running_mean0"].copy(), ref[p + "running_var0"].copy()

    def fn(x, g, b):
        return F.batch_norm2d(x, g, b, rm, rv, training=True, momentum=0.1, relu=relu)

    arrays = ref[p + "x"], ref[p + "gamma"], ref[p + "beta"]
    out, grads = _grads(fn, *arrays, upstream=ref[p + "g"])
    close(out, ref[p + "out"])
    for g, key in zip(grads, ("dx", "dgamma", "dbeta")):
        close(g, ref[p + key], 1e-11)
    close(rm, ref[p + "running_mean"])
    close(rv, ref[p + "running_var"])
    ev = F.batch_norm2d(ref[p + "x"], ref[p + "gamma"], ref[p + "beta"], rm, rv, False, relu=relu)
    close(ev.data, ref[p + "eval_out"])


# ----------------------------------------------------------------- live PyTorch


def test_conv2d_and_pools_match_live_torch_in_float32():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6, 13, 11), dtype=np.float32)
    w = rng.standard_normal((7, 6, 3, 3), dtype=np.float32)
    b = rng.standard_normal(7, dtype=np.float32)
    for stride, padding in [(1, 1), (2, 1), ((1, 2), (2, 0))]:
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
        g = rng.standard_normal(tuple(ty.shape), dtype=np.float32)
        ty.backward(torch.tensor(g))
        out, (dx, dw, db) = _grads(
            lambda *t, s=stride, p=padding: F.conv2d(*t, stride=s, padding=p), x, w, b, upstream=g
        )
        assert out.dtype == np.float32
        for mine, theirs in ((out, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
            np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=2e-4, atol=2e-4)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, 3, 2)
    g = rng.standard_normal(tuple(ty.shape), dtype=np.float32)
    ty.backward(torch.tensor(g))
    out, (dx,) = _grads(lambda t: F.max_pool2d(t, 3, 2), x, upstream=g)
    np.testing.assert_array_equal(out, ty.detach().numpy())
    # overlapping windows: a pixel's gradients may be added in another order
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- semantics


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    x = np.array([[[[1.0, 5.0, 2.0, 2.0], [5.0, 0.0, 2.0, 2.0]]]])  # (1, 1, 2, 4)
    out, (dx,) = _grads(lambda t: F.max_pool2d(t, 2), x, upstream=np.array([[[[10.0, 20.0]]]]))
    close(out, [[[[5.0, 2.0]]]])
    # row-major window order: (0, 1) before (1, 0); (0, 0) first of four equal values
    close(dx, [[[[0.0, 10.0, 20.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    out, (dx,) = _grads(F.global_max_pool2d, x, upstream=np.array([[7.0]]))
    close(dx, [[[[0.0, 7.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])


def test_conv2d_output_is_channels_last_and_any_input_layout_gives_the_same_result():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 6, 5))
    w = rng.standard_normal((2, 4, 3, 3))
    out = F.conv2d(x, w, padding=1).data
    assert out.shape == (3, 2, 6, 5)
    assert out.transpose(0, 2, 3, 1).flags.c_contiguous  # an (N, H, W, F) buffer
    strided = np.asfortranarray(x)
    np.testing.assert_array_equal(F.conv2d(strided, w, padding=1).data, out)
    channels_last = x.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(F.conv2d(channels_last, w, padding=1).data, out)


def test_results_do_not_depend_on_the_number_of_threads():
    """Chunks combine in a fixed order, so two threads give exactly what one gives."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((24, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    gamma, beta = rng.standard_normal((2, 16)).astype(np.float32)

    def run():
        xs = [cr.Tensor(a, requires_grad=True) for a in (x, w, gamma, beta)]
        h = F.conv2d(xs[0], xs[1], padding=1)
        h = F.batch_norm2d(h, xs[2], xs[3], relu=True)
        h = F.max_pool2d(h, 2)
        weights = np.arange(h.data.size, dtype=np.float32).reshape(h.shape) % 7
        (h * cr.Tensor(weights)).sum().backward()
        return [h.data] + [t.grad for t in xs]

    with threadpool_limits(1, "blas"):
        one = run()
    with threadpool_limits(2, "blas"):
        two = run()
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_statistics_stay_accurate_for_a_large_mean():
    rng = np.random.default_rng(2)
    x = (1000.0 + rng.standard_normal((64, 2, 16, 16))).astype(np.float32)
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    out = F.batch_norm2d(x, running_mean=rm, running_var=rv, momentum=1.0).data
    x64 = x.astype(np.float64)
    assert np.abs(out.mean(axis=(0, 2, 3))).max() < 1e-3
    assert np.abs(out.astype(np.float64).var(axis=(0, 2, 3)) - 1).max() < 1e-3
    np.testing.assert_allclose(rm, x64.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(rv, x64.var(axis=(0, 2, 3), ddof=1), rtol=1e-4)


def test_batch_norm_accepts_images_through_the_common_entry():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 4, 5))
    a = F.batch_norm(x).data
    np.testing.assert_allclose(a, F.batch_norm2d(x).data)
    np.testing.assert_allclose(a.mean(axis=(0, 2, 3)), 0, atol=1e-12)


def test_float32_in_float32_out_and_gradients_skipped_when_not_needed():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w = cr.Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    y = F.conv2d(x, w, stride=2)
    assert y.dtype == np.float32 and y.shape == (2, 4, 2, 2)
    y.sum().backward()
    assert w.grad.dtype == np.float32 and w.grad.shape == (4, 3, 3, 3)
    for fn in (lambda t: F.max_pool2d(t, 2), lambda t: F.avg_pool2d(t, 2), F.global_avg_pool2d):
        t = cr.Tensor(x, requires_grad=True)
        out = fn(t)
        out.sum().backward()
        assert out.dtype == np.float32 and t.grad.dtype == np.float32


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, w: F.conv2d(x[0], w), "x must be 4-D"),
        (lambda x, w: F.conv2d(x, w[:, :2]), "x has 3 channels but weight"),
        (lambda x, w: F.conv2d(x, w[..., 0]), "weight must be 4-D"),
        (lambda x, w: F.conv2d(x[:, :, :2, :2], w), "kernel 3x3 is larger than the padded"),
        (lambda x, w: F.conv2d(x, w, stride=0), "stride must be positive"),
        (lambda x, w: F.conv2d(x, w, stride=(1, -1)), "stride must be positive"),
        (lambda x, w: F.conv2d(x, w, padding=-1), "padding must be non-negative"),
        (lambda x, w: F.conv2d(x, w, padding=1.5), "padding must be"),
        (lambda x, w: F.conv2d(x, w, bias=np.zeros(3)), r"bias must have shape \(4,\)"),
        (lambda x, w: F.conv2d(x.astype(np.float32), w), "x is float32 but weight is float64"),
        (lambda x, w: F.conv2d(x.astype(int), w), "x must hold floats"),
        (lambda x, w: F.max_pool2d(x, 6), "kernel 6x6 is larger than the padded image 5x5"),
        (lambda x, w: F.max_pool2d(x, 2, stride=0), "stride must be positive"),
        (lambda x, w: F.avg_pool2d(x[0], 2), "x must be 4-D"),
        (lambda x, w: F.global_avg_pool2d(x[:0]), "must not be empty"),
        (lambda x, w: F.batch_norm2d(x, np.ones(2)), r"gamma must have shape \(3,\)"),
        (lambda x, w: F.batch_norm2d(x[:1, :, :1, :1]), "more than one value per channel"),
        (lambda x, w: F.batch_norm2d(x, training=False), "needs running statistics"),
    ],
)
def test_errors_name_the_problem(call, match):
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5))
    w = np.ones((4, 3, 3, 3))
    with pytest.raises((ValueError, TypeError), match=match):
        call(x, w)


def test_nan_or_infinity_is_named_by_its_source():
    x = np.ones((1, 2, 4, 4))
    w = np.ones((3, 2, 3, 3))
    bad = x.copy()
    bad[0, 1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="conv2d: x holds NaN or infinity"):
        F.conv2d(bad, w)
    w_bad = w.copy()
    w_bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="conv2d: weight holds NaN or infinity"):
        F.conv2d(x, w_bad)
    with pytest.raises(FloatingPointError, match="overflowed"), np.errstate(over="ignore"):
        F.conv2d(x.astype(np.float32) * 3e38, w.astype(np.float32))


def test_recorded_references_are_what_the_script_records_now(ref):
    pytest.importorskip("torch")
    import importlib.util

    path = REFERENCES.parent / "record_conv_references.py"
    spec = importlib.util.spec_from_file_location("record_conv_references", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = module.record()
    assert sorted(fresh) == sorted(ref)
    for key, value in fresh.items():
        if key != "torch_version":
            assert ref[key].dtype == value.dtype and ref[key].shape == value.shape, key
            np.testing.assert_allclose(ref[key], value, rtol=1e-12, atol=1e-15, err_msg=key)


@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding",
    [
        ((2, 3, 4, 20), (2, 3, 3, 3), 1, 1),  # planes im2col forward and for dY
        ((1, 2, 3, 16), (3, 2, 1, 3), 1, (0, 1)),  # rectangular kernel along planes
        ((2, 2, 5, 6), (3, 2, 3, 3), 2, 1),  # col2im for the input gradient
        ((1, 2, 5, 5), (2, 2, 2, 2), 1, 2),  # padding past kernel - 1: col2im
    ],
)
def test_every_im2col_layout_and_input_gradient_route_is_exact(x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]

    def fn(x, w):
        return F.conv2d(x, w, stride=stride, padding=padding)

    assert cr.gradcheck(fn, arrays, modes=("rev", "fwd"), tol=1e-7, random_state=0)
