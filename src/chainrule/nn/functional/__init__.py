"""Fused differentiable functions: layers, convolutions, pooling and losses with
hand-derived gradients."""

from chainrule.nn.functional.conv import Conv2d, conv2d, conv_kernel
from chainrule.nn.functional.layers import *  # noqa: F403  (layers' __all__)
from chainrule.nn.functional.losses import (
    L2Penalty,
    SoftmaxCrossEntropy,
    SVMLoss,
    cross_entropy,
    l2_penalty,
    svm_loss,
)
from chainrule.nn.functional.norm import BatchNorm2d, batch_norm2d
from chainrule.nn.functional.pool import (
    AvgPool2d,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    MaxPool2d,
    avg_pool2d,
    global_avg_pool2d,
    global_max_pool2d,
    max_pool2d,
)

__all__ = [
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "L2Penalty",
    "MaxPool2d",
    "SVMLoss",
    "SoftmaxCrossEntropy",
    "avg_pool2d",
    "batch_norm2d",
    "conv2d",
    "conv_kernel",
    "cross_entropy",
    "global_avg_pool2d",
    "global_max_pool2d",
    "l2_penalty",
    "max_pool2d",
    "svm_loss",
]
