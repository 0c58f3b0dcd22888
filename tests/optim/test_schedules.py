"""Learning-rate schedules: values against torch.optim.lr_scheduler (live where PyTorch
is installed, and against its recorded values on every run), closed forms, resuming from
a state dict, errors."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from chainrule import nn, optim


def make_opt(lr=0.1, cls=optim.SGD, **kw):
    return cls([nn.Parameter(np.zeros(3))], lr=lr, **kw)


def ours_values(sched, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(sched.optimizer.lr)
        sched.step()
    return lrs


def torch_values(make_sched, steps, lr=0.1, opt="SGD", **opt_kw):
    torch = pytest.importorskip("torch")
    p = torch.zeros(3, requires_grad=True)
    o = getattr(torch.optim, opt)([p], lr=lr, **opt_kw)
    s = make_sched(o)
    lrs, moms = [], []
    for _ in range(steps):
        g = o.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["betas"][0] if "betas" in g else g.get("momentum"))
        o.step()
        s.step()
    return lrs, moms


def test_schedules_match_torch():
    torch = pytest.importorskip("torch")
    S = torch.optim.lr_scheduler
    cases = [
        (lambda o: optim.ExponentialLR(o, 0.9), lambda o: S.ExponentialLR(o, 0.9), 12),
        (lambda o: optim.StepLR(o, 4, 0.5), lambda o: S.StepLR(o, 4, 0.5), 13),
        (
            lambda o: optim.CosineAnnealingLR(o, 10, eta_min=0.01),
            lambda o: S.CosineAnnealingLR(o, 10, eta_min=0.01),
            11,
        ),
        (
            lambda o: optim.LinearWarmup(o, 5, start_factor=0.2),
            lambda o: S.LinearLR(o, start_factor=0.2, total_iters=5),
            9,
        ),
    ]
    for ours, theirs, steps in cases:
        got = ours_values(ours(make_opt()), steps)
        want, _ = torch_values(theirs, steps)
        np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize(
    "opt_cls, torch_name, kw",
    [(optim.Adam, "Adam", {}), (optim.AdamW, "AdamW", {}), (optim.SGD, "SGD", {"momentum": 0.9})],
)
def test_one_cycle_matches_torch_including_momentum(opt_cls, torch_name, kw):
    torch = pytest.importorskip("torch")
    total = 23
    opt = make_opt(0.01, opt_cls, **kw)
    sched = optim.OneCycleLR(opt, max_lr=0.05, total_steps=total, pct_start=0.25)
    lrs, moms = [], []
    for _ in range(total):
        lrs.append(opt.lr)
        moms.append(opt.betas[0] if hasattr(opt, "betas") else opt.momentum)
        sched.step()
    want_lr, want_mom = torch_values(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o, max_lr=0.05, total_steps=total, pct_start=0.25
        ),
        total,
        lr=0.01,
        opt=torch_name,
        **kw,
    )
    np.testing.assert_allclose(lrs, want_lr, rtol=1e-10)
    np.testing.assert_allclose(moms, want_mom, rtol=1e-10)


# ----------------------------------------------------------------- recorded PyTorch values
# tests/fixtures/record_torch_references.py ran PyTorch's schedulers once; the settings
# stored with the values build the same schedules here.


@pytest.fixture(scope="module")
def recorded():
    path = Path(__file__).resolve().parents[1] / "fixtures" / "torch_schedules.npz"
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def ours_from_torch_settings(opt, torch_name, kwargs):
    """Our schedule for a torch.optim.lr_scheduler name and its keyword arguments."""
    kwargs = dict(kwargs)
    if torch_name == "LinearLR":
        return optim.LinearWarmup(opt, kwargs.pop("total_iters"), **kwargs)
    return getattr(optim, torch_name)(opt, **kwargs)


def test_schedules_match_recorded_torch(recorded):
    cases = json.loads(str(recorded["settings"]))["schedules"]
    assert sorted(cases) == ["cosine", "exponential", "step", "warmup"]
    for name, (torch_name, kwargs, steps) in cases.items():
        got = ours_values(ours_from_torch_settings(make_opt(0.1), torch_name, kwargs), steps)
        np.testing.assert_allclose(got, recorded[f"{name}.lr"], rtol=1e-10, err_msg=name)


@pytest.mark.parametrize(
    "name, opt_cls, kw",
    [
        ("adam", optim.Adam, {}),
        ("adamw", optim.AdamW, {}),
        ("sgd_momentum", optim.SGD, {"momentum": 0.9}),
    ],
)
def test_one_cycle_matches_recorded_torch_including_momentum(recorded, name, opt_cls, kw):
    settings = json.loads(str(recorded["settings"]))
    assert settings["onecycle_optimizers"][name][1] == kw
    opt = make_opt(0.01, opt_cls, **kw)
    sched = optim.OneCycleLR(opt, **settings["onecycle"])
    lrs, moms = [], []
    for _ in range(settings["onecycle"]["total_steps"]):
        lrs.append(opt.lr)
        moms.append(opt.betas[0] if hasattr(opt, "betas") else opt.momentum)
        sched.step()
    np.testing.assert_allclose(lrs, recorded[f"onecycle.{name}.lr"], rtol=1e-10)
    np.testing.assert_allclose(moms, recorded[f"onecycle.{name}.momentum"], rtol=1e-10)


def test_closed_forms():
    opt = make_opt(1.0)
    s = optim.CosineAnnealingLR(opt, T_max=4)
    assert [s.lr_at(k) for k in range(6)] == pytest.approx(
        [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0, 0]
    )
    opt = make_opt(0.5)
    oc = optim.OneCycleLR(opt, max_lr=1.0, total_steps=10, cycle_momentum=False)
    assert opt.lr == pytest.approx(1.0 / 25)  # starts at max_lr / div_factor
    peak = int(0.3 * 10) - 1
    assert oc.lr_at(peak) == pytest.approx(1.0)
    assert oc.lr_at(9) == pytest.approx(1.0 / 25 / 1e4)
    assert max(oc.lr_at(k) for k in range(10)) == pytest.approx(1.0)


def test_schedule_sets_optimizer_lr_that_the_update_uses():
    p = nn.Parameter(np.zeros(1))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    for expected_step in (1.0, 0.5, 0.25):
        before = p.data.copy()
        p.grad = np.ones(1)
        opt.step()
        assert before - p.data == pytest.approx(expected_step)
        sched.step()


def test_state_dict_resume():
    opt = make_opt(0.2)
    s = optim.CosineAnnealingLR(opt, T_max=20)
    for _ in range(7):
        s.step()
    state = s.state_dict()
    assert set(state) == {"last_step", "base_lr"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    opt2 = make_opt(0.2)
    s2 = optim.CosineAnnealingLR(opt2, T_max=20)
    s2.load_state_dict(state)
    assert opt2.lr == opt.lr
    assert ours_values(s2, 5) == ours_values(s, 5)

    opt3 = make_opt(0.2, optim.Adam)
    oc = optim.OneCycleLR(opt3, max_lr=0.3, total_steps=10)
    for _ in range(4):
        oc.step()
    opt4 = make_opt(0.2, optim.Adam)
    oc4 = optim.OneCycleLR(opt4, max_lr=0.3, total_steps=10)
    oc4.load_state_dict(oc.state_dict())
    assert (opt4.lr, opt4.betas) == (opt3.lr, opt3.betas)


def test_make_schedule_by_name():
    assert optim.make_schedule(None, make_opt(), 10) is None
    assert optim.make_schedule("constant", make_opt(), 10) is None
    s = optim.make_schedule("cosine", make_opt(0.1), 10)
    assert isinstance(s, optim.CosineAnnealingLR) and s.lr_at(10) == pytest.approx(0.0)
    s = optim.make_schedule("exponential", make_opt(0.1), 10)
    assert s.lr_at(10) == pytest.approx(0.1 * 0.01)
    s = optim.make_schedule("step", make_opt(0.1), 9)
    assert s.step_size == 3
    s = optim.make_schedule("warmup", make_opt(0.1), 100, start_factor=0.5)
    assert s.warmup_steps == 5 and s.lr_at(0) == pytest.approx(0.05)
    s = optim.make_schedule("onecycle", make_opt(0.1, optim.AdamW), 50)
    assert isinstance(s, optim.OneCycleLR) and s.max_lr == 0.1
    with pytest.raises(ValueError, match="unknown schedule"):
        optim.make_schedule("triangle", make_opt(), 10)


def test_schedule_errors():
    with pytest.raises(ValueError, match="total_steps is 3"):
        s = optim.OneCycleLR(make_opt(), 0.1, total_steps=3, cycle_momentum=False)
        for _ in range(5):
            s.step()
    with pytest.raises(ValueError, match="cycle_momentum=False"):
        optim.OneCycleLR(make_opt(cls=optim.RMSProp), 0.1, total_steps=3)
    with pytest.raises(ValueError, match="T_max"):
        optim.CosineAnnealingLR(make_opt(), 0)
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(make_opt(), 1.5)
    with pytest.raises(TypeError, match="optimizer"):
        optim.ExponentialLR(object(), 0.9)
    with pytest.raises(ValueError, match="last_step"):
        optim.ExponentialLR(make_opt(), 0.9).load_state_dict({})
