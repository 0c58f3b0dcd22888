"""Fused differentiable functions: layers and losses with hand-derived gradients."""

from chainrule.nn.functional.layers import *  # noqa: F403  (layers' __all__)
from chainrule.nn.functional.losses import SoftmaxCrossEntropy, SVMLoss, cross_entropy, svm_loss

__all__ = ["SVMLoss", "SoftmaxCrossEntropy", "cross_entropy", "svm_loss"]
