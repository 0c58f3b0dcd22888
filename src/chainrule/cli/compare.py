"""``chainrule compare``: train several models on one dataset and compare them.

Loads the data, fits the preprocessing on the training split, trains each model with
defaults suited to the data size (``--search`` tunes them on the validation split), prints
a table of validation and test accuracy, fit time and prediction time, and writes a run
folder: one model file per model (``<name>.npz``), ``metrics.json`` and plots.
"""

from __future__ import annotations

import sys
import time

from chainrule.cli import CommandError
from chainrule.cli._common import (
    MODEL_NAMES,
    NET_MODELS,
    add_data_arguments,
    blas_threads_for,
    check_out_dir,
    fmt_acc,
    fmt_seconds,
    format_table,
    fraction,
    info,
    load_split,
    parse_models,
    splits_of,
)
from chainrule.cli.train import (
    choose_params,
    evaluate_split,
    fit_model,
    format_params,
    history_of,
    model_plots,
    prepare_data,
    public,
)

DEFAULT_MODELS = "knn,svm,softmax,twolayer"


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help=f"comma-separated models among {','.join(MODEL_NAMES)} (default {DEFAULT_MODELS})",
    )
    parser.add_argument(
        "--search",
        action="store_true",
        help="tune each model on the validation split (k by cross-validation, learning rate "
        "and regularization by grid search)",
    )
    parser.add_argument(
        "--out", metavar="RUN_DIR", help="run folder to write (default runs/compare-<time>)"
    )
    parser.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.2,
        help="share of the training images held out for validation (default 0.2)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    from chainrule import __version__
    from chainrule.report import plots
    from chainrule.report.run import RunFolder, default_run_dir

    start = time.perf_counter()
    names = parse_models(args.models)
    if args.val_fraction <= 0:
        raise CommandError("compare needs a validation split: --val-fraction must be above 0")
    out = check_out_dir(args.out) if args.out else default_run_dir("compare")
    progress = not args.quiet

    train, val, prep, X, Xv = prepare_data(args, progress)
    y, yv = train.labels, val.labels
    test = Xt = yt = None
    if "test" in splits_of(args.data):
        test = load_split(
            args.data, "test", cache_dir=args.cache_dir, archive=args.archive, progress=progress
        )
        Xt, yt = prep.transform(test.images), test.labels
    classes = train.classes
    shape = train.image_shape
    run_dir = RunFolder(out)
    info(
        args,
        f"data: {args.data}, {len(train)} train, {len(val)} validation, "
        f"{0 if test is None else len(test)} test images of shape {shape}, "
        f"{len(classes)} classes",
    )

    data_info = {
        "name": str(args.data),
        "image_shape": list(shape),
        "classes": classes,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": 0 if test is None else len(test),
        "val_fraction": args.val_fraction,
        "seed": args.seed,
    }
    metrics = {
        "command": "compare",
        "chainrule": __version__,
        "data": data_info,
        "search": bool(args.search),
        "models": {},
    }
    rows = []
    for i, name in enumerate(names, 1):
        info(args, f"[{i}/{len(names)}] {name}")
        with blas_threads_for(X):
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
                image_shape=shape,
                # one line per epoch of every network would bury the comparison table
                verbose=False if name in NET_MODELS else None,
            )
            search = tuning.get("search", {})
            if name in ("svm", "softmax") and search.get("_best_estimator") is not None:
                model = search["_best_estimator"]
                fit_time = next(
                    r["fit_time"] for r in search["results"] if r["params"] == search["best_params"]
                )
            else:
                model, fit_time = fit_model(name, params, X, y, Xv, yv)
            val_acc, cm_val, val_time = evaluate_split(model, Xv, yv, len(classes))
            test_acc = cm_test = test_time = None
            if Xt is not None:
                test_acc, cm_test, test_time = evaluate_split(model, Xt, yt, len(classes))
        path = run_dir.save_model(
            model,
            prep,
            classes,
            extra={
                "data": str(args.data),
                "val_fraction": args.val_fraction,
                "seed": args.seed,
                "val_accuracy": val_acc,
                "test_accuracy": test_acc,
            },
            name=f"{name}.npz",
        )
        model_plots(run_dir, name, model, tuning, shape, classes, prefix=f"{name}_")
        cm, which = (cm_test, "test") if cm_test is not None else (cm_val, "validation")
        run_dir.plot(
            plots.plot_confusion_matrix,
            f"{name}_confusion.png",
            cm,
            classes,
            title=f"{name}, {which}",
        )
        predict_time = test_time if test_time is not None else val_time
        n_pred = len(yt) if yt is not None else len(yv)
        metrics["models"][name] = {
            "params": model.get_params(),
            "val_accuracy": val_acc,
            "test_accuracy": test_acc,
            "fit_time_s": fit_time,
            "predict_time_s": predict_time,
            "predict_n": n_pred,
            "model_file": path.name,
            "confusion_matrix_val": cm_val.tolist(),
            "confusion_matrix_test": None if cm_test is None else cm_test.tolist(),
            "history": history_of(model),
            **{k: public(v) for k, v in tuning.items()},
        }
        rows.append(
            [
                name,
                fmt_acc(val_acc),
                fmt_acc(test_acc),
                fmt_seconds(fit_time),
                fmt_seconds(predict_time),
                format_params(model.get_params(), name),
            ]
        )
        info(args, f"      {name}: validation {fmt_acc(val_acc)}, test {fmt_acc(test_acc)}")

    total = time.perf_counter() - start
    metrics.update(
        {
            "total_time_s": total,
            "plots": run_dir.plots,
            "plot_errors": run_dir.plot_errors,
        }
    )
    run_dir.write_metrics(metrics)
    n_test = "no test split" if test is None else f"{len(test)} test images"
    print(
        f"{args.data}: {len(train)} training, {len(val)} validation, {n_test}; "
        f"predict time on the {'test' if test is not None else 'validation'} images"
    )
    print(
        format_table(["model", "val acc", "test acc", "fit time", "predict time", "settings"], rows)
    )
    print(f"run folder: {run_dir.path}  (total {fmt_seconds(total)})")
    for plot, err in run_dir.plot_errors.items():
        print(f"warning: plot {plot} failed: {err}", file=sys.stderr)
    return 0
