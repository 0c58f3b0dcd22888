"""Fused differentiable functions: layers and losses with hand-derived gradients."""

from chainrule.nn.functional.layers import *  # noqa: F403  (layers' __all__)
from chainrule.nn.functional.losses import (
    L2Penalty,
    SoftmaxCrossEntropy,
    SVMLoss,
    cross_entropy,
    l2_penalty,
    svm_loss,
)

__all__ = ["L2Penalty", "SVMLoss", "SoftmaxCrossEntropy", "cross_entropy", "l2_penalty", "svm_loss"]
