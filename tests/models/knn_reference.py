"""References for the k-NN tests: float64 brute force and image-like data."""

from __future__ import annotations

import numpy as np


def brute_force(X, Q, metric):
    """Float64 distances (nq, n) and the stable argsort: the reference everything must match."""
    X = np.asarray(X, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    if metric == "l2":
        d = np.sqrt(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    elif metric == "l1":
        d = np.abs(Q[:, None, :] - X[None, :, :]).sum(-1)
    else:
        nq = np.linalg.norm(Q, axis=1)[:, None]
        nx = np.linalg.norm(X, axis=1)[None, :]
        cos = np.divide(Q @ X.T, nq * nx, out=np.zeros((len(Q), len(X))), where=nq * nx > 0)
        d = 1.0 - cos
    order = np.argsort(d, axis=1, kind="stable")
    return np.take_along_axis(d, order, 1), order


def brute_predict(X, y, Q, k, metric):
    """Majority vote of the k nearest (ties to the smallest label) and vote fractions."""
    _, order = brute_force(X, Q, metric)
    classes = np.unique(y)
    votes = np.stack([(y[order[:, :k]] == c).sum(1) for c in classes], axis=1)
    return classes[votes.argmax(1)], votes / k


def image_like(rng, n, d=96, rank=6):
    """Integer data near a low-dimensional subspace, like natural images (float32 0..255)."""
    Z = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) * 20
    return np.clip(np.round(Z + 128 + rng.normal(scale=4, size=(n, d))), 0, 255).astype(np.float32)


def smooth_images(rng, n, side=8, channels=3):
    """Blurry random images (n, side * side * channels) float32 0..255, HWC order:
    neighbouring pixels and channels move together, as in photographs."""
    coarse = rng.normal(size=(n, side // 4 + 1, side // 4 + 1, channels))
    x = np.linspace(0, side // 4, side)
    i = np.minimum(x.astype(int), side // 4 - 1)
    f = (x - i)[None, :, None, None]
    rows = coarse[:, i] * (1 - f) + coarse[:, i + 1] * f
    f = (x - i)[None, None, :, None]
    img = rows[:, :, i] * (1 - f) + rows[:, :, i + 1] * f
    img = img + 0.3 * img.mean(axis=3, keepdims=True)  # colours move together too
    img = 128 + 60 * img + rng.normal(scale=3, size=img.shape)
    return np.clip(np.round(img), 0, 255).reshape(n, -1).astype(np.float32)
