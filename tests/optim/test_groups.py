"""Parameter groups: per-group settings equal separate optimizers, agree with PyTorch's
groups (live where installed), scale with the schedules, resume exactly, refuse bad
groups; the groups of a network (64x learning rate for batch-norm shifts)."""

import numpy as np
import pytest

import chainrule.nn.functional as F
from chainrule import nn, optim


def problem(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((6, 4)),
        rng.standard_normal(4),
        rng.standard_normal((12, 6)),
        rng.integers(0, 4, 12),
    )


def grads_of(W, b, X, y):
    """Set W.grad and b.grad from the loss (chainrule)."""
    W.grad = b.grad = None
    F.cross_entropy(F.linear(X, W, b), y).backward()


# Each case: (class, optimizer kwargs, group-0 overrides, group-1 overrides, torch class).
CASES = {
    "sgd": (optim.SGD, dict(lr=0.2, momentum=0.9, nesterov=True, weight_decay=0.01),
            {}, {"lr": 1.5, "momentum": 0.5, "weight_decay": 0.1}, "SGD"),
    "sgd_plain_and_momentum": (optim.SGD, dict(lr=0.3), {"momentum": 0.9}, {"lr": 0.05}, "SGD"),
    "rmsprop": (optim.RMSProp, dict(lr=0.01, alpha=0.9), {"eps": 1e-3},
                {"lr": 0.03, "alpha": 0.5}, "RMSprop"),
    "adam": (optim.Adam, dict(lr=0.05), {"betas": (0.8, 0.99)},
             {"lr": 0.2, "weight_decay": 0.3}, "Adam"),
    "adamw": (optim.AdamW, dict(lr=0.05, weight_decay=0.1), {}, {"lr": 0.01, "weight_decay": 0.5},
              "AdamW"),
}  # fmt: skip


def run_grouped(case, steps=5):
    cls, kwargs, g0, g1, _ = CASES[case]
    W0, b0, X, y = problem()
    W, b = nn.Parameter(W0.copy()), nn.Parameter(b0.copy())
    opt = cls([{"params": [W], **g0}, {"params": [b], **g1}], **kwargs)
    for _ in range(steps):
        grads_of(W, b, X, y)
        opt.step()
    return W.data, b.data, opt


@pytest.mark.parametrize("case", sorted(CASES))
def test_groups_equal_one_optimizer_per_group(case):
    """Two groups with their own settings = two optimizers, each built with its group's
    settings as its arguments, stepped on the same gradients."""
    cls, kwargs, g0, g1, _ = CASES[case]
    W, b, _ = run_grouped(case)
    W0, b0, X, y = problem()
    W2, b2 = nn.Parameter(W0.copy()), nn.Parameter(b0.copy())
    opts = [cls([W2], **{**kwargs, **g0}), cls([b2], **{**kwargs, **g1})]
    for _ in range(5):
        grads_of(W2, b2, X, y)
        for o in opts:
            o.step()
    np.testing.assert_array_equal(W, W2.data)
    np.testing.assert_array_equal(b, b2.data)
    assert not np.allclose(b, b0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_groups_match_torch(case):
    torch = pytest.importorskip("torch")
    cls, kwargs, g0, g1, tname = CASES[case]
    W, b, opt = run_grouped(case)
    W0, b0, X, y = problem()
    tW = torch.tensor(W0.copy(), requires_grad=True)
    tb = torch.tensor(b0.copy(), requires_grad=True)
    topt = getattr(torch.optim, tname)([{"params": [tW], **g0}, {"params": [tb], **g1}], **kwargs)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(5):
        topt.zero_grad()
        torch.nn.functional.cross_entropy(Xt @ tW + tb, yt).backward()
        topt.step()
    np.testing.assert_allclose(W, tW.detach().numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(b, tb.detach().numpy(), rtol=1e-11, atol=1e-13)
    # every setting of every group, as PyTorch fills them in
    for ours, theirs in zip(opt.param_groups, topt.param_groups):
        for key in set(ours) - {"params"}:
            want = theirs[key]
            assert ours[key] == (tuple(want) if isinstance(want, tuple) else want), key


def test_param_groups_are_filled_in_and_settings_set_every_group():
    a, b = nn.Parameter(np.zeros(3)), nn.Parameter(np.zeros(2))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.8, "momentum": 0.5}], lr=0.2,
                    momentum=0.9)  # fmt: skip
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.8]
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.5]
    assert opt.param_groups[0]["params"] == [a] and opt.params == [a, b]
    opt.lr = 0.05  # a schedule's step: each group keeps its ratio to the optimizer's rate
    assert opt.lr == 0.05
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.2], rel=1e-15)
    opt.momentum = 0.85  # a one-cycle schedule's: every group
    assert [g["momentum"] for g in opt.param_groups] == [0.85, 0.85]
    with pytest.raises(ValueError, match="SGD: momentum"):
        opt.momentum = -1.0
    assert opt.weight_decays == [0.0, 0.0]


def test_schedules_scale_every_group_like_torch():
    torch = pytest.importorskip("torch")
    a, b = nn.Parameter(np.zeros(3)), nn.Parameter(np.zeros(2))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 6.4}], lr=0.1, momentum=0.9)
    sched = optim.CosineAnnealingLR(opt, T_max=10)
    ta, tb = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([{"params": [ta]}, {"params": [tb], "lr": 6.4}], lr=0.1, momentum=0.9)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=10)
    for _ in range(11):  # up to T_max (after it PyTorch's closed and recursive forms part)
        ours = [g["lr"] for g in opt.param_groups]
        theirs = [g["lr"] for g in topt.param_groups]
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
        topt.step()
        sched.step()
        tsched.step()


def test_grouped_state_dict_resumes_exactly():
    W0, b0, X, y = problem(3)

    def make(W, b):
        groups = [{"params": [W], "weight_decay": 0.1}, {"params": [b], "lr": 0.4}]
        opt = optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
        return opt, optim.CosineAnnealingLR(opt, T_max=8)

    def train(opt, sched, W, b, steps):
        for _ in range(steps):
            grads_of(W, b, X, y)
            opt.step()
            sched.step()

    W, b = nn.Parameter(W0.copy()), nn.Parameter(b0.copy())
    opt, sched = make(W, b)
    train(opt, sched, W, b, 8)

    W2, b2 = nn.Parameter(W0.copy()), nn.Parameter(b0.copy())
    opt2, sched2 = make(W2, b2)
    train(opt2, sched2, W2, b2, 3)
    state, sstate = opt2.state_dict(), sched2.state_dict()
    # the state format of one group: the optimizer's rate, t, the buffers by parameter
    assert set(state) == {"t", "lr", "momentum_buffer.0", "momentum_buffer.1"}
    W3, b3 = nn.Parameter(W2.data.copy()), nn.Parameter(b2.data.copy())
    opt3, sched3 = make(W3, b3)
    opt3.load_state_dict(state)
    sched3.load_state_dict(sstate)
    assert [g["lr"] for g in opt3.param_groups] == [g["lr"] for g in opt2.param_groups]
    train(opt3, sched3, W3, b3, 5)
    np.testing.assert_array_equal(W3.data, W.data)
    np.testing.assert_array_equal(b3.data, b.data)


def test_bad_groups():
    p, q = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="group 1 .*'lr', 'weight_decay', 'momentum'"):
        optim.SGD([{"params": [p]}, {"params": [q], "beta": 0.9}], lr=0.1)
    with pytest.raises(ValueError, match="SGD: lr must be"):
        optim.SGD([{"params": [p], "lr": -0.1}], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([{"params": [p], "momentum": 0.0}], lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="optimizer's lr is 0"):
        optim.SGD([{"params": [p], "lr": 0.1}], lr=0.0)
    with pytest.raises(ValueError, match="beta2"):
        optim.Adam([{"params": [p], "betas": (0.9, 1.5)}])


def test_network_groups_train_shifts_faster():
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2))
    groups = optim.network_groups(net, lr=0.1, weight_decay=5e-4, bias_lr_factor=64)
    assert [p.ndim for p in groups[0]["params"]] == [2, 2]
    assert [p.ndim for p in groups[1]["params"]] == [1, 1, 1]
    assert groups[0]["lr"] == 0.1 and groups[1]["lr"] == pytest.approx(6.4)
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0
    decayed = optim.network_groups(net, 0.1, 5e-4, bias_lr_factor=64, decay_biases=True)
    # the same shrinking per step: rate x decay
    assert decayed[1]["lr"] * decayed[1]["weight_decay"] == pytest.approx(0.1 * 5e-4)
    opt = optim.SGD(groups, lr=0.1, momentum=0.9)
    for p in net.parameters():
        p.grad = np.ones_like(p.data)
    before = [p.data.copy() for p in net.parameters()]
    opt.step()
    moved = [np.abs(p.data - b).max() for p, b in zip(net.parameters(), before)]
    # first step with momentum: lr * g (+ decay on the matrices); the batch-norm scale
    # and shift and the Linear bias move 64 times as far as the weights
    assert [p.ndim for p in net.parameters()] == [2, 1, 1, 2, 1]
    assert moved[1] == moved[2] == moved[4] == pytest.approx(6.4, rel=1e-6)
    assert moved[0] == pytest.approx(0.1, rel=1e-2) and moved[3] == pytest.approx(0.1, rel=1e-2)
    with pytest.raises(ValueError, match="bias_lr_factor"):
        optim.network_groups(net, 0.1, 0.0, bias_lr_factor=0)
