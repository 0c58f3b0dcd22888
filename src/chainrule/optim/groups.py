"""Parameter groups: per-group learning rates, weight decay and other settings.

An optimizer takes its parameters as PyTorch's do: an iterable of Parameters (one
group), a Module (its parameters), or a list of dicts, each ``{"params": [...]}`` plus
any of the optimizer's settings for that group (``"lr"``, ``"weight_decay"``, and for
example ``"momentum"`` for SGD or ``"betas"`` for Adam). A setting a group leaves out
is the optimizer's (its constructor's argument). The optimizer keeps them in
``param_groups``, a list of dicts with every setting filled in::

    groups = [
        {"params": filters, "weight_decay": 5e-4},
        {"params": shifts, "lr": 64 * 0.2, "weight_decay": 5e-4 / 64},
    ]
    opt = SGD(groups, lr=0.2, momentum=0.9, nesterov=True)
    opt.param_groups[1]["lr"]         # 12.8
    opt.lr = 0.1                      # what a schedule does
    opt.param_groups[1]["lr"]         # 6.4: every group keeps its ratio to opt.lr

The optimizer's ``lr`` is the rate schedules read and set: setting it sets every
group's rate to the same multiple of it as at construction (PyTorch's schedules scale
each group's initial rate by the same factor). Setting another setting on the optimizer
(``momentum``, ``betas``, what one-cycle schedules cycle) sets it in every group, as
PyTorch's `OneCycleLR` does.

`weight_decay_groups` and `network_groups` build such lists from a network: weight
decay for matrices and filters only, and a larger learning rate for biases and
batch-norm shifts (the fast CIFAR-10 recipes train those 64 times faster).
"""

from __future__ import annotations

import math
import numbers

from chainrule.autograd.engine import Tensor

__all__ = ["GroupSetting", "network_groups", "parse_groups", "weight_decay_groups"]


def check_number(name, value, lo=0.0, hi=math.inf, lo_open=False, hi_open=False) -> float:
    """`value` as a float in [lo, hi] (open ends where asked), or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < lo or (lo_open and value == lo) or value > hi or (hi_open and value == hi):
        lb = "(" if lo_open else "["
        hb = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {lb}{lo}, {hi}{hb}, got {value!r}")
    return float(value)


def _module_params(module_or_params) -> list:
    if hasattr(module_or_params, "parameters") and callable(module_or_params.parameters):
        return list(module_or_params.parameters())
    return list(module_or_params)


def weight_decay_groups(module_or_params, weight_decay: float) -> list[dict]:
    """Two parameter groups: matrices (ndim >= 2) with `weight_decay`, everything else
    (biases, batch-norm gamma/beta) without. Accepts a Module or an iterable of
    Parameters."""
    params = _module_params(module_or_params)
    decay = [p for p in params if p.data.ndim >= 2]
    rest = [p for p in params if p.data.ndim < 2]
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    return groups


def network_groups(
    module_or_params,
    lr: float,
    weight_decay: float,
    bias_lr_factor: float = 1.0,
    decay_biases: bool = False,
) -> list[dict]:
    """Parameter groups for a network trained at rate `lr`: matrices and filters
    (ndim >= 2) at `lr` with `weight_decay`; vectors (biases, batch-norm scales and
    shifts) at ``bias_lr_factor * lr``.

    Vectors are not decayed unless `decay_biases`; then their weight decay is
    ``weight_decay / bias_lr_factor``, so that the shrinking per step (rate times decay)
    is the same for both groups, as in the fast CIFAR-10 recipes (which train the
    batch-norm shifts 64 times faster than the filters). With ``bias_lr_factor = 1``
    and no decay of vectors this is `weight_decay_groups`.
    """
    lr = check_number("network_groups: lr", lr)
    weight_decay = check_number("network_groups: weight_decay", weight_decay)
    factor = check_number("network_groups: bias_lr_factor", bias_lr_factor, lo_open=True)
    groups = weight_decay_groups(module_or_params, weight_decay)
    for g in groups:
        g["lr"] = lr
    if len(groups) == 2:
        groups[1]["lr"] = lr * factor
        groups[1]["weight_decay"] = weight_decay / factor if decay_biases else 0.0
    return [g for g in groups if g["params"]]


class GroupSetting:
    """A setting of every parameter group, as an attribute of the optimizer: reading it
    gives the optimizer's own value (the default of groups that name none); setting it
    sets it in every group. ``check(name, value)`` validates and returns the value."""

    def __init__(self, check):
        self.check = check

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return obj.defaults[self.name]

    def __set__(self, obj, value):
        value = self.check(f"{type(obj).__name__}: {self.name}", value)
        obj.defaults[self.name] = value
        for group in obj.param_groups:
            group[self.name] = value
        obj._check_groups()


class LearningRate(GroupSetting):
    """The optimizer's ``lr``: setting it gives every group the same multiple of it as
    at construction."""

    def __set__(self, obj, value):
        value = self.check(f"{type(obj).__name__}: lr", value)
        obj.defaults["lr"] = value
        for group, scale in zip(obj.param_groups, obj._lr_scales):
            group["lr"] = value * scale


def _check_params(name, params, seen) -> list:
    if isinstance(params, Tensor):
        params = [params]
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"{name}: a group's 'params' must be a list of Parameters") from None
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{name}: expected Parameters (Tensors), got {type(p).__name__}")
        if not p.requires_grad:
            raise ValueError(f"{name}: a parameter does not require grad")
        if p.data.dtype.kind != "f":
            raise TypeError(f"{name}: parameters must be float, got {p.data.dtype}")
        if id(p) in seen:
            raise ValueError(f"{name}: a parameter appears more than once")
        seen.add(id(p))
    return params


def parse_groups(params, defaults: dict, checks: dict, name: str):
    """(groups, learning-rate scales): `params` (Parameters, a Module, or a list of
    group dicts) as a list of group dicts with every key of `defaults` filled in, each
    value validated by ``checks[key](label, value)``; and each group's rate divided by
    ``defaults["lr"]``."""
    if isinstance(params, Tensor):
        raise TypeError(f"{name}: params must be an iterable of Parameters, not one Tensor")
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    try:
        items = list(params)
    except TypeError:
        raise TypeError(f"{name}: params must be an iterable of Parameters") from None
    if not items:
        raise ValueError(f"{name}: got an empty parameter list")
    if all(isinstance(it, dict) for it in items):
        given = items
    elif any(isinstance(it, dict) for it in items):
        raise TypeError(f"{name}: params must be all Parameters or all dicts, not a mixture")
    else:
        given = [{"params": items}]
    groups, seen = [], set()
    allowed = {"params", *defaults}
    for gi, group in enumerate(given):
        extra = set(group) - allowed
        if extra or "params" not in group:
            raise ValueError(
                f"{name}: parameter group {gi} must have a 'params' list and optionally "
                f"{', '.join(repr(k) for k in defaults)}; got keys {sorted(group)}"
            )
        out = {"params": _check_params(name, group["params"], seen)}
        for key, default in defaults.items():
            out[key] = checks[key](f"{name}: {key}", group[key]) if key in group else default
        groups.append(out)
    if not seen:
        raise ValueError(f"{name}: got an empty parameter list")
    base = defaults["lr"]
    scales = []
    for gi, group in enumerate(groups):
        if group["lr"] == base:
            scales.append(1.0)
        elif base > 0:
            scales.append(group["lr"] / base)
        else:
            raise ValueError(
                f"{name}: parameter group {gi} has lr {group['lr']} but the optimizer's lr "
                "is 0; schedules scale every group's rate with the optimizer's, so give it "
                "a positive lr"
            )
    return groups, scales
