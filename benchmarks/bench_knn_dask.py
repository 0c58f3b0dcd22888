"""1-NN on CIFAR-10 with the training rows in shards on a local Dask cluster, against the
same search in one process.

The held-out split of ``chainrule train`` (40,000 training images, 10,000 validation
images, stratified, seed 0), raw pixels as float32 rows (3,072 features), L2 distance:

- *one process*: ``KNearestNeighbors(k=1).fit(X, y)``, BLAS and the k-NN's own loops on
  ``--workers`` threads (the same number of threads as the cluster has);
- *cluster*: a local cluster of ``--workers`` processes with one thread each; the
  training rows cut into ``--shards`` shards of equal size, sent to the workers in turn
  (shard i on worker i mod workers) before the timing, and ``fit`` on the list of shard
  futures (each shard's search prepared on its worker).

Both predict the same queries in bursts of ``--burst`` validation images, alternating
which side goes first from burst to burst, over ``--rounds`` passes through the queries.
Printed: the median of the per-burst time ratios (cluster / one process), whether every
prediction agrees (and, on a sample, the neighbours and distances), and where the
cluster's time goes, from Dask's task stream and timers around the client's calls:

- search: each shard's search, on its worker (summed per worker; the busiest worker's
  total bounds the wall time from below);
- send: the client's ``scatter`` of each chunk of queries, and the workers' fetches of
  the chunk from each other (Dask's transfer records);
- merge: ``merge_neighbors`` of the shards' candidate lists, here;
- the rest: waiting for results (the scheduler's round trips, the idle worker while the
  other finishes, gathering the candidate lists).

Run twice: on a cluster whose workers start with Dask's malloc setting
(``MALLOC_TRIM_THRESHOLD_=65536``, which gives memory back to the system sooner; glibc
then maps every block over 128 KB afresh, so that a search's temporary arrays are faulted
in again at each allocation), and on one started from an environment with
``MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432`` (the nanny passes
the first on instead of its own, the workers inherit the second): large blocks are
reused, as glibc's defaults do in a plain process.

Before both, how much of the work sharding adds, in this process on one thread: the
shards searched one after another against the whole training set at once (each shard
prepares and runs its own filter and re-measures its own candidates).

Usage (needs ``pip install "chainrule[distributed]"``; a few minutes)::

    flock /work/bench.lock python benchmarks/bench_knn_dask.py --data /work/data/cifar10/train
    python benchmarks/bench_knn_dask.py --n-val 2000 --rounds 1      # quicker
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="/work/data/cifar10/train", help="CIFAR-10 image folder")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--shards", type=int, default=4, help="shards of the training set")
    p.add_argument("--n-val", type=int, default=10000, help="validation queries (max 10,000)")
    p.add_argument("--burst", type=int, default=2500, help="queries per burst")
    p.add_argument("--rounds", type=int, default=1, help="passes through the queries")
    p.add_argument("--check", type=int, default=500, help="queries whose neighbours are compared")
    malloc = "the workers' malloc: Dask's setting, large thresholds, or both in turn"
    p.add_argument("--malloc", choices=["dask", "large", "both"], default="both", help=malloc)
    p.add_argument("--shard-cost", type=int, default=1000, help="queries of the shard cost")
    return p.parse_args(argv)


# The environment the cluster is started from ("dask": as Dask sets it).
MALLOC = {
    "dask": {},
    "large": {"MALLOC_TRIM_THRESHOLD_": str(2**30), "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)},
}


def load_split(root):
    from chainrule import data

    tr = data.load(root, split="train", val_fraction=0.2, random_state=0)
    va = data.load(root, split="val", val_fraction=0.2, random_state=0)
    rows = [s.images.reshape(len(s.images), -1).astype(np.float32) for s in (tr, va)]
    return rows[0], tr.labels, rows[1], va.labels


def thread_pools() -> list[str]:
    """This process's thread pools as threadpoolctl sees them."""
    from threadpoolctl import threadpool_info

    return [
        f"{p['internal_api']} {Path(p['filepath']).name.split('.so')[0]} "
        f"{p.get('version') or ''}: {p['num_threads']} threads"
        for p in threadpool_info()
    ]


def worker_pools() -> list[str]:
    """A worker's thread pools inside a search task (where its BLAS limit applies), and
    its malloc environment."""

    from chainrule.models.knn._distributed import _blas_limit, _worker_threads

    with _blas_limit(_worker_threads(None)):
        pools = thread_pools()
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    return [*pools, f"malloc environment {malloc}"]


class Timers:
    """Seconds spent in the client's scatter and in merge_neighbors (wrapped in place)."""

    def __init__(self, client, module):
        self.scatter = self.merge = 0.0
        scatter, merge = client.scatter, module.merge_neighbors

        def timed_scatter(*a, **kw):
            t = time.perf_counter()
            try:
                return scatter(*a, **kw)
            finally:
                self.scatter += time.perf_counter() - t

        def timed_merge(*a, **kw):
            t = time.perf_counter()
            try:
                return merge(*a, **kw)
            finally:
                self.merge += time.perf_counter() - t

        client.scatter, module.merge_neighbors = timed_scatter, timed_merge
        self._restore = (client, module, scatter, merge)

    def restore(self):
        client, module, scatter, merge = self._restore
        client.scatter, module.merge_neighbors = scatter, merge


def task_times(records) -> tuple[dict, float]:
    """From Dask's task stream: search seconds per worker, and transfer seconds."""
    search, transfer = {}, 0.0
    for r in records:
        for s in r["startstops"]:
            seconds = s["stop"] - s["start"]
            if s["action"] == "compute" and r["key"].startswith("knn-search"):
                search[r["worker"]] = search.get(r["worker"], 0.0) + seconds
            elif s["action"] == "transfer":
                transfer += seconds
    return search, transfer


def shard_cost(X, Q, n_shards, repeats=3):
    """Seconds (best of ``repeats``) to search ``Q`` in the whole of X and in its shards
    one after another, in this process on one thread, as the workers do."""
    from threadpoolctl import threadpool_limits

    from chainrule.models.knn import NeighborSearch

    bounds = np.linspace(0, len(X), n_shards + 1).astype(int)
    with threadpool_limits(limits=1, user_api="blas"):
        whole = NeighborSearch(X, "l2")
        parts = [NeighborSearch(X[a:b], "l2") for a, b in zip(bounds[:-1], bounds[1:])]
        best = {"whole": np.inf, "shards": np.inf}
        for _ in range(repeats):
            for name, searches in (("whole", [whole]), ("shards", parts)):
                t = time.perf_counter()
                for s in searches:
                    s.kneighbors(Q, 1, ordered=False, values=name == "shards", n_jobs=1)
                best[name] = min(best[name], time.perf_counter() - t)
    whole, shards = best["whole"], best["shards"]
    print(f"sharding's cost, here on one thread, {len(Q):,} queries: whole set {whole:.2f} s, "
          f"{n_shards} shards in turn {shards:.2f} s ({shards / whole:.2f}x)")  # fmt: skip


def fit_here(X, y, threads):
    from threadpoolctl import threadpool_limits

    from chainrule.models.knn import KNearestNeighbors

    with threadpool_limits(limits=threads, user_api="blas"):
        t = time.perf_counter()
        model = KNearestNeighbors(k=1, n_jobs=threads).fit(X, y)
    return model, time.perf_counter() - t


def run(args):
    X, y, Xv, yv = load_split(args.data)
    Xv, yv = Xv[: args.n_val], yv[: args.n_val]
    threads = args.workers
    print(f"CIFAR-10: {len(X):,} training rows x {X.shape[1]}, {len(Xv):,} queries, 1-NN L2")
    print(f"one process: {threads} threads;", "; ".join(thread_pools()))
    here, seconds = fit_here(X, y, threads)
    print(f"fit, one process: {seconds:.2f} s")
    if args.shard_cost:
        shard_cost(X, Xv[: args.shard_cost], args.shards)
    ok = True
    for malloc in ("dask", "large") if args.malloc == "both" else (args.malloc,):
        ok &= on_cluster(args, malloc, here, X, y, Xv, yv)
    return 0 if ok else 1


def on_cluster(args, malloc, here, X, y, Xv, yv) -> bool:
    """The cluster side against ``here``, on a cluster with the ``malloc`` setting."""
    import distributed

    from chainrule.models.knn import KNearestNeighbors, _distributed
    from chainrule.train.distributed import local_cluster

    bounds = np.linspace(0, len(X), args.shards + 1).astype(int)
    # (The nanny also leaves its own setting in this process's environment.)
    os.environ.update(MALLOC[malloc])
    with local_cluster(args.workers) as client:
        workers = sorted(client.nthreads())
        print(f"\n== cluster: {args.workers} workers x 1 thread, {args.shards} shards of "
              f"{len(X) // args.shards:,} rows, malloc: {malloc}")  # fmt: skip
        print("  worker:", "; ".join(client.submit(worker_pools, workers=workers[:1]).result()))
        shards = [client.scatter(X[a:b], workers=[workers[i % len(workers)]], hash=False)
                  for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]  # fmt: skip
        distributed.wait(shards)
        t = time.perf_counter()
        there = KNearestNeighbors(k=1).fit(shards, y)
        print(
            f"  fit (each shard's search prepared on its worker): {time.perf_counter() - t:.2f} s"
        )
        timers = Timers(client, _distributed)
        with distributed.get_task_stream(client) as stream:
            times, pred, agree = bursts(args, here, there, Xv)
        timers.restore()
        m = min(args.check, len(Xv))
        d0, i0 = neighbours_here(here, Xv[:m], args.workers)
        d1, i1 = there.kneighbors(Xv[:m])
        exact = np.array_equal(i0, i1) and np.array_equal(d0, d1)
        same = agree and np.array_equal(pred["here"], pred["there"])
        report(args, times, same, exact, m, pred, yv, timers, stream.data, workers)
    return same and exact


def neighbours_here(model, Q, threads):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        return model.kneighbors(Q)


def bursts(args, here, there, Xv):
    """Both sides predict every burst, alternating which goes first; per-burst seconds,
    the predictions, and whether every round predicted the same."""
    from threadpoolctl import threadpool_limits

    times = {"here": [], "there": []}
    pred = {side: np.empty(len(Xv), np.int64) for side in times}
    agree = True
    spans = [(s, min(len(Xv), s + args.burst)) for s in range(0, len(Xv), args.burst)]
    for i, (r, (s, e)) in enumerate((r, span) for r in range(args.rounds) for span in spans):
        for side in ("here", "there") if i % 2 == 0 else ("there", "here"):
            t = time.perf_counter()
            if side == "here":
                with threadpool_limits(limits=args.workers, user_api="blas"):
                    p = here.predict(Xv[s:e])
            else:
                p = there.predict(Xv[s:e])
            times[side].append(time.perf_counter() - t)
            agree &= r == 0 or np.array_equal(pred[side][s:e], p)
            pred[side][s:e] = p
    return times, pred, agree


def report(args, times, same, exact, m, pred, yv, timers, records, workers):
    ratios = [b / a for a, b in zip(times["here"], times["there"], strict=True)]
    total = {side: sum(t) for side, t in times.items()}
    nq = len(yv) * args.rounds
    print(f"\npredict {nq:,} queries in {len(ratios)} bursts of {args.burst:,}, alternating:")
    print(f"  one process {total['here']:.2f} s ({total['here'] / nq * 1e3:.3f} ms/query), "
          f"cluster {total['there']:.2f} s ({total['there'] / nq * 1e3:.3f} ms/query)")  # fmt: skip
    spread = ", ".join(f"{r:.2f}" for r in sorted(ratios))
    print(f"  time ratio cluster / one process: median {statistics.median(ratios):.2f} ({spread})")
    acc = float(np.mean(pred["here"] == yv))
    print(f"  same predictions: {same} (accuracy {acc:.2%}); same neighbours and distances "
          f"on {m} queries: {exact}")  # fmt: skip
    search, transfer = task_times(records)
    wall = total["there"]
    busiest = max(search.values()) if search else 0.0
    print(f"where the cluster's {wall:.2f} s go:")
    for w in workers:
        print(f"  search on worker {w}: {search.get(w, 0.0):.2f} s")
    here = f"{total['here']:.2f} s of wall time on {args.workers} threads"
    print(
        f"  search, all shards: {sum(search.values()):.2f} s of worker time (one process: {here})"
    )
    print(f"  send queries: scatter here {timers.scatter:.2f} s, "
          f"worker-to-worker transfers {transfer:.2f} s")  # fmt: skip
    print(f"  merge here: {timers.merge:.3f} s")
    rest = wall - busiest - timers.scatter - timers.merge
    print(f"  the rest (round trips, waiting for the slower worker, gathering): {rest:.2f} s "
          f"= wall - busiest worker's search - scatter - merge")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(run(parse_args()))
