"""Learning-rate schedules.

A schedule wraps an optimizer and sets ``optimizer.lr``: at construction to the rate
of step 0, then after every `step()` to the rate of the next step. The unit of a step
is the caller's: call `step()` once per iteration (minibatch) and give lengths such as
`T_max` or `total_steps` in iterations, or once per epoch and give them in epochs.
The values are those of PyTorch's ``torch.optim.lr_scheduler`` classes of the same
name (closed forms).

Typical loop::

    sched = CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    for batch in ...:
        loss.backward(); opt.step(); opt.zero_grad()
        sched.step()

``state_dict()`` / ``load_state_dict()`` hold arrays only (``last_step``, ``base_lr``)
for resuming; loading also sets the optimizer's learning rate.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "SCHEDULES",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRSchedule",
    "LinearWarmup",
    "OneCycleLR",
    "StepLR",
    "make_schedule",
]


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


def _number(name, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v!r}")
    return float(v)


class LRSchedule:
    """Base class: ``lr_at(step)`` gives the rate of a step; the schedule keeps
    ``last_step`` (0 at construction) and writes the current rate to ``optimizer.lr``."""

    def __init__(self, optimizer):
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"{type(self).__name__}: expected an optimizer with an lr attribute")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_step = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> float:
        """The learning rate of the current step."""
        return self.lr_at(self.last_step)

    @property
    def lr(self) -> float:
        return self.get_lr()

    def _apply(self) -> None:
        self.optimizer.lr = self.get_lr()

    def step(self) -> float:
        """Advance one step (iteration or epoch) and set the optimizer's rate; returns it."""
        self.last_step += 1
        self._apply()
        return self.optimizer.lr

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "last_step": np.array(self.last_step, dtype=np.int64),
            "base_lr": np.array(self.base_lr),
        }

    def load_state_dict(self, state) -> None:
        for k in ("last_step", "base_lr"):
            if k not in state:
                raise ValueError(f"{type(self).__name__}: state has no {k!r}")
        self.last_step = int(np.asarray(state["last_step"]))
        self.base_lr = float(np.asarray(state["base_lr"]))
        self._apply()


class ExponentialLR(LRSchedule):
    """``lr = base_lr * gamma ** step`` (exponential decay, usually per epoch)."""

    def __init__(self, optimizer, gamma: float):
        self.gamma = _number("ExponentialLR: gamma", gamma, 0.0)
        super().__init__(optimizer)

    def lr_at(self, step):
        return self.base_lr * self.gamma**step


class StepLR(LRSchedule):
    """``lr = base_lr * gamma ** (step // step_size)``."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = _positive_int("StepLR: step_size", step_size)
        self.gamma = _number("StepLR: gamma", gamma, 0.0)
        super().__init__(optimizer)

    def lr_at(self, step):
        return self.base_lr * self.gamma ** (step // self.step_size)


class CosineAnnealingLR(LRSchedule):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2`` for
    ``step <= T_max``, then ``eta_min``."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max = _positive_int("CosineAnnealingLR: T_max", T_max)
        self.eta_min = _number("CosineAnnealingLR: eta_min", eta_min, 0.0)
        super().__init__(optimizer)

    def lr_at(self, step):
        step = min(step, self.T_max)
        cos = (1.0 + math.cos(math.pi * step / self.T_max)) / 2.0
        return self.eta_min + (self.base_lr - self.eta_min) * cos


class LinearWarmup(LRSchedule):
    """Linear warm-up (PyTorch's ``LinearLR``): the rate grows linearly from
    ``start_factor * base_lr`` to ``end_factor * base_lr`` over `warmup_steps` steps and
    stays there."""

    def __init__(
        self,
        optimizer,
        warmup_steps: int,
        start_factor: float = 0.1,
        end_factor: float = 1.0,
    ):
        self.warmup_steps = _positive_int("LinearWarmup: warmup_steps", warmup_steps)
        self.start_factor = _number("LinearWarmup: start_factor", start_factor, 0.0)
        self.end_factor = _number("LinearWarmup: end_factor", end_factor, 0.0)
        super().__init__(optimizer)

    def lr_at(self, step):
        frac = min(step, self.warmup_steps) / self.warmup_steps
        return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class OneCycleLR(LRSchedule):
    """The one-cycle policy (Smith and Topin), as PyTorch's ``OneCycleLR`` with cosine
    annealing: the rate rises from ``max_lr / div_factor`` to `max_lr` over the first
    ``pct_start`` of `total_steps`, then falls to ``max_lr / div_factor /
    final_div_factor`` at step ``total_steps - 1``. Stepping past `total_steps` raises
    ValueError.

    With ``cycle_momentum`` (the default, as in PyTorch) the momentum moves the other
    way, from `max_momentum` down to `base_momentum` and back: ``betas[0]`` of Adam /
    AdamW or ``momentum`` of SGD. Optimizers without either (RMSProp) need
    ``cycle_momentum=False``.
    """

    def __init__(
        self,
        optimizer,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
    ):
        self.max_lr = _number("OneCycleLR: max_lr", max_lr, 0.0)
        self.total_steps = _positive_int("OneCycleLR: total_steps", total_steps)
        self.pct_start = _number("OneCycleLR: pct_start", pct_start, 0.0, 1.0)
        self.div_factor = _number("OneCycleLR: div_factor", div_factor, 0.0)
        self.final_div_factor = _number("OneCycleLR: final_div_factor", final_div_factor, 0.0)
        if self.div_factor == 0 or self.final_div_factor == 0:
            raise ValueError("OneCycleLR: div_factor and final_div_factor must be positive")
        self.initial_lr = self.max_lr / self.div_factor
        self.min_lr = self.initial_lr / self.final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        self.base_momentum = _number("OneCycleLR: base_momentum", base_momentum, 0.0, 1.0)
        self.max_momentum = _number("OneCycleLR: max_momentum", max_momentum, 0.0, 1.0)
        if self.cycle_momentum and not (
            hasattr(optimizer, "betas") or hasattr(optimizer, "momentum")
        ):
            raise ValueError(
                f"OneCycleLR: {type(optimizer).__name__} has no momentum or betas to cycle; "
                "pass cycle_momentum=False"
            )
        end_up = float(self.pct_start * self.total_steps) - 1.0
        # (end step, start lr, end lr, start momentum, end momentum) of each phase.
        self._phases = [
            (end_up, self.initial_lr, self.max_lr, self.max_momentum, self.base_momentum),
            (
                float(self.total_steps - 1),
                self.max_lr,
                self.min_lr,
                self.base_momentum,
                self.max_momentum,
            ),
        ]
        super().__init__(optimizer)

    @staticmethod
    def _anneal(start, end, pct):
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)

    def _at(self, step):
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR: stepped {step} times but total_steps is {self.total_steps}"
            )
        start_step = 0.0
        for i, (end_step, lr0, lr1, m0, m1) in enumerate(self._phases):
            if step <= end_step or i == len(self._phases) - 1:
                pct = (step - start_step) / (end_step - start_step)
                return self._anneal(lr0, lr1, pct), self._anneal(m0, m1, pct)
            start_step = end_step
        raise AssertionError("unreachable")

    def lr_at(self, step):
        return self._at(step)[0]

    def momentum_at(self, step) -> float:
        return self._at(step)[1]

    def _apply(self):
        lr, mom = self._at(self.last_step)
        self.optimizer.lr = lr
        if self.cycle_momentum:
            if hasattr(self.optimizer, "betas"):
                self.optimizer.betas = (mom, self.optimizer.betas[1])
            else:
                self.optimizer.momentum = mom


SCHEDULES = (None, "constant", "exponential", "step", "cosine", "warmup", "onecycle")


def make_schedule(name: str | None, optimizer, total_steps: int, **kwargs) -> LRSchedule | None:
    """A schedule by name, sized for `total_steps` steps (in the caller's unit):

    - None or ``"constant"``: no schedule (returns None);
    - ``"exponential"``: `ExponentialLR` with ``gamma`` (default: decays to 1% at the end);
    - ``"step"``: `StepLR`, ``step_size`` default a third of the run, ``gamma`` 0.1;
    - ``"cosine"``: `CosineAnnealingLR` over `total_steps`;
    - ``"warmup"``: `LinearWarmup` over ``warmup_steps`` (default 5% of the run);
    - ``"onecycle"``: `OneCycleLR` peaking at ``max_lr`` (default: the optimizer's lr).

    Other keyword arguments go to the schedule's constructor. A `Solver` sizes the
    schedule itself from a factory: ``functools.partial(make_schedule, name, **kwargs)``
    called with ``(optimizer, total_steps)``.
    """
    total_steps = _positive_int("make_schedule: total_steps", total_steps)
    if name is None or name == "constant":
        return None
    if name == "exponential":
        gamma = kwargs.pop("gamma", 0.01 ** (1.0 / total_steps))
        return ExponentialLR(optimizer, gamma, **kwargs)
    if name == "step":
        kwargs.setdefault("step_size", max(1, total_steps // 3))
        return StepLR(optimizer, **kwargs)
    if name == "cosine":
        return CosineAnnealingLR(optimizer, total_steps, **kwargs)
    if name == "warmup":
        kwargs.setdefault("warmup_steps", max(1, total_steps // 20))
        return LinearWarmup(optimizer, **kwargs)
    if name == "onecycle":
        max_lr = kwargs.pop("max_lr", optimizer.lr)
        return OneCycleLR(optimizer, max_lr, total_steps, **kwargs)
    raise ValueError(
        f"unknown schedule {name!r}; choose constant, exponential, step, cosine, warmup or onecycle"
    )
