"""Optimizers by name: `make_optimizer` (what the estimators' ``optimizer=`` and the
command line's ``--optimizer`` take)."""

from __future__ import annotations

from chainrule.optim.muon import Muon
from chainrule.optim.optimizers import SGD, Adam, AdamW, Optimizer, RMSProp, _check_number

__all__ = ["OPTIMIZERS", "make_optimizer"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw", "muon")


def make_optimizer(
    name: str, params, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0
) -> Optimizer:
    """An optimizer by name, over `params` (Parameters, parameter groups or a Module):

    - ``"sgd"``: `SGD` without momentum;
    - ``"momentum"`` / ``"nesterov"``: `SGD` with (Nesterov) `momentum` in [0, 1);
    - ``"rmsprop"``: `RMSProp`;
    - ``"adam"``: `Adam`;
    - ``"adamw"``: `AdamW` (decoupled weight decay);
    - ``"muon"``: `Muon` with Nesterov `momentum`: matrices and filters
      orthogonalised (decoupled weight decay), vectors by Nesterov SGD.

    `weight_decay` applies to every parameter group that sets none of its own (for
    example pass ``weight_decay_groups(module, wd)`` to decay matrices only); it is added
    to the gradient except for ``"adamw"``. Other settings are the optimizers' defaults.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if name in ("momentum", "nesterov", "muon"):
        mu = _check_number("momentum", momentum, 0.0, 1.0, hi_open=True)
        if name == "muon":
            return Muon(params, lr, momentum=mu, weight_decay=weight_decay)
        return SGD(params, lr, momentum=mu, nesterov=name == "nesterov", weight_decay=weight_decay)
    cls = {"sgd": SGD, "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW}[name]
    return cls(params, lr, weight_decay=weight_decay)
