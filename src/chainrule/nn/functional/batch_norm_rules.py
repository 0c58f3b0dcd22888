"""Batch normalization's derivative rules over rows (M, C), shared by the 1-D layer
(`chainrule.nn.functional.layers.BatchNorm`) and by the spatial one when its rule runs
on Tensors (`chainrule.nn.functional.norm`).

The formulas work on arrays and on Tensors alike (see `chainrule.autograd.function`);
``xhat`` and ``inv_std`` come from the forward pass for arrays, and from
`normalized_rows` of the input Tensor, recorded, when the gradient will be
differentiated again.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd import tnp

__all__ = ["batch_norm_grads", "batch_norm_tangent", "normalized_rows"]


def normalized_rows(x, training: bool, eps: float, running_mean, running_inv_std):
    """``(xhat, inv_std)`` of batch norm over rows x (M, C), recorded when x is a Tensor
    (so that their derivatives with respect to x count): the batch statistics in
    training, the running ones (constants, of x's dtype) in evaluation."""
    if not training:
        return (x - running_mean) * running_inv_std, running_inv_std
    centred = x - x.mean(axis=0)
    inv_std = 1.0 / tnp.sqrt((centred * centred).mean(axis=0) + eps)
    return centred * inv_std, inv_std


def _column_dots(a, b):
    """``(a * b).sum(0)`` for rows (M, C): one pass on arrays, recorded on Tensors."""
    if tnp.is_tensor(a) or tnp.is_tensor(b):
        return (a * b).sum(axis=0)
    return np.einsum("ij,ij->j", a, b)


def batch_norm_grads(g, xhat, inv_std, gamma, training: bool, need_x: bool):
    """(dx, dgamma, dbeta) of batch norm over rows (M, C) for the output gradient g;
    dx None unless `need_x`. The formula of `BatchNorm`'s docstring."""
    m = g.shape[0]
    dbeta = g.sum(axis=0)
    dgamma = _column_dots(g, xhat)
    dx = None
    if need_x:
        scale = inv_std if gamma is None else gamma * inv_std
        if training:
            dx = scale * (g - dbeta * (1.0 / m) - xhat * (dgamma * (1.0 / m)))
        else:
            dx = g * scale
    return dx, dgamma, dbeta


def batch_norm_tangent(tx, tgamma, tbeta, xhat, inv_std, gamma, training: bool):
    """The tangent of batch norm over rows (M, C) for tangents of x, gamma and beta."""
    t = None
    if tx is not None:
        if training:
            spread = xhat * (_column_dots(tx, xhat) * (1.0 / tx.shape[0]))
            dxhat = (tx - tx.mean(axis=0) - spread) * inv_std
        else:
            dxhat = tx * inv_std
        t = dxhat if gamma is None else dxhat * gamma
    if tgamma is not None:
        t = xhat * tgamma if t is None else t + xhat * tgamma
    if tbeta is not None:
        t = tnp.broadcast_to(tbeta, xhat.shape) if t is None else t + tbeta
    return t
