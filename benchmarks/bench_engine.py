"""Engine speed against reference libraries, both sides interleaved in one process.

(a) Scalar graphs: micrograd's demo (a 2-16-16-1 MLP over 100 two-moons points, max-margin
    loss with L2 regularisation, then backward) with `micrograd` and the same graph made
    of 0-d chainrule Tensors. Ratio = chainrule time / micrograd time (goal: <= 1).
(b) One forward + backward step of a 3072-100-10 network (linear, relu, linear,
    log_softmax, pick the label entries, mean) on a float32 batch of 200, with chainrule
    and with PyTorch on the CPU using the same number of BLAS threads.
    Ratio = chainrule time / PyTorch time (goal: <= 1.10). A third side runs only the
    step's five matrix products with plain ``np.matmul`` (same shapes, same BLAS): its
    GFLOP/s is the matrix-product limit of this machine in this run, and each library's
    GFLOP/s (the step's matrix-product FLOPs over its time) is printed as a fraction of it.

How the sides are timed:
- In rounds: each round times a short burst of every side (one demo step for (a), a few
  steps for (b)), the side that goes first rotating from round to round. A round's ratio
  compares bursts run a fraction of a second apart, so a change in the load of a shared
  machine hits both sides of it alike; the result is the MEDIAN of the per-round ratios
  (with its quartiles), for wall time and for CPU time.
- The same garbage-collector setting on both sides: by default the collector is disabled
  inside each burst and a full collection runs between bursts; ``--gc on`` keeps it
  enabled. (micrograd's closures form reference cycles, so with the collector on much of
  its time is the collector's.) What a burst returns is freed after its clock stops.
- (b) uses the same number of BLAS threads on all sides: NumPy's OpenBLAS setting, or
  ``--threads N``. The machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for this
  command only (the script restarts itself without them and says so), unless
  ``--keep-openblas-env``.

Run:  python benchmarks/bench_engine.py [--threads 1] [--gc on] [--only scalar|tensor]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time

# OpenBLAS reads these when NumPy is imported; the machine pins a generic core type. They
# are dropped together for this command only (see --keep-openblas-env), before NumPy loads.
_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _reexec_without_openblas_env() -> None:
    if "--keep-openblas-env" in sys.argv or not any(v in os.environ for v in _OPENBLAS_VARS):
        return
    env = {k: v for k, v in os.environ.items() if k not in _OPENBLAS_VARS}
    env["_CHAINRULE_BENCH_UNSET"] = ",".join(
        f"{v}={os.environ[v]}" for v in _OPENBLAS_VARS if v in os.environ
    )
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


if __name__ == "__main__":
    _reexec_without_openblas_env()

import numpy as np  # noqa: E402

import chainrule as cr  # noqa: E402


def two_moons(n: int, noise: float, rng: np.random.Generator):
    """Two interleaving half circles (like sklearn.datasets.make_moons); labels -1 / +1."""
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.vstack(
        [
            np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
            np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], axis=1),
        ]
    )
    X += rng.normal(scale=noise, size=X.shape)
    y = np.concatenate([-np.ones(n_out), np.ones(n_in)])
    return X, y


# ---------------------------------------------------------------- interleaved timing


def interleaved(sides: dict, rounds: int, burst: int, gc_mode: str) -> dict:
    """Time `burst` calls of each ``sides[name]()`` per round, for `rounds` rounds.

    The side that starts a round rotates, so no side always runs right after another.
    One warm-up burst of each side runs first. Returns ``{name: (walls, cpus)}``: per
    round, the seconds per call of that round's burst.
    """
    names = list(sides)
    for fn in sides.values():
        fn()
    wall = {k: [] for k in names}
    cpu = {k: [] for k in names}
    was_enabled = gc.isenabled()
    try:
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                fn = sides[name]
                gc.collect()
                if gc_mode == "off":
                    gc.disable()
                results = []
                keep = results.append
                c0 = time.process_time()
                t0 = time.perf_counter()
                for _ in range(burst):
                    keep(fn())
                t1 = time.perf_counter()
                c1 = time.process_time()
                # Freed outside the clock: with the collector off, micrograd's graph (a web
                # of reference cycles) would only be freed by the next gc.collect(), while
                # an acyclic graph is freed at once; neither belongs in the timing.
                del results, keep
                gc.enable()
                wall[name].append((t1 - t0) / burst)
                cpu[name].append((c1 - c0) / burst)
    finally:
        if not was_enabled:
            gc.disable()
    return {k: (wall[k], cpu[k]) for k in names}


def _quartiles(values):
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, med, q3


def pair_ratios(times: dict, ours: str, ref: str) -> dict:
    """Median and quartiles of the per-round ratios ours/ref, wall and CPU."""
    out = {}
    for i, kind in enumerate(("wall", "CPU")):
        ratios = [a / b for a, b in zip(times[ours][i], times[ref][i])]
        out[kind] = _quartiles(ratios)
    return out


def report(title: str, times: dict, ours: str, ref: str, goal: float, rounds: int) -> float:
    """Print every side's median times and the per-round ratios; return the wall ratio."""
    print(title)
    for name, (walls, cpus) in times.items():
        print(
            f"    {name:12s}: {statistics.median(walls) * 1e3:9.3f} ms wall, "
            f"{statistics.median(cpus) * 1e3:9.3f} ms CPU  (medians of {rounds} rounds)"
        )
    ratios = pair_ratios(times, ours, ref)
    for kind, (q1, med, q3) in ratios.items():
        print(
            f"    {ours}/{ref} {kind:4s}: median of per-round ratios {med:.3f} "
            f"(quartiles {q1:.3f}-{q3:.3f})"
        )
    med = ratios["wall"][1]
    print(f"    goal <= {goal:.2f} on wall time: {'met' if med <= goal else 'NOT met'}")
    return med


# ---------------------------------------------------------------- (a) scalar graphs


class ScalarMLP:
    """micrograd.nn.MLP written with 0-d chainrule Tensors (same layout, same init)."""

    def __init__(self, nin: int, nouts: list[int]):
        sizes = [nin, *nouts]
        self.layers = []
        for i in range(len(nouts)):
            neurons = []
            for _ in range(sizes[i + 1]):
                w = [cr.Tensor(random.uniform(-1, 1), requires_grad=True) for _ in range(sizes[i])]
                b = cr.Tensor(0.0, requires_grad=True)
                neurons.append((w, b))
            self.layers.append((neurons, i != len(nouts) - 1))

    def __call__(self, x):
        for neurons, nonlin in self.layers:
            out = []
            for w, b in neurons:
                act = sum((wi * xi for wi, xi in zip(w, x)), b)
                out.append(act.relu() if nonlin else act)
            x = out[0] if len(out) == 1 else out
        return x

    def parameters(self):
        return [p for neurons, _ in self.layers for w, b in neurons for p in [*w, b]]

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()


def demo_step(model, X, y, make_input):
    """The loss of micrograd's demo notebook, then backward (works for both libraries)."""
    inputs = [list(map(make_input, row)) for row in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    alpha = 1e-4
    reg_loss = alpha * sum(p * p for p in model.parameters())
    total = data_loss + reg_loss
    accuracy = [(yi > 0) == (si.data > 0) for yi, si in zip(y, scores)]
    model.zero_grad()
    total.backward()
    return total, sum(accuracy) / len(accuracy)


def count_ops(out) -> int:
    seen = set()
    stack = [out]
    while stack:
        t = stack.pop()
        ctx = t._ctx
        if ctx is None or id(ctx) in seen:
            continue
        seen.add(id(ctx))
        stack.extend(a for a in ctx.inputs if isinstance(a, cr.Tensor))
    return len(seen)


def bench_scalar(rounds: int, gc_mode: str) -> float:
    from micrograd.engine import Value
    from micrograd.nn import MLP

    X, y = two_moons(100, 0.1, np.random.default_rng(1337))
    X = X.tolist()
    y = [int(v) for v in y]

    random.seed(1337)
    mg_model = MLP(2, [16, 16, 1])
    random.seed(1337)
    cr_model = ScalarMLP(2, [16, 16, 1])

    # Same numbers on both sides: the same loss and the same gradients.
    mg_loss, _ = demo_step(mg_model, X, y, Value)
    cr_loss, _ = demo_step(cr_model, X, y, cr.Tensor)
    mg_grads = np.array([p.grad for p in mg_model.parameters()])
    cr_grads = np.array([p.grad for p in cr_model.parameters()], dtype=float)
    assert abs(mg_loss.data - cr_loss.item()) < 1e-9, (mg_loss.data, cr_loss.item())
    assert np.allclose(mg_grads, cr_grads, atol=1e-9)

    n_ops = count_ops(cr_loss)
    times = interleaved(
        {
            "micrograd": lambda: demo_step(mg_model, X, y, Value),
            "chainrule": lambda: demo_step(cr_model, X, y, cr.Tensor),
        },
        rounds,
        1,
        gc_mode,
    )
    return report(
        f"(a) scalar MLP 2-16-16-1, 100 points, {n_ops:,} operations per graph, forward + "
        "backward\n    (inputs: micrograd Values / chainrule Tensors without requires_grad; "
        "pure Python, one thread; one step per side per round)",
        times,
        "chainrule",
        "micrograd",
        1.0,
        rounds,
    )


# ---------------------------------------------------------------- (b) tensor step


def _blas_threads(threads: int | None):
    """Set (or read) the BLAS threads of NumPy and PyTorch; describe both libraries."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    np_blas = next((i for i in blas if "numpy" in i.get("filepath", "")), blas[0] if blas else {})
    if threads is None:
        threads = int(np_blas.get("num_threads", 1))
    else:
        # Applies to NumPy's BLAS for the rest of the process.
        threadpool_limits(limits=threads, user_api="blas")
        np_blas = dict(np_blas, num_threads=threads)
    torch.set_num_threads(threads)
    torch_blas = "MKL" if torch.backends.mkl.is_available() else "its own BLAS"
    return (
        f"NumPy {np.__version__} BLAS: {np_blas.get('internal_api', '?')} "
        f"{np_blas.get('version', '')} ({np_blas.get('architecture', '?')}), {threads} threads; "
        f"PyTorch {torch.__version__}: {torch_blas}, {torch.get_num_threads()} threads"
    )


def bench_tensor(rounds: int, burst: int, gc_mode: str, threads: int | None) -> float:
    import torch

    blas_line = _blas_threads(threads)
    rng = np.random.default_rng(0)
    N, D, H, C = 200, 3072, 100, 10
    X = rng.standard_normal((N, D)).astype(np.float32)
    y = rng.integers(0, C, size=N)
    W1 = (rng.standard_normal((D, H)) * np.sqrt(2.0 / D)).astype(np.float32)
    b1 = np.zeros(H, dtype=np.float32)
    W2 = (rng.standard_normal((H, C)) * np.sqrt(2.0 / H)).astype(np.float32)
    b2 = np.zeros(C, dtype=np.float32)
    # The step's matrix products: X W1 and h W2 forward; X^T dh, dz W2^T and h^T dz
    # backward (no gradient for the data X).
    flops = 2 * N * D * H + 2 * N * H * C + 2 * N * D * H + 2 * N * C * H + 2 * N * H * C

    params = [cr.Tensor(a.copy(), requires_grad=True) for a in (W1, b1, W2, b2)]
    cW1, cb1, cW2, cb2 = params
    cx = cr.Tensor(X)
    rows = np.arange(N)

    def cr_step():
        for p in params:
            p.zero_grad()
        h = (cx @ cW1 + cb1).relu()
        logp = (h @ cW2 + cb2).log_softmax(axis=1)
        loss = -logp[rows, y].mean()
        loss.backward()
        return loss

    tparams = [torch.tensor(a.copy(), requires_grad=True) for a in (W1, b1, W2, b2)]
    tW1, tb1, tW2, tb2 = tparams
    tx = torch.from_numpy(X)
    ty = torch.from_numpy(y)
    trows = torch.arange(N)

    def torch_step():
        for p in tparams:
            p.grad = None
        h = torch.relu(tx @ tW1 + tb1)
        logp = torch.log_softmax(h @ tW2 + tb2, dim=1)
        loss = -logp[trows, ty].mean()
        loss.backward()
        return loss

    hm = np.maximum(X @ W1, 0)
    dz = rng.standard_normal((N, C)).astype(np.float32)
    dh = rng.standard_normal((N, H)).astype(np.float32)

    def matmuls():
        return (X @ W1, hm @ W2, X.T @ dh, dz @ W2.T, hm.T @ dz)

    lc = cr_step()
    lt = torch_step()
    assert lc.dtype == np.float32 and all(p.grad.dtype == np.float32 for p in params)
    assert abs(lc.item() - lt.item()) < 1e-4, (lc.item(), lt.item())
    for p, tp in zip(params, tparams):
        assert np.allclose(p.grad, tp.grad.numpy(), rtol=1e-3, atol=1e-5)

    times = interleaved(
        {"PyTorch": torch_step, "chainrule": cr_step, "np.matmul": matmuls}, rounds, burst, gc_mode
    )
    ratio = report(
        f"(b) 3072-100-10 network, batch {N}, float32, one forward + backward step "
        f"({flops / 1e6:.1f} MFLOP of matrix products; {burst} steps per side per round)\n"
        f"    {blas_line}",
        times,
        "chainrule",
        "PyTorch",
        1.10,
        rounds,
    )
    limit = flops / statistics.median(times["np.matmul"][0]) / 1e9
    print(f"    matrix-product limit (the same products with np.matmul): {limit:.1f} GFLOP/s")
    for name in ("chainrule", "PyTorch"):
        rate = flops / statistics.median(times[name][0]) / 1e9
        print(f"    {name:12s}: {rate:6.1f} GFLOP/s = {rate / limit:.2f} of that limit")
    return ratio


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds-scalar", type=int, default=31)
    p.add_argument("--rounds-tensor", type=int, default=41)
    p.add_argument("--burst-tensor", type=int, default=5, help="steps per side per round in (b)")
    p.add_argument("--gc", choices=["off", "on"], default="off")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads on every side of (b) (default: NumPy's OpenBLAS setting)",
    )
    p.add_argument("--only", choices=["scalar", "tensor"], default=None)
    p.add_argument(
        "--keep-openblas-env",
        action="store_true",
        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as set in the environment",
    )
    args = p.parse_args(argv)
    unset = os.environ.get("_CHAINRULE_BENCH_UNSET")
    if unset:
        print(f"OpenBLAS environment unset for this command: {unset}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Python {sys.version.split()[0]}, NumPy {np.__version__}, gc {args.gc} while timing, "
        f"{os.cpu_count()} CPUs, load average {load:.2f}"
    )
    if args.only in (None, "scalar"):
        bench_scalar(args.rounds_scalar, args.gc)
    if args.only in (None, "tensor"):
        bench_tensor(args.rounds_tensor, args.burst_tensor, args.gc, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
