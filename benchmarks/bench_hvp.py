"""A Hessian-vector product against a gradient and against PyTorch (CPU), interleaved.

The function is the loss of a 3072-256-10 network (linear, ReLU, linear, softmax
cross-entropy) on a float32 batch of 256, as a function of its four parameter arrays.
Four sides run in this process with the same number of BLAS threads (threadpoolctl for
NumPy's, ``torch.set_num_threads`` for PyTorch's):

- ``grad``: chainrule's gradient of the loss (``chainrule.grad``);
- ``hvp``: chainrule's Hessian-vector product (``chainrule.hvp``: forward mode over the
  backward pass, Pearlmutter's trick);
- ``torch hvp``: ``torch.func.jvp(torch.func.grad(f), ...)`` of the same loss;
- ``torch grad``: ``torch.func.grad(f)``, for reference.

Goals: hvp / grad <= 4 (an HVP costs a small constant number of gradients) and
hvp / torch hvp <= 1. Every side computes the same numbers first (the HVPs agree to
float32 rounding). The sides take turns in short bursts, the order rotating every round;
each ratio is the median over rounds of the per-round ratio, with its quartiles.

Usage::

    python benchmarks/bench_hvp.py [--threads 2] [--rounds 21] [--burst 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

N, D, H, C = 256, 3072, 256, 10


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D), dtype=np.float32)
    y = rng.integers(0, C, N)
    params = (
        (rng.standard_normal((D, H)) * np.sqrt(2.0 / D)).astype(np.float32),
        np.zeros(H, dtype=np.float32),
        (rng.standard_normal((H, C)) * np.sqrt(2.0 / H)).astype(np.float32),
        np.zeros(C, dtype=np.float32),
    )
    vs = tuple(rng.standard_normal(p.shape, dtype=np.float32) for p in params)
    return x, y, params, vs


def chainrule_sides(x, y, params, vs):
    import chainrule as cr
    import chainrule.nn.functional as F

    def loss(w1, b1, w2, b2):
        return F.cross_entropy(F.linear(F.relu(F.linear(x, w1, b1)), w2, b2), y)

    grad = cr.grad(loss, argnums=(0, 1, 2, 3))
    return {
        "grad": lambda: grad(*params),
        "hvp": lambda: cr.hvp(loss, params, vs)[1],
    }


def torch_sides(x, y, params, vs):
    import torch

    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    tp = tuple(torch.from_numpy(p) for p in params)
    tv = tuple(torch.from_numpy(v) for v in vs)

    def loss(w1, b1, w2, b2):
        h = torch.relu(tx @ w1 + b1)
        return torch.nn.functional.cross_entropy(h @ w2 + b2, ty)

    grad = torch.func.grad(loss, argnums=(0, 1, 2, 3))

    def hvp():
        return torch.func.jvp(lambda *ps: grad(*ps), tp, tv)[1]

    return {"torch hvp": hvp, "torch grad": lambda: grad(*tp)}


def check_same_numbers(sides) -> float:
    """Worst relative difference between chainrule's and PyTorch's HVP (float32)."""
    ours = sides["hvp"]()
    theirs = [t.numpy() for t in sides["torch hvp"]()]
    worst = 0.0
    for a, b in zip(ours, theirs):
        assert a.dtype == np.float32, a.dtype
        worst = max(worst, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)))
    assert worst < 1e-3, f"chainrule's HVP differs from PyTorch's: {worst:.2e}"
    return worst


def interleaved(sides: dict, rounds: int, burst: int) -> dict:
    names = list(sides)
    for name in names:  # warm-up
        sides[name]()
    seconds = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            for _ in range(burst):
                sides[name]()
            seconds[name].append((time.perf_counter() - t0) / burst)
    return seconds


def ratio(seconds, a, b):
    rs = [x / y for x, y in zip(seconds[a], seconds[b])]
    q1, med, q3 = statistics.quantiles(rs, n=4, method="inclusive")
    return med, q1, q3


def blas_line(threads: int, torch_too: bool) -> str:
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    np_blas = next((i for i in blas if "numpy" in i.get("filepath", "")), blas[0] if blas else {})
    line = (
        f"NumPy {np.__version__}: {np_blas.get('internal_api', '?')} {np_blas.get('version', '')}"
        f" ({np_blas.get('architecture', '?')}), {threads} threads"
    )
    if torch_too:
        import torch

        lib = "MKL" if torch.backends.mkl.is_available() else "its own BLAS"
        line += f"; PyTorch {torch.__version__}: {lib}, {torch.get_num_threads()} threads"
    return line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--burst", type=int, default=3, help="calls per side per round")
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    x, y, params, vs = problem()
    sides = chainrule_sides(x, y, params, vs)
    torch_too = not args.no_torch
    if torch_too:
        try:
            import torch
        except ImportError:
            torch_too = False
            print("PyTorch is not installed: chainrule's sides only", file=sys.stderr)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        if torch_too:
            torch.set_num_threads(args.threads)
            sides.update(torch_sides(x, y, params, vs))
            worst = check_same_numbers(sides)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"HVP of a {D}-{H}-{C} network's loss (linear, ReLU, linear, cross-entropy), "
            f"batch {N}, float32; {args.rounds} rounds of {args.burst} calls per side, "
            f"load average {load:.2f}"
        )
        print(f"    {blas_line(args.threads, torch_too)}")
        if torch_too:
            print(f"    chainrule's HVP = PyTorch's to a relative {worst:.1e}")
        seconds = interleaved(sides, args.rounds, args.burst)
    for name, ts in seconds.items():
        print(f"    {name:11s}: {statistics.median(ts) * 1e3:8.2f} ms (median of {len(ts)} rounds)")
    pairs = [("hvp", "grad", 4.0)]
    if torch_too:
        pairs += [("hvp", "torch hvp", 1.0), ("grad", "torch grad", None)]
    for a, b, goal in pairs:
        med, q1, q3 = ratio(seconds, a, b)
        verdict = ""
        if goal is not None:
            verdict = f"  goal <= {goal:g}: {'met' if med <= goal else 'NOT met'}"
        print(
            f"    {a} / {b}: median of per-round ratios {med:.2f} "
            f"(quartiles {q1:.2f}-{q3:.2f}){verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
