"""Optimizers (SGD, RMSProp, Adam, AdamW, Muon, the Lookahead wrapper), parameter groups,
gradient clipping and learning-rate schedules.

All optimizers update parameters in place with preallocated state; see
`chainrule.optim.optimizers` for the formulas and `chainrule.optim.schedules` for the
schedules and how to step them. `make_optimizer` and `make_schedule` build both by name
(`OPTIMIZERS`, `SCHEDULES`), which is how the estimators choose them.
"""

from chainrule.optim.factory import OPTIMIZERS, make_optimizer
from chainrule.optim.groups import network_groups
from chainrule.optim.lookahead import Lookahead
from chainrule.optim.muon import Muon
from chainrule.optim.optimizers import (
    SGD,
    Adam,
    AdamW,
    Optimizer,
    RMSProp,
    clip_grad_norm,
    get_num_threads,
    set_num_threads,
    weight_decay_groups,
)
from chainrule.optim.schedules import (
    SCHEDULES,
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    LRSchedule,
    OneCycleLR,
    StepLR,
    make_schedule,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRSchedule",
    "LinearWarmup",
    "Lookahead",
    "Muon",
    "OneCycleLR",
    "Optimizer",
    "RMSProp",
    "StepLR",
    "clip_grad_norm",
    "get_num_threads",
    "make_optimizer",
    "make_schedule",
    "network_groups",
    "set_num_threads",
    "weight_decay_groups",
]
