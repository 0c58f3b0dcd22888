"""Does a sample's prediction depend on the rest of the batch, and what does making it
not cost? Networks of each kind (an MLP with batch norm, ConvNets on 1x1, 7x10 and 32x32
images, untrained), three ways of scoring a batch:

- ``float32``: the network as trained, on the batch as given;
- ``padded``: float32, the batch padded with zero rows to a multiple of 96 (a multiple of
  the row tiles of the common BLAS kernels);
- ``float64``: a float64 copy of the network, scores rounded to float32 (what the
  estimators' ``predict``, ``predict_proba`` and ``decision_function`` do).

For each: how many rows of permuted and subset batches (1, 7, 33 rows, all, all but 5)
get other bits than in the whole batch, with 1 and 2 BLAS threads; then the time of
``float64`` against ``float32`` on a CIFAR-sized batch, interleaved, median of the
per-pair ratios.

    python benchmarks/predict_invariance.py
"""

from __future__ import annotations

import copy
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from chainrule.autograd.engine import Tensor, no_grad
from chainrule.models import ConvNet, FullyConnectedNet


def cnn(channels, shape, n_classes, rng):
    model = ConvNet(channels=channels, stem="conv", convs_per_stage=1, logit_scale=1.0,
                    dropout=0.0)  # fmt: skip
    return model._build_network(shape, n_classes, rng)


def networks(rng):
    mlp = FullyConnectedNet(hidden_dims=(100, 100), batchnorm=True, dropout=0.0)
    return {
        "mlp 75-100-100-10": (mlp._build_network((75,), 10, rng), (75,), 301),
        "cnn 1x1x3": (cnn((8,), (1, 1, 3), 3, rng), (1, 1, 3), 301),
        "cnn 7x10x3": (cnn((16, 32), (7, 10, 3), 10, rng), (7, 10, 3), 301),
        "cnn 32x32x3": (cnn((16, 32, 64), (32, 32, 3), 10, rng), (32, 32, 3), 120),
    }


def float32(net, X):
    return net(Tensor(X)).data


def padded(net, X, block=96):
    n = len(X)
    P = np.zeros((-(-n // block) * block, *X.shape[1:]), X.dtype)
    P[:n] = X
    return net(Tensor(P)).data[:n]


def float64(net, X):
    net64 = copy.deepcopy(net).to(np.float64)
    net64.eval()
    return net64(Tensor(X.astype(np.float64))).data.astype(np.float32)


def differing_rows(scheme, net, X) -> int:
    whole = scheme(net, X)
    n, bad = len(X), 0
    for trial, size in enumerate((n, n, 1, 7, 33, n - 5)):
        idx = np.random.default_rng(trial).permutation(n)[:size]
        bad += int((scheme(net, X[idx]) != whole[idx]).any(axis=1).sum())
    return bad


def cost(net, X, pairs=5) -> float:
    ratios = []
    for _ in range(pairs):
        t0 = time.perf_counter()
        float32(net, X)
        t1 = time.perf_counter()
        float64(net, X)
        ratios.append((time.perf_counter() - t1) / (t1 - t0))
    return statistics.median(ratios)


def main() -> None:
    rng = np.random.default_rng(0)
    with no_grad():
        for name, (net, shape, n) in networks(rng).items():
            net.eval()
            X = rng.standard_normal((n, *shape)).astype(np.float32)
            for threads in (1, 2):
                with threadpool_limits(threads, user_api="blas"):
                    counts = {
                        s.__name__: differing_rows(s, net, X) for s in (float32, padded, float64)
                    }
                print(f"{name:18s} {threads} BLAS thread(s): rows with other bits "
                      + ", ".join(f"{k} {v}" for k, v in counts.items()))  # fmt: skip
        cifar = networks(rng)["cnn 32x32x3"][0]
        cifar.eval()
        X = rng.standard_normal((500, 32, 32, 3)).astype(np.float32)
        print(f"cost, cnn 32x32x3 on 500 images: float64 / float32 = {cost(cifar, X):.2f}x")
        mlp = FullyConnectedNet(hidden_dims=(100, 100), batchnorm=True, dropout=0.0)
        mlp = mlp._build_network((3072,), 10, rng)
        mlp.eval()
        R = rng.standard_normal((10000, 3072)).astype(np.float32)
        print(f"cost, mlp 3072-100-100-10 on 10,000 rows: float64 / float32 = "
              f"{cost(mlp, R):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
