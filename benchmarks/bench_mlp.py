"""Training throughput of a fully connected ReLU network: chainrule against PyTorch (CPU).

The network is 3072-1024-1024-10 (CIFAR-10 sized inputs), trained with Adam on a
softmax cross-entropy loss, batch 256, float32, on random data. Both libraries run in
this process with the same number of threads (threadpoolctl limits NumPy's BLAS,
``torch.set_num_threads`` PyTorch's pool), in alternating timing windows so that load
from other processes hits both alike; the result is the median over windows of
samples per second, and the ratio chainrule / PyTorch.

By default the measurement is repeated in a subprocess with ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` unset (this machine sets them, which pins NumPy's OpenBLAS to its
Haswell AVX2 kernels); the report says which kernel each side used.

Usage::

    python benchmarks/bench_mlp.py                 # both runs, ~1 minute
    python benchmarks/bench_mlp.py --no-subprocess # only the environment as it is
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", default="1024,1024")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--windows", type=int, default=11, help="timing windows per library")
    p.add_argument("--iters", type=int, default=8, help="training steps per window")
    p.add_argument(
        "--optim-threads", type=int, default=1, help="threads of chainrule's Adam update"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-torch", action="store_true", help="time chainrule only")
    p.add_argument("--no-subprocess", action="store_true", help="skip the unset-env rerun")
    p.add_argument("--profile", action="store_true", help="cProfile + phase timings")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- the two trainers


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


# ---------------------------------------------------------------- reporting


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

    cap = torch.backends.cpu.get_cpu_capability()
    return {
        "version": torch.__version__,
        "library": "MKL" if torch.backends.mkl.is_available() else "unknown BLAS",
        "onednn": torch.backends.mkldnn.is_available(),
        "kernel": cap,
        "threads": torch.get_num_threads(),
    }


def measure(args):
    """Interleaved timing windows; returns a dict of results."""
    from threadpoolctl import threadpool_limits

    dims = [3072, *(int(h) for h in args.hidden.split(",") if h), 10]
    batches = make_data(args.batch, 4, args.seed)
    cr_step, _ = chainrule_trainer(dims, args.seed, args.optim_threads)
    t_step = None
    if not args.no_torch:
        import torch

        torch.set_num_threads(args.threads)
        t_step = torch_trainer(dims, args.seed)
        t_batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]

    def window(step, data, n):
        t0 = time.perf_counter()
        for i in range(n):
            step(*data[i % len(data)])
        return args.batch * n / (time.perf_counter() - t0)

    result = {"coretype_env": {k: os.environ.get(k) for k in UNSET}}
    with threadpool_limits(limits=args.threads, user_api="blas"):
        result["numpy"] = numpy_blas_info()
        result["numpy"]["numpy_version"] = np.__version__
        result["numpy"]["optim_threads"] = args.optim_threads
        if t_step is not None:
            result["torch"] = torch_info()
        # warm-up: first-touch allocations, thread pools, optimizer state
        window(cr_step, batches, 3)
        if t_step is not None:
            window(t_step, t_batches, 3)
        cr, th = [], []
        for w in range(args.windows):
            order = [0, 1] if w % 2 == 0 else [1, 0]
            for o in order:
                if o == 0:
                    cr.append(window(cr_step, batches, args.iters))
                elif t_step is not None:
                    th.append(window(t_step, t_batches, args.iters))
    result["chainrule_sps"] = statistics.median(cr)
    result["chainrule_windows"] = cr
    if th:
        result["torch_sps"] = statistics.median(th)
        result["torch_windows"] = th
        result["ratio"] = result["chainrule_sps"] / result["torch_sps"]
        result["ratio_of_windows"] = statistics.median(a / b for a, b in zip(cr, th))
    return result


def report(title, r):
    env = ", ".join(f"{k}={v}" for k, v in r["coretype_env"].items())
    print(f"== {title} ({env})")
    nb = r["numpy"]
    print(
        f"   chainrule: NumPy {nb.get('numpy_version')} + {nb['library']} {nb.get('version')}, "
        f"kernel {nb.get('kernel')}, {nb.get('threads')} threads "
        f"(Adam update: {nb.get('optim_threads')})"
    )
    if "torch" in r:
        t = r["torch"]
        print(
            f"   PyTorch  : {t['version']} + {t['library']} (oneDNN {t['onednn']}), "
            f"CPU capability {t['kernel']}, {t['threads']} threads"
        )
    print(f"   chainrule {r['chainrule_sps']:8.0f} samples/s (median of windows)")
    if "torch_sps" in r:
        print(f"   PyTorch   {r['torch_sps']:8.0f} samples/s (median of windows)")
        print(
            f"   ratio chainrule / PyTorch = {r['ratio']:.2f} "
            f"(median of per-window ratios {r['ratio_of_windows']:.2f})"
        )


# ---------------------------------------------------------------- profile


def profile(args):
    import cProfile
    import pstats

    from threadpoolctl import threadpool_limits

    dims = [3072, *(int(h) for h in args.hidden.split(",") if h), 10]
    batches = make_data(args.batch, 4, args.seed)
    step, (net, opt, F) = chainrule_trainer(dims, args.seed, args.optim_threads)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for i in range(3):
            step(*batches[i % 4])
        phases = {"forward": [], "backward": [], "optimizer step": []}
        for i in range(5 * args.iters):
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
        print(f"== chainrule phase medians over {5 * args.iters} steps (batch {args.batch})")
        for k, v in phases.items():
            m = statistics.median(v)
            print(f"   {k:15s} {m * 1e3:7.2f} ms  {100 * m / total:5.1f}%")
        print(f"   {'total':15s} {total * 1e3:7.2f} ms  -> {args.batch / total:.0f} samples/s")
        prof = cProfile.Profile()
        prof.enable()
        for i in range(5 * args.iters):
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
    r = measure(args)
    if args.json:
        print(json.dumps(r))
        return 0
    print(
        f"MLP {args.hidden.replace(',', '-')} on 3072-d inputs, batch {args.batch}, float32, "
        f"Adam, cross-entropy; {args.windows} windows x {args.iters} steps per library, "
        f"{args.threads} threads each"
    )
    report("environment as set", r)
    if not args.no_subprocess:
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        cmd = [sys.executable, os.path.abspath(__file__), "--json", *(argv or sys.argv[1:])]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        report(
            "subprocess with " + " and ".join(UNSET) + " unset", json.loads(out.splitlines()[-1])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
