"""Engine speed against reference libraries (and other chainrule sources), interleaved.

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

``--against NAME=PATH`` adds a side: the chainrule whose package lies in PATH (a ``src``
folder, e.g. of an older commit: ``git archive COMMIT src | tar -x -C /tmp/old``), timed
in the same rounds; chainrule's time is then also given as a ratio of that side's. It may
be repeated.

How the sides are timed:
- Each side runs in its own process (so two chainrule sources can be compared), started
  by this command, which tells each in turn to run and time a burst.
- In rounds: each round times a short burst of every side (one demo step for (a), a few
  steps for (b)), the side that goes first rotating from round to round. A round's ratio
  compares bursts run a fraction of a second apart, so a change in the load of a shared
  machine hits both sides of it alike; the result is the MEDIAN of the per-round ratios
  (with its quartiles), for wall time and for CPU time.
- Every side computes the same numbers first (the same loss and gradients, checked here).
- The same garbage-collector setting on every side: by default the collector is disabled
  inside each burst and a full collection runs between bursts; ``--gc on`` keeps it
  enabled. (micrograd's closures form reference cycles, so with the collector on much of
  its time is the collector's.) What a burst returns is freed after its clock stops.
- (b) uses the same number of BLAS threads on all sides: NumPy's OpenBLAS setting, or
  ``--threads N``. The machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for this
  command only (the script restarts itself without them and says so), unless
  ``--keep-openblas-env``.

Run:  python benchmarks/bench_engine.py [--threads 1] [--gc on] [--only scalar|tensor]
                                         [--against old=/tmp/old/src]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

# OpenBLAS reads these when NumPy is imported; the machine pins a generic core type. They
# are dropped together for this command only (see --keep-openblas-env), before NumPy loads.
_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _reexec_without_openblas_env() -> None:
    if "--keep-openblas-env" in sys.argv or "--worker" in sys.argv:
        return
    if not any(v in os.environ for v in _OPENBLAS_VARS):
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


def scalar_side(side: str):
    """The demo step of one side and what it computed: ``(step, info)``."""
    X, y = two_moons(100, 0.1, np.random.default_rng(1337))
    X = X.tolist()
    y = [int(v) for v in y]
    random.seed(1337)
    if side == "micrograd":
        from micrograd.engine import Value
        from micrograd.nn import MLP

        model, make_input = MLP(2, [16, 16, 1]), Value
    else:
        model, make_input = ScalarMLP(2, [16, 16, 1]), cr.Tensor
    loss, _ = demo_step(model, X, y, make_input)
    info = {
        "loss": float(loss.data),
        "grads": [float(p.grad) for p in model.parameters()],
        "ops": None if side == "micrograd" else count_ops(loss),
    }
    return (lambda: demo_step(model, X, y, make_input)), info


# ---------------------------------------------------------------- (b) tensor step

N, D, H, C = 200, 3072, 100, 10
# The step's matrix products: X W1 and h W2 forward; X^T dh, dz W2^T and h^T dz
# backward (no gradient for the data X).
FLOPS = 2 * N * D * H + 2 * N * H * C + 2 * N * D * H + 2 * N * C * H + 2 * N * H * C


def _blas_threads(threads: int | None, torch_too: bool) -> str:
    """Set (or read) the BLAS threads of NumPy (and PyTorch); describe them."""
    from threadpoolctl import threadpool_info, threadpool_limits

    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    np_blas = next((i for i in blas if "numpy" in i.get("filepath", "")), blas[0] if blas else {})
    if threads is None:
        threads = int(np_blas.get("num_threads", 1))
    else:
        # Applies to NumPy's BLAS for the rest of the process.
        threadpool_limits(limits=threads, user_api="blas")
    line = (
        f"NumPy {np.__version__} BLAS: {np_blas.get('internal_api', '?')} "
        f"{np_blas.get('version', '')} ({np_blas.get('architecture', '?')}), {threads} threads"
    )
    if torch_too:
        import torch

        torch.set_num_threads(threads)
        torch_blas = "MKL" if torch.backends.mkl.is_available() else "its own BLAS"
        line += f"; PyTorch {torch.__version__}: {torch_blas}, {torch.get_num_threads()} threads"
    return line


def tensor_side(side: str, threads: int | None, out_dir: str):
    """One training step of one side and what it computed: ``(step, info)``; the
    gradients are saved in `out_dir` for the comparison across sides."""
    blas = _blas_threads(threads, side == "PyTorch")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D)).astype(np.float32)
    y = rng.integers(0, C, size=N)
    W1 = (rng.standard_normal((D, H)) * np.sqrt(2.0 / D)).astype(np.float32)
    b1 = np.zeros(H, dtype=np.float32)
    W2 = (rng.standard_normal((H, C)) * np.sqrt(2.0 / H)).astype(np.float32)
    b2 = np.zeros(C, dtype=np.float32)
    if side == "np.matmul":
        hm = np.maximum(X @ W1, 0)
        dz = rng.standard_normal((N, C)).astype(np.float32)
        dh = rng.standard_normal((N, H)).astype(np.float32)
        step = lambda: (X @ W1, hm @ W2, X.T @ dh, dz @ W2.T, hm.T @ dz)  # noqa: E731
        return step, {"blas": blas}
    if side == "PyTorch":
        import torch

        params = [torch.tensor(a.copy(), requires_grad=True) for a in (W1, b1, W2, b2)]
        tx, ty, rows = torch.from_numpy(X), torch.from_numpy(y), torch.arange(N)

        def step():
            for p in params:
                p.grad = None
            h = torch.relu(tx @ params[0] + params[1])
            logp = torch.log_softmax(h @ params[2] + params[3], dim=1)
            loss = -logp[rows, ty].mean()
            loss.backward()
            return loss

        grads = lambda: [p.grad.numpy() for p in params]  # noqa: E731
    else:
        params = [cr.Tensor(a.copy(), requires_grad=True) for a in (W1, b1, W2, b2)]
        cx, rows = cr.Tensor(X), np.arange(N)

        def step():
            for p in params:
                p.zero_grad()
            h = (cx @ params[0] + params[1]).relu()
            logp = (h @ params[2] + params[3]).log_softmax(axis=1)
            loss = -logp[rows, y].mean()
            loss.backward()
            return loss

        grads = lambda: [p.grad for p in params]  # noqa: E731
    loss = step()
    path = os.path.join(out_dir, f"{side}.npz")
    np.savez(path, *grads())
    return step, {"blas": blas, "loss": loss.item(), "grads": path}


# ---------------------------------------------------------------- timing


def time_burst(fn, burst: int, gc_mode: str) -> tuple[float, float]:
    """Seconds (wall, CPU) per call of `burst` calls of ``fn()``."""
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
    # Freed outside the clock: with the collector off, micrograd's graph (a web of
    # reference cycles) would only be freed by the next gc.collect(), while an acyclic
    # graph is freed at once; neither belongs in the timing.
    del results, keep
    gc.enable()
    return (t1 - t0) / burst, (c1 - c0) / burst


def worker(part: str, side: str, threads: int | None, out_dir: str) -> None:
    """A side's process: set up, report what it computed, then time bursts on request."""
    step, info = scalar_side(side) if part == "scalar" else tensor_side(side, threads, out_dir)
    info["chainrule"] = os.path.dirname(os.path.dirname(os.path.abspath(cr.__file__)))
    step()  # warm-up
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        burst, gc_mode = line.split()
        print(json.dumps(time_burst(step, int(burst), gc_mode)), flush=True)


class Side:
    """A side running in its own process, with chainrule from `src` on its path."""

    def __init__(self, part: str, side: str, src: str, threads: int | None, out_dir: str):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", part, side, out_dir]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        env = dict(os.environ, PYTHONPATH=src)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.info = self._reply()

    def _reply(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a benchmark side exited early: {' '.join(self.proc.args)}")
        return json.loads(line)

    def burst(self, n: int, gc_mode: str) -> tuple[float, float]:
        self.proc.stdin.write(f"{n} {gc_mode}\n")
        self.proc.stdin.flush()
        return tuple(self._reply())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def start_sides(part: str, names: dict, threads: int | None, out_dir: str) -> dict:
    """``{name: Side}`` for ``names = {name: (side, src)}``, each started in turn."""
    sides = {}
    try:
        for name, (side, src) in names.items():
            sides[name] = Side(part, side, src, threads, out_dir)
    except BaseException:
        for s in sides.values():
            s.close()
        raise
    return sides


def interleaved(sides: dict, rounds: int, burst: int, gc_mode: str) -> dict:
    """Time a burst of `burst` steps of each side per round, for `rounds` rounds.

    The side that starts a round rotates, so no side always runs right after another.
    Returns ``{name: (walls, cpus)}``: per round, the seconds per step of that burst.
    """
    names = list(sides)
    wall = {k: [] for k in names}
    cpu = {k: [] for k in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            w, c = sides[name].burst(burst, gc_mode)
            wall[name].append(w)
            cpu[name].append(c)
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


def report(title: str, times: dict, ours: str, refs: list, goal: float, rounds: int) -> float:
    """Print every side's median times and the per-round ratios of `ours` to each of
    `refs`; return the wall ratio to the first of `refs`."""
    print(title)
    for name, (walls, cpus) in times.items():
        print(
            f"    {name:18s}: {statistics.median(walls) * 1e3:9.3f} ms wall, "
            f"{statistics.median(cpus) * 1e3:9.3f} ms CPU  (medians of {rounds} rounds)"
        )
    first = None
    for ref in refs:
        for kind, (q1, med, q3) in pair_ratios(times, ours, ref).items():
            print(
                f"    {ours}/{ref} {kind:4s}: median of per-round ratios {med:.3f} "
                f"(quartiles {q1:.3f}-{q3:.3f})"
            )
            if first is None:
                first = med
    verdict = "met" if first <= goal else "NOT met"
    print(f"    goal <= {goal:.2f} on wall time against {refs[0]}: {verdict}")
    return first


def _side_names(reference: list, against: list) -> dict:
    """``{name: (side, src)}``: the reference sides, this chainrule, the other sources."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(cr.__file__)))
    names = {name: (name, here) for name in reference}
    names["chainrule"] = ("chainrule", here)
    for label, src in against:
        names[f"chainrule@{label}"] = ("chainrule", src)
    return names


def bench_scalar(args) -> float:
    names = _side_names(["micrograd"], args.against)
    sides = start_sides("scalar", names, None, "")
    try:
        ref = sides["micrograd"].info
        for name, s in sides.items():
            # Same numbers on every side: the same loss and the same gradients.
            assert abs(s.info["loss"] - ref["loss"]) < 1e-9, (name, s.info["loss"], ref["loss"])
            assert np.allclose(s.info["grads"], ref["grads"], atol=1e-9), name
        times = interleaved(sides, args.rounds_scalar, 1, args.gc)
    finally:
        for s in sides.values():
            s.close()
    n_ops = sides["chainrule"].info["ops"]
    return report(
        f"(a) scalar MLP 2-16-16-1, 100 points, {n_ops:,} operations per graph, forward + "
        "backward\n    (inputs: micrograd Values / chainrule Tensors without requires_grad; "
        "pure Python, one thread; one step per side per round)"
        + "".join(f"\n    {n}: {names[n][1]}" for n in names if n.startswith("chainrule")),
        times,
        "chainrule",
        [n for n in names if n != "chainrule"],
        1.0,
        args.rounds_scalar,
    )


def bench_tensor(args) -> float:
    names = _side_names(["PyTorch", "np.matmul"], args.against)
    out_dir = tempfile.TemporaryDirectory(prefix="bench_engine_")
    sides = start_sides("tensor", names, args.threads, out_dir.name)
    try:
        ref = sides["PyTorch"].info
        ref_grads = list(np.load(ref["grads"]).values())
        for name, s in sides.items():
            if name.startswith("chainrule"):
                assert abs(s.info["loss"] - ref["loss"]) < 1e-4, (name, s.info["loss"])
                for g, tg in zip(np.load(s.info["grads"]).values(), ref_grads):
                    assert g.dtype == np.float32, name
                    assert np.allclose(g, tg, rtol=1e-3, atol=1e-5), name
        times = interleaved(sides, args.rounds_tensor, args.burst_tensor, args.gc)
    finally:
        for s in sides.values():
            s.close()
        out_dir.cleanup()
    blas = sides["PyTorch"].info["blas"]
    ratio = report(
        f"(b) 3072-100-10 network, batch {N}, float32, one forward + backward step "
        f"({FLOPS / 1e6:.1f} MFLOP of matrix products; {args.burst_tensor} steps per side "
        f"per round)\n    {blas}",
        times,
        "chainrule",
        [n for n in names if n not in ("chainrule", "np.matmul")],
        1.10,
        args.rounds_tensor,
    )
    limit = FLOPS / statistics.median(times["np.matmul"][0]) / 1e9
    print(f"    matrix-product limit (the same products with np.matmul): {limit:.1f} GFLOP/s")
    for name in names:
        if name != "np.matmul":
            rate = FLOPS / statistics.median(times[name][0]) / 1e9
            print(f"    {name:18s}: {rate:6.1f} GFLOP/s = {rate / limit:.2f} of that limit")
    return ratio


def _against(value: str) -> tuple[str, str]:
    label, sep, path = value.partition("=")
    if not sep or not label or not os.path.isdir(os.path.join(path, "chainrule")):
        raise argparse.ArgumentTypeError(
            f"--against takes NAME=PATH with PATH a folder holding the chainrule package, "
            f"got {value!r}"
        )
    return label, os.path.abspath(path)


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
        "--against",
        type=_against,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also time the chainrule package in PATH (e.g. an older commit's src folder)",
    )
    p.add_argument(
        "--keep-openblas-env",
        action="store_true",
        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as set in the environment",
    )
    p.add_argument("--worker", nargs=3, metavar=("PART", "SIDE", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        part, side, out_dir = args.worker
        worker(part, side, args.threads, out_dir)
        return 0
    unset = os.environ.get("_CHAINRULE_BENCH_UNSET")
    if unset:
        print(f"OpenBLAS environment unset for this command: {unset}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Python {sys.version.split()[0]}, NumPy {np.__version__}, gc {args.gc} while timing, "
        f"{os.cpu_count()} CPUs, load average {load:.2f}"
    )
    if args.only in (None, "scalar"):
        bench_scalar(args)
    if args.only in (None, "tensor"):
        bench_tensor(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
