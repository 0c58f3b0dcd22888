"""Lookahead: the slow/fast weight rule against a hand-written NumPy loop, the inner
optimizer's hyperparameters written through (schedules), exact resumption, errors."""

import numpy as np
import pytest

from chainrule import optim
from chainrule.autograd.engine import Tensor


def _quadratic_grads(params, targets):
    """Set .grad of each parameter to the gradient of 0.5 * ||p - target||^2."""
    for p, t in zip(params, targets):
        p.grad = p.data - t


def _make(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = [
        Tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in ((3, 4), (5,))
    ]
    targets = [rng.standard_normal(p.data.shape).astype(dtype) for p in params]
    return params, targets


def test_matches_hand_written_rule():
    params, targets = _make()
    start = [p.data.copy() for p in params]
    opt = optim.Lookahead(optim.SGD(params, lr=0.3, momentum=0.9, nesterov=True), k=3, alpha=0.4)
    for _ in range(10):
        _quadratic_grads(params, targets)
        opt.step()

    # the same in plain NumPy: Nesterov SGD on the fast weights, slow update every 3 steps
    fast = [s.copy() for s in start]
    slow = [s.copy() for s in start]
    bufs = [np.zeros_like(s) for s in start]
    for step in range(1, 11):
        for f, b, t in zip(fast, bufs, targets):
            g = f - t
            b *= 0.9
            b += g
            f -= 0.3 * (g + 0.9 * b)
        if step % 3 == 0:
            for f, s in zip(fast, slow):
                s += 0.4 * (f - s)
                f[...] = s
    for p, f in zip(params, fast):
        np.testing.assert_allclose(p.data, f, rtol=1e-12, atol=1e-12)


def test_k1_alpha1_is_the_inner_optimizer():
    a, targets = _make()
    b, _ = _make()
    plain = optim.Adam(a, lr=0.05)
    wrapped = optim.Lookahead(optim.Adam(b, lr=0.05), k=1, alpha=1.0)
    for _ in range(7):
        _quadratic_grads(a, targets)
        _quadratic_grads(b, targets)
        plain.step()
        wrapped.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)


def test_schedule_writes_through_to_the_inner_optimizer():
    params, _ = _make()
    inner = optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    opt = optim.Lookahead(inner, k=5)
    sched = optim.make_schedule("onecycle", opt, 20)
    for _ in range(6):
        sched.step()
    assert inner.lr == opt.lr
    assert inner.momentum == opt.momentum
    assert 0 < inner.lr < 0.1 and inner.momentum < 0.95


def test_state_dict_resumes_exactly():
    params, targets = _make(dtype=np.float32)
    opt = optim.Lookahead(optim.SGD(params, lr=0.1, momentum=0.9), k=4, alpha=0.5)
    for _ in range(6):
        _quadratic_grads(params, targets)
        opt.step()
    state = opt.state_dict()
    saved = [p.data.copy() for p in params]
    for _ in range(7):
        _quadratic_grads(params, targets)
        opt.step()
    expected = [p.data.copy() for p in params]

    fresh, _ = _make(dtype=np.float32)
    for p, s in zip(fresh, saved):
        p.data[...] = s
    resumed = optim.Lookahead(optim.SGD(fresh, lr=0.1, momentum=0.9), k=4, alpha=0.5)
    resumed.load_state_dict(state)
    for _ in range(7):
        _quadratic_grads(fresh, targets)
        resumed.step()
    for p, e in zip(fresh, expected):
        np.testing.assert_array_equal(p.data, e)


def test_bad_arguments_and_state_are_named():
    params, _ = _make()
    sgd = optim.SGD(params, lr=0.1)
    with pytest.raises(ValueError, match="k must be a positive int"):
        optim.Lookahead(sgd, k=0)
    with pytest.raises(ValueError, match="alpha"):
        optim.Lookahead(sgd, alpha=0.0)
    with pytest.raises(TypeError, match="wraps a chainrule Optimizer"):
        optim.Lookahead(object())
    opt = optim.Lookahead(sgd)
    state = opt.state_dict()
    del state["slow.1"]
    with pytest.raises(ValueError, match="missing key 'slow.1'"):
        opt.load_state_dict(state)
    state = opt.state_dict()
    state["slow.0"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"slow.0 has shape \(2, 2\)"):
        opt.load_state_dict(state)


def test_ramp_pulls_less_early_on():
    """With ramp_steps, the pull at the sync after t inner steps is
    1 - (1 - alpha) * min(1, t / T)^3: against a hand-written loop."""
    params, targets = _make(2)
    start = [p.data.copy() for p in params]
    opt = optim.Lookahead(optim.SGD(params, lr=0.2), k=2, alpha=0.3, ramp_steps=8)
    for _ in range(12):
        _quadratic_grads(params, targets)
        opt.step()
    fast = [s.copy() for s in start]
    slow = [s.copy() for s in start]
    pulls = []
    for step in range(1, 13):
        for f, t in zip(fast, targets):
            f -= 0.2 * (f - t)
        if step % 2 == 0:
            a = 1 - 0.7 * min(1.0, step / 8) ** 3
            pulls.append(a)
            for f, s in zip(fast, slow):
                s += a * (f - s)
                f[...] = s
    for p, f in zip(params, fast):
        np.testing.assert_allclose(p.data, f, rtol=1e-12, atol=1e-12)
    assert pulls[0] > 0.98 and pulls[-1] == pytest.approx(0.3) == opt.current_alpha()
    # without averaging early on, the first syncs change nothing: plain SGD so far
    p2, _ = _make(2)
    opt2 = optim.Lookahead(optim.SGD(p2, lr=0.2), k=2, alpha=0.3, ramp_steps=10**9)
    p3, _ = _make(2)
    plain = optim.SGD(p3, lr=0.2)
    for _ in range(6):
        _quadratic_grads(p2, targets)
        _quadratic_grads(p3, targets)
        opt2.step()
        plain.step()
    for a, b in zip(p2, p3):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-9)
    with pytest.raises(ValueError, match="ramp_steps"):
        optim.Lookahead(optim.SGD(p2, lr=0.2), ramp_steps=0)
