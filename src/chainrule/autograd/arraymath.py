"""Plain-array formulas shared by the Functions and by the models' inference paths.

Each formula here is written once: the autograd primitives call it in their ``forward``,
and code that works on raw arrays (a model's ``predict_proba``, the Solver's evaluation)
calls it directly instead of keeping a copy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["log_softmax", "softmax"]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` along ``axis``, stable for logits of any size.

    The maximum along ``axis`` is subtracted first, so no ``exp`` overflows; the result has
    the dtype of ``x`` (float32 stays float32) and a fresh buffer.
    """
    z = x - np.max(x, axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(softmax(x))`` along ``axis``, as ``z - log(sum(exp(z)))`` with ``z = x - max``."""
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
