"""Optimizers: trajectories against torch.optim (live where PyTorch is installed, and
against its recorded values on every run), hand-computed first steps, in-place float32
updates, state dicts, gradient clipping, errors."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn, optim
from chainrule.optim.optimizers import CHUNK

# ----------------------------------------------------------------- a small problem


def make_problem(seed=0, d=6, m=4, n=10):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((d, m)),
        rng.standard_normal(m),
        rng.standard_normal((n, d)),
        rng.integers(0, m, n),
    )


def run_ours(make_opt, steps=6, seed=0, groups=False):
    W0, b0, X, y = make_problem(seed)
    W, b = nn.Parameter(W0.copy()), nn.Parameter(b0.copy())
    params = [{"params": [W]}, {"params": [b], "weight_decay": 0.0}] if groups else [W, b]
    opt = make_opt(params)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(F.linear(X, W, b), y).backward()
        opt.step()
    return W.data, b.data


def run_torch(make_opt, steps=6, seed=0, groups=False):
    torch = pytest.importorskip("torch")
    W0, b0, X, y = make_problem(seed)
    W = torch.tensor(W0.copy(), requires_grad=True)
    b = torch.tensor(b0.copy(), requires_grad=True)
    params = [{"params": [W]}, {"params": [b], "weight_decay": 0.0}] if groups else [W, b]
    opt = make_opt(params)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(Xt @ W + b, yt).backward()
        opt.step()
    return W.detach().numpy(), b.detach().numpy()


CASES = {
    "sgd": (lambda p: optim.SGD(p, 0.3), "SGD", dict(lr=0.3)),
    "sgd_wd": (
        lambda p: optim.SGD(p, 0.3, weight_decay=0.1),
        "SGD",
        dict(lr=0.3, weight_decay=0.1),
    ),
    "momentum": (lambda p: optim.SGD(p, 0.1, momentum=0.9), "SGD", dict(lr=0.1, momentum=0.9)),
    "nesterov": (
        lambda p: optim.SGD(p, 0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        "SGD",
        dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    "rmsprop": (
        lambda p: optim.RMSProp(p, 0.01, alpha=0.9, weight_decay=0.05),
        "RMSprop",
        dict(lr=0.01, alpha=0.9, weight_decay=0.05),
    ),
    "adam": (lambda p: optim.Adam(p, 0.05), "Adam", dict(lr=0.05)),
    "adam_l2": (
        lambda p: optim.Adam(p, 0.05, betas=(0.8, 0.99), weight_decay=0.1),
        "Adam",
        dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1),
    ),
    "adamw": (
        lambda p: optim.AdamW(p, 0.05, weight_decay=0.2),
        "AdamW",
        dict(lr=0.05, weight_decay=0.2),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("groups", [False, True])
def test_trajectory_matches_torch(name, groups):
    torch = pytest.importorskip("torch")
    ours, tname, kwargs = CASES[name]
    W, b = run_ours(ours, groups=groups)
    tW, tb = run_torch(lambda p: getattr(torch.optim, tname)(p, **kwargs), groups=groups)
    np.testing.assert_allclose(W, tW, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(b, tb, rtol=1e-11, atol=1e-13)
    W0, b0, _, _ = make_problem()
    assert not np.allclose(W, W0)  # the parameters did move


def test_large_parameters_cross_chunk_boundaries_like_torch():
    torch = pytest.importorskip("torch")
    n = 2 * CHUNK + 123
    rng = np.random.default_rng(0)
    p0, grads = rng.standard_normal(n), rng.standard_normal((3, n))
    for make, tmake in [
        (
            lambda p: optim.AdamW(p, 1e-2, weight_decay=0.1),
            lambda p: torch.optim.AdamW(p, 1e-2, weight_decay=0.1),
        ),
        (
            lambda p: optim.SGD(p, 0.1, momentum=0.9, weight_decay=0.1),
            lambda p: torch.optim.SGD(p, 0.1, momentum=0.9, weight_decay=0.1),
        ),
        (lambda p: optim.RMSProp(p, 1e-2), lambda p: torch.optim.RMSprop(p, 1e-2)),
    ]:
        p = nn.Parameter(p0.copy())
        tp = torch.tensor(p0.copy(), requires_grad=True)
        opt, topt = make([p]), tmake([tp])
        for g in grads:
            p.grad = g
            tp.grad = torch.tensor(g)
            opt.step()
            topt.step()
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-11, atol=1e-13)


# ----------------------------------------------------------------- recorded PyTorch values
# tests/fixtures/record_torch_references.py ran the comparisons above in PyTorch once and
# stored inputs and results; these tests check chainrule against them without PyTorch.

TORCH_OPTIMIZERS = {"SGD": optim.SGD, "RMSprop": optim.RMSProp, "Adam": optim.Adam}
TORCH_OPTIMIZERS["AdamW"] = optim.AdamW


@pytest.fixture(scope="module")
def recorded():
    path = Path(__file__).resolve().parents[1] / "fixtures" / "torch_optimizers.npz"
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def ours_trajectory(make_opt, W0, b0, X, y, steps, groups):
    """Parameters after each of `steps` updates: W (steps, d, m), b (steps, m)."""
    W, b = nn.Parameter(W0.copy()), nn.Parameter(b0.copy())
    params = [{"params": [W]}, {"params": [b], "weight_decay": 0.0}] if groups else [W, b]
    opt = make_opt(params)
    Ws, bs = [], []
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(F.linear(X, W, b), y).backward()
        opt.step()
        Ws.append(W.data.copy())
        bs.append(b.data.copy())
    return np.stack(Ws), np.stack(bs)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("groups", [False, True])
def test_trajectory_matches_recorded_torch(recorded, name, groups):
    settings = json.loads(str(recorded["settings"]))
    ours, tname, kwargs = CASES[name]
    # the recording used the same optimizer settings as the live comparison
    assert settings["trajectory"][name] == json.loads(json.dumps([tname, kwargs]))
    problem = [recorded[f"problem.{k}"] for k in ("W0", "b0", "X", "y")]
    W, b = ours_trajectory(ours, *problem, settings["steps"], groups)
    key = f"trajectory.{name}.groups={groups}"
    np.testing.assert_allclose(W, recorded[f"{key}.W"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(b, recorded[f"{key}.b"], rtol=1e-11, atol=1e-13)
    assert not np.allclose(W[-1], problem[0])  # the parameters did move


def test_large_parameters_cross_chunk_boundaries_recorded_torch(recorded):
    settings = json.loads(str(recorded["settings"]))["chunk"]
    n = settings["n"]
    assert n > 2 * CHUNK, "the recorded vector no longer spans three chunks: re-record"
    rng = np.random.default_rng(0)
    p0, grads = rng.standard_normal(n), rng.standard_normal((3, n))
    # the recording stored the inputs' first entries: a changed NumPy stream shows here
    np.testing.assert_array_equal(p0[:16], recorded["chunk.p0_head"])
    np.testing.assert_array_equal(grads[:, :16], recorded["chunk.grads_head"])
    index = recorded["chunk.index"]
    assert sorted(settings["cases"]) == ["adamw", "rmsprop", "sgd"]
    for name, (tname, kwargs) in settings["cases"].items():
        p = nn.Parameter(p0.copy())
        opt = TORCH_OPTIMIZERS[tname]([p], **kwargs)
        for g in grads:
            p.grad = g
            opt.step()
        want = recorded[f"chunk.{name}.sample"]
        np.testing.assert_allclose(p.data[index], want, rtol=1e-11, atol=1e-13, err_msg=name)
        sum_sq = float(recorded[f"chunk.{name}.sum_of_squares"])
        assert np.sum(p.data * p.data) == pytest.approx(sum_sq, rel=1e-12), name


def test_hand_computed_first_steps():
    g = np.array([0.5, -2.0, 0.0, 4.0])
    p0 = np.array([1.0, 1.0, 1.0, 1.0])

    def first_step(opt_cls, **kw):
        p = nn.Parameter(p0.copy())
        p.grad = g.copy()
        opt_cls([p], **kw).step()
        return p.data

    # SGD: p - lr g; momentum starts from zero, so the first step is plain SGD.
    np.testing.assert_allclose(first_step(optim.SGD, lr=0.1), p0 - 0.1 * g)
    np.testing.assert_allclose(first_step(optim.SGD, lr=0.1, momentum=0.9), p0 - 0.1 * g)
    # Nesterov: g + mu * b with b = g.
    np.testing.assert_allclose(
        first_step(optim.SGD, lr=0.1, momentum=0.9, nesterov=True), p0 - 0.1 * 1.9 * g
    )
    # RMSProp: s = (1 - alpha) g^2.
    s = 0.01 * g**2
    np.testing.assert_allclose(
        first_step(optim.RMSProp, lr=0.01, alpha=0.99, eps=1e-8),
        p0 - 0.01 * g / (np.sqrt(s) + 1e-8),
    )
    # Adam, t = 1: bias correction makes m_hat = g, v_hat = g^2: a step of ~lr * sign(g).
    expected = p0 - 0.1 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(first_step(optim.Adam, lr=0.1), expected, rtol=1e-12)
    np.testing.assert_allclose(expected, [0.9, 1.1, 1.0, 0.9], rtol=1e-7)
    # AdamW: decay p by (1 - lr wd) first.
    np.testing.assert_allclose(
        first_step(optim.AdamW, lr=0.1, weight_decay=0.5),
        p0 * (1 - 0.05) - 0.1 * g / (np.abs(g) + 1e-8),
        rtol=1e-12,
    )


def test_adam_increments_t_before_the_update():
    p = nn.Parameter(np.zeros(3))
    opt = optim.Adam([p], lr=1.0)
    assert opt.t == 0
    p.grad = np.ones(3)
    opt.step()
    assert opt.t == 1
    # with t = 0 the bias correction would divide by zero; t = 1 gives a step of lr
    np.testing.assert_allclose(p.data, -1.0, rtol=1e-7)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, 0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: optim.RMSProp(p, 1e-3, weight_decay=1e-3),
        lambda p: optim.Adam(p, 1e-3, weight_decay=1e-3),
        lambda p: optim.AdamW(p, 1e-3),
    ],
)
def test_float32_in_place_with_preallocated_state(make):
    net = nn.Sequential(nn.Linear(8, 5, random_state=0), nn.ReLU(), nn.Linear(5, 3))
    x = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    opt = make(net)  # a Module is accepted as well as its parameters
    datas = [p.data for p in net.parameters()]
    state_ids = None
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(x), np.arange(6) % 3).backward()
        opt.step()
        ids = [id(b) for bufs in opt.state.values() for b in bufs]
        assert state_ids is None or ids == state_ids
        state_ids = ids
    for p, d in zip(net.parameters(), datas):
        assert p.data is d and p.data.dtype == np.float32
    for bufs in opt.state.values():
        assert all(b is None or b.dtype == np.float32 for b in bufs)


def test_parameters_without_gradient_are_skipped():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = np.ones(2)
    opt.step()
    np.testing.assert_array_equal(b.data, 1.0)
    assert np.all(a.data < 1.0)
    opt.zero_grad()
    assert a.grad is None


def test_weight_decay_groups_decay_matrices_only():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    groups = optim.weight_decay_groups(net, 0.05)
    assert [p.ndim for p in groups[0]["params"]] == [2, 2]
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    opt = optim.AdamW(groups, lr=0.1)
    assert opt.weight_decays == [0.05, 0.05, 0.0, 0.0, 0.0, 0.0]
    # With zero gradients, only decayed parameters change.
    for p in net.parameters():
        p.grad = np.zeros_like(p.data)
    before = [p.data.copy() for p in net.parameters()]
    opt.step()
    changed = [not np.array_equal(b, p.data) for b, p in zip(before, net.parameters())]
    assert changed == [p.ndim == 2 for p in net.parameters()]


def test_state_dict_resume_gives_the_same_trajectory():
    W0, b0, X, y = make_problem(3)

    def train(opt, W, b, steps):
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(F.linear(X, W, b), y).backward()
            opt.step()

    W, b = nn.Parameter(W0.copy()), nn.Parameter(b0.copy())
    opt = optim.Adam([W, b], lr=0.05)
    train(opt, W, b, 6)

    W2, b2 = nn.Parameter(W0.copy()), nn.Parameter(b0.copy())
    opt2 = optim.Adam([W2, b2], lr=0.05)
    train(opt2, W2, b2, 3)
    buf = io.BytesIO()
    np.savez(buf, **opt2.state_dict())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    assert set(state) == {"t", "lr", "exp_avg.0", "exp_avg.1", "exp_avg_sq.0", "exp_avg_sq.1"}
    W3, b3 = nn.Parameter(W2.data.copy()), nn.Parameter(b2.data.copy())
    opt3 = optim.Adam([W3, b3], lr=0.5)
    opt3.load_state_dict(state)
    assert opt3.t == 3 and opt3.lr == 0.05
    train(opt3, W3, b3, 3)
    np.testing.assert_array_equal(W3.data, W.data)
    np.testing.assert_array_equal(b3.data, b.data)


def test_load_state_dict_errors():
    p = nn.Parameter(np.zeros((2, 3)))
    opt = optim.SGD([p], 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="missing key 't'"):
        opt.load_state_dict({"lr": np.array(0.1)})
    with pytest.raises(ValueError, match="unexpected key 'exp_avg.0'"):
        opt.load_state_dict({"t": 1, "lr": 0.1, "exp_avg.0": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        opt.load_state_dict({"t": 1, "lr": 0.1, "momentum_buffer.0": np.zeros((3, 2))})


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((5, 4)), rng.standard_normal(4), rng.standard_normal((3,))]
    for max_norm, norm_type in [(1.0, 2.0), (100.0, 2.0), (0.5, math.inf)]:
        ps = [nn.Parameter(np.zeros_like(g)) for g in grads]
        tps = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
        for p, tp, g in zip(ps, tps, grads):
            p.grad = g.copy()
            tp.grad = torch.tensor(g)
        total = optim.clip_grad_norm(ps, max_norm, norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type)
        assert total == pytest.approx(float(ttotal), rel=1e-12)
        for p, tp in zip(ps, tps):
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12)
    # below the threshold nothing changes; the norm is over all gradients together
    p = nn.Parameter(np.zeros(2))
    p.grad = np.array([3.0, 4.0])
    assert optim.clip_grad_norm([p], 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(p.grad, [3.0, 4.0])
    optim.clip_grad_norm([p], 1.0)
    assert np.linalg.norm(p.grad) == pytest.approx(1.0, rel=1e-5)
    p.grad = np.array([np.nan, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        optim.clip_grad_norm([p], 1.0, error_if_nonfinite=True)


def test_clip_grad_norm_matches_recorded_torch(recorded):
    grads = [recorded[f"clip.grad{k}"] for k in range(3)]
    for i, (max_norm, norm_type) in enumerate(recorded["clip.cases"]):
        ps = [nn.Parameter(np.zeros_like(g)) for g in grads]
        for p, g in zip(ps, grads):
            p.grad = g.copy()
        total = optim.clip_grad_norm(ps, max_norm, norm_type)
        assert total == pytest.approx(float(recorded[f"clip.{i}.total"]), rel=1e-12)
        for k, p in enumerate(ps):
            np.testing.assert_allclose(p.grad, recorded[f"clip.{i}.grad{k}"], rtol=1e-12)


def test_optimizer_errors():
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([p], lr=-1.0)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(0.9,))
    with pytest.raises(ValueError, match="beta2"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], 0.1, nesterov=True)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], 0.1)
    with pytest.raises(TypeError, match="Parameters"):
        optim.SGD([np.zeros(2)], 0.1)
    with pytest.raises(ValueError, match="does not require grad"):
        optim.SGD([cr.Tensor(np.zeros(2))], 0.1)
    with pytest.raises(ValueError, match="'weight_decay'.*got keys \\['betas', 'params'\\]"):
        optim.SGD([{"params": [p], "betas": (0.9, 0.9)}], 0.1)
    with pytest.raises(TypeError, match="one Tensor"):
        optim.SGD(p, 0.1)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.AdamW(p, 1e-2, weight_decay=0.1),
        lambda p: optim.SGD(p, 0.1, momentum=0.9, nesterov=True),
        lambda p: optim.RMSProp(p, 1e-2, weight_decay=0.1),
    ],
)
def test_threaded_update_equals_serial(make):
    rng = np.random.default_rng(0)
    shapes = [(700, 1000), (1000,), (300, 7)]  # enough elements to use the threads
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(2)]
    results = []
    for n_threads in (1, 2, 3):
        optim.set_num_threads(n_threads)
        try:
            ps = [nn.Parameter(a.copy()) for a in init]
            opt = make(ps)
            for gs in grads:
                for p, g in zip(ps, gs):
                    p.grad = g.copy()
                opt.step()
            results.append([p.data for p in ps])
        finally:
            optim.set_num_threads(1)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
    assert optim.get_num_threads() == 1
    with pytest.raises(ValueError, match="positive int"):
        optim.set_num_threads(0)


# ----------------------------------------------------------------- one weight-decay step


def reference_trajectory(name, kw, p0s, wds, grads):
    """Each update rule with its weight decay written out in float64 NumPy, one formula
    per line as in torch.optim's documentation: the behaviour every optimizer had before
    weight decay became one shared step. ``wds``: weight decay of each parameter."""
    ps = [p.astype(np.float64) for p in p0s]
    state = [{} for _ in ps]
    lr = kw["lr"]
    for t, gs in enumerate(grads, start=1):
        for i, (p, g) in enumerate(zip(ps, gs)):
            g, wd, st = g.astype(np.float64), wds[i], state[i]
            if name == "adamw":
                p *= 1 - lr * wd
            else:
                g = g + wd * p
            if name in ("sgd", "momentum", "nesterov"):
                if name != "sgd":
                    mu = kw["momentum"]
                    buf = st["buf"] = mu * st["buf"] + g if "buf" in st else g.copy()
                    g = g + mu * buf if name == "nesterov" else buf
                p -= lr * g
            elif name == "rmsprop":
                a = kw.get("alpha", 0.99)
                st["sq"] = a * st.get("sq", 0.0) + (1 - a) * g * g
                p -= lr * g / (np.sqrt(st["sq"]) + 1e-8)
            else:
                b1, b2 = kw.get("betas", (0.9, 0.999))
                st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
                st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
                m_hat, v_hat = st["m"] / (1 - b1**t), st["v"] / (1 - b2**t)
                p -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return ps


WEIGHT_DECAY_CASES = {
    "sgd": (optim.SGD, dict(lr=0.3, weight_decay=0.1)),
    "momentum": (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.05)),
    "nesterov": (optim.SGD, dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.02)),
    "rmsprop": (optim.RMSProp, dict(lr=0.01, alpha=0.9, weight_decay=0.05)),
    "adam": (optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1)),
    "adamw": (optim.AdamW, dict(lr=0.05, weight_decay=0.2)),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(WEIGHT_DECAY_CASES))
def test_weight_decay_step_gives_each_rules_own_formula(name, threads):
    # A matrix over several chunks (decayed), a bias (not decayed), float64 so that the
    # comparison is to rounding; the decay is coupled (L2) for all but AdamW.
    cls, kw = WEIGHT_DECAY_CASES[name]
    rng = np.random.default_rng(1)
    p0s = [rng.standard_normal((3, CHUNK)), rng.standard_normal(7)]
    grads = [[rng.standard_normal(p.shape) for p in p0s] for _ in range(4)]
    ps = [nn.Parameter(p.copy()) for p in p0s]
    optim.set_num_threads(threads)
    try:
        opt = cls([{"params": ps[:1]}, {"params": ps[1:], "weight_decay": 0.0}], **kw)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = g.copy()
            opt.step()
    finally:
        optim.set_num_threads(1)
    wd = kw["weight_decay"]
    want = reference_trajectory(name, kw, p0s, [wd, 0.0], grads)
    for p, w in zip(ps, want):
        np.testing.assert_allclose(p.data, w, rtol=1e-12, atol=1e-14)
    undecayed = reference_trajectory(name, kw, p0s, [0.0, 0.0], grads)
    assert not np.allclose(ps[0].data, undecayed[0], rtol=1e-9, atol=0)  # decay mattered


# ----------------------------------------------------------------- optimizer factory


def test_make_optimizer_by_name():
    def params():
        return [nn.Parameter(np.zeros((2, 2))), nn.Parameter(np.zeros(2))]

    expected = {
        "sgd": (optim.SGD, {"momentum": 0.0, "nesterov": False}),
        "momentum": (optim.SGD, {"momentum": 0.7, "nesterov": False}),
        "nesterov": (optim.SGD, {"momentum": 0.7, "nesterov": True}),
        "rmsprop": (optim.RMSProp, {"alpha": 0.99}),
        "adam": (optim.Adam, {"betas": (0.9, 0.999)}),
        "adamw": (optim.AdamW, {"betas": (0.9, 0.999)}),
        "muon": (optim.Muon, {"momentum": 0.7, "nesterov": True}),
    }
    assert set(expected) == set(optim.OPTIMIZERS)
    for name, (cls, attrs) in expected.items():
        opt = optim.make_optimizer(name, params(), 0.02, momentum=0.7, weight_decay=0.1)
        assert type(opt) is cls and opt.lr == 0.02, name
        assert opt.weight_decays == [0.1, 0.1], name
        for k, v in attrs.items():
            assert getattr(opt, k) == v, (name, k)
    # Groups keep their own decay; the factory's applies to the others.
    net = nn.Sequential(nn.Linear(3, 2, random_state=0))
    opt = optim.make_optimizer("adamw", optim.weight_decay_groups(net, 0.05), 1e-3)
    assert opt.weight_decays == [0.05, 0.0]
    with pytest.raises(ValueError, match="optimizer must be one of sgd, momentum"):
        optim.make_optimizer("lbfgs", params(), 0.1)
    with pytest.raises(ValueError, match="momentum must be in"):
        optim.make_optimizer("nesterov", params(), 0.1, momentum=1.0)
