"""The spec of k-nearest neighbours (see ``models/spec.py``): k chosen by cross-validation."""

from __future__ import annotations

import time

import numpy as np

from chainrule.models.spec import FitSummary, Member, ModelSpec, Option, Plot, positive_int

__all__ = ["KNN_SPEC", "KNNSpec"]

# Cross-validation uses at most this many training images (more with --search): 5-fold
# CV of 5,000 CIFAR-10 images takes seconds, and k's curve is flat enough by then.
CV_SAMPLES = 5000
CV_SAMPLES_SEARCH = 20000
CV_FOLDS = 5
CV_KS = (1, 3, 5, 8, 10, 12, 15, 20, 50, 100)


def cv_subset(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` training rows, stratified, for cross-validation."""
    n = y.shape[0]
    if n <= limit:
        return np.arange(n)
    from chainrule.data import stratified_split_indices

    _, keep = stratified_split_indices(y, limit / n, seed)
    return keep


class KNNSpec(ModelSpec):
    options = (
        Option("--k", "k", "number of neighbours (default: by cross-validation)", positive_int),
        Option("--metric", "metric", "distance (default l2)", choices=("l2", "l1", "cosine")),
    )
    shown = ("k", "metric")
    searched = ("k",)
    search_needs_validation = False

    def defaults(self, data):
        return {"k": 1, "metric": "l2"}

    def tune(self, params, given, X, y, *, search, seed, progress):
        """k by 5-fold cross-validation on (a stratified subset of) the training rows,
        unless k was given."""
        if "k" in given and not search:
            return None
        from chainrule.models.knn import knn_best_k, knn_cross_validate

        keep = cv_subset(y, CV_SAMPLES_SEARCH if search else CV_SAMPLES, seed)
        smallest = int(len(keep) * (CV_FOLDS - 1) / CV_FOLDS) - 1
        ks = [k for k in CV_KS if k <= smallest] or [1]
        metric = params.get("metric", "l2")
        start = time.perf_counter()
        results = knn_cross_validate(
            X[keep], y[keep], ks=ks, folds=CV_FOLDS, metric=metric, random_state=seed,
            progress=progress,
        )  # fmt: skip
        best = knn_best_k(results)
        record = {
            "metric": metric,
            "n": int(len(keep)),
            "folds": CV_FOLDS,
            "results": {int(k): v.tolist() for k, v in results.items()},
            "mean": {int(k): float(np.mean(v)) for k, v in results.items()},
            "best_k": int(best),
            "time_s": time.perf_counter() - start,
        }
        return {**params, "k": int(best)}, {"knn_cv": record}

    def stored(self, model):
        """The training rows (N, D), or the uint8 images (N, H, W, C) that the file's
        preprocessing turns into them (see ``chainrule.models.knn._modelfile``); each
        row's class index (N,) and the labels (C,)."""
        return {
            "classes_": Member(("C",), "iuU"),
            "fit_X": Member(("N", "D"), "fiu", required=False),
            "fit_images": Member(("N", None, None, None), "u", required=False),
            "y_index": Member(("N",), "iu"),
        }

    def plots(self, model, fitted: FitSummary):
        cv = fitted.tuning.get("knn_cv")
        if not cv:
            return []
        results = {int(k): np.asarray(v) for k, v in cv["results"].items()}
        return [Plot("plot_knn_cv", "knn_cv.png", (results,))]


KNN_SPEC = KNNSpec("knn")
