"""Neural-network layers: modules (`Linear`, `ReLU`, `Dropout`, `BatchNorm1d`,
`Sequential`, ...), convolutional modules (`Conv2d`, `BatchNorm2d`, `MaxPool2d`,
`Residual`, ...), their fused Functions in `chainrule.nn.functional`, and weight
initialisations in `chainrule.nn.init`."""

from chainrule.nn import init
from chainrule.nn.conv import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    MaxPool2d,
    Residual,
    RowsToImages,
)
from chainrule.nn.modules import (
    BatchNorm1d,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    Module,
    Parameter,
    Permute,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "MaxPool2d",
    "Residual",
    "RowsToImages",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "Module",
    "Parameter",
    "Permute",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "init",
]
