"""Classification losses as fused Functions with the lecture's flat, vectorized gradients,
and the L2 penalty on weights.

Both losses take class scores ``(N, C)`` (a Tensor or an array) and integer labels
``(N,)`` and return the mean loss over the ``N`` examples as a scalar Tensor of the
scores' dtype (float32 in, float32 out). `l2_penalty` is the regularization term
``reg * sum(W**2)`` that the linear classifiers and the networks add to them.

Each is one `Function`: `forward` computes the loss on arrays, `backward` is the
hand-derived gradient with respect to the scores (the ``dW``-free part of cs231n's
``svm_loss_vectorized`` / ``softmax_loss_vectorized``), and `jvp` gives the directional
derivative for forward mode. The rules run on arrays and on Tensors (see
`chainrule.autograd.function`), so the losses are differentiable to any order; the
softmax probabilities, kept as an array for the first order, are computed again from
the scores when the rule runs on Tensors. They can also be used without a graph, in
the course's ``forward -> cache``, ``backward(dout, cache)`` style, with a `Context` as
the cache::

    ctx = Context()
    loss = SVMLoss.forward(ctx, scores, y)
    dscores, _ = SVMLoss.backward(ctx, np.float64(1.0))
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd import tnp
from chainrule.autograd.engine import Function, Tensor

__all__ = [
    "L2Penalty",
    "SVMLoss",
    "SoftmaxCrossEntropy",
    "cross_entropy",
    "l2_penalty",
    "svm_loss",
]


def _check_inputs(scores, y, name: str):
    """Validate scores (N, C) and labels (N,); return (scores, labels as intp)."""
    if isinstance(scores, Tensor):
        s = scores.data
    else:
        try:
            s = np.asarray(scores)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}: scores must be a numeric array (N, C): {exc}") from None
        if s.dtype.kind in "biu":
            s = s.astype(np.float64)
        elif s.dtype.kind != "f":
            raise TypeError(f"{name}: scores must hold real numbers, got dtype {s.dtype}")
        scores = s
    if s.ndim != 2:
        raise ValueError(f"{name}: scores must be 2-D (N, C), got shape {s.shape}")
    n, c = s.shape
    if n == 0 or c == 0:
        raise ValueError(f"{name}: scores of shape {s.shape} are empty")
    if not np.isfinite(s).all():
        raise ValueError(f"{name}: scores contain NaN or infinity")

    if isinstance(y, Tensor):
        raise TypeError(f"{name}: labels y must be an integer array, not a Tensor")
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name}: labels y must be integers (class indices), got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name}: labels y must be 1-D (N,), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name}: {y.shape[0]} labels for {n} rows of scores")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= c:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name}: label {bad} out of range for {c} classes (0..{c - 1})")
    return scores, y.astype(np.intp, copy=False)


class _Loss(Function):
    """Base of the losses: rules that run on Tensors too."""

    differentiable_backward = True
    jvp_takes_none = True


class SVMLoss(_Loss):
    """Multiclass SVM (hinge) loss, margin 1, summed over the wrong classes, mean over N.

    ``L = 1/N sum_i sum_{j != y_i} max(0, s_ij - s_iy_i + 1)``.

    Gradient with respect to the scores, row ``i``: ``1/N`` at every wrong class whose
    margin is positive, and minus ``1/N`` times the number of those classes at the correct
    class. At a margin of exactly 0 (the hinge's kink) the gradient is taken as 0. The
    loss is piecewise linear: that gradient is constant where it is defined, its
    derivative 0.
    """

    @staticmethod
    def forward(ctx, scores, y):
        """scores: (N, C) float, y: (N,) int in [0, C). Returns a 0-d array (scores' dtype)."""
        n = scores.shape[0]
        rows = np.arange(n)
        margins = scores - scores[rows, y][:, None]
        margins += 1
        margins[rows, y] = 0
        np.maximum(margins, 0, out=margins)
        ctx.save_for_backward(margins > 0, y)
        ctx.dtype = scores.dtype
        return np.asarray(margins.sum() / n, dtype=scores.dtype)

    @staticmethod
    def _dscores(ctx):
        """The gradient for an upstream gradient of 1, as a fresh array."""
        positive, y = ctx.saved_tensors
        n = positive.shape[0]
        dscores = positive.astype(ctx.dtype)
        dscores[np.arange(n), y] = -dscores.sum(axis=1)
        dscores /= n
        return dscores

    @staticmethod
    def backward(ctx, grad_output):
        d = SVMLoss._dscores(ctx)
        if tnp.is_tensor(grad_output):
            return d * grad_output, None
        d *= np.asarray(grad_output, dtype=ctx.dtype)
        return d, None

    @staticmethod
    def jvp(ctx, t_scores, _t_y):
        return (SVMLoss._dscores(ctx) * t_scores).sum()


class SoftmaxCrossEntropy(_Loss):
    """Softmax cross-entropy, mean over N, with optional label smoothing.

    With smoothing ``eps`` the target distribution of row ``i`` is
    ``q_i = (1 - eps) * onehot(y_i) + eps / C`` (PyTorch's definition) and
    ``L = -1/N sum_i sum_j q_ij log p_ij`` with ``p_i = softmax(s_i)``; ``eps = 0`` gives
    ``-1/N sum_i log p_iy_i``.

    Gradient with respect to the scores: ``(p - q) / N``. Computed after subtracting each
    row's maximum score, so scores of any size (1e4 and beyond) neither overflow nor
    produce NaN.
    """

    @staticmethod
    def forward(ctx, scores, y, label_smoothing=0.0):
        """scores: (N, C) float, y: (N,) int, label_smoothing in [0, 1]. Returns a 0-d array."""
        n, c = scores.shape
        rows = np.arange(n)
        z = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(z)
        sums = e.sum(axis=1, keepdims=True)
        logp = z
        logp -= np.log(sums)
        eps = float(label_smoothing)
        loss = -logp[rows, y].mean()
        if eps:
            # eps/C * sum_j (-log p_ij) is eps times the row mean of -log p.
            loss = (1.0 - eps) * loss - eps * logp.mean()
        e /= sums  # the probabilities, kept for backward
        ctx.save_for_backward(scores, y)
        ctx.probs = e
        ctx.eps = eps
        return np.asarray(loss, dtype=scores.dtype)

    @staticmethod
    def _dscores(ctx):
        """(p - q) / N for an upstream gradient of 1: a fresh array, or, when the rule
        runs on Tensors, recorded from the scores (p = softmax(scores))."""
        scores, y = ctx.saved_tensors
        eps = ctx.eps
        if tnp.is_tensor(scores):
            n, c = scores.shape
            q = np.full((n, c), eps / c, dtype=scores.dtype)
            q[np.arange(n), y] += 1.0 - eps
            return (tnp.softmax(scores, axis=1) - q) * (1.0 / n)
        d = ctx.probs.copy()
        n, c = d.shape
        d[np.arange(n), y] -= 1.0 - eps
        if eps:
            d -= eps / c
        d /= n
        return d

    @staticmethod
    def backward(ctx, grad_output):
        d = SoftmaxCrossEntropy._dscores(ctx)
        if tnp.is_tensor(d) or tnp.is_tensor(grad_output):
            return d * grad_output, None, None
        d *= np.asarray(grad_output, dtype=d.dtype)
        return d, None, None

    @staticmethod
    def jvp(ctx, t_scores, _t_y, _t_eps):
        return (SoftmaxCrossEntropy._dscores(ctx) * t_scores).sum()


def svm_loss(scores, y) -> Tensor:
    """Multiclass SVM loss (margin 1) averaged over the batch.

    Parameters
    ----------
    scores : Tensor or ndarray, shape (N, C), float
        Class scores; integer arrays are taken as float64.
    y : ndarray, shape (N,), int
        Correct class of each row, in ``[0, C)``.

    Returns
    -------
    Tensor, shape (), dtype of ``scores``. Differentiable with respect to ``scores``.
    """
    scores, y = _check_inputs(scores, y, "svm_loss")
    return SVMLoss.apply(scores, y)


def cross_entropy(scores, y, label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy averaged over the batch (stable for scores of any size).

    Parameters
    ----------
    scores : Tensor or ndarray, shape (N, C), float
        Unnormalized class scores (logits); integer arrays are taken as float64.
    y : ndarray, shape (N,), int
        Correct class of each row, in ``[0, C)``.
    label_smoothing : float in [0, 1]
        Mix the one-hot targets with the uniform distribution:
        ``q = (1 - label_smoothing) * onehot + label_smoothing / C`` (as in PyTorch).

    Returns
    -------
    Tensor, shape (), dtype of ``scores``. Differentiable with respect to ``scores``.
    """
    try:
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(
            f"cross_entropy: label_smoothing must be a number, got {label_smoothing!r}"
        ) from None
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {eps}")
    scores, y = _check_inputs(scores, y, "cross_entropy")
    return SoftmaxCrossEntropy.apply(scores, y, eps)


class L2Penalty(_Loss):
    """``reg * sum(W**2)`` of one weight array, a scalar of W's dtype; gradient
    ``2 * reg * W``.

    One dot product forward and one scaled copy backward, instead of a graph of a square,
    a sum and a product over millions of weights.
    """

    @staticmethod
    def forward(ctx, W, reg):
        flat = W.reshape(-1)
        ctx.save_for_backward(W)
        ctx.reg = reg
        return np.asarray(reg * np.dot(flat, flat), dtype=W.dtype)

    @staticmethod
    def backward(ctx, g):
        (W,) = ctx.saved_tensors
        return W * (2.0 * ctx.reg * g), None

    @staticmethod
    def jvp(ctx, tW, _treg):
        (W,) = ctx.saved_tensors
        if tnp.is_tensor(W) or tnp.is_tensor(tW):
            return (W * tW).sum() * (2.0 * ctx.reg)
        return 2.0 * ctx.reg * np.vdot(W, tW)


def l2_penalty(weights, reg: float) -> Tensor:
    """``reg * sum over W in weights of sum(W**2)``, a scalar Tensor.

    Parameters
    ----------
    weights : non-empty iterable of Tensors (weight matrices of any shape)
    reg : float >= 0
        Regularization strength (the lecture's lambda, without a factor 1/2).
    """
    total = None
    for W in weights:
        term = L2Penalty.apply(W, float(reg))
        total = term if total is None else total + term
    if total is None:
        raise ValueError("l2_penalty: no weights given")
    return total
