"""``chainrule train MODEL --data ... --out RUN_DIR [hyperparameters]``: train one model.

Writes ``RUN_DIR/model.npz`` (the model with its preprocessing and class names),
``RUN_DIR/metrics.json`` (settings, accuracies, timings, histories) and plots. The
functions that choose defaults, tune, fit and report a model are shared with
``chainrule compare``.
"""

from __future__ import annotations

import inspect
import math
import sys
import time

import numpy as np

from chainrule.cli import CommandError
from chainrule.cli._common import (
    MODEL_NAMES,
    NET_MODELS,
    add_data_arguments,
    blas_threads_for,
    build_model,
    check_model_name,
    check_out_dir,
    fmt_acc,
    fmt_seconds,
    fraction,
    info,
    load_split,
    model_class,
    model_parameters,
    parse_hidden,
    positive_int,
    stopwatch,
)

# option (argparse dest) -> model hyperparameter; "hidden" depends on the model
FLAG_PARAMS = {
    "k": "k",
    "metric": "metric",
    "lr": "learning_rate",
    "reg": "reg",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "dropout": "dropout",
    "batchnorm": "batchnorm",
    "optimizer": "optimizer",
    "schedule": "lr_schedule",
    "augment": "augment",
    "label_smoothing": "label_smoothing",
    "weight_decay": "weight_decay",
}
FLAG_NAMES = {dest: "--" + dest.replace("_", "-") for dest in FLAG_PARAMS}

# Training accuracy is measured on at most this many training images.
TRAIN_ACC_SAMPLES = 2000
# k-NN cross-validation uses at most this many training images (more with --search).
KNN_CV_SAMPLES = 5000
KNN_CV_SAMPLES_SEARCH = 20000
KNN_KS = (1, 3, 5, 8, 10, 12, 15, 20, 50, 100)
# Mean squared norm of a CIFAR-10 row after the course preprocessing (pixels in [0, 1],
# channel means subtracted, 3,072 values), the data the linear classifiers' default
# learning rates were tuned on. Other data scale the step by this over their own norm.
LINEAR_REFERENCE_SQ_NORM = 225.0


def add_arguments(parser) -> None:
    parser.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help=f"one of {', '.join(MODEL_NAMES)} (not needed with --resume)",
    )
    add_data_arguments(parser)
    parser.add_argument("--out", metavar="RUN_DIR", help="run folder to write (required)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted mlp/twolayer run from its checkpoint, same settings",
    )
    parser.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.2,
        help="share of the training images held out for validation (default 0.2; "
        "0 trains on all of them)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--search",
        action="store_true",
        help="tune hyperparameters on the validation split (k by cross-validation for knn)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    g = parser.add_argument_group("k-NN")
    g.add_argument("--k", type=positive_int, help="number of neighbours (default: by CV)")
    g.add_argument("--metric", choices=("l2", "l1", "cosine"), help="distance (default l2)")
    g = parser.add_argument_group("linear classifiers and networks")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--reg", type=float, help="L2 regularization strength")
    g.add_argument("--epochs", type=positive_int, help="passes over the training data")
    g.add_argument("--batch-size", type=positive_int, help="images per minibatch")
    g = parser.add_argument_group("networks (twolayer, mlp)")
    g.add_argument("--hidden", help="hidden layer sizes, e.g. 1024,1024 (twolayer: one size)")
    g.add_argument("--dropout", type=float, help="dropout probability (mlp)")
    g.add_argument(
        "--batchnorm", action="store_true", default=None, help="batch normalization (mlp)"
    )
    g.add_argument("--optimizer", help="sgd, momentum, nesterov, rmsprop, adam, adamw")
    g.add_argument("--schedule", help="learning-rate schedule, e.g. cosine, onecycle, step")
    g.add_argument(
        "--augment", action="store_true", default=None, help="random crops and flips (mlp)"
    )
    g.add_argument("--label-smoothing", type=float, help="label smoothing of the loss")
    g.add_argument("--weight-decay", type=float, help="decoupled weight decay (adamw)")


# -- choosing hyperparameters -----------------------------------------------------------


def requested_params(name: str, args) -> tuple[dict, dict]:
    """Hyperparameters given on the command line, and the option that set each."""
    params, flags = {}, {}
    for dest, param in FLAG_PARAMS.items():
        value = getattr(args, dest, None)
        if value is not None:
            params[param] = value
            flags[param] = FLAG_NAMES[dest]
    hidden = getattr(args, "hidden", None)
    if hidden is not None:
        sizes = parse_hidden(hidden)
        if name == "twolayer":
            if len(sizes) != 1:
                raise CommandError(f"twolayer has one hidden layer; --hidden {hidden} lists more")
            params["hidden_size"] = sizes[0]
            flags["hidden_size"] = "--hidden"
        else:
            params["hidden_dims"] = sizes
            flags["hidden_dims"] = "--hidden"
    return params, flags


def model_defaults(name: str) -> dict:
    """The default hyperparameters of model ``name`` (from its ``__init__`` signature)."""
    sig = inspect.signature(model_class(name).__init__)
    return {
        k: p.default
        for k, p in sig.parameters.items()
        if k != "self" and p.default is not inspect.Parameter.empty
    }


def mean_sq_norm(X: np.ndarray, limit: int = 2000) -> float:
    rows = X[:limit].astype(np.float64)
    return float(np.mean(np.einsum("ij,ij->i", rows, rows)))


def _round1(x: float) -> float:
    """``x`` rounded to one significant digit (1e-2, 3e-2, ...)."""
    if x <= 0 or not math.isfinite(x):
        return x
    return float(f"{x:.0e}")


def default_params(
    name: str, X: np.ndarray, n_classes: int, seed: int, quiet: bool, image_shape=None
) -> dict:
    """Good starting hyperparameters for model ``name`` on feature rows ``X`` (N, D).

    The linear classifiers keep their own defaults (tuned on CIFAR-10) but scale the
    learning rate inversely with the mean squared norm of a row (the step that keeps SGD
    stable shrinks as rows grow), and take enough epochs for a few hundred updates on a
    small data set. The networks train with Adam, a larger
    step and more epochs on small data sets (few updates per epoch), and the fully
    connected network is wider, with batch norm and dropout, on large ones.
    """
    n = X.shape[0]
    known = set(model_parameters(model_class(name)))
    params: dict = {}
    if name == "knn":
        params = {"k": 1, "metric": "l2"}
    elif name in ("svm", "softmax"):
        defaults = model_defaults(name)
        batch = int(defaults.get("batch_size", 200))
        per_epoch = max(1, -(-n // batch))
        scale = LINEAR_REFERENCE_SQ_NORM / max(mean_sq_norm(X), 1e-12)
        params = {
            "learning_rate": _round1(float(defaults["learning_rate"]) * scale),
            "epochs": int(min(50, max(int(defaults["epochs"]), math.ceil(300 / per_epoch)))),
            "random_state": seed,
        }
    elif name in NET_MODELS:
        batch = 200 if n < 20000 else 256
        per_epoch = max(1, -(-n // batch))
        small = n < 20000
        params = {
            "learning_rate": 3e-3 if small else 1e-3,
            "epochs": int(min(30, max(10, math.ceil(600 / per_epoch)))),
            "batch_size": batch,
            "random_state": seed,
        }
        if name == "mlp":
            params["hidden_dims"] = (256, 256) if small else (1024, 1024)
            params["batchnorm"] = True
            params["dropout"] = 0.1
        if image_shape is not None:
            # what random crops and flips (--augment) need to see the rows as images
            params["image_shape"] = tuple(int(v) for v in image_shape)
    if "verbose" in known:
        params["verbose"] = not quiet
    return {k: v for k, v in params.items() if k in known}


def knn_cv_subset(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` training rows, stratified, for cross-validation."""
    n = y.shape[0]
    if n <= limit:
        return np.arange(n)
    from chainrule.data import stratified_split_indices

    _, keep = stratified_split_indices(y, limit / n, seed)
    return keep


def tune_knn(X, y, params, *, search: bool, seed: int, progress: bool) -> tuple[dict, dict]:
    """Choose k by 5-fold cross-validation on (a stratified subset of) the training rows."""
    from chainrule.models.knn import knn_best_k, knn_cross_validate

    limit = KNN_CV_SAMPLES_SEARCH if search else KNN_CV_SAMPLES
    keep = knn_cv_subset(y, limit, seed)
    smallest = int(len(keep) * 0.8) - 1
    ks = [k for k in KNN_KS if k <= smallest] or [1]
    metric = params.get("metric", "l2")
    with stopwatch() as elapsed:
        results = knn_cross_validate(
            X[keep], y[keep], ks=ks, folds=5, metric=metric, random_state=seed, progress=progress
        )
    best = knn_best_k(results)
    info_ = {
        "metric": metric,
        "n": int(len(keep)),
        "folds": 5,
        "results": {int(k): v.tolist() for k, v in results.items()},
        "mean": {int(k): float(np.mean(v)) for k, v in results.items()},
        "best_k": int(best),
        "time_s": elapsed(),
    }
    return {**params, "k": int(best)}, info_


def linear_grid(base_lr: float, base_reg: float) -> dict:
    """3 x 3 grid around the default step and regularization strength."""
    base_reg = base_reg if base_reg > 0 else 1e-3
    return {
        "learning_rate": [_round1(base_lr * f) for f in (0.3, 1.0, 3.0)],
        "reg": [_round1(base_reg * f) for f in (0.1, 1.0, 10.0)],
    }


def net_grid(name: str, params: dict) -> dict:
    lr = params.get("learning_rate", 1e-3)
    return {"learning_rate": [_round1(lr * f) for f in (0.3, 1.0, 3.0)], "reg": [1e-5, 1e-3]}


def tune_on_validation(name, params, X, y, Xv, yv, *, progress: bool) -> tuple[dict, dict]:
    """Grid search of the learning rate (and regularization) on the validation split."""
    from chainrule.train.search import grid_search

    template = build_model(name, params)
    if name in ("svm", "softmax"):
        current = template.get_params()
        grid = linear_grid(current["learning_rate"], current["reg"])
    else:
        grid = net_grid(name, template.get_params())
    with stopwatch() as elapsed:
        result = grid_search(template, X, y, Xv, yv, grid, verbose=progress)
    best = {**params, **result.best_params}
    return best, {
        "grid": grid,
        "results": result.results,
        "best_params": result.best_params,
        "best_val_accuracy": result.best_val_acc,
        "time_s": elapsed(),
        "_best_estimator": result.best_estimator,
    }


def choose_params(
    name,
    args,
    X,
    y,
    Xv,
    yv,
    n_classes,
    *,
    search: bool,
    progress: bool,
    image_shape=None,
    verbose: bool | None = None,
):
    """Defaults, then the command-line values, then (with ``search``) tuning.

    Returns ``(params, tuning)``: ``tuning`` holds ``knn_cv`` and/or ``search`` results,
    and ``_best_estimator`` when a searched model was already fitted with the final
    parameters on the same data.
    """
    given, flags = requested_params(name, args)
    params = default_params(name, X, n_classes, args.seed, not progress, image_shape)
    if verbose is not None and "verbose" in params:
        params["verbose"] = verbose
    params.update(given)
    build_model(name, params, flags)  # an option that does not apply fails before any work
    tuning: dict = {}
    if name == "knn":
        if "k" not in given or search:
            if search and "k" in given:
                raise CommandError("--search chooses k for knn; leave out --k")
            params, tuning["knn_cv"] = tune_knn(
                X, y, params, search=search, seed=args.seed, progress=progress
            )
    elif search:
        if Xv is None:
            raise CommandError("--search needs a validation split; use --val-fraction > 0")
        tuned = [p for p in ("learning_rate", "reg") if p in given]
        if tuned:
            shown = ", ".join(flags[p] for p in tuned)
            raise CommandError(f"--search tunes {shown} itself; leave it out")
        params, tuning["search"] = tune_on_validation(name, params, X, y, Xv, yv, progress=progress)
    return params, tuning


# -- fitting and reporting ----------------------------------------------------------------


def fit_model(name, params, X, y, Xv, yv, *, checkpoint_dir=None, resume=False):
    """Build and fit model ``name``; returns ``(model, fit_seconds)``."""
    model = build_model(name, params)
    kwargs = {}
    if name in NET_MODELS or name in ("svm", "softmax"):
        if Xv is not None:
            kwargs = {"X_val": Xv, "y_val": yv}
    if name in NET_MODELS and checkpoint_dir is not None:
        kwargs.update(checkpoint_dir=checkpoint_dir, resume=resume)
    start = time.perf_counter()
    try:
        model.fit(X, y, **kwargs)
    except FloatingPointError as e:
        raise CommandError(f"{name}: {e}") from None
    except (ValueError, TypeError) as e:
        raise CommandError(f"{name}: {e}") from None
    return model, time.perf_counter() - start


def history_of(model) -> dict | None:
    h = getattr(model, "history_", None)
    if not isinstance(h, dict):
        return None
    return {k: np.asarray(v).tolist() for k, v in h.items() if np.ndim(v) == 1}


def first_layer_weights(model):
    """The first weight matrix (D, H) of a network, or None."""
    for attr in ("first_layer_weights_", "W1_"):
        W = getattr(model, attr, None)
        if W is not None:
            return np.asarray(W)
    net = getattr(model, "net_", None) or getattr(model, "network_", None)
    if net is not None and hasattr(net, "state_dict"):
        for value in net.state_dict().values():
            if np.ndim(value) == 2:
                return np.asarray(value)
    return None


def model_plots(run, name, model, tuning, image_shape, classes, prefix: str = "") -> None:
    """The plots that describe a fitted model (everything but the confusion matrix)."""
    from chainrule.report import plots

    if "knn_cv" in tuning and hasattr(plots, "plot_knn_cv"):
        cv = tuning["knn_cv"]
        results = {int(k): np.asarray(v) for k, v in cv["results"].items()}
        run.plot(plots.plot_knn_cv, "knn_cv.png", results)
    if "search" in tuning:
        res = tuning["search"]["results"]
        keys = list(tuning["search"]["grid"])
        if len(keys) >= 2:
            run.plot(plots.plot_search_results, f"{prefix}search.png", res, x=keys[0], y=keys[1])
        elif hasattr(plots, "plot_search_curve"):
            run.plot(plots.plot_search_curve, f"{prefix}search.png", res, keys[0])
    history = history_of(model)
    if history and len(history.get("loss", [])) > 0:
        run.plot(plots.plot_loss_curve, f"{prefix}loss.png", history)
    if name in ("svm", "softmax") and hasattr(model, "W_"):
        run.plot(
            plots.plot_weight_templates, f"{prefix}weights.png", model.W_, image_shape, classes
        )
    if name in NET_MODELS:
        W1 = first_layer_weights(model)
        if W1 is not None:
            run.plot(plots.plot_first_layer_weights, f"{prefix}first_layer.png", W1, image_shape)


def sample_rows(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def public(d: dict) -> dict:
    """``d`` without the keys that start with ``_`` (objects kept only in memory)."""
    return {k: v for k, v in d.items() if not k.startswith("_")}


# -- the command ----------------------------------------------------------------------------


SAVED_ARGS = (
    "model",
    "data",
    "cache_dir",
    "val_fraction",
    "seed",
    "search",
    "hidden",
    *FLAG_PARAMS,
)


def prepare_data(args, progress: bool):
    """Load the training (and validation) split, fit the preprocessing on the training images.

    Returns ``(train, val, prep, X, Xv)``; ``val`` and ``Xv`` are None with
    ``--val-fraction 0``.
    """
    from chainrule.data import Preprocessor

    common = {"seed": args.seed, "cache_dir": args.cache_dir, "progress": progress}
    archive = getattr(args, "archive", None)
    train = load_split(
        args.data, "train", val_fraction=args.val_fraction, archive=archive, **common
    )
    val = None
    if args.val_fraction > 0:
        val = load_split(
            args.data, "val", val_fraction=args.val_fraction, archive=archive, **common
        )
    prep = Preprocessor().fit(train.images)
    X = prep.transform(train.images)
    Xv = None if val is None else prep.transform(val.images)
    return train, val, prep, X, Xv


def evaluate_split(model, X, y, num_classes: int):
    """Accuracy, confusion matrix and prediction time of ``model`` on rows X (N, D)."""
    from chainrule.report.metrics import accuracy, confusion_matrix

    with stopwatch() as elapsed:
        pred = np.asarray(model.predict(X))
    return accuracy(y, pred), confusion_matrix(y, pred, num_classes), elapsed()


def run(args) -> int:

    if args.resume is not None:
        return resume(args)
    if args.model is None:
        raise CommandError(
            "which model? chainrule train MODEL --data ... --out RUN_DIR, MODEL one of "
            + ", ".join(MODEL_NAMES)
        )
    check_model_name(args.model)
    if not args.out:
        raise CommandError("--out RUN_DIR is required (the folder to write the model into)")
    check_out_dir(args.out)
    return train_and_report(args, args.out, resuming=False)


def resume(args) -> int:
    from chainrule.report.run import RunFolder

    try:
        run_dir = RunFolder(args.resume, create=False)
        saved = run_dir.read_metrics()
    except (OSError, ValueError) as e:
        raise CommandError(f"cannot resume {args.resume}: {e}") from None
    stored = saved.get("args")
    if not isinstance(stored, dict) or stored.get("model") not in MODEL_NAMES:
        raise CommandError(f"{args.resume} is not a run folder written by chainrule train")
    if stored["model"] not in NET_MODELS:
        raise CommandError(f"only twolayer and mlp runs can be resumed, not {stored['model']}")
    if args.model is not None and args.model != stored["model"]:
        raise CommandError(f"{args.resume} trains {stored['model']}, not {args.model}")
    if saved.get("status") == "done":
        raise CommandError(f"the run in {args.resume} has finished; there is nothing to resume")
    args._saved_params = saved.get("params")
    for key in SAVED_ARGS:
        setattr(args, key, stored.get(key))
    args.out = args.resume
    return train_and_report(args, run_dir.path, resuming=True)


def check_settings(name: str, args) -> None:
    """Refuse options that do not apply to the model, or bad values, before any work."""
    if args.search and args.val_fraction == 0 and name != "knn":
        raise CommandError("--search needs a validation split; use --val-fraction > 0")
    given, flags = requested_params(name, args)
    if args.search:
        tuned = [p for p in ("k", "learning_rate", "reg") if p in given]
        if tuned:
            shown = ", ".join(flags[p] for p in tuned)
            raise CommandError(f"--search chooses {shown} itself; leave out {shown}")
    model = build_model(name, given, flags)
    check = getattr(model, "_check_params", None)
    if callable(check):
        try:
            check()
        except (ValueError, TypeError) as e:
            raise CommandError(f"bad settings for {name}: {e}") from None


def train_and_report(args, out, *, resuming: bool) -> int:
    from chainrule import __version__
    from chainrule.report.run import RunFolder

    name = args.model
    progress = not args.quiet
    check_settings(name, args)
    train, val, prep, X, Xv = prepare_data(args, progress)
    run_dir = RunFolder(out)
    y = train.labels
    yv = None if val is None else val.labels
    classes = train.classes
    metrics = {
        "command": "train",
        "status": "running",
        "chainrule": __version__,
        "args": {k: getattr(args, k, None) for k in SAVED_ARGS},
        "data": {
            "name": str(args.data),
            "image_shape": list(train.image_shape),
            "classes": classes,
            "n_train": len(train),
            "n_val": 0 if val is None else len(val),
            "val_fraction": args.val_fraction,
            "seed": args.seed,
        },
    }
    run_dir.write_metrics(metrics)  # written first, so that an interrupted run can resume
    info(
        args,
        f"{name}: {len(train)} training images"
        + (f", {len(val)} validation images" if val is not None else ", no validation split"),
    )

    with blas_threads_for(X):
        saved_params = getattr(args, "_saved_params", None)
        if resuming and saved_params is not None:
            # The settings the interrupted run had chosen (after any search), as they were.
            params, tuning = saved_params, {}
            if "hidden_dims" in params and params["hidden_dims"] is not None:
                params["hidden_dims"] = tuple(params["hidden_dims"])
            if params.get("image_shape") is not None:
                params["image_shape"] = tuple(params["image_shape"])
        else:
            params, tuning = choose_params(
                name,
                args,
                X,
                y,
                Xv,
                yv,
                len(classes),
                search=args.search,
                progress=progress,
                image_shape=train.image_shape,
            )
        metrics["params"] = dict(params)
        metrics.update({k: public(v) for k, v in tuning.items()})
        run_dir.write_metrics(metrics)
        search = tuning.get("search", {})
        if name in ("svm", "softmax") and search.get("_best_estimator") is not None:
            # The search already fitted this exact model on the same rows.
            model = search["_best_estimator"]
            fit_time = next(
                r["fit_time"] for r in search["results"] if r["params"] == search["best_params"]
            )
        else:
            model, fit_time = fit_model(
                name,
                params,
                X,
                y,
                Xv,
                yv,
                checkpoint_dir=run_dir.path if name in NET_MODELS else None,
                resume=resuming,
            )

        rows = sample_rows(len(y), TRAIN_ACC_SAMPLES, args.seed)
        train_acc, _, _ = evaluate_split(model, X[rows], y[rows], len(classes))
        val_acc = cm = predict_time = None
        if Xv is not None:
            val_acc, cm, predict_time = evaluate_split(model, Xv, yv, len(classes))

    result = {
        "model": name,
        "params": model.get_params(),
        "train_accuracy": train_acc,
        "train_accuracy_n": int(len(rows)),
        "val_accuracy": val_acc,
        "fit_time_s": fit_time,
        "predict_time_s": predict_time,
        "confusion_matrix_val": None if cm is None else cm.tolist(),
        "history": history_of(model),
        **{k: public(v) for k, v in tuning.items()},
    }
    extra = {
        "data": str(args.data),
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "val_accuracy": val_acc,
    }
    model_path = run_dir.save_model(model, prep, classes, extra=extra)

    from chainrule.report import plots

    model_plots(run_dir, name, model, tuning, train.image_shape, classes)
    if cm is not None:
        run_dir.plot(
            plots.plot_confusion_matrix, "confusion.png", cm, classes, title=f"{name}, validation"
        )
    metrics.update(result)
    metrics.update(
        {
            "status": "done",
            "model_file": model_path.name,
            "plots": run_dir.plots,
            "plot_errors": run_dir.plot_errors,
        }
    )
    run_dir.write_metrics(metrics)
    # The finished model is in model.npz; the per-epoch checkpoint only served a resume.
    run_dir.file("checkpoint.npz").unlink(missing_ok=True)

    print(f"model:      {name} {format_params(result['params'], name)}")
    print(
        f"data:       {args.data} ({len(train)} train, "
        f"{0 if val is None else len(val)} validation images)"
    )
    print(f"train acc:  {fmt_acc(train_acc)} (on {len(rows)} training images)")
    print(f"val acc:    {fmt_acc(val_acc)}")
    print(f"fit time:   {fmt_seconds(fit_time)}")
    print(f"written:    {run_dir.path}/ (model.npz, metrics.json, {len(run_dir.plots)} plots)")
    for plot, err in run_dir.plot_errors.items():
        print(f"warning: plot {plot} failed: {err}", file=sys.stderr)
    return 0


# The hyperparameters worth showing in one line, per model.
SHOWN_PARAMS = {
    "knn": ("k", "metric"),
    "svm": ("learning_rate", "reg", "epochs"),
    "softmax": ("learning_rate", "reg", "epochs"),
    "twolayer": ("hidden_size", "learning_rate", "reg", "epochs"),
    "mlp": ("hidden_dims", "dropout", "batchnorm", "learning_rate", "epochs"),
}
SHORT_NAMES = {"learning_rate": "lr", "hidden_size": "hidden", "hidden_dims": "hidden"}


def format_params(params: dict, name: str | None = None) -> str:
    """``k=3 metric=l2``: the main hyperparameters (all of them without ``name``)."""
    keys = SHOWN_PARAMS.get(name) if name else None
    if keys is None:
        skip = {"verbose", "random_state", "chunk_size", "n_jobs"}
        keys = tuple(k for k in sorted(params) if k not in skip)
    parts = []
    for k in keys:
        if k not in params or params[k] is None:
            continue
        v = params[k]
        if isinstance(v, list | tuple):
            v = ",".join(str(x) for x in v)
        elif isinstance(v, float):
            v = f"{v:g}"
        parts.append(f"{SHORT_NAMES.get(k, k)}={v}")
    return " ".join(parts)
