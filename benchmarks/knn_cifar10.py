"""k-NN accuracy on CIFAR-10: a stratified validation split of the 50,000 training images.

Trains on 40,000 images and measures accuracy on the other 10,000 (stratified, 1,000 per
class, ``random_state=0``) for every k of the grid, with L2 and L1 distances on raw pixels
(float32, flattened, 0..255), as the course does. Published figures for comparison (train on
all 50,000, test on the official test set, 1-NN): 35.4% (L2) and 38.6% (L1).

Subtracting the training mean image does not change L2 or L1 distances (a translation), so
it cannot change those results; ``--mean-subtracted`` checks that it gives identical
neighbours, and adds cosine distance, for which centring does matter.

For each metric the k nearest neighbours (k = the largest of the grid) are computed once,
sorted, and every k votes from their first k, so the whole grid costs one search.

Side by side (``--reference faiss``, the default): FAISS's exact ``IndexFlat`` for the
same metric searches the first ``--reference-rows`` of each 500-query chunk, the two
libraries alternating first from chunk to chunk, with the same number of threads
(threadpoolctl limits every BLAS and OpenMP pool). Printed: the median over chunks of
FAISS's time per query over chainrule's, and how often the predictions of every k agree.

Run (from the repository root; the images unpacked as in the notes):

    .venv/bin/python benchmarks/knn_cifar10.py --data /work/data/cifar10
    .venv/bin/python benchmarks/knn_cifar10.py --metrics l2 --n-val 2000     # quick
    nice .venv/bin/python benchmarks/knn_cifar10.py --metrics l1               # slow: L1
    .venv/bin/python benchmarks/knn_cifar10.py --metrics l2 --cv 10000 --plot knn_cv.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

KS = (1, 3, 5, 8, 10, 12, 15, 20, 50, 100)
PUBLISHED = {"l2": 0.354, "l1": 0.386}


def load_split(root: str, val_fraction: float = 0.2):
    """(X_train, y_train, X_val, y_val, classes): raw pixels as float32 rows (N, 3072).

    ``root`` is a folder with ``train/<class>/*.jpg`` (or ``<class>/*.jpg``).
    """
    from chainrule import data

    tr = data.load(root, split="train", val_fraction=val_fraction, random_state=0)
    va = data.load(root, split="val", val_fraction=val_fraction, random_state=0)
    X_train = tr.images.reshape(len(tr.images), -1).astype(np.float32)
    X_val = va.images.reshape(len(va.images), -1).astype(np.float32)
    return X_train, tr.labels, X_val, va.labels, tr.classes


def vote(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Majority label of each row of ``labels`` (N, k) in 0..n_classes-1; ties: smallest."""
    counts = np.zeros((labels.shape[0], n_classes), dtype=np.int64)
    rows = np.arange(labels.shape[0])
    for j in range(labels.shape[1]):
        np.add.at(counts, (rows, labels[:, j]), 1)
    return counts.argmax(axis=1)


def faiss_neighbours(X_train, metric: str, threads: int):
    """``search(Q, k) -> indices (nq, k)`` of FAISS's exact IndexFlat for ``metric``."""
    import faiss

    faiss.omp_set_num_threads(threads)
    if metric == "cosine":
        index = faiss.IndexFlatIP(X_train.shape[1])
        Xn = X_train.copy()
        faiss.normalize_L2(Xn)
        index.add(Xn)
    else:
        kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_L1
        index = faiss.IndexFlat(X_train.shape[1], kind)
        index.add(X_train)

    def search(Q, k):
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        if metric == "cosine":
            faiss.normalize_L2(Q)
        return index.search(Q, k)[1]

    return search


def accuracy_by_k(model, y_train, X_val, y_val, ks, step=500, reference=None, ref_rows=100):
    """Validation accuracy for every k from one sorted neighbour list.

    With ``reference`` (``search(Q, k) -> indices``), each chunk of ``step`` queries is
    also searched by the reference on its first ``ref_rows`` queries, the two sides
    alternating first. Returns ``(accuracies, seconds, idx, comparison)``: ``comparison``
    is None without a reference, else the median per-chunk ratio of the reference's time
    per query to chainrule's, with its range, and the share of compared queries whose
    predictions agree for every k.
    """
    from tqdm.auto import tqdm

    k_max = max(ks)
    n_classes = int(max(y_train.max(), y_val.max())) + 1
    idx = np.empty((len(X_val), k_max), dtype=np.int64)
    mine, theirs, agree, compared = [], [], 0, 0
    chunks = range(0, len(X_val), step)
    for i, s in enumerate(tqdm(chunks, desc=f"{model.metric} neighbours", unit="chunk")):
        Qs = X_val[s : s + step]
        sides = ["chainrule", "reference"] if i % 2 == 0 else ["reference", "chainrule"]
        for side in sides if reference is not None else ["chainrule"]:
            t0 = time.perf_counter()
            if side == "chainrule":
                idx[s : s + step] = model.kneighbors(Qs, k_max, return_distance=False)
                mine.append((time.perf_counter() - t0) / len(Qs))
            else:
                ref = reference(Qs[:ref_rows], k_max)
                theirs.append((time.perf_counter() - t0) / len(ref))
        if reference is not None:
            same = np.ones(len(ref), dtype=bool)
            for k in ks:
                ours = vote(y_train[idx[s : s + len(ref), :k]], n_classes)
                same &= ours == vote(y_train[ref[:, :k]], n_classes)
            agree, compared = agree + int(same.sum()), compared + len(ref)
    seconds = sum(mine[j] * len(X_val[s : s + step]) for j, s in enumerate(chunks))
    labels = y_train[idx]
    acc = {k: float(np.mean(vote(labels[:, :k], n_classes) == y_val)) for k in ks}
    comparison = None
    if reference is not None:
        ratios = [b / a for a, b in zip(mine, theirs, strict=True)]
        comparison = {
            "ratio_median": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "agree": agree / compared,
            "compared": compared,
        }
    return acc, seconds, idx, comparison


def describe_threads(threads: int) -> str:
    from threadpoolctl import threadpool_info

    pools = [
        f"{p['internal_api']} {p['filepath'].rsplit('/', 1)[-1].split('.so')[0]} "
        f"x{p['num_threads']}"
        for p in threadpool_info()
    ]
    return f"{threads} threads on every side ({'; '.join(pools)})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="/work/data/cifar10", help="CIFAR-10 image folder")
    p.add_argument("--metrics", default="l2,l1")
    p.add_argument("--ks", default=",".join(map(str, KS)))
    p.add_argument("--n-val", type=int, default=None, help="use N validation rows (stratified)")
    p.add_argument(
        "--n-train", type=int, default=None, help="use N training rows (stratified, seed 0)"
    )
    p.add_argument("--mean-subtracted", action="store_true", help="also run on centred pixels")
    p.add_argument("--cv", type=int, default=0, help="5-fold cross-validation on N training rows")
    p.add_argument("--plot", default=None, help="write the cross-validation plot here")
    p.add_argument("--json", default=None, help="write all numbers here")
    p.add_argument(
        "--reference", choices=("faiss", "none"), default="faiss", help="side-by-side library"
    )
    p.add_argument("--reference-rows", type=int, default=100, help="of each 500-query chunk")
    p.add_argument("--threads", type=int, default=2, help="for every library")
    args = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from chainrule.models import KNearestNeighbors, knn_best_k, knn_cross_validate

    threadpool_limits(limits=args.threads)

    ks = tuple(int(k) for k in args.ks.split(","))
    t0 = time.perf_counter()
    X_train, y_train, X_val, y_val, classes = load_split(args.data)
    if args.n_val and args.n_val < len(y_val):
        # The validation rows come sorted by class: take an evenly spaced (stratified) subset.
        pick = np.linspace(0, len(y_val), args.n_val, endpoint=False).astype(np.int64)
        X_val, y_val = X_val[pick], y_val[pick]
    if args.n_train and args.n_train < len(y_train):
        from chainrule.data import stratified_split_indices

        # How accuracy grows with the training set: a stratified subset of the rows.
        keep, _ = stratified_split_indices(
            y_train, val_fraction=1 - args.n_train / len(y_train), random_state=0
        )
        X_train, y_train = X_train[keep], y_train[keep]
    print(
        f"loaded {len(X_train)} training and {len(X_val)} validation images "
        f"({X_train.shape[1]} features, {len(classes)} classes) in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    report: dict = {"n_train": len(X_train), "n_val": len(X_val), "ks": list(ks), "runs": {}}
    variants = [("raw", X_train, X_val)]
    if args.mean_subtracted:
        mean = X_train.mean(axis=0, dtype=np.float64).astype(np.float32)
        variants.append(("mean-subtracted", X_train - mean, X_val - mean))
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.mean_subtracted and "cosine" not in metrics:
        metrics.append("cosine")
    neighbours = {}
    for name, Xt, Xv in variants:
        for metric in metrics:
            if metric == "cosine" and name == "raw" and args.mean_subtracted:
                continue
            model = KNearestNeighbors(k=1, metric=metric, n_jobs=args.threads).fit(Xt, y_train)
            reference = None
            if args.reference == "faiss":
                reference = faiss_neighbours(Xt, metric, args.threads)
            acc, seconds, idx, comparison = accuracy_by_k(
                model, y_train, Xv, y_val, ks, reference=reference, ref_rows=args.reference_rows
            )
            neighbours[(name, metric)] = idx
            best = max(acc.values())
            best_k = min(k for k, a in acc.items() if a == best)
            report["runs"][f"{metric}/{name}"] = {
                "accuracy": acc,
                "best_k": best_k,
                "best": best,
                "seconds": seconds,
                "faiss": comparison,
            }
            line = "  ".join(f"k={k}: {a:.2%}" for k, a in acc.items())
            target = PUBLISHED.get(metric)
            print(f"\n{metric} ({name} pixels), {seconds:.1f} s for {len(Xv)} queries\n  {line}")
            print(
                f"  best k={best_k}: {best:.2%}"
                + (f" (published 1-NN: {target:.1%})" if target and name == "raw" else ""),
                flush=True,
            )
            if comparison:
                lo, hi = comparison["ratio_range"]
                print(
                    f"  FAISS IndexFlat, side by side on {comparison['compared']} of the queries: "
                    f"time per query {comparison['ratio_median']:.2f}x chainrule's (median of "
                    f"chunks, {lo:.2f}x-{hi:.2f}x); predictions for every k agree on "
                    f"{comparison['agree']:.2%}",
                    flush=True,
                )
    for metric in metrics:
        a, b = neighbours.get(("raw", metric)), neighbours.get(("mean-subtracted", metric))
        if a is not None and b is not None:
            same = float(np.mean(a == b))
            print(f"{metric}: raw and mean-subtracted neighbour lists agree on {same:.4%}")
            report["runs"][f"{metric}/raw"]["same_neighbours_as_mean_subtracted"] = same

    if args.cv:
        rng = np.random.default_rng(0)
        sub = np.sort(rng.choice(len(X_train), size=min(args.cv, len(X_train)), replace=False))
        for metric in [m for m in metrics if m != "cosine"][:1] or ["l2"]:
            t = time.perf_counter()
            results = knn_cross_validate(
                X_train[sub],
                y_train[sub],
                ks=ks,
                folds=5,
                metric=metric,
                random_state=0,
                progress=True,
            )
            seconds = time.perf_counter() - t
            best_k = knn_best_k(results)
            print(f"\n5-fold cross-validation, {metric}, {len(sub)} rows ({seconds:.1f} s)")
            for k, a in results.items():
                print(f"  k={k:3d}: {a.mean():.2%} +- {a.std():.2%}  folds {np.round(a, 4)}")
            print(f"  best k: {best_k}")
            report["cv"] = {
                "metric": metric,
                "n": len(sub),
                "seconds": seconds,
                "best_k": best_k,
                "folds": {k: v.tolist() for k, v in results.items()},
            }
            if args.plot:
                from chainrule.report.plots import plot_knn_cv

                print(f"  plot: {plot_knn_cv(results, args.plot)}")
    print(f"\n{describe_threads(args.threads)}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
