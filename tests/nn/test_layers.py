"""Fused layer Functions: gradients against centered differences in float64, forward
mode, batch norm and dropout semantics, PyTorch agreement (live where PyTorch is
installed, and against its recorded values on every run), dtypes and errors."""

from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn
from chainrule.autograd.engine import Context
from chainrule.gradcheck import gradcheck
from chainrule.nn.functional import layers as L

# ----------------------------------------------------------------- helpers


def numeric_grad(f, a, h=1e-6):
    """Centered differences of the scalar f() w.r.t. every entry of a (perturbed in place)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        fp = f()
        a[i] = old - h
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


def rel_err(a, b):
    """Relative error in the max norm: max |a - b| / max(max |a|, max |b|)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    scale = max(np.abs(a).max(), np.abs(b).max())
    assert scale > 0, "a gradient that is identically zero checks nothing"
    return float(np.abs(a - b).max() / scale)


def check_function(fn, arrays, upstream_seed=0, tol=1e-7):
    """Check reverse mode (every input's gradient entry by entry) and forward mode (a
    random direction) of fn(*tensors) -> Tensor against centered differences."""
    rng = np.random.default_rng(upstream_seed)
    tensors = [cr.Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    u = rng.standard_normal(out.shape)
    out.backward(u)

    def loss():
        return float(np.sum(fn(*[cr.Tensor(a) for a in arrays]).data * u))

    for k, (t, a) in enumerate(zip(tensors, arrays)):
        num = numeric_grad(loss, a)
        assert t.grad is not None, f"input {k} got no gradient"
        assert t.grad.shape == a.shape
        assert rel_err(t.grad, num) < tol, f"input {k}: {rel_err(t.grad, num):.2e}"

    tangents = [rng.standard_normal(a.shape) for a in arrays]
    _, jv = cr.jvp(fn, tuple(arrays), tuple(tangents))
    h = 1e-6
    fp = fn(*[cr.Tensor(a + h * t) for a, t in zip(arrays, tangents)]).data
    fm = fn(*[cr.Tensor(a - h * t) for a, t in zip(arrays, tangents)]).data
    assert rel_err(jv, (fp - fm) / (2 * h)) < tol


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def recorded():
    """Inputs and PyTorch's results stored by tests/fixtures/record_torch_references.py."""
    path = Path(__file__).resolve().parents[1] / "fixtures" / "torch_layers.npz"
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# ----------------------------------------------------------------- gradients (float64)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradients(rng, bias):
    x, W, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    if bias:
        check_function(F.linear, [x, W, b])
    else:
        check_function(lambda x, W: F.linear(x, W), [x, W])


def test_linear_relu_gradients(rng):
    x, W, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    check_function(F.linear_relu, [x, W, b])


def test_relu_and_leaky_relu_gradients(rng):
    x = rng.standard_normal((5, 7))
    check_function(F.relu, [x.copy()])
    check_function(lambda t: F.leaky_relu(t, 0.2), [x.copy()])


def test_dropout_gradient_with_fixed_mask(rng):
    x = rng.standard_normal((6, 8))
    check_function(lambda t: F.dropout(t, 0.3, True, np.random.default_rng(5)), [x])


def test_batch_norm_training_gradients(rng):
    x = rng.standard_normal((8, 5)) * 3 + 1
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    check_function(lambda x, g, b: F.batch_norm(x, g, b, training=True), [x, gamma, beta])
    check_function(lambda x: F.batch_norm(x, training=True), [x.copy()])


def test_batch_norm_eval_gradients(rng):
    x = rng.standard_normal((8, 5))
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    rm, rv = rng.standard_normal(5), rng.uniform(0.5, 2.0, 5)
    check_function(lambda x, g, b: F.batch_norm(x, g, b, rm, rv, training=False), [x, gamma, beta])


def test_gradcheck_of_the_engine_agrees(rng):
    x, W, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    assert gradcheck(F.linear, [x, W, b], tol=1e-7)
    assert gradcheck(F.linear_relu, [x, W, b], tol=1e-7)
    assert gradcheck(lambda t: F.leaky_relu(t, 0.1), [x], tol=1e-7)
    assert gradcheck(
        lambda t, g, b: F.batch_norm(t, g, b, training=True), [x @ W, gamma, beta], tol=1e-7
    )
    assert gradcheck(lambda t: F.dropout(t, 0.5, True, np.random.default_rng(3)), [x], tol=1e-7)


# ----------------------------------------------------------------- whole network


def test_network_with_dropout_and_batch_norm_gradient_check():
    def build():
        net = nn.Sequential(
            nn.Linear(6, 7, bias=False, random_state=0),
            nn.BatchNorm1d(7),
            nn.ReLU(),
            nn.Dropout(0.25, random_state=0),
            nn.Linear(7, 5, random_state=1),
            nn.LeakyReLU(0.1),
            nn.Linear(5, 3, random_state=2),
        )
        return net.to(np.float64)

    net = build()
    drop = net[3]
    params = net.parameters()
    rng = np.random.default_rng(7)
    for p in params:  # move gamma/beta away from 1/0 so their gradients are generic
        p.data += 0.3 * rng.standard_normal(p.shape)
    x = rng.standard_normal((9, 6))
    y = rng.integers(0, 3, 9)

    def loss_value():
        drop.rng = np.random.default_rng(11)
        return F.cross_entropy(net(x), y)

    net.zero_grad()
    loss_value().backward()
    for name, p in net.named_parameters():
        num = numeric_grad(lambda: float(loss_value().data), p.data)
        assert rel_err(p.grad, num) < 1e-6, name
    # The dropout mask really is applied: another mask gives another loss.
    drop.rng = np.random.default_rng(12)
    assert float(F.cross_entropy(net(x), y).data) != float(loss_value().data)


# ----------------------------------------------------------------- batch norm semantics


def test_batch_norm_training_normalises_and_updates_running_stats(rng):
    x = (rng.standard_normal((64, 4)) * [1.0, 2.0, 3.0, 4.0] + [5.0, -1.0, 0.0, 2.0]).astype(
        np.float32
    )
    gamma = np.array([1.0, 2.0, 0.5, 1.5], dtype=np.float32)
    beta = np.array([0.0, 1.0, -1.0, 3.0], dtype=np.float32)
    rm = np.zeros(4, dtype=np.float32)
    rv = np.ones(4, dtype=np.float32)
    rm_id, rv_id = id(rm), id(rv)
    out = F.batch_norm(x, gamma, beta, rm, rv, training=True, momentum=0.2).data
    np.testing.assert_allclose(out.mean(0), beta, atol=1e-5)
    np.testing.assert_allclose(out.std(0), gamma * np.sqrt(x.var(0) / (x.var(0) + 1e-5)), rtol=1e-4)
    np.testing.assert_allclose(rm, 0.2 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rv, 0.8 + 0.2 * x.var(0, ddof=1), rtol=1e-5)
    assert id(rm) == rm_id and id(rv) == rv_id and rm.dtype == np.float32


def test_batch_norm_eval_uses_running_stats(rng):
    x = rng.standard_normal((5, 3))
    rm, rv = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 1.0])
    gamma, beta = np.array([2.0, 1.0, -1.0]), np.array([0.5, 0.0, 1.0])
    rm0, rv0 = rm.copy(), rv.copy()
    out = F.batch_norm(x, gamma, beta, rm, rv, training=False, eps=1e-5).data
    np.testing.assert_allclose(out, (x - rm) / np.sqrt(rv + 1e-5) * gamma + beta, rtol=1e-12)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)


def test_batch_norm_matches_torch_train_and_eval(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((16, 6)) * 2 + 1
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    g_out = rng.standard_normal((16, 6))
    rm, rv = np.zeros(6), np.ones(6)
    trm, trv = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    for training in (True, True, False):
        xs = [cr.Tensor(a.copy(), requires_grad=True) for a in (x, gamma, beta)]
        out = F.batch_norm(*xs, rm, rv, training=training, momentum=0.3)
        out.backward(g_out)
        ts = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
        tout = torch.nn.functional.batch_norm(
            ts[0], trm, trv, ts[1], ts[2], training=training, momentum=0.3, eps=1e-5
        )
        tout.backward(torch.tensor(g_out))
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        for a, t in zip(xs, ts):
            np.testing.assert_allclose(a.grad, t.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
        np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)


def test_batch_norm_matches_recorded_torch_train_and_eval(recorded):
    x, gamma, beta, g_out = (recorded[f"bn.{k}"] for k in ("x", "gamma", "beta", "upstream"))
    rm, rv = np.zeros(6), np.ones(6)
    for i in range(3):
        training = bool(recorded[f"bn.{i}.training"])
        xs = [cr.Tensor(a.copy(), requires_grad=True) for a in (x, gamma, beta)]
        out = F.batch_norm(*xs, rm, rv, training=training, momentum=0.3)
        out.backward(g_out)
        np.testing.assert_allclose(out.data, recorded[f"bn.{i}.out"], rtol=1e-10, atol=1e-12)
        for a, k in zip(xs, ("x", "gamma", "beta")):
            want = recorded[f"bn.{i}.grad_{k}"]
            np.testing.assert_allclose(a.grad, want, rtol=1e-9, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(rm, recorded[f"bn.{i}.running_mean"], rtol=1e-12)
        np.testing.assert_allclose(rv, recorded[f"bn.{i}.running_var"], rtol=1e-12)


# ----------------------------------------------------------------- dropout semantics


def test_dropout_mask_statistics_and_inverted_scaling():
    x = np.ones((400, 500), dtype=np.float32)
    p = 0.3
    out = F.dropout(x, p, True, np.random.default_rng(0)).data
    dropped = out == 0
    assert abs(dropped.mean() - p) < 0.005  # 200,000 draws: std 0.001
    np.testing.assert_allclose(out[~dropped], 1 / (1 - p), rtol=1e-6)
    assert abs(out.mean() - 1.0) < 0.01  # expectation preserved
    # per-column rates look uniform too (no structure in the mask)
    assert np.abs(dropped.mean(0) - p).max() < 0.1


def test_dropout_backward_uses_the_forward_mask(rng):
    x = cr.Tensor(rng.standard_normal((50, 40)), requires_grad=True)
    out = F.dropout(x, 0.5, True, np.random.default_rng(1))
    out.backward(np.ones(out.shape))
    kept = out.data != 0
    np.testing.assert_array_equal(x.grad[kept], 2.0)
    np.testing.assert_array_equal(x.grad[~kept], 0.0)


def test_dropout_seeded_eval_and_edge_probabilities(rng):
    x = rng.standard_normal((20, 30))
    a = F.dropout(x, 0.4, True, np.random.default_rng(3)).data
    b = F.dropout(x, 0.4, True, np.random.default_rng(3)).data
    c = F.dropout(x, 0.4, True, np.random.default_rng(4)).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(F.dropout(x, 0.4, False).data, x)
    np.testing.assert_array_equal(F.dropout(x, 0.0, True).data, x)
    t = cr.Tensor(x, requires_grad=True)
    z = F.dropout(t, 1.0, True, np.random.default_rng(0))
    np.testing.assert_array_equal(z.data, 0.0)
    z.backward(np.ones(z.shape))
    np.testing.assert_array_equal(t.grad, 0.0)


# ----------------------------------------------------------------- PyTorch agreement


def test_linear_relu_leaky_match_torch(rng):
    torch = pytest.importorskip("torch")
    x, W, b = rng.standard_normal((7, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    g = rng.standard_normal((7, 4))
    for ours, theirs in [
        (lambda x, W, b: F.linear(x, W, b), lambda x, W, b: x @ W + b),
        (F.linear_relu, lambda x, W, b: torch.relu(x @ W + b)),
        (
            lambda x, W, b: F.leaky_relu(F.linear(x, W, b), 0.2),
            lambda x, W, b: torch.nn.functional.leaky_relu(x @ W + b, 0.2),
        ),
    ]:
        xs = [cr.Tensor(a.copy(), requires_grad=True) for a in (x, W, b)]
        ts = [torch.tensor(a, requires_grad=True) for a in (x, W, b)]
        out, tout = ours(*xs), theirs(*ts)
        out.backward(g)
        tout.backward(torch.tensor(g))
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-12, atol=1e-12)
        for a, t in zip(xs, ts):
            np.testing.assert_allclose(a.grad, t.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name, ours",
    [
        ("linear", lambda x, W, b: F.linear(x, W, b)),
        ("linear_relu", F.linear_relu),
        ("leaky_relu_0.2", lambda x, W, b: F.leaky_relu(F.linear(x, W, b), 0.2)),
    ],
)
def test_linear_relu_leaky_match_recorded_torch(recorded, name, ours):
    xs = [cr.Tensor(recorded[f"linear.{k}"].copy(), requires_grad=True) for k in "xWb"]
    out = ours(*xs)
    out.backward(recorded["linear.upstream"])
    np.testing.assert_allclose(out.data, recorded[f"{name}.out"], rtol=1e-12, atol=1e-12)
    for a, k in zip(xs, "xWb"):
        want = recorded[f"{name}.grad_{k}"]
        np.testing.assert_allclose(a.grad, want, rtol=1e-12, atol=1e-12, err_msg=k)


# ----------------------------------------------------------------- dtypes and work skipped


def test_float32_stays_float32(rng):
    x = rng.standard_normal((8, 5)).astype(np.float32)
    W = cr.Tensor(rng.standard_normal((5, 4)).astype(np.float32), requires_grad=True)
    b = cr.Tensor(np.zeros(4, dtype=np.float32), requires_grad=True)
    g = cr.Tensor(np.ones(4, dtype=np.float32), requires_grad=True)
    be = cr.Tensor(np.zeros(4, dtype=np.float32), requires_grad=True)
    rm, rv = np.zeros(4, dtype=np.float32), np.ones(4, dtype=np.float32)
    h = F.linear(x, W, b)
    h = F.batch_norm(h, g, be, rm, rv, True)
    h = F.leaky_relu(F.relu(h), 0.1)
    h = F.dropout(h, 0.5, True, np.random.default_rng(0))
    h = F.linear_relu(h, cr.Tensor(np.eye(4, dtype=np.float32)), b)
    assert h.dtype == np.float32
    h.sum().backward()
    for t in (W, b, g, be):
        assert t.grad.dtype == np.float32
    assert rm.dtype == np.float32 and rv.dtype == np.float32


def test_linear_backward_skips_unneeded_gradients(rng):
    x, W, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2)
    ctx = Context()
    ctx.needs_input_grad = [False, True, False]
    L.Linear.forward(ctx, x, W, b)
    dx, dW, db = L.Linear.backward(ctx, np.ones((4, 2)))
    assert dx is None and db is None
    np.testing.assert_allclose(dW, x.T @ np.ones((4, 2)))
    # Through the graph: a plain array input gets no gradient, the weight does.
    Wt = cr.Tensor(W, requires_grad=True)
    F.linear(x, Wt).sum().backward()
    np.testing.assert_allclose(Wt.grad, x.sum(0)[:, None] * np.ones((1, 2)))


# ----------------------------------------------------------------- errors


def test_errors_name_the_problem(rng):
    x, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    with pytest.raises(ValueError, match="5 features"):
        F.linear(rng.standard_normal((4, 5)), W)
    with pytest.raises(ValueError, match="2-D"):
        F.linear(rng.standard_normal(3), W)
    with pytest.raises(ValueError, match="b must have shape"):
        F.linear(x, W, np.zeros(3))
    with pytest.raises(TypeError, match="floats"):
        F.linear(x.astype(int), W)
    with pytest.raises(ValueError, match="probability"):
        F.dropout(x, 1.5)
    with pytest.raises(TypeError, match="Generator"):
        F.dropout(x, 0.5, True, rng="seed")
    with pytest.raises(ValueError, match="more than one example"):
        F.batch_norm(x[:1], training=True)
    with pytest.raises(ValueError, match="running_mean and running_var"):
        F.batch_norm(x, training=False)
    with pytest.raises(ValueError, match="gamma must have shape"):
        F.batch_norm(x, np.ones(4))
    with pytest.raises(TypeError, match="negative_slope"):
        F.leaky_relu(x, "0.1")
