"""``chainrule train MODEL --data ... --out RUN_DIR [hyperparameters]``: train one model.

Writes ``RUN_DIR/model.npz`` (the model with its preprocessing and class names),
``RUN_DIR/metrics.json`` (settings, accuracies, timings, histories) and plots into a new
or empty folder (``--force`` replaces a run folder's contents). What a run
does (defaults for the data, tuning, fitting, evaluation, files) is decided by the
experiment layer (``chainrule.experiment``) from the model's spec; this module reads the
arguments and shows the result. The options that set hyperparameters come from the
registered models' specs.
"""

from __future__ import annotations

import dataclasses
import sys

from chainrule._text import escaped
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
BASE_ARGS = ("model", "data", "cache_dir", "val_fraction", "seed", "search", "image_size", "strict")


def add_arguments(parser) -> None:
    from chainrule.experiment import resumable_models

    parser.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help=f"one of {', '.join(model_names())} (not needed with --resume)",
    )
    add_data_arguments(parser, image_size=True)
    parser.add_argument("--out", metavar="RUN_DIR", help="run folder to write (required)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the run in --out (only a chainrule run folder is cleared)",
    )
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
    trial = trial_from_args(args)
    check(args, trial)
    from chainrule.experiment import open_run

    with user_errors():
        folder = open_run(args.out, force=args.force, args=recorded_args(args))
    with folder:
        args.on_stop = on_stop(args, trial, folder.path)
        return train_and_report(args, trial, folder)


def on_stop(args, trial, path) -> str:
    """What the message of an interrupted run adds: the command that continues it."""
    import shlex

    if model_spec(trial.model).checkpoints or args.search:
        command = f"chainrule train --resume {shlex.quote(str(path))}"
        return f"the run folder records it, and {command} continues it"
    return (
        "the run folder records it; the same command starts it again (a network's run or "
        "a search would continue with chainrule train --resume)"
    )


def recorded_args(args) -> dict:
    """The record of the arguments a run keeps (what a resume restores)."""
    return {k: getattr(args, k, None) for k in saved_args()}


def check(args, trial) -> None:
    """Refuse settings that cannot run before anything is loaded or written."""
    from chainrule.experiment import check_trial

    spec = model_spec(trial.model)
    if args.search and args.val_fraction == 0 and spec.search_needs_validation:
        raise CommandError("--search needs a validation split; use --val-fraction > 0")
    with user_errors():
        check_trial(trial, validation=args.val_fraction > 0)


def restore_args(args, stored: dict, where) -> None:
    """Set ``args`` to the arguments an interrupted run recorded, each checked as the
    command line would check it (a damaged record is one line, not a traceback)."""
    expected = {
        "data": (str,),
        "cache_dir": (str, type(None)),
        "val_fraction": (float, int),
        "seed": (int,),
        "search": (bool,),
    }
    for key in saved_args():
        if key == "model" or key not in stored:
            continue  # the model was checked; a missing entry keeps its default
        value = stored[key]
        kinds = expected.get(key, (str, int, float, bool, list, type(None)))
        bad = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        if key == "val_fraction" and not bad:
            bad = not 0.0 <= value < 1.0
        if key == "image_size" and value is not None and not bad:
            bad = len(value) != 2 or not all(type(v) is int and v > 0 for v in value)
        if bad:
            raise CommandError(
                f"cannot resume {where}: its metrics.json is damaged ({key} is {value!r})"
            )
        setattr(args, key, value)
    args.model = stored["model"]


def resume(args) -> int:
    """Continue the interrupted run in ``args.resume`` with its recorded arguments and
    the settings it had chosen."""
    from chainrule.experiment import interrupted_run, open_run

    with user_errors():
        folder = open_run(args.resume, resume=True)
    with folder:
        with user_errors():
            stored, params = interrupted_run(folder, args.model)
        restore_args(args, stored, args.resume)
        args.out = args.resume
        trial = trial_from_args(args, resume=True)
        args.on_stop = on_stop(args, trial, folder.path)
        if params is not None:
            # The settings the interrupted run had chosen (after any search), as they were.
            trial = dataclasses.replace(trial, params=params, sources={}, tune=False)
        check(args, trial)
        return train_and_report(args, trial, folder)


def show_search(settings) -> None:
    """The search's summary, as soon as it has chosen (before the final fit's output)."""
    from chainrule.report.text import search_summary

    search = settings.tuning.get("search")
    if isinstance(search, dict):
        print("\n".join(search_summary(search)), flush=True)


def train_and_report(args, trial, folder) -> int:
    """Load the data, train into ``folder`` (the search's trials on the cluster of
    ``--workers``/``--scheduler``), report."""
    from chainrule.experiment import train_run

    spec = model_spec(trial.model)
    with cluster_client(args) as client:
        data = prepare_data(args, progress=not args.quiet)
        n_train, n_val = data.size("train"), data.size("val")
        info(
            args,
            f"{trial.model}: {n_train} training images"
            + (f", {n_val} validation images" if n_val else ", no validation split"),
        )
        with user_errors():
            result, folder = train_run(
                trial, data, folder, args=recorded_args(args), client=client,
                command_line=getattr(args, "command_line", None), on_settings=show_search,
            )  # fmt: skip

    print(f"model:      {trial.model} {spec.describe(result.params)}")
    print(f"data:       {escaped(args.data)} ({n_train} train, {n_val} validation images)")
    sample = f"on {result.train_accuracy_n} training images"
    print(f"train acc:  {fmt_acc(result.train_accuracy)} ({sample})")
    print(f"val acc:    {fmt_acc(result.val_accuracy)}")
    print(f"fit time:   {fmt_seconds(result.fit_time_s)}")
    wrote_page = "report.html" not in folder.plot_errors and folder.file("report.html").is_file()
    page = "report.html, " if wrote_page else ""
    print(
        f"written:    {escaped(folder.path)}/ "
        f"(model.npz, metrics.json, {page}{len(folder.plots)} plots)"
    )
    for plot, err in folder.plot_errors.items():
        print(escaped(f"warning: plot {plot} failed: {err}"), file=sys.stderr)
    return 0
