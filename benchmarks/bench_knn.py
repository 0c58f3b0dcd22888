"""k-NN prediction: chainrule against FAISS IndexFlatL2 and scikit-learn brute force.

The task of the course's CIFAR-10 k-NN: 50,000 training rows, 10,000 queries, 3,072 float32
features (random pixel values 0..255 by default, or real images with --cifar), L2 distance.
Targets: chainrule no slower than FAISS, at least 3x faster than scikit-learn, peak memory
at most 1 GB above the arrays.

Each library runs in its own subprocess (so that peak memories are separate) with the same
number of threads: threadpoolctl limits every BLAS/OpenMP pool and FAISS gets
``omp_set_num_threads``. The libraries run interleaved (chainrule, FAISS, scikit-learn,
chainrule, ...) so that load from other processes hits them alike; medians are reported.

Peak memory "above the arrays": the worker builds the training and query arrays, resets
the kernel's peak-RSS counter (``/proc/self/clear_refs``), and reports ``VmHWM`` after fit
and predict minus ``VmRSS`` before them. This counts BLAS buffers and everything else that
tracemalloc would miss.

With ``--coretype both`` the runs are repeated in subprocesses whose environment lacks
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (both dropped together, for those subprocesses
only); every row says which OpenBLAS kernel and how many threads it used.

Run (from the repository root):

    .venv/bin/python benchmarks/bench_knn.py                        # 3 small reps + 1 full
    .venv/bin/python benchmarks/bench_knn.py --repeat 3 --no-full   # quick
    .venv/bin/python benchmarks/bench_knn.py --n-train 5000 --n-query 500 --no-full
    .venv/bin/python benchmarks/bench_knn.py --coretype both
    .venv/bin/python benchmarks/bench_knn.py --cifar /work/data/cifar10   # real images
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIBS = ("chainrule", "faiss", "sklearn")
_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# --- worker: one library, one size, in its own process ----------------------------------


def _proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _make_data(args):
    import numpy as np

    if args.cifar:
        from chainrule.data import load

        tr = load(args.cifar, split="train", val_fraction=0.2, random_state=0, progress=False)
        va = load(args.cifar, split="val", val_fraction=0.2, random_state=0, progress=False)
        n_train = min(args.n_train, len(tr.labels))
        n_query = min(args.n_query, len(va.labels))
        X = tr.images[:n_train].reshape(n_train, -1).astype(np.float32)
        Q = va.images[:n_query].reshape(n_query, -1).astype(np.float32)
        y = tr.labels[:n_train].copy()
        del tr, va
        return X, y, Q
    rng = np.random.default_rng(0)
    # Pixel-like values 0..255, built in place (no temporaries above the arrays).
    X = rng.random((args.n_train, args.dim), dtype=np.float32)
    X *= 256
    np.floor(X, out=X)
    Q = rng.random((args.n_query, args.dim), dtype=np.float32)
    Q *= 256
    np.floor(Q, out=Q)
    y = rng.integers(0, 10, args.n_train)
    return X, y, Q


def _votes(labels, n_classes):
    import numpy as np

    counts = np.zeros((labels.shape[0], n_classes), dtype=np.int64)
    for j in range(labels.shape[1]):
        np.add.at(counts, (np.arange(labels.shape[0]), labels[:, j]), 1)
    return counts.argmax(axis=1)  # ties: the smallest label


def worker(args) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    X, y, Q = _make_data(args)
    limits = threadpool_limits(limits=args.threads)
    if args.lib == "faiss":
        import faiss

        faiss.omp_set_num_threads(args.threads)
    elif args.lib == "sklearn":
        from sklearn.neighbors import KNeighborsClassifier
    else:
        from chainrule.models import KNearestNeighbors
    gc.collect()
    peak_reset = _reset_peak()
    before = _proc_status()["VmRSS"]

    t0 = time.perf_counter()
    if args.lib == "faiss":
        index = faiss.IndexFlatL2(X.shape[1])
        index.add(X)
        t1 = time.perf_counter()
        _, idx = index.search(Q, args.k)
        pred = _votes(y[idx], 10)
    elif args.lib == "sklearn":
        model = KNeighborsClassifier(n_neighbors=args.k, algorithm="brute", n_jobs=args.threads)
        model.fit(X, y)
        t1 = time.perf_counter()
        pred = model.predict(Q)
    else:
        model = KNearestNeighbors(k=args.k, n_jobs=args.threads).fit(X, y)
        t1 = time.perf_counter()
        pred = model.predict(Q)
    t2 = time.perf_counter()

    status = _proc_status()
    blas = [
        {
            "lib": Path(p["filepath"]).name.split("-")[0],
            "api": p["internal_api"],
            "arch": p.get("architecture"),
            "threads": p["num_threads"],
            "version": p.get("version"),
        }
        for p in threadpool_info()
    ]
    limits.restore_original_limits()
    np.save(args.pred_out, np.asarray(pred))
    return {
        "lib": args.lib,
        "n_train": int(X.shape[0]),
        "n_query": int(Q.shape[0]),
        "fit_s": t1 - t0,
        "predict_s": t2 - t1,
        "peak_above_arrays_bytes": (status["VmHWM"] - before) if peak_reset else None,
        "arrays_bytes": int(X.nbytes + Q.nbytes + y.nbytes),
        "threadpools": blas,
        "env": {v: os.environ.get(v) for v in _OPENBLAS_VARS},
    }


# --- driver -----------------------------------------------------------------------------


def run_one(lib, n_train, n_query, args, tmp: Path, unset_env: bool) -> dict:
    env = dict(os.environ)
    if unset_env:
        for v in _OPENBLAS_VARS:
            env.pop(v, None)
    pred = tmp / f"pred-{lib}-{n_train}-{n_query}-{int(unset_env)}.npy"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        lib,
        "--n-train",
        str(n_train),
        "--n-query",
        str(n_query),
        "--dim",
        str(args.dim),
        "--k",
        str(args.k),
        "--threads",
        str(args.threads),
        "--pred-out",
        str(pred),
    ]
    if args.cifar:
        cmd += ["--cifar", args.cifar]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{lib} worker failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["pred_path"] = str(pred)
    return result


def _blas_summary(result) -> str:
    want = {"chainrule": "scipy_openblas", "sklearn": "scipy_openblas", "faiss": "openblas"}
    parts = []
    for p in result["threadpools"]:
        if p["api"] == "openblas" and p["lib"].startswith(f"lib{want[result['lib']]}"):
            parts.append(f"OpenBLAS {p['version']} {p['arch']} x{p['threads']}")
        elif p["api"] == "openmp" and result["lib"] != "chainrule":
            parts.append(f"OpenMP x{p['threads']}")
    return ", ".join(dict.fromkeys(parts))


def compare(n_train, n_query, repeats, args, tmp, unset_env, libs) -> dict:
    import numpy as np

    label = "OPENBLAS_CORETYPE/L2_SIZE unset" if unset_env else "environment as is"
    if args.cifar:  # the split holds 40,000 training and 10,000 validation images
        n_train, n_query = min(n_train, 40_000), min(n_query, 10_000)
    data = f"CIFAR-10 images from {args.cifar}" if args.cifar else "random pixel values"
    print(
        f"\n== {n_train} training x {n_query} queries x {args.dim} features ({data}), "
        f"k={args.k}, {args.threads} threads, {label}, {repeats} interleaved repeat(s)",
        flush=True,
    )
    runs: dict[str, list[dict]] = {lib: [] for lib in libs}
    for r in range(repeats):
        for lib in libs:
            res = run_one(lib, n_train, n_query, args, tmp, unset_env)
            runs[lib].append(res)
            peak = res["peak_above_arrays_bytes"]
            print(
                f"  rep {r + 1} {lib:9s} fit {res['fit_s']:7.2f} s  predict "
                f"{res['predict_s']:7.2f} s  peak above arrays "
                f"{'n/a' if peak is None else f'{peak / 2**20:7.0f} MB'}",
                flush=True,
            )
    med = {lib: statistics.median(r["predict_s"] for r in runs[lib]) for lib in libs}
    peak = {
        lib: max((r["peak_above_arrays_bytes"] or 0) for r in runs[lib]) / 2**20 for lib in libs
    }
    print(f"  {'library':10s} {'predict (median)':>17s} {'peak MB':>8s}  BLAS")
    for lib in libs:
        print(f"  {lib:10s} {med[lib]:15.2f} s {peak[lib]:8.0f}  {_blas_summary(runs[lib][-1])}")
    preds = {lib: np.load(runs[lib][-1]["pred_path"]) for lib in libs}
    out = {"predict_median_s": med, "peak_mb": peak}
    if "chainrule" in libs:
        for lib in libs:
            if lib == "chainrule":
                continue
            ratio = med[lib] / med["chainrule"]
            agree = float(np.mean(preds[lib] == preds["chainrule"]))
            print(
                f"  {lib} time / chainrule time = {ratio:.2f}   "
                f"(predictions agree on {agree:.2%} of queries)"
            )
            out[f"{lib}_over_chainrule"] = ratio
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-train", type=int, default=None, help="small-size training rows")
    p.add_argument("--n-query", type=int, default=None, help="small-size queries")
    p.add_argument("--dim", type=int, default=3072)
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="interleaved repeats at the small size")
    p.add_argument("--no-full", action="store_true", help="skip the full-size run")
    p.add_argument("--full-train", type=int, default=50_000)
    p.add_argument("--full-query", type=int, default=10_000)
    p.add_argument("--libs", default=",".join(LIBS))
    p.add_argument(
        "--coretype",
        choices=("as-is", "unset", "both"),
        default="as-is",
        help="run with the OpenBLAS environment as is, with it unset, or both",
    )
    p.add_argument("--cifar", default=None, help="image folder with CIFAR-10 (DIR/train/<class>)")
    p.add_argument("--json", default=None, help="also write the summary here")
    p.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    p.add_argument("--pred-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        args.lib = args.worker
        print(json.dumps(worker(args)))
        return 0

    libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    for lib in libs:
        if lib not in LIBS:
            p.error(f"unknown library {lib!r}; choose from {', '.join(LIBS)}")
    small_train = args.n_train or 20_000
    small_query = args.n_query or 2_000
    envs = {"as-is": [False], "unset": [True], "both": [False, True]}[args.coretype]
    summary = {}
    with tempfile.TemporaryDirectory(prefix="bench_knn_") as tmp:
        tmp = Path(tmp)
        for unset_env in envs:
            key = "unset" if unset_env else "as-is"
            if args.repeat > 0:
                summary[f"small/{key}"] = compare(
                    small_train, small_query, args.repeat, args, tmp, unset_env, libs
                )
            if not args.no_full:
                summary[f"full/{key}"] = compare(
                    args.full_train, args.full_query, 1, args, tmp, unset_env, libs
                )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
