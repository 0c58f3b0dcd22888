"""k-NN prediction: chainrule against FAISS (IndexFlat) and scikit-learn brute force.

The task of the course's CIFAR-10 k-NN: 3,072 float32 features (pixel values 0..255),
10,000 queries. With ``--cifar DIR`` the data are the real images: the stratified
validation split of the 50,000 training images (seed 0), 40,000 training rows and the
10,000 held-out rows as queries (the official test images are not used). Without it,
random pixel values (50,000 x 10,000 by default), where no filter can help: the
worst case.

All libraries run in this process with the same number of threads (threadpoolctl limits
every BLAS and OpenMP pool, FAISS gets ``omp_set_num_threads``, chainrule ``n_jobs``,
scikit-learn ``n_jobs``). The queries are cut into bursts (1,000 by default); each burst
is predicted by every library in turn, the order alternating from burst to burst, so
that load from other processes hits all alike. Reported: each library's time per 10,000
queries (from the median burst), the median over bursts of the per-burst ratio
(reference time / chainrule time, per query) with its range, and how often the
predictions agree. scikit-learn is slow: it predicts the first ``--sklearn-queries`` of
each burst only (the ratio is per query; the agreement is on those queries).

``--memory`` measures instead, for each library in its own subprocess, the peak memory
of fit + predict above the arrays (``VmHWM`` after, minus ``VmRSS`` before, with the
kernel's peak counter reset: BLAS buffers included).

Run (from the repository root):

    python benchmarks/bench_knn.py --cifar /work/data/cifar10 --metric l1
    python benchmarks/bench_knn.py --cifar /work/data/cifar10 --metric l2,l1 --k 5,10 \\
        --libs chainrule,faiss
    python benchmarks/bench_knn.py --n-query 2000 --metric l2     # random pixels
    python benchmarks/bench_knn.py --memory --metric l2           # peak memory
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LIBS = ("chainrule", "faiss", "sklearn")
SKLEARN_METRIC = {"l2": "euclidean", "l1": "manhattan", "cosine": "cosine"}


# --- data ---------------------------------------------------------------------------------


def load_data(args):
    """(X (N, D) float32, y (N,), Q (nq, D) float32, description)."""
    if args.cifar:
        from chainrule.data import load

        common = {"val_fraction": 0.2, "random_state": 0, "progress": False}
        tr = load(args.cifar, split="train", **common)
        va = load(args.cifar, split="val", **common)
        n_train = min(args.n_train or len(tr.labels), len(tr.labels))
        a = min(args.query_start, len(va.labels))
        b = min(a + (args.n_query or len(va.labels)), len(va.labels))
        X = tr.images[:n_train].reshape(n_train, -1).astype(np.float32)
        Q = va.images[a:b].reshape(b - a, -1).astype(np.float32)
        desc = (
            f"CIFAR-10 from {args.cifar}: {n_train} training rows of the stratified "
            f"40,000 / 10,000 split (seed 0), its held-out rows {a}..{b - 1} as queries"
        )
        return X, tr.labels[:n_train].copy(), Q, desc
    rng = np.random.default_rng(0)
    n_train, n_query = args.n_train or 50_000, args.n_query or 10_000
    X = np.floor(rng.random((n_train, args.dim), dtype=np.float32) * 256)
    Q = np.floor(rng.random((n_query, args.dim), dtype=np.float32) * 256)
    desc = f"random pixel values 0..255: {n_train} training rows, {n_query} queries"
    return X, rng.integers(0, 10, n_train), Q, desc


def vote(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Majority label of each row of ``labels`` (N, k); ties to the smallest label."""
    counts = np.zeros((labels.shape[0], n_classes), dtype=np.int64)
    rows = np.arange(labels.shape[0])
    for j in range(labels.shape[1]):
        np.add.at(counts, (rows, labels[:, j]), 1)
    return counts.argmax(axis=1)


# --- the libraries -----------------------------------------------------------------------


def make_predictor(lib: str, metric: str, k: int, X, y, threads: int):
    """Fit ``lib`` on X, y; returns ``(fit seconds, predict(Q) -> labels)``."""
    t0 = time.perf_counter()
    if lib == "chainrule":
        from chainrule.models import KNearestNeighbors

        model = KNearestNeighbors(k=k, metric=metric, n_jobs=threads).fit(X, y)
        predict = model.predict
    elif lib == "faiss":
        import faiss

        faiss.omp_set_num_threads(threads)
        n_classes = int(y.max()) + 1
        if metric == "cosine":
            index = faiss.IndexFlatIP(X.shape[1])
            Xn = X.copy()
            faiss.normalize_L2(Xn)
            index.add(Xn)
        else:
            kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_L1
            index = faiss.IndexFlat(X.shape[1], kind)
            index.add(X)

        def predict(Q):
            if metric == "cosine":
                Q = Q.copy()
                faiss.normalize_L2(Q)
            _, idx = index.search(np.ascontiguousarray(Q), k)
            return vote(y[idx], n_classes)

    else:
        from sklearn.neighbors import KNeighborsClassifier

        model = KNeighborsClassifier(
            n_neighbors=k, algorithm="brute", metric=SKLEARN_METRIC[metric], n_jobs=threads
        ).fit(X, y)
        predict = model.predict
    return time.perf_counter() - t0, predict


def describe_threads(threads: int) -> list[str]:
    """One line per thread pool in this process (BLAS, OpenMP), as threadpoolctl sees it."""
    from threadpoolctl import threadpool_info

    lines = []
    for p in threadpool_info():
        name = Path(p["filepath"]).name.split(".so")[0]
        extra = f" {p.get('version') or ''} {p.get('architecture') or ''}".rstrip()
        lines.append(f"{p['internal_api']:9s} {name}{extra}: {p['num_threads']} threads")
    env = {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OMP_NUM_THREADS")}
    lines.append(f"limit {threads} threads everywhere; environment {env}")
    return lines


# --- interleaved bursts ------------------------------------------------------------------


def run_bursts(predictors: dict, Q, burst: int, sk_queries: int):
    """Predict every burst with every library, in alternating order.

    Returns ``(seconds, counts, preds)``: per library the list of burst times, the
    number of queries each burst had, and the predictions (concatenated)."""
    names = list(predictors)
    seconds = {n: [] for n in names}
    counts = {n: [] for n in names}
    preds = {n: [] for n in names}
    for b, s in enumerate(range(0, len(Q), burst)):
        Qb = Q[s : s + burst]
        for name in names if b % 2 == 0 else names[::-1]:
            part = Qb[:sk_queries] if name == "sklearn" else Qb
            t0 = time.perf_counter()
            pred = predictors[name](part)
            seconds[name].append(time.perf_counter() - t0)
            counts[name].append(len(part))
            preds[name].append(np.asarray(pred))
        line = "  ".join(f"{n} {seconds[n][-1]:6.2f} s" for n in names)
        print(f"    burst {b + 1:2d} ({len(Qb)} queries): {line}", flush=True)
    return seconds, counts, {n: np.concatenate(p) for n, p in preds.items()}


def summarize(seconds, counts, preds, n_query: int) -> dict:
    """Times per 10,000 queries, median per-burst ratios against chainrule, agreement."""
    out = {}
    per_query = {n: [t / c for t, c in zip(seconds[n], counts[n], strict=True)] for n in seconds}
    for name in seconds:
        out[name] = {
            "seconds_per_10k_queries": 1e4 * statistics.median(per_query[name]),
            "total_seconds": sum(seconds[name]),
            "queries": sum(counts[name]),
        }
        if name != "chainrule" and "chainrule" in seconds:
            ratios = [a / b for a, b in zip(per_query[name], per_query["chainrule"], strict=True)]
            take = [np.arange(s, s + c) for s, c in zip(_starts(counts), counts[name], strict=True)]
            mine = preds["chainrule"][np.concatenate(take)]
            out[name].update(
                ratio_median=statistics.median(ratios),
                ratio_range=(min(ratios), max(ratios)),
                agreement=float(np.mean(mine == preds[name])),
            )
    return out


def _starts(counts):
    """Offsets of the bursts in the chainrule prediction list."""
    sizes = counts["chainrule"]
    return np.cumsum([0, *sizes[:-1]])


def report(metric, k, fits, summary) -> None:
    for name, s in summary.items():
        line = (
            f"  {name:9s} fit {fits[name]:6.2f} s   predict {s['seconds_per_10k_queries']:7.2f} s "
            f"per 10,000 queries ({s['queries']} queries in {s['total_seconds']:.1f} s)"
        )
        if "ratio_median" in s:
            lo, hi = s["ratio_range"]
            line += (
                f"\n            time / chainrule's: median {s['ratio_median']:.2f}x "
                f"(bursts {lo:.2f}x-{hi:.2f}x); predictions agree on {s['agreement']:.2%}"
            )
        print(line, flush=True)


# --- peak memory (one library per subprocess) -----------------------------------------


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def memory_worker(args) -> dict:
    from threadpoolctl import threadpool_limits

    X, y, Q, _ = load_data(args)
    threadpool_limits(limits=args.threads)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter
    before = _status()["VmRSS"]
    _, predict = make_predictor(args.worker, args.metric, int(args.k), X, y, args.threads)
    predict(Q)
    return {"peak_above_arrays_mb": (_status()["VmHWM"] - before) / 2**20}


def run_memory(args, libs, metrics, ks) -> dict:
    out = {}
    for metric in metrics:
        for k in ks:
            for lib in libs:
                cmd = [sys.executable, __file__, "--worker", lib, "--metric", metric]
                cmd += ["--k", str(k), "--threads", str(args.threads), "--dim", str(args.dim)]
                for flag, value in (("--cifar", args.cifar), ("--n-train", args.n_train)):
                    if value:
                        cmd += [flag, str(value)]
                cmd += ["--n-query", str(args.n_query or 10_000)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(f"{lib} worker failed:\n{proc.stderr}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                out[f"{metric}/k={k}/{lib}"] = res
                print(
                    f"  {metric} k={k} {lib:9s} peak above the arrays "
                    f"{res['peak_above_arrays_mb']:7.0f} MB",
                    flush=True,
                )
    return out


# --- main ----------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", default=None, help="CIFAR-10 image folder (DIR/train/<class>)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-query", type=int, default=None)
    p.add_argument("--query-start", type=int, default=0, help="first held-out row (--cifar)")
    p.add_argument("--dim", type=int, default=3072, help="features of the random data")
    p.add_argument("--metric", default="l2", help="comma-separated: l2, l1, cosine")
    p.add_argument("--k", default="1", help="comma-separated neighbour counts")
    p.add_argument("--libs", default=",".join(LIBS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--burst", type=int, default=1000, help="queries per interleaved burst")
    p.add_argument("--sklearn-queries", type=int, default=50, help="of each burst")
    p.add_argument("--memory", action="store_true", help="peak memory instead of time")
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(memory_worker(args)))
        return 0
    libs = [lib for lib in args.libs.split(",") if lib]
    metrics = [m for m in args.metric.split(",") if m]
    ks = [int(k) for k in args.k.split(",") if k]
    bad = [x for x in libs if x not in LIBS] + [m for m in metrics if m not in SKLEARN_METRIC]
    if bad:
        raise SystemExit(f"unknown library or metric: {', '.join(bad)}")
    if args.memory:
        results = run_memory(args, libs, metrics, ks)
    else:
        from threadpoolctl import threadpool_limits

        X, y, Q, desc = load_data(args)
        threadpool_limits(limits=args.threads)
        print(f"== {desc}; {X.shape[1]} features; bursts of {args.burst} queries", flush=True)
        results = {}
        for metric in metrics:
            for k in ks:
                print(f"\n-- metric {metric}, k={k}", flush=True)
                fits, predictors = {}, {}
                for lib in libs:
                    fits[lib], predictors[lib] = make_predictor(lib, metric, k, X, y, args.threads)
                seconds, counts, preds = run_bursts(predictors, Q, args.burst, args.sklearn_queries)
                summary = summarize(seconds, counts, preds, len(Q))
                report(metric, k, fits, summary)
                results[f"{metric}/k={k}"] = {"fit_seconds": fits, **summary}
                del predictors
        print("\nthreads:\n  " + "\n  ".join(describe_threads(args.threads)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
