"""Muon: Newton-Schulz against the SVD's polar factor, the optimizer's float32 steps
against a float64 reference of its formulas, vectors and groups, resume, errors."""

import numpy as np
import pytest

import chainrule.nn.functional as F
from chainrule import nn, optim
from chainrule.optim.muon import NS_COEFFICIENTS, zeropower_via_newtonschulz


def polar(G):
    """U V^T of the SVD G = U S V^T (float64)."""
    U, _, Vt = np.linalg.svd(G, full_matrices=False)
    return U @ Vt


@pytest.mark.parametrize("shape", [(5, 12), (12, 5), (7, 7)])
def test_cubic_newton_schulz_converges_to_the_polar_factor(shape):
    rng = np.random.default_rng(0)
    G = rng.standard_normal(shape)
    X = zeropower_via_newtonschulz(G, steps=60, coefficients=(1.5, -0.5, 0.0), eps=0.0)
    np.testing.assert_allclose(X, polar(G), atol=1e-10)
    assert X.shape == shape and X.dtype == np.float64


@pytest.mark.parametrize("shape", [(16, 72), (72, 16), (32, 32)])
def test_quintic_newton_schulz_brings_singular_values_near_one(shape):
    rng = np.random.default_rng(1)
    # singular values spread over four orders of magnitude
    U = np.linalg.qr(rng.standard_normal((shape[0], shape[0])))[0]
    V = np.linalg.qr(rng.standard_normal((shape[1], shape[1])))[0]
    k = min(shape)
    S = np.zeros(shape)
    S[:k, :k] = np.diag(np.logspace(0, -4, k) * 7.0)
    G = U @ S @ V.T
    X = zeropower_via_newtonschulz(G.astype(np.float32))
    assert X.dtype == np.float32
    s = np.linalg.svd(X.astype(np.float64), compute_uv=False)
    big = s[: k // 2]  # directions within a factor 100 of the largest
    assert 0.6 < big.min() and s.max() < 1.25
    # the singular vectors are G's: X = U diag(f(s)) V^T with f > 0
    Ut = U[:, :k].T @ X.astype(np.float64) @ V[:, :k]
    off = Ut - np.diag(np.diag(Ut))
    assert np.abs(off).max() < 1e-4 and np.all(np.diag(Ut)[: k // 2] > 0.6)


def test_newton_schulz_on_a_tall_matrix_is_the_transpose_of_the_wide_one():
    G = np.random.default_rng(2).standard_normal((9, 4))
    np.testing.assert_allclose(
        zeropower_via_newtonschulz(G), zeropower_via_newtonschulz(G.T).T, rtol=1e-13, atol=0
    )
    with pytest.raises(ValueError, match="matrix"):
        zeropower_via_newtonschulz(np.zeros(3))


def reference_muon(params, grads_per_step, lr, momentum, nesterov, wd, normalize, steps=5):
    """float64 reference: the module docstring's formulas, written out independently
    (Newton-Schulz as the polynomial a X + b (X X^T) X + c (X X^T)^2 X)."""
    a, b, c = NS_COEFFICIENTS
    ps = [p.astype(np.float64) for p in params]
    bufs = [np.zeros_like(p) for p in ps]
    for grads in grads_per_step:
        for k, g in enumerate(grads):
            g = g.astype(np.float64)
            if ps[k].ndim == 1:  # SGD's step, coupled weight decay
                g = g + wd * ps[k]
            bufs[k] = momentum * bufs[k] + g
            d = g + momentum * bufs[k] if nesterov else bufs[k]
            if ps[k].ndim == 1:
                ps[k] = ps[k] - lr * d
                continue
            ps[k] = ps[k] * (1 - lr * wd)
            rows = ps[k].shape[0]
            if normalize:
                ps[k] = ps[k] * np.sqrt(rows) / np.linalg.norm(ps[k])
            M = d.reshape(rows, -1)
            X = M / (np.linalg.norm(M) + 1e-7)
            if X.shape[0] > X.shape[1]:
                X = X.T
            for _ in range(steps):
                A = X @ X.T
                X = a * X + b * A @ X + c * A @ A @ X
            if M.shape[0] > M.shape[1]:
                X = X.T
            ps[k] = ps[k] - lr * X.reshape(ps[k].shape)
    return ps


@pytest.mark.parametrize(
    "settings",
    [
        dict(lr=0.05, momentum=0.9, nesterov=True, wd=0.0, normalize=False),
        dict(lr=0.2, momentum=0.6, nesterov=False, wd=0.1, normalize=False),
        dict(lr=0.24, momentum=0.6, nesterov=True, wd=0.0, normalize=True),
    ],
)
def test_muon_float32_steps_follow_the_float64_reference(settings):
    rng = np.random.default_rng(3)
    shapes = [(8, 3, 3, 3), (20, 6), (8,)]  # filters, a tall matrix, a vector
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4)]
    params = [nn.Parameter(p.copy()) for p in init]
    opt = optim.Muon(
        params, lr=settings["lr"], momentum=settings["momentum"], nesterov=settings["nesterov"],
        weight_decay=settings["wd"], normalize_weights=settings["normalize"],
    )  # fmt: skip
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.copy()
        opt.step()
    want = reference_muon(init, grads, **settings)
    for p, w, p0 in zip(params, want, init):
        assert p.data.dtype == np.float32
        np.testing.assert_allclose(p.data, w, rtol=2e-5, atol=2e-5)
        assert not np.allclose(p.data, p0, atol=1e-3)
    if settings["normalize"]:  # the filters' norm was fixed before the last step
        norm = np.linalg.norm(params[0].data)
        assert abs(norm - np.sqrt(8)) < settings["lr"] * 3


def test_muon_groups_plain_momentum_where_not_orthogonalised():
    """A group with orthogonalize=False takes SGD's (Nesterov) momentum step, with its
    coupled weight decay."""
    rng = np.random.default_rng(4)
    W0, b0 = rng.standard_normal((6, 4)), rng.standard_normal(4)
    X, y = rng.standard_normal((12, 6)), rng.integers(0, 4, 12)
    W, b = nn.Parameter(W0.copy()), nn.Parameter(b0.copy())
    W2, b2 = nn.Parameter(W0.copy()), nn.Parameter(b0.copy())
    opt = optim.Muon([{"params": [W], "orthogonalize": False, "weight_decay": 0.1},
                      {"params": [b], "lr": 0.3}], lr=0.1, momentum=0.85)  # fmt: skip
    sgd = optim.SGD([{"params": [W2], "weight_decay": 0.1}, {"params": [b2], "lr": 0.3}],
                    lr=0.1, momentum=0.85, nesterov=True)  # fmt: skip
    for _ in range(4):
        for o, (w, v) in ((opt, (W, b)), (sgd, (W2, b2))):
            o.zero_grad()
            F.cross_entropy(F.linear(X, w, v), y).backward()
            o.step()
    np.testing.assert_allclose(W.data, W2.data, rtol=1e-13)
    np.testing.assert_allclose(b.data, b2.data, rtol=1e-13)
    assert [opt.orthogonalized(i) for i in range(2)] == [False, False]
    assert optim.Muon([W, b]).orthogonalized(0) and not optim.Muon([W, b]).orthogonalized(1)


def test_muon_state_dict_resumes_exactly():
    rng = np.random.default_rng(5)
    init = [rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)]
    grads = [[rng.standard_normal(p.shape) for p in init] for _ in range(6)]

    def run(params, opt, steps):
        for step_grads in steps:
            for p, g in zip(params, step_grads):
                p.grad = g.copy()
            opt.step()

    full = [nn.Parameter(p.copy()) for p in init]
    run(full, optim.Muon(full, lr=0.1, normalize_weights=True), grads)
    half = [nn.Parameter(p.copy()) for p in init]
    opt = optim.Muon(half, lr=0.1, normalize_weights=True)
    run(half, opt, grads[:3])
    state = opt.state_dict()
    assert set(state) == {"t", "lr", "momentum_buffer.0", "momentum_buffer.1"}
    again = [nn.Parameter(p.data.copy()) for p in half]
    opt2 = optim.Muon(again, lr=0.5, normalize_weights=True)
    opt2.load_state_dict(state)
    run(again, opt2, grads[3:])
    for p, q in zip(again, full):
        np.testing.assert_array_equal(p.data, q.data)


def test_muon_errors():
    v, W = nn.Parameter(np.zeros(3)), nn.Parameter(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="orthogonalize=True but holds a vector"):
        optim.Muon([{"params": [W, v], "orthogonalize": True}])
    with pytest.raises(ValueError, match="momentum must be in"):
        optim.Muon([W], momentum=1.0)
    with pytest.raises(ValueError, match="ns_steps must be a positive int"):
        optim.Muon([W], ns_steps=0)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.Muon([W], momentum=0.0)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        optim.Muon([W], lr=float("nan"))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Muon([])
