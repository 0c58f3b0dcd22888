"""Optimizers (SGD, RMSProp, Adam, AdamW), gradient clipping and learning-rate schedules.

All optimizers update parameters in place with preallocated state; see
`chainrule.optim.optimizers` for the formulas and `chainrule.optim.schedules` for the
schedules and how to step them.
"""

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
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    LRSchedule,
    OneCycleLR,
    StepLR,
    make_schedule,
)

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRSchedule",
    "LinearWarmup",
    "OneCycleLR",
    "Optimizer",
    "RMSProp",
    "StepLR",
    "clip_grad_norm",
    "get_num_threads",
    "make_schedule",
    "set_num_threads",
    "weight_decay_groups",
]
