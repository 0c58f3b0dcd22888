"""Linear classifiers (multiclass SVM, softmax) on a validation split of CIFAR-10.

Loads the CIFAR-10 training images (an image folder, default /work/data/cifar10/train,
50,000 JPEGs), holds out a stratified 10,000 for validation (``chainrule.data.load`` with
``val_fraction=0.2, random_state=0``), preprocesses as the course does (pixels scaled to
[0, 1], per-channel training mean subtracted, flattened; separate unregularized bias),
then for each model tunes learning rate x regularization on the validation split with a
small grid search (every candidate trained for the full number of epochs) and reports
the best validation accuracy, its hyperparameters and the time taken.

Published figures for orientation (trained on 50,000, tested on the official test set):
SVM 39%, softmax 40%.

With PyTorch installed, the softmax classifier with the chosen hyperparameters is also
trained by a plain PyTorch loop (same initialisation scale, minibatches, SGD, the
"exponential" schedule's decay per epoch (to 1% of the rate by the end of the run);
one thread, like chainrule's training) in the same run, for its accuracy. Training
speed is compared in short alternating bursts: ``--pairs`` pairs of runs of
``--pair-epochs`` epochs each, chainrule's ``fit`` and the PyTorch loop taking turns
(the order swapped every pair); the median of the per-pair time ratios is printed,
with the BLAS and thread count of each side.

``--data digits`` runs the same search on the bundled 8x8 digits (1,150 train / 288
validation images) with learning rates scaled for its smaller features.

``--defaults-only`` skips the search and trains each model once with its defaults.

Run:  nice .venv/bin/python benchmarks/linear_cifar10.py [--data DIR|digits]
          [--models svm,softmax] [--epochs 20] [--plots RUN_DIR] [--defaults-only]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import chainrule.data as crdata
from chainrule.models import LinearSVM, SoftmaxClassifier
from chainrule.train.search import grid_search, print_results

MODELS = {"svm": LinearSVM, "softmax": SoftmaxClassifier}

# Grids centred on the defaults; D = 3072 features in [-1, 1].
CIFAR_GRIDS = {
    "svm": {"learning_rate": [1e-2, 3e-2, 1e-1], "reg": [1e-4, 1e-3, 1e-2]},
    "softmax": {"learning_rate": [3e-2, 1e-1, 3e-1], "reg": [1e-4, 1e-3, 1e-2]},
}
# The 8x8 digits have ~30x smaller squared feature norms: ~30x larger learning rates.
DIGITS_GRIDS = {
    "svm": {"learning_rate": [0.3, 1.0, 3.0], "reg": [1e-4, 1e-3, 1e-2]},
    "softmax": {"learning_rate": [1.0, 3.0, 10.0], "reg": [1e-4, 1e-3, 1e-2]},
}


def load_split(source: str):
    kw = dict(val_fraction=0.2, random_state=0, progress=False)
    t = time.perf_counter()
    train = crdata.load(source, split="train", **kw)
    val = crdata.load(source, split="val", **kw)
    pre = crdata.Preprocessor(center=True).fit(train.images)
    X, Xv = pre.transform(train.images), pre.transform(val.images)
    print(
        f"data {source}: train {X.shape}, val {Xv.shape}, {len(train.classes)} classes "
        f"(val per class: {np.bincount(val.labels).tolist()}), loaded and preprocessed in "
        f"{time.perf_counter() - t:.1f} s"
    )
    return X, train.labels, Xv, val.labels, train


def torch_softmax_reference(X, y, Xv, yv, params, seed=0):
    """The same SGD on the same softmax objective, written in PyTorch."""
    import torch

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n, d = X.shape
    c = int(y.max()) + 1
    W = (0.001 * torch.randn(d, c, generator=g)).requires_grad_()
    b = torch.zeros(c, requires_grad=True)
    lr, reg, bs = params["learning_rate"], params["reg"], params["batch_size"]
    gamma = 0.01 ** (1 / params["epochs"])  # lr_schedule="exponential", stepped per epoch
    t = time.perf_counter()
    for _ in range(params["epochs"]):
        order = torch.randperm(n, generator=g)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            loss = torch.nn.functional.cross_entropy(Xt[idx] @ W + b, yt[idx])
            loss = loss + reg * (W * W).sum()
            loss.backward()
            with torch.no_grad():
                W -= lr * W.grad
                b -= lr * b.grad
            W.grad = None
            b.grad = None
        lr *= gamma
    seconds = time.perf_counter() - t
    with torch.no_grad():
        acc = float(((torch.from_numpy(Xv) @ W + b).argmax(1).numpy() == yv).mean())
    return seconds, acc


def blas_summary() -> str:
    """NumPy's BLAS and PyTorch's math library, for the report."""
    import torch
    from threadpoolctl import threadpool_info

    blas = next(
        (i for i in threadpool_info() if i.get("user_api") == "blas"), {"internal_api": "?"}
    )
    mkl = "MKL" if torch.backends.mkl.is_available() else "its own BLAS"
    return (
        f"NumPy {np.__version__} + {blas.get('internal_api')} {blas.get('version', '')} "
        f"(1 thread in fit); PyTorch {torch.__version__} + {mkl} "
        f"({torch.get_num_threads()} thread)"
    )


def interleaved_time_ratio(X, y, Xv, yv, params, pairs, epochs, seed):
    """chainrule fit time / PyTorch loop time, per pair of `epochs`-epoch runs taken in
    turn (order swapped every pair). Returns (median ratio, all ratios)."""
    run = {**params, "epochs": epochs}
    ratios = []
    for i in range(pairs):
        times = {}
        for side in ("chainrule", "torch") if i % 2 == 0 else ("torch", "chainrule"):
            if side == "chainrule":
                model = SoftmaxClassifier(**{**run, "verbose": False, "random_state": seed})
                t = time.perf_counter()
                model.fit(X, y)
                times[side] = time.perf_counter() - t
            else:
                times[side] = torch_softmax_reference(X, y, Xv, yv, run, seed)[0]
        ratios.append(times["chainrule"] / times["torch"])
    return float(np.median(ratios)), ratios


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/data/cifar10/train")
    ap.add_argument("--models", default="svm,softmax")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plots", default=None, help="write search, loss and template plots here")
    ap.add_argument("--no-reference", action="store_true", help="skip the PyTorch run")
    ap.add_argument("--pairs", type=int, default=6, help="timed pairs against PyTorch")
    ap.add_argument("--pair-epochs", type=int, default=2, help="epochs of each timed run")
    ap.add_argument(
        "--defaults-only",
        action="store_true",
        help="no search: train each model once with its default hyperparameters",
    )
    args = ap.parse_args(argv)

    X, y, Xv, yv, train = load_split(args.data)
    if args.defaults_only:
        for name in args.models.split(","):
            model = MODELS[name](epochs=args.epochs, random_state=args.seed, verbose=False)
            t = time.perf_counter()
            model.fit(X, y)
            fit_time = time.perf_counter() - t
            print(f"{model!r}: val acc {model.score(Xv, yv):.4f} (fit {fit_time:.1f} s)")
        return 0
    grids = DIGITS_GRIDS if args.data == "digits" else CIFAR_GRIDS
    summary = []
    for name in args.models.split(","):
        cls = MODELS[name]
        base = cls(epochs=args.epochs, random_state=args.seed, verbose=False)
        print(f"\n== {cls.__name__}: grid {grids[name]}, {args.epochs} epochs each")
        t = time.perf_counter()
        result = grid_search(base, X, y, Xv, yv, grids[name], verbose=False)
        seconds = time.perf_counter() - t
        print_results(result)
        best = result.best_estimator
        fit_time = next(r["fit_time"] for r in result.results if r["params"] == result.best_params)
        print(
            f"best {cls.__name__}: val acc {result.best_val_acc:.4f} with {result.best_params} "
            f"(fit {fit_time:.1f} s; search of {len(result.results)} in {seconds:.0f} s)"
        )
        summary.append((cls.__name__, result.best_val_acc, result.best_params, fit_time))
        if args.plots:
            from chainrule.report import plots

            plots.plot_search_results(result, f"{args.plots}/{name}_search.png")
            plots.plot_loss_curve(best.history_, f"{args.plots}/{name}_loss.png")
            plots.plot_weight_templates(
                best.W_, train.image_shape, train.classes, f"{args.plots}/{name}_templates.png"
            )
        if name == "softmax" and not args.no_reference:
            try:
                import torch  # noqa: F401
            except ImportError:
                print("(PyTorch not installed: no reference run)")
            else:
                params = {**best.fitted_params_, **result.best_params}
                _, ref_acc = torch_softmax_reference(X, y, Xv, yv, params, args.seed)
                print(f"PyTorch reference, same SGD, {args.epochs} epochs: val acc {ref_acc:.4f}")
                ratio, ratios = interleaved_time_ratio(
                    X, y, Xv, yv, params, args.pairs, args.pair_epochs, args.seed
                )
                print(
                    f"training time chainrule / PyTorch: median {ratio:.2f} of {len(ratios)} "
                    f"alternating pairs of {args.pair_epochs}-epoch runs (range "
                    f"{min(ratios):.2f}-{max(ratios):.2f}; chainrule's includes its "
                    f"training-accuracy check every epoch); {blas_summary()}"
                )

    print("\nsummary (validation accuracy, chosen hyperparameters):")
    for name, acc, params, fit_time in summary:
        print(f"  {name:18s} {acc:.4f}  {params}  fit {fit_time:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
