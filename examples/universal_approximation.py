"""Universal approximation: a two-layer ReLU network fits a 1-D function.

A two-layer network with one input and one output computes

    f(x) = b2 + sum_j  v_j * relu(w_j * x + b_j)

a sum of shifted (kink at x = -b_j / w_j), scaled (slope w_j * v_j) ReLUs: a piecewise
linear function. The lecture's argument that such networks can approximate any continuous
function on an interval builds "bumps" from ReLUs: a pair of ReLUs with the same slope and
opposite signs, ``relu(x - s) - relu(x - s - d)``, is a ramp from 0 up to d; a second pair
brings it back down, and the four together are a bump of any height on any interval.
Enough bumps follow any continuous curve.

This script

1. trains a two-layer ReLU network (chainrule.nn, Adam on the squared error, full batch)
   on samples of a bumpy target,
2. builds the lecture's bump network for the same target by hand (no training),
3. plots the target and both fits, the trained fit split into its shifted, scaled ReLUs,
   and the hand-built fit split into its bumps (``--out`` PNG).

Run::

    python examples/universal_approximation.py --out ua.png [--hidden 30 --steps 3000]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from chainrule import Tensor, nn, optim

LO, HI = -3.0, 3.0


def target(x: np.ndarray) -> np.ndarray:
    """The function to approximate: a wave with a bump, on [-3, 3]."""
    return np.sin(2.0 * x) + 0.8 * np.exp(-4.0 * (x - 1.0) ** 2)


def train_two_layer(
    x: np.ndarray,
    y: np.ndarray,
    hidden: int = 30,
    steps: int = 3000,
    lr: float = 1e-2,
    seed: int = 0,
):
    """Fit ``f(x) = relu(x W1 + b1) W2 + b2`` to points (x, y) by full-batch Adam on the MSE.

    x, y: (N,) float arrays. The kinks ``-b1 / W1`` start spread evenly over [LO, HI]
    (with zero biases every ReLU would bend at x = 0). Returns ``(net, losses)``: the
    `nn.Sequential` (Linear(1, hidden), ReLU, Linear(hidden, 1)), float64, and the loss of
    every step.
    """
    rng = np.random.default_rng(seed)
    net = nn.Sequential(
        nn.Linear(1, hidden, random_state=rng, dtype=np.float64),
        nn.ReLU(),
        nn.Linear(hidden, 1, init="xavier", random_state=rng, dtype=np.float64),
    )
    first = net[0]
    first.weight.data[...] = rng.choice([-1.0, 1.0], size=hidden) * rng.uniform(0.5, 2.0, hidden)
    kinks = np.sort(rng.uniform(LO, HI, size=hidden))
    first.bias.data[...] = -first.weight.data[0] * kinks
    opt = optim.Adam(net.parameters(), lr=lr)
    sched = optim.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.01)
    X = Tensor(x.reshape(-1, 1).astype(np.float64))
    Y = y.reshape(-1, 1).astype(np.float64)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        err = net(X) - Y
        loss = (err * err).mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return net, np.array(losses)


def relu_terms(net, x: np.ndarray) -> tuple[np.ndarray, float]:
    """The trained fit as its parts: ``terms[:, j] = v_j * relu(w_j * x + b_j)`` (N, H),
    and the output bias b2, so that ``f(x) = terms.sum(1) + b2``."""
    w = net[0].weight.data[0]
    b = net[0].bias.data
    v = net[2].weight.data[:, 0]
    terms = np.maximum(x[:, None] * w + b, 0.0) * v
    return terms, float(net[2].bias.data[0])


def bump_network(f, n_bumps: int, lo: float = LO, hi: float = HI):
    """The lecture's construction: a two-layer ReLU network made of `n_bumps` bumps.

    The interval is cut into `n_bumps` pieces of width ``w``; bump k rises over a ramp
    of width ``w`` centred on the left edge of piece k, stays at ``f(centre_k)`` and falls
    over a ramp centred on its right edge: four ReLUs,
    ``h/w * (relu(x-a+w/2) - relu(x-a-w/2) - relu(x-b+w/2) + relu(x-b-w/2))``. Adjacent
    ramps overlap, so the sum interpolates linearly between neighbouring bump heights.

    Returns ``(W1 (1, 4K), b1 (4K,), W2 (4K, 1))``: hidden unit ``i`` is
    ``relu(W1[0, i] * x + b1[i])``, the output is ``relu(...) @ W2`` (no output bias).
    """
    edges = np.linspace(lo, hi, n_bumps + 1)
    w = edges[1] - edges[0]
    centres = (edges[:-1] + edges[1:]) / 2
    heights = f(centres)
    kinks = np.stack(
        [edges[:-1] - w / 2, edges[:-1] + w / 2, edges[1:] - w / 2, edges[1:] + w / 2], axis=1
    )
    signs = np.array([1.0, -1.0, -1.0, 1.0])
    W1 = np.ones((1, 4 * n_bumps))
    b1 = -kinks.reshape(-1)
    W2 = (heights[:, None] / w * signs).reshape(-1, 1)
    return W1, b1, W2


def bump_parts(W1, b1, W2, x: np.ndarray) -> np.ndarray:
    """Each bump of a `bump_network` evaluated on x: (N, K), summing to the network's output."""
    units = np.maximum(x[:, None] * W1[0] + b1, 0.0) * W2[:, 0]
    return units.reshape(len(x), -1, 4).sum(axis=2)


def plot(x, y_true, xs, ys, net, bumps, path) -> None:
    """Three panels: the fits, the trained fit as ReLUs, the hand-built fit as bumps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms, b2 = relu_terms(net, x)
    fit = terms.sum(1) + b2
    W1, b1, W2 = bumps
    parts = bump_parts(W1, b1, W2, x)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    ax.plot(x, y_true, "k-", lw=2, label="target")
    ax.plot(xs, ys, ".", color="0.6", ms=3, label="training points")
    ax.plot(x, fit, "C3-", lw=1.5, label=f"trained, {terms.shape[1]} ReLUs")
    ax.plot(x, parts.sum(1), "C0--", lw=1.2, label=f"{parts.shape[1]} bumps (by hand)")
    ax.set_title("two-layer ReLU networks fit a 1-D function")
    ax.legend(fontsize=8)
    ax = axes[1]
    order = np.argsort(-net[0].bias.data / net[0].weight.data[0])
    for j in order:
        ax.plot(x, terms[:, j], lw=0.8, alpha=0.7)
    ax.plot(x, fit, "k-", lw=2, label="sum + bias = fit")
    ax.set_title(r"trained fit = $b_2 + \sum_j v_j\,\mathrm{relu}(w_j x + b_j)$")
    ax.legend(fontsize=8)
    ax = axes[2]
    for k in range(parts.shape[1]):
        ax.fill_between(x, parts[:, k], alpha=0.35, lw=0)
    ax.plot(x, parts.sum(1), "C0-", lw=1.5, label="sum of bumps")
    ax.plot(x, y_true, "k:", lw=1.5, label="target")
    ax.set_title("bumps: each = 2 pairs of ReLUs (up ramp, down ramp)")
    ax.legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("x")
        ax.axhline(0, color="0.8", lw=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--hidden", type=int, default=30, help="hidden ReLUs of the trained net")
    p.add_argument("--steps", type=int, default=3000, help="Adam steps (full batch)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--points", type=int, default=200, help="training points")
    p.add_argument("--bumps", type=int, default=12, help="bumps of the hand-built network")
    p.add_argument("--noise", type=float, default=0.05, help="std of noise on the targets")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.hidden < 1 or a.steps < 1 or a.points < 2 or a.bumps < 1:
        p.error("--hidden, --steps, --bumps must be positive and --points at least 2")
    rng = np.random.default_rng(a.seed)
    xs = np.sort(rng.uniform(LO, HI, a.points))
    ys = target(xs) + a.noise * rng.standard_normal(a.points)
    net, losses = train_two_layer(xs, ys, a.hidden, a.steps, a.lr, a.seed)
    x = np.linspace(LO, HI, 600)
    terms, b2 = relu_terms(net, x)
    rmse_net = float(np.sqrt(np.mean((terms.sum(1) + b2 - target(x)) ** 2)))
    bumps = bump_network(target, a.bumps)
    rmse_bumps = float(np.sqrt(np.mean((bump_parts(*bumps, x).sum(1) - target(x)) ** 2)))
    plot(x, target(x), xs, ys, net, bumps, a.out)
    print(
        f"trained {a.hidden} ReLUs: loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
        f"RMSE to the target {rmse_net:.4f}"
    )
    print(f"{a.bumps} bumps ({4 * a.bumps} ReLUs) by hand: RMSE to the target {rmse_bumps:.4f}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
