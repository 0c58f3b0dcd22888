"""``chainrule train MODEL --data ... --out RUN_DIR [hyperparameters]``: train one model.

Writes ``RUN_DIR/model.npz`` (the model with its preprocessing and class names),
``RUN_DIR/metrics.json`` (settings, accuracies, timings, histories) and plots. What a run
does (defaults for the data, tuning, fitting, evaluation, files) is decided by the
experiment layer (``chainrule.experiment``) from the model's spec; this module reads the
arguments and shows the result. The options that set hyperparameters come from the
registered models' specs.
"""

from __future__ import annotations

import dataclasses
import sys

from chainrule.cli import CommandError
from chainrule.cli._cluster import add_cluster_arguments, cluster_client
from chainrule.cli._common import (
    add_data_arguments,
    add_model_options,
    check_model_name,
    check_out_dir,
    fmt_acc,
    fmt_seconds,
    fraction,
    info,
    model_names,
    model_spec,
    option_dests,
    option_values,
    prepare_data,
    user_errors,
)

# The arguments a run records (with every model option) so that a resume restores them.
BASE_ARGS = ("model", "data", "cache_dir", "val_fraction", "seed", "search")


def add_arguments(parser) -> None:
    from chainrule.experiment import resumable_models

    parser.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help=f"one of {', '.join(model_names())} (not needed with --resume)",
    )
    add_data_arguments(parser)
    parser.add_argument("--out", metavar="RUN_DIR", help="run folder to write (required)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run with its settings: a search from the trials it "
        f"recorded, a {'/'.join(resumable_models())} fit from its checkpoint",
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
    add_cluster_arguments(parser)
    add_model_options(parser)


def saved_args() -> tuple[str, ...]:
    return (*BASE_ARGS, *option_dests())


def trial_from_args(args, **fields):
    """The `Trial` the arguments ask for: the model, the options given, search, seed."""
    from chainrule.experiment import Trial

    spec = model_spec(args.model)
    try:
        params, sources = spec.read_options(option_values(args))
    except ValueError as e:
        raise CommandError(str(e)) from None
    progress = not args.quiet
    return Trial(
        args.model,
        params,
        sources,
        search=bool(args.search),
        seed=args.seed,
        verbose=progress,
        progress=progress,
        **fields,
    )


def run(args) -> int:
    if args.resume is not None:
        return resume(args)
    if args.model is None:
        raise CommandError(
            "which model? chainrule train MODEL --data ... --out RUN_DIR, MODEL one of "
            + ", ".join(model_names())
        )
    check_model_name(args.model)
    if not args.out:
        raise CommandError("--out RUN_DIR is required (the folder to write the model into)")
    check_out_dir(args.out)
    return train_and_report(args, trial_from_args(args), args.out)


def resume(args) -> int:
    """Continue the interrupted run in ``args.resume`` with its recorded arguments and
    the settings it had chosen."""
    from chainrule.experiment import interrupted_run

    with user_errors():
        stored, params = interrupted_run(args.resume, args.model)
    for key in saved_args():
        setattr(args, key, stored.get(key))
    args.out = args.resume
    trial = trial_from_args(args, resume=True)
    if params is not None:
        # The settings the interrupted run had chosen (after any search), as they were.
        trial = dataclasses.replace(trial, params=params, sources={}, tune=False)
    return train_and_report(args, trial, args.resume)


def train_and_report(args, trial, out) -> int:
    from chainrule.experiment import check_trial

    spec = model_spec(trial.model)
    if args.search and args.val_fraction == 0 and spec.search_needs_validation:
        raise CommandError("--search needs a validation split; use --val-fraction > 0")
    with user_errors():
        check_trial(trial, validation=args.val_fraction > 0)
    with cluster_client(args) as client:
        return train_with(args, trial, out, client)


def train_with(args, trial, out, client) -> int:
    """Load the data, train into ``out`` (the search's trials on ``client``), report."""
    from chainrule.experiment import train_run

    spec = model_spec(trial.model)
    data = prepare_data(args, progress=not args.quiet)
    n_train, n_val = data.size("train"), data.size("val")
    info(
        args,
        f"{trial.model}: {n_train} training images"
        + (f", {n_val} validation images" if n_val else ", no validation split"),
    )
    record = {k: getattr(args, k, None) for k in saved_args()}
    with user_errors():
        result, folder = train_run(trial, data, out, args=record, client=client)

    print(f"model:      {trial.model} {spec.describe(result.params)}")
    print(f"data:       {args.data} ({n_train} train, {n_val} validation images)")
    sample = f"on {result.train_accuracy_n} training images"
    print(f"train acc:  {fmt_acc(result.train_accuracy)} ({sample})")
    print(f"val acc:    {fmt_acc(result.val_accuracy)}")
    print(f"fit time:   {fmt_seconds(result.fit_time_s)}")
    print(f"written:    {folder.path}/ (model.npz, metrics.json, {len(folder.plots)} plots)")
    for plot, err in folder.plot_errors.items():
        print(f"warning: plot {plot} failed: {err}", file=sys.stderr)
    return 0
