"""Training throughput of a fully connected ReLU network: chainrule against PyTorch (CPU).

The network is 3072-1024-1024-10 (CIFAR-10 sized inputs), trained with Adam on a
softmax cross-entropy loss, batch 256, float32, on random data. Three sides run in this
process with the same number of threads (threadpoolctl limits NumPy's BLAS,
``torch.set_num_threads`` PyTorch's pool):

- chainrule's training step (forward, backward, Adam);
- PyTorch's training step of the same network;
- the matrix products of one training step alone, on preallocated float32 arrays of
  the same shapes, through the product chainrule's layers use (``np.matmul`` per
  thread, the output cut in blocks, one per thread): what this machine's float32
  matrix-product limit allows a step to cost.

The sides take turns in short bursts (``--iters`` steps each, the order rotating every
round), so that load from other processes hits all of them alike; each round gives one
ratio per pair of sides, and the report is the median of those per-round ratios, with
their spread. Most of a step is matrix products, so the report also gives each side's
achieved GFLOP/s (matrix-product FLOPs of a step / step time) as a fraction of the
limit measured in the same run.

By default the measurement is repeated in a subprocess with ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` unset when either is set (they pin NumPy's OpenBLAS to one
kernel); the report names the kernel each side used.

Usage::

    python benchmarks/bench_mlp.py --threads 1,2   # ~2 minutes
    python benchmarks/bench_mlp.py --no-torch      # chainrule against the limit only
    python benchmarks/bench_mlp.py --profile       # where chainrule's time goes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
SIDES = ("chainrule", "torch", "matmul")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", default="1024,1024")
    p.add_argument(
        "--threads",
        default=str(os.cpu_count() or 1),
        help="thread counts to measure, comma-separated (each side gets the same)",
    )
    p.add_argument("--rounds", type=int, default=25, help="bursts per side")
    p.add_argument("--iters", type=int, default=4, help="training steps per burst")
    p.add_argument(
        "--optim-threads", type=int, default=1, help="threads of chainrule's Adam update"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-torch", action="store_true", help="no PyTorch side")
    p.add_argument("--no-subprocess", action="store_true", help="skip the unset-env rerun")
    p.add_argument("--profile", action="store_true", help="cProfile + phase timings")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.thread_counts = [int(t) for t in args.threads.split(",") if t]
    return args


def dims_of(args) -> list[int]:
    return [3072, *(int(h) for h in args.hidden.split(",") if h), 10]


def step_flops(dims, batch) -> float:
    """Matrix-product FLOPs of one training step: forward, weight gradients, and input
    gradients of every layer but the first (the data need none)."""
    s = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 2.0 * batch * (3 * s - dims[0] * dims[1])


# ---------------------------------------------------------------- the three sides


def make_data(batch, n_batches, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch * n_batches, 3072), dtype=np.float32)
    y = rng.integers(0, 10, batch * n_batches)
    return [
        (X[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]) for i in range(n_batches)
    ]


def chainrule_trainer(dims, seed, optim_threads=1):
    import chainrule.nn.functional as F
    from chainrule import nn, optim

    optim.set_num_threads(optim_threads)
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1], random_state=seed + i))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    net = nn.Sequential(*layers)
    opt = optim.Adam(net.parameters(), lr=1e-3)

    def step(xb, yb):
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step, (net, opt, F)


def torch_trainer(dims, seed):
    import torch

    torch.manual_seed(seed)
    layers = []
    for i in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        loss = lossf(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


def matmul_step(dims, batch, seed):
    """The matrix products of one training step of the network, nothing else, through
    the product chainrule's layers use (split over threads by hand, one-thread BLAS per
    block: faster than OpenBLAS's own threads wherever the two differ)."""
    from chainrule.nn.functional._matmul import matmul

    rng = np.random.default_rng(seed)

    def arr(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    acts = [arr(batch, d) for d in dims]
    grads = [arr(batch, d) for d in dims]
    Ws = [arr(a, b) for a, b in zip(dims[:-1], dims[1:])]
    dWs = [np.empty_like(W) for W in Ws]

    def step(_xb=None, _yb=None):
        for i, W in enumerate(Ws):
            matmul(acts[i], W, out=acts[i + 1])
        for i in reversed(range(len(Ws))):
            matmul(acts[i].T, grads[i + 1], out=dWs[i])
            if i > 0:
                matmul(grads[i + 1], Ws[i].T, out=grads[i])

    return step


# ---------------------------------------------------------------- measurement


def numpy_blas_info():
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
            return {
                "library": info.get("internal_api"),
                "version": info.get("version"),
                "kernel": info.get("architecture"),
                "threads": info.get("num_threads"),
            }
    return {"library": "unknown"}


def torch_info():
    import torch

    return {
        "version": torch.__version__,
        "library": "MKL" if torch.backends.mkl.is_available() else "unknown BLAS",
        "onednn": torch.backends.mkldnn.is_available(),
        "kernel": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def interleaved_seconds(steps: dict, data: dict, rounds: int, iters: int) -> dict:
    """Seconds per step of each side, one entry per round; the sides take turns in
    bursts of `iters` steps, the order rotating every round."""
    names = list(steps)
    out = {name: [] for name in names}
    for name in names:  # warm-up: first-touch allocations, thread pools, optimizer state
        for i in range(2):
            steps[name](*data[name][i % len(data[name])])
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            batches = data[name]
            t0 = time.perf_counter()
            for i in range(iters):
                steps[name](*batches[i % len(batches)])
            out[name].append((time.perf_counter() - t0) / iters)
    return out


def measure(args, threads: int) -> dict:
    from threadpoolctl import threadpool_limits

    dims = dims_of(args)
    batches = make_data(args.batch, 4, args.seed)
    steps = {"chainrule": chainrule_trainer(dims, args.seed, args.optim_threads)[0]}
    data = {"chainrule": batches}
    if not args.no_torch:
        import torch

        torch.set_num_threads(threads)
        steps["torch"] = torch_trainer(dims, args.seed)
        data["torch"] = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]
    steps["matmul"] = matmul_step(dims, args.batch, args.seed)
    data["matmul"] = [(None, None)]
    result = {"threads": threads, "coretype_env": {k: os.environ.get(k) for k in UNSET}}
    with threadpool_limits(limits=threads, user_api="blas"):
        result["numpy"] = {**numpy_blas_info(), "numpy_version": np.__version__}
        result["numpy"]["optim_threads"] = args.optim_threads
        if "torch" in steps:
            result["torch"] = torch_info()
        result["seconds"] = interleaved_seconds(steps, data, args.rounds, args.iters)
    result["flops_per_step"] = step_flops(dims, args.batch)
    return result


def summarize(r: dict, batch: int) -> dict:
    """Medians over rounds: samples/s and GFLOP/s per side, and per-round ratios."""
    sec, flops = r["seconds"], r["flops_per_step"]
    out = {}
    for name, ts in sec.items():
        out[name] = {
            "samples_per_s": statistics.median(batch / t for t in ts),
            "gflops": statistics.median(flops / t / 1e9 for t in ts),
        }

    def ratios(a, b):  # throughput of a over that of b, per round
        rs = sorted(tb / ta for ta, tb in zip(sec[a], sec[b]))
        return {"median": statistics.median(rs), "min": rs[0], "max": rs[-1], "n": len(rs)}

    for name in sec:
        if name != "matmul":
            out[name]["fraction_of_limit"] = ratios(name, "matmul")
    if "torch" in sec:
        out["chainrule_over_torch"] = ratios("chainrule", "torch")
    return out


def report(title, r, batch):
    env = ", ".join(f"{k}={v}" for k, v in r["coretype_env"].items())
    s = summarize(r, batch)
    nb = r["numpy"]
    print(f"== {title}: {r['threads']} thread(s) per side ({env})")
    print(
        f"   chainrule and matmul: NumPy {nb.get('numpy_version')} + {nb['library']} "
        f"{nb.get('version')}, kernel {nb.get('kernel')}, {nb.get('threads')} BLAS threads "
        f"(Adam update: {nb.get('optim_threads')})"
    )
    if "torch" in r:
        t = r["torch"]
        print(
            f"   PyTorch  : {t['version']} + {t['library']} (oneDNN {t['onednn']}), "
            f"CPU capability {t['kernel']}, {t['threads']} threads"
        )
    limit = s["matmul"]["gflops"]
    print(f"   matmul limit: {limit:6.1f} GFLOP/s (median; the step's products alone)")
    for name in ("chainrule", "torch"):
        if name in s:
            f = s[name]["fraction_of_limit"]
            print(
                f"   {name:9s} {s[name]['samples_per_s']:7.0f} samples/s, "
                f"{s[name]['gflops']:6.1f} GFLOP/s; per round {f['median']:.2f} of the limit "
                f"(median; rounds {f['min']:.2f}-{f['max']:.2f})"
            )
    if "chainrule_over_torch" in s:
        c = s["chainrule_over_torch"]
        print(
            f"   throughput chainrule / PyTorch: median of {c['n']} per-round ratios "
            f"{c['median']:.2f}x (range {c['min']:.2f}-{c['max']:.2f})"
        )
    return s


# ---------------------------------------------------------------- profile


def profile(args):
    import cProfile
    import pstats

    from threadpoolctl import threadpool_limits

    dims = dims_of(args)
    batches = make_data(args.batch, 4, args.seed)
    step, (net, opt, F) = chainrule_trainer(dims, args.seed, args.optim_threads)
    n = 10 * args.iters
    with threadpool_limits(limits=args.thread_counts[0], user_api="blas"):
        for i in range(3):
            step(*batches[i % 4])
        phases = {"forward": [], "backward": [], "optimizer step": []}
        for i in range(n):
            xb, yb = batches[i % 4]
            t0 = time.perf_counter()
            loss = F.cross_entropy(net(xb), yb)
            t1 = time.perf_counter()
            opt.zero_grad()
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            phases["forward"].append(t1 - t0)
            phases["backward"].append(t2 - t1)
            phases["optimizer step"].append(t3 - t2)
        total = sum(statistics.median(v) for v in phases.values())
        print(f"== chainrule phase medians over {n} steps (batch {args.batch})")
        for k, v in phases.items():
            m = statistics.median(v)
            print(f"   {k:15s} {m * 1e3:7.2f} ms  {100 * m / total:5.1f}%")
        print(f"   {'total':15s} {total * 1e3:7.2f} ms  -> {args.batch / total:.0f} samples/s")
        prof = cProfile.Profile()
        prof.enable()
        for i in range(n):
            step(*batches[i % 4])
        prof.disable()
    print("== cProfile, top functions by own time")
    pstats.Stats(prof).sort_stats("tottime").print_stats(14)


# ---------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    if args.profile:
        profile(args)
        return 0
    results = [measure(args, t) for t in args.thread_counts]
    if args.json:
        print(json.dumps(results))
        return 0
    print(
        f"MLP {args.hidden.replace(',', '-')} on 3072-d inputs, batch {args.batch}, float32, "
        f"Adam, cross-entropy; {args.rounds} rounds of {args.iters}-step bursts per side, "
        f"{step_flops(dims_of(args), args.batch) / 1e9:.2f} GFLOP of matrix products per step"
    )
    for r in results:
        report("environment as set", r, args.batch)
    if not args.no_subprocess and any(k in os.environ for k in UNSET):
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        cmd = [sys.executable, os.path.abspath(__file__), "--json", *(argv or sys.argv[1:])]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        for r in json.loads(out.splitlines()[-1]):
            report("subprocess with " + " and ".join(UNSET) + " unset", r, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
