"""Lookahead (Zhang, Lucas, Hinton and Ba, 2019): slow weights that follow the fast ones.

An inner optimizer takes ``k`` ordinary ("fast") steps; then the slow copy of each
parameter moves a fraction ``alpha`` of the way toward the fast weights, and the fast
weights restart from there::

    every k steps:  slow += alpha * (fast - slow);  fast = slow

The slow weights average the last stretch of the trajectory, which damps the noise of
large learning rates (the fast CIFAR-10 recipes, such as Keller Jordan's airbench, use
this kind of averaging). Averaging early in a run only slows it down; with
``ramp_steps = T`` the pull starts at nothing and grows over T steps, as in airbench::

    alpha_t = 1 - (1 - alpha) * min(1, t / T) ** 3     (t: inner steps so far)

(alpha_t = 1 makes the slow weights the fast ones; at the end of the ramp alpha_t =
alpha, e.g. 1 - 0.95^5 = 0.226, an exponential moving average over the syncs of about
4 syncs, 20 steps at k = 5.) The wrapper has the optimizer interface the `Solver` and the
schedules use: ``step``, ``zero_grad``, ``lr`` (and ``momentum``/``betas``, which
one-cycle schedules set) read and written through to the inner optimizer, and
``state_dict``/``load_state_dict`` with the slow weights, so that a resumed run
continues exactly.
"""

from __future__ import annotations

import numpy as np

from chainrule.optim.optimizers import Optimizer, _check_number

__all__ = ["Lookahead"]

# Attributes that belong to the inner optimizer: schedules write them on the wrapper.
_FORWARDED = ("lr", "momentum", "betas")


class Lookahead:
    """Wrap `optimizer` (an `Optimizer`): every `k` steps, slow weights move `alpha` of
    the way toward the fast ones and the fast weights are reset to them.

    The slow weights start as a copy of the parameters at construction. ``k = 1`` with
    ``alpha = 1`` is the inner optimizer itself. `ramp_steps` (a positive int or None):
    `alpha` is reached after that many inner steps, from 1 at the start (see the
    module docstring); None: `alpha` throughout.
    """

    def __init__(
        self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5, ramp_steps: int | None = None
    ):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"Lookahead wraps a chainrule Optimizer, got {type(optimizer).__name__}"
            )
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"Lookahead: k must be a positive int, got {k!r}")
        object.__setattr__(self, "optimizer", optimizer)
        self.k = int(k)
        self.alpha = _check_number("Lookahead: alpha", alpha, 0.0, 1.0, lo_open=True)
        if ramp_steps is not None and (
            isinstance(ramp_steps, bool)
            or not isinstance(ramp_steps, (int, np.integer))
            or ramp_steps < 1
        ):
            raise ValueError(
                f"Lookahead: ramp_steps must be a positive int or None, got {ramp_steps!r}"
            )
        self.ramp_steps = None if ramp_steps is None else int(ramp_steps)
        self.slow = [p.data.copy() for p in optimizer.params]
        self.fast_steps = 0

    # The inner optimizer's hyperparameters, read and written through.
    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, "optimizer"), name)

    def __setattr__(self, name, value):
        if name in _FORWARDED:
            setattr(self.optimizer, name, value)
        else:
            object.__setattr__(self, name, value)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        """One inner step; every k-th, the slow update and the reset of the fast weights."""
        self.optimizer.step()
        self.fast_steps += 1
        if self.fast_steps % self.k:
            return
        alpha = self.current_alpha()
        for p, slow in zip(self.optimizer.params, self.slow):
            fast = p.data
            fast -= slow  # fast - slow, in place: no temporary of the parameter's size
            fast *= alpha
            slow += fast
            np.copyto(fast, slow)

    def current_alpha(self) -> float:
        """The pull toward the fast weights at the current step (`alpha`, or its ramp)."""
        if self.ramp_steps is None:
            return self.alpha
        frac = min(1.0, self.fast_steps / self.ramp_steps)
        return 1.0 - (1.0 - self.alpha) * frac**3

    def state_dict(self) -> dict[str, np.ndarray]:
        """The inner optimizer's state (keys prefixed ``"inner."``), the slow weights
        (``"slow.<i>"``) and the step count since the start (``"fast_steps"``). Copies."""
        state = {f"inner.{k}": v for k, v in self.optimizer.state_dict().items()}
        state.update({f"slow.{i}": s.copy() for i, s in enumerate(self.slow)})
        state["fast_steps"] = np.array(self.fast_steps, dtype=np.int64)
        return state

    def load_state_dict(self, state) -> None:
        """Restore what `state_dict` returned; ValueError on missing or mismatched keys."""
        inner = {k[len("inner.") :]: v for k, v in state.items() if k.startswith("inner.")}
        slow = []
        for i, p in enumerate(self.optimizer.params):
            key = f"slow.{i}"
            if key not in state:
                raise ValueError(f"cannot load Lookahead state: missing key {key!r}")
            v = np.asarray(state[key])
            if v.shape != p.data.shape:
                raise ValueError(
                    f"cannot load Lookahead state: {key} has shape {v.shape}, parameter "
                    f"{i} has shape {p.data.shape}"
                )
            slow.append(np.array(v, dtype=p.data.dtype, order="C"))
        expected = {"fast_steps", *(f"slow.{i}" for i in range(len(slow)))}
        unknown = [k for k in state if not k.startswith("inner.") and k not in expected]
        if unknown or "fast_steps" not in state:
            what = f"unexpected key {unknown[0]!r}" if unknown else "missing key 'fast_steps'"
            raise ValueError(f"cannot load Lookahead state: {what}")
        self.optimizer.load_state_dict(inner)
        self.slow = slow
        self.fast_steps = int(np.asarray(state["fast_steps"]))

    def __repr__(self) -> str:
        ramp = "" if self.ramp_steps is None else f", ramp_steps={self.ramp_steps}"
        return f"Lookahead({self.optimizer!r}, k={self.k}, alpha={self.alpha}{ramp})"
