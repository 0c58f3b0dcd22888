"""Muon: momentum whose update is orthogonalised (Keller Jordan, 2024).

For a weight matrix, or a bank of convolution filters seen as the matrix
(out_channels, in_channels * kh * kw), the step is not the momentum M itself but the
orthogonal matrix nearest to it, ``U V^T`` of the singular value decomposition
``M = U S V^T``: every direction the momentum points in moves by the same amount,
so the rarely-seen directions (small singular values) are not drowned by the common
ones. ``U V^T`` is approximated without an SVD by a few Newton-Schulz iterations, a
polynomial in ``X X^T`` that pushes every singular value of the normalised momentum
towards 1 (`zeropower_via_newtonschulz`); matrix products only, fast on a CPU.

One step of an orthogonalised parameter p with gradient g, of a group with rate lr,
momentum mu::

    b = mu * b + g;  d = g + mu * b (Nesterov) or b      # as SGD's momentum
    p *= 1 - lr * weight_decay                           # decoupled, as AdamW
    p *= sqrt(rows) / ||p||                               # with normalize_weights
    p -= lr * NS(d)

(the orthogonalised step has the same size whatever the gradient's scale, so the decay
is decoupled from it). A parameter that is not orthogonalised takes exactly `SGD`'s
step: ``g += weight_decay * p``, then the momentum as above, ``p -= lr * d``.

``rows`` is ``p.shape[0]`` (the output channels of a filter bank): a weight that a batch
norm follows computes the same function at any scale, and keeping its norm fixed keeps
the size of the steps relative to it fixed (airbench's Muon does this instead of weight
decay).

Vectors (biases, batch-norm shifts) have no useful orthogonalisation: a group's
``orthogonalize`` setting (None, the default) orthogonalises parameters of two or more
dimensions and gives vectors the plain momentum step; True (matrices only) or False (a
plain momentum step for all, e.g. for a classifier's last layer) can be set per group,
so one `Muon` with parameter groups can train a whole network, the convolution filters
orthogonalised and the rest by Nesterov SGD at their own rates.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.optim.groups import GroupSetting, check_number
from chainrule.optim.optimizers import Optimizer, _flag

__all__ = ["Muon", "NS_COEFFICIENTS", "zeropower_via_newtonschulz"]

# (a, b, c) of X <- a X + b (X X^T) X + c (X X^T)^2 X: Keller Jordan's quintic, chosen
# for the steepest rise of small singular values; after 5 steps the singular values lie
# in about [0.7, 1.2] rather than at exactly 1, which is as good for an update.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def zeropower_via_newtonschulz(G, steps: int = 5, coefficients=NS_COEFFICIENTS, eps=1e-7):
    """About ``U V^T`` of ``G = U S V^T`` (m, n), computed in G's float dtype.

    G is divided by its Frobenius norm (so every singular value is at most 1), then
    ``steps`` times ``X <- a X + (b A + c A^2) X`` with ``A = X X^T``, on the wide
    orientation (m <= n; a tall G is transposed there and back, so A is the smaller
    Gram matrix). ``coefficients = (1.5, -0.5, 0)`` is the classic cubic iteration, which
    converges to ``U V^T`` exactly; the default quintic gets near it in fewer steps.
    """
    G = np.asarray(G)
    if G.ndim != 2:
        raise ValueError(f"zeropower_via_newtonschulz: G must be a matrix, got shape {G.shape}")
    if G.dtype.kind != "f":
        G = G.astype(np.float64)
    a, b, c = (float(v) for v in coefficients)
    tall = G.shape[0] > G.shape[1]
    X = (G.T if tall else G) / (np.linalg.norm(G) + eps)
    for _ in range(int(steps)):
        A = X @ X.T
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return np.ascontiguousarray(X.T if tall else X)


def _orthogonalize(name, value):
    if value is None:
        return None
    return _flag(name, value)


def _steps(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _momentum(name, value):
    return check_number(name, value, 0.0, 1.0, hi_open=True)


class Muon(Optimizer):
    """Orthogonalised momentum (see the module docstring).

    ``Muon(params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5, weight_decay=0.0,
    normalize_weights=False, orthogonalize=None)``; every setting can be set per
    parameter group. State ``momentum_buffer`` (when momentum > 0).
    """

    _state_names = ("momentum_buffer",)
    _settings = {
        "momentum": _momentum,
        "nesterov": _flag,
        "ns_steps": _steps,
        "normalize_weights": _flag,
        "orthogonalize": _orthogonalize,
    }
    momentum = GroupSetting(_momentum)
    nesterov = GroupSetting(_flag)
    ns_steps = GroupSetting(_steps)
    normalize_weights = GroupSetting(_flag)
    orthogonalize = GroupSetting(_orthogonalize)

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov=True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        normalize_weights=False,
        orthogonalize=None,
    ):
        super().__init__(
            params, lr, weight_decay, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
            normalize_weights=normalize_weights, orthogonalize=orthogonalize,
        )  # fmt: skip

    def _check_groups(self):
        name = type(self).__name__
        for gi, g in enumerate(self.param_groups):
            if g["nesterov"] and g["momentum"] == 0:
                raise ValueError(f"{name}: Nesterov momentum needs momentum > 0")
            if g["orthogonalize"] and any(p.data.ndim < 2 for p in g["params"]):
                raise ValueError(
                    f"{name}: parameter group {gi} has orthogonalize=True but holds a "
                    "vector; only matrices and filters (2 or more dimensions) can be "
                    "orthogonalised"
                )

    def orthogonalized(self, i: int) -> bool:
        """Whether parameter i takes orthogonalised steps."""
        flag = self.param_groups[self._group_of[i]]["orthogonalize"]
        return self.params[i].data.ndim >= 2 if flag is None else flag

    def _active_states(self, i):
        return self._state_names if self.param_groups[self._group_of[i]]["momentum"] else ()

    def step(self) -> None:
        """One update of every parameter that has a gradient (``t`` is incremented
        first). The orthogonalised updates run in threads, one parameter at a time per
        thread, each Newton-Schulz product on one BLAS thread: the matrices are small
        (a few hundred rows), and a BLAS that splits each small product over threads
        spends more time handing it out than computing it."""
        from chainrule.nn.functional._parallel import map_chunks

        self.t += 1
        orthogonal = []
        for i, p, g in self._grads():
            group = self.param_groups[self._group_of[i]]
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            plain = not self.orthogonalized(i)
            if plain and wd:
                g = g + wd * p  # coupled, as SGD's
            d = g
            if mu:
                buf = self._buffer("momentum_buffer", i).reshape(-1)
                buf *= mu
                buf += g
                d = g + mu * buf if group["nesterov"] else buf
            if plain:
                p -= lr * d
            else:
                orthogonal.append((i, p, d, group))

        def work(start, stop, slot):
            for i, p, d, group in orthogonal[start:stop]:
                self._orthogonal_step(self.params[i].data.shape[0], p, d, group)

        size = sum(p.size for _, p, _, _ in orthogonal)
        map_chunks(work, len(orthogonal), 1, elements=size)

    @staticmethod
    def _orthogonal_step(rows, p, d, group) -> None:
        """p (flat view of a (rows, ...) parameter) after its decay, normalisation and
        orthogonalised step along d."""
        lr, wd = group["lr"], group["weight_decay"]
        if wd:
            p *= 1.0 - lr * wd
        if group["normalize_weights"]:
            norm = float(np.linalg.norm(p))
            if norm > 0:
                p *= math.sqrt(rows) / norm
        update = zeropower_via_newtonschulz(d.reshape(rows, -1), group["ns_steps"])
        update *= -lr
        p += update.reshape(-1).astype(p.dtype, copy=False)
