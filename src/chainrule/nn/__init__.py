"""Neural-network layers: modules (`Linear`, `ReLU`, `Dropout`, `BatchNorm1d`,
`Sequential`, ...), their fused Functions in `chainrule.nn.functional`, and weight
initialisations in `chainrule.nn.init`."""

from chainrule.nn import init
from chainrule.nn.modules import (
    BatchNorm1d,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)

__all__ = [
    "BatchNorm1d",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "init",
]
