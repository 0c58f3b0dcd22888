"""Hyperparameter search on a local Dask cluster against the same search in one process.

1. Wall time of a search of 8 two-layer networks on the bundled digits (4 learning rates
   x 2 regularization strengths, the settings ``chainrule train twolayer`` chooses for
   digits: 100 hidden units, 30 epochs, batch 200) in this process and on a local
   cluster of ``--workers`` processes, in alternating order, pair after pair; the result
   is the median of the per-pair ratios (sequential / cluster). Every pair also checks
   that both searches found the same rows and the same winner. BLAS threads: the search
   in this process runs on ``--seq-threads`` (1 by default, what ``chainrule train``
   uses on data this small), each worker on 1.
2. What going through the scheduler costs per trial, measured with trials that do
   nothing (a classifier whose fit returns at once): (a) one search of one trial at a
   time, from the call to its result (the data's scatter, the task's round trip) minus
   the time inside the trial; (b) many trials queued at once, wall time per trial (the
   rate at which scheduler and client get through trials). For the digits search, whose
   trials are real, the worker-seconds per trial not spent fitting
   (``(wall x workers - fit time) / trials``: scatter, scoring, round trips and the idle
   worker at the end of a search whose trials do not divide evenly). Beside (a) and (b),
   Dask's own figures for tasks that do nothing (``client.submit`` + ``as_completed``),
   in alternating order: the floor that any use of the scheduler pays.
3. What ``--workers N`` adds once per command: starting the local cluster.
4. What this machine gives two processes at once, the ceiling of any speed-up from
   ``--workers``: the same search (in one process, one BLAS thread) run alone, then in
   ``--workers`` plain processes at the same time; throughput of those together over
   the one alone (2.0 on two idle cores; less where the cores are shared).

Usage (needs ``pip install "chainrule[distributed]"``)::

    flock /work/bench.lock python benchmarks/bench_search.py        # ~1 minute
    python benchmarks/bench_search.py --pairs 3 --trivial 100       # quicker
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--pairs", type=int, default=7, help="sequential/cluster pairs (default 7)")
    p.add_argument("--seq-threads", type=int, default=1, help="BLAS threads, one process")
    p.add_argument("--trivial", type=int, default=300, help="empty trials queued at once")
    p.add_argument("--latency", type=int, default=40, help="empty trials one at a time")
    p.add_argument("--capacity", type=int, default=3, help="rounds of part 4 (0: skip)")
    p.add_argument("--one-search", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


class Instant:
    """A classifier whose fit does nothing: a trial that costs only its passage through
    the scheduler. (Defined in the script, so Dask sends it to the workers by value.)"""

    def __init__(self, c=0):
        self.c = c

    def get_params(self, deep=True):
        return {"c": self.c}

    def set_params(self, **params):
        self.c = params.get("c", self.c)
        return self

    def fit(self, X, y):
        return self

    def score(self, X, y):
        return 0.5


def digits_search_inputs():
    from chainrule.data import load
    from chainrule.experiment import TrialData
    from chainrule.models.mlp import TwoLayerNet

    data = TrialData(load("digits", "train"), load("digits", "val"))
    arrays = (
        data.inputs("rows", "train"),
        data.labels("train"),
        data.inputs("rows", "val"),
        data.labels("val"),
    )
    net = TwoLayerNet(hidden_size=100, epochs=30, batch_size=200, random_state=0, verbose=False)
    grid = {"learning_rate": [1e-3, 3e-3, 1e-2, 3e-2], "reg": [1e-5, 1e-3]}
    return net, arrays, grid


def timed(search, *args, **kwargs):
    start = time.perf_counter()
    result = search(*args, **kwargs)
    return time.perf_counter() - start, result


def compare_searches(client, args):
    """Part 1: alternating pairs; returns the per-pair times and what the cluster's
    trials spent inside themselves."""
    from threadpoolctl import threadpool_limits

    from chainrule.train import grid_search

    net, arrays, grid = digits_search_inputs()
    common = {"verbose": False, "refit": False}
    seq, dist, inside = [], [], []
    for pair in range(args.pairs):
        order = ("seq", "dist") if pair % 2 == 0 else ("dist", "seq")
        for side in order:
            if side == "seq":
                with threadpool_limits(limits=args.seq_threads, user_api="blas"):
                    t, here = timed(grid_search, net, *arrays, grid, **common)
                seq.append(t)
            else:
                t, there = timed(grid_search, net, *arrays, grid, client=client, **common)
                dist.append(t)
                inside.append(sum(r["fit_time"] for r in there.results))
        same = [(r["params"], r["val_acc"]) for r in here.results] == [
            (r["params"], r["val_acc"]) for r in there.results
        ]
        if not same or here.best_params != there.best_params:
            raise SystemExit("the searches disagree: the cluster's result is not the same")
    return seq, dist, inside, len(here.results)


def noop(i):
    """Dask's own reference: a task that does nothing."""
    return i


def dask_round_trips(client, n):
    """Seconds for ``n`` no-op tasks submitted at once, gathered as they finish."""
    import distributed

    start = time.perf_counter()
    futures = [client.submit(noop, i, pure=False) for i in range(n)]
    for future in distributed.as_completed(futures):
        future.result()
    return time.perf_counter() - start


def overhead(client, args):
    """Part 2: per-trial cost with empty trials, beside Dask's no-op tasks, alternating."""
    from chainrule.train import grid_search

    X = np.zeros((4, 2), np.float32)
    y = np.array([0, 1, 0, 1])
    quiet = {"verbose": False, "train_score": False, "refit": False, "client": client}

    def one_trial(i):
        t, r = timed(grid_search, Instant(), X, y, X, y, {"c": [i]}, **quiet)
        return t - r.results[0]["fit_time"]

    def queued():
        return timed(grid_search, Instant(), X, y, X, y, {"c": list(range(args.trivial))},
                     **quiet)[0] / args.trivial  # fmt: skip

    single, single_ref, many, many_ref = [], [], [], []
    for i in range(args.latency):
        for side in ("ours", "dask") if i % 2 == 0 else ("dask", "ours"):
            if side == "ours":
                single.append(one_trial(i))
            else:
                single_ref.append(dask_round_trips(client, 1))
    for i in range(3):
        for side in ("ours", "dask") if i % 2 == 0 else ("dask", "ours"):
            if side == "ours":
                many.append(queued())
            else:
                many_ref.append(dask_round_trips(client, args.trivial) / args.trivial)
    med = statistics.median
    return med(single), med(single_ref), med(many), med(many_ref)


def one_search(seq_threads):
    """The digits search once in this process; prints its seconds (part 4's subprocess)."""
    from threadpoolctl import threadpool_limits

    from chainrule.train import grid_search

    net, arrays, grid = digits_search_inputs()
    with threadpool_limits(limits=seq_threads, user_api="blas"):
        grid_search(net, *arrays, {"learning_rate": [1e-3]}, verbose=False, refit=False)
        t, _ = timed(grid_search, net, *arrays, grid, verbose=False, refit=False)
    print(t)


def capacity(args):
    """Part 4: throughput of ``workers`` plain processes at once over one alone."""
    import subprocess
    import sys

    cmd = [sys.executable, __file__, "--one-search", "--seq-threads", str(args.seq_threads)]

    def run(n):
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return [float(p.communicate()[0]) for p in procs]

    ratios = []
    for _ in range(args.capacity):
        alone = run(1)[0]
        together = run(args.workers)
        ratios.append(sum(alone / t for t in together))
    return ratios


def blas():
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return f"{info.get('internal_api')} {info.get('version')}"
    return "unknown BLAS"


def main(argv=None):
    args = parse_args(argv)
    if args.one_search:
        return one_search(args.seq_threads)
    import distributed

    from chainrule.train.distributed import local_cluster

    start = time.perf_counter()
    with local_cluster(args.workers) as client:
        startup = time.perf_counter() - start
        # warm-up: the workers import chainrule and the model on their first trial
        compare_searches(client, argparse.Namespace(**{**vars(args), "pairs": 1}))
        seq, dist, inside, n = compare_searches(client, args)
        single, single_ref, many, many_ref = overhead(client, args)
    ratios = [s / d for s, d in zip(seq, dist)]
    search_overhead = statistics.median(
        (d * args.workers - i) / n for d, i in zip(dist, inside)
    )  # fmt: skip

    print(f"machine: {os.cpu_count()} cores; NumPy {np.__version__} + {blas()}; "
          f"Dask distributed {distributed.__version__}")  # fmt: skip
    print(f"1. search of {n} two-layer networks on digits (100 hidden, 30 epochs), same rows "
          f"and winner in every pair")  # fmt: skip
    print(f"   one process, {args.seq_threads} BLAS thread(s): median "
          f"{statistics.median(seq):.2f} s over {len(seq)} runs")  # fmt: skip
    print(f"   local cluster, {args.workers} workers x 1 BLAS thread: median "
          f"{statistics.median(dist):.2f} s")  # fmt: skip
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"   speed-up (one process / cluster), median of per-pair ratios: "
          f"{statistics.median(ratios):.2f}x  (pairs: {shown})")  # fmt: skip
    print("2. cost of the scheduler per trial (goal: under 50 ms)")
    print(f"   a search of one empty trial, call to result minus the trial: "
          f"{single * 1e3:.1f} ms; Dask's round trip of one no-op task: "
          f"{single_ref * 1e3:.1f} ms (medians of {args.latency}, alternating)")  # fmt: skip
    print(f"   {args.trivial} empty trials queued at once: {many * 1e3:.1f} ms per trial; "
          f"{args.trivial} no-op Dask tasks: {many_ref * 1e3:.1f} ms per task")  # fmt: skip
    print(f"   the digits search: {search_overhead * 1e3:.0f} ms of worker time per trial "
          f"besides its fit (scatter, scoring, idle end included)")  # fmt: skip
    print(f"3. starting the local cluster of {args.workers} workers (once per command): "
          f"{startup:.1f} s")  # fmt: skip
    if args.capacity:
        ceiling = capacity(args)
        print(f"4. this machine's ceiling: {args.workers} plain processes give "
              f"{statistics.median(ceiling):.2f}x the throughput of one (median of "
              f"{', '.join(f'{c:.2f}' for c in ceiling)})")  # fmt: skip


if __name__ == "__main__":
    main()
