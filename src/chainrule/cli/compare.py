"""``chainrule compare``: train several models on one dataset and compare them.

Loads the data, fits the preprocessing on the training split, trains each model with
defaults suited to the data size (``--search`` tunes them on the validation split), prints
a table of validation and test accuracy, fit time and prediction time, and writes a run
folder: one model file per model (``<name>.npz``), ``metrics.json`` and plots. Each model
is one trial of the experiment layer (``chainrule.experiment``).
"""

from __future__ import annotations

import sys
import time

from chainrule._text import escaped
from chainrule.cli import CommandError
from chainrule.cli._cluster import add_cluster_arguments, cluster_client
from chainrule.cli._common import (
    add_data_arguments,
    check_out_dir,
    fmt_acc,
    fmt_seconds,
    format_table,
    fraction,
    info,
    model_names,
    model_spec,
    parse_models,
    prepare_data,
    user_errors,
)

# The printed table fits a terminal of this many columns (its settings column wraps).
TABLE_WIDTH = 100


def default_models() -> str:
    """The models compared without ``--models``: those whose spec asks for it."""
    return ",".join(n for n in model_names() if model_spec(n).compared_by_default)


def add_arguments(parser) -> None:
    add_data_arguments(parser, image_size=True)
    default = default_models()
    parser.add_argument(
        "--models",
        default=default,
        help=f"comma-separated models among {','.join(model_names())} (default {default})",
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
        "--force",
        action="store_true",
        help="replace the run in --out (only a chainrule run folder is cleared)",
    )
    parser.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.2,
        help="share of the training images held out for validation (default 0.2)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_cluster_arguments(parser)


def run(args) -> int:
    from chainrule.experiment import open_run
    from chainrule.report.run import default_run_dir

    start = time.perf_counter()
    names = parse_models(args.models)
    if args.val_fraction <= 0:
        raise CommandError("compare needs a validation split: --val-fraction must be above 0")
    out = check_out_dir(args.out) if args.out else default_run_dir("compare")
    with user_errors():
        folder = open_run(out, force=args.force)
    with folder, cluster_client(args) as client:
        data = prepare_data(args, not args.quiet, test=True)
        results = compare(args, names, data, folder, client)
    total = time.perf_counter() - start
    rows = [
        [
            r.model,
            fmt_acc(r.val_accuracy),
            fmt_acc(r.test_accuracy),
            fmt_seconds(r.fit_time_s),
            fmt_seconds(r.predict_time_s),
            model_spec(r.model).describe(r.params),
        ]
        for r in results
    ]
    n_train, n_val, n_test = data.size("train"), data.size("val"), data.size("test")
    where = "test" if data.has("test") else "validation"
    n_test_text = f"{n_test} test images" if data.has("test") else "no test split"
    print(
        f"{escaped(args.data)}: {n_train} training, {n_val} validation, {n_test_text}; "
        f"predict time on the {where} images"
    )
    headers = ["model", "val acc", "test acc", "fit time", "predict time", "settings"]
    print(format_table(headers, rows, width=TABLE_WIDTH))
    print(f"run folder: {escaped(folder.path)}  (total {fmt_seconds(total)})")
    for plot, err in folder.plot_errors.items():
        print(escaped(f"warning: plot {plot} failed: {err}"), file=sys.stderr)
    return 0


def compare(args, names: list[str], data, folder, client=None) -> list:
    """Run one trial per model into ``folder``, recording the comparison's progress in its
    ``metrics.json``; returns the results. ``client``: the Dask cluster of the searches,
    or None."""
    from chainrule.experiment import Trial, compare_output, comparison_record, recording, run_trial

    start = time.perf_counter()
    info(
        args,
        f"data: {args.data}, {data.size('train')} train, {data.size('val')} validation, "
        f"{data.size('test')} test images of shape {data.image_shape}, "
        f"{len(data.classes)} classes",
    )
    progress = not args.quiet
    results = []
    metrics = comparison_record(data, results, search=args.search)
    with recording(folder, metrics, getattr(args, "command_line", None), data, args.seed):
        for i, name in enumerate(names, 1):
            info(args, f"[{i}/{len(names)}] {name}")
            # verbose=False: one line per epoch of every network would bury the table
            trial = Trial(
                name, search=args.search, seed=args.seed, verbose=False, progress=progress
            )
            with user_errors():
                result = run_trial(trial, data, compare_output(folder, name, data), client=client)
            results.append(result)
            val, test = fmt_acc(result.val_accuracy), fmt_acc(result.test_accuracy)
            info(args, f"      {name}: validation {val}, test {test}")
            search = result.tuning.get("search")
            if isinstance(search, dict):
                from chainrule.report.text import search_summary

                info(args, "      " + search_summary(search)[0])
        metrics.update(comparison_record(data, results, search=args.search))
        metrics.update(
            {
                "status": "done",
                "total_time_s": time.perf_counter() - start,
                "plots": folder.plots,
                "plot_errors": folder.plot_errors,
            }
        )
        folder.write_metrics(metrics)
    return results
