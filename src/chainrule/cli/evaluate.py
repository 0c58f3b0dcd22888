"""``chainrule eval RUN_DIR --data NAME_OR_DIR [--split test] [--json]``: accuracy of a model.

The images go through the model file's own preprocessing (resized to the model's size
where they have another); labels are matched to the model's classes by name, so a folder
holding only some of the classes (or holding them in another order) is evaluated
correctly. On the data the model was trained from, the default is the part held out from
training, and the output says which part it scored. A model of a run folder gets the
result added to the folder's ``metrics.json`` and page (``report.html``), with the images
it got wrong (``--no-page`` leaves the folder alone).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from chainrule._text import escaped, shown
from chainrule.cli import CommandError
from chainrule.cli._common import (
    add_data_arguments,
    fmt_acc,
    fmt_seconds,
    label_map,
    load_split,
    load_trained,
    match_channels,
    positive_int,
    splits_of,
)


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN_DIR", help="a run folder or a model file (.npz)")
    add_data_arguments(parser)
    parser.add_argument(
        "--split",
        choices=("train", "val", "test", "all"),
        default=None,
        help="which part of the data (default: test; for an image folder without a test/ "
        "folder, the part the model's run held out for validation when it is the folder "
        "the model was trained on, else every image in it)",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="which model of a comparison run folder (knn, svm, ...)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="share held out for validation when --split is train or val (default: the "
        "one the model was trained with)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the validation split (default: the model's training seed)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=5000,
        help="images classified at once (bounds memory; default 5000)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a summary"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--no-page",
        action="store_true",
        help="leave the run folder as it is (by default the result is added to its "
        "metrics.json and report.html)",
    )


def predict_in_batches(
    loaded, images: np.ndarray, batch_size: int, progress: bool
) -> tuple[np.ndarray, float]:
    """Predicted labels (N,) int64 of raw images (N, H, W, C), ``batch_size`` at a time,
    and the seconds spent predicting (the progress bar's import and drawing excluded)."""
    n = images.shape[0]
    out = np.empty(n, dtype=np.int64)
    starts: Iterable[int] = range(0, n, batch_size)
    if progress and n > batch_size:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="evaluating", unit="batch", leave=False)
    seconds = 0.0
    for lo in starts:
        start = time.perf_counter()
        out[lo : lo + batch_size] = loaded.predict(images[lo : lo + batch_size])
        seconds += time.perf_counter() - start
    return out, seconds


def images_for_model(loaded, images: np.ndarray) -> np.ndarray:
    """``images`` (N, H, W, C) converted to the model's channel count; the size must be
    the model's (`load_split` resizes the data to it)."""
    prep = loaded.preprocessor
    if prep is None:
        return images
    h, w, c = (int(s) for s in prep.image_shape_)
    if images.shape[1:3] != (h, w):
        raise CommandError(
            f"the data's images are {images.shape[2]}x{images.shape[1]} pixels but the model "
            f"was trained on {w}x{h} images"
        )
    return match_channels(images, c)


def trained_on(loaded, data: str) -> bool:
    """Whether ``data`` is where the model's training images came from."""
    source = loaded.extra.get("data")
    if source is None:
        return False
    if source == data:
        return True
    here, there = Path(data).expanduser(), Path(str(source)).expanduser()
    return here.is_dir() and there.is_dir() and here.resolve() == there.resolve()


def choose_split(args, loaded) -> tuple[str, str]:
    """The split to score and what it is for the model: the test part where the data has
    one; on the data the model was trained from, else, the part its run held out for
    validation (every image when it held out none)."""
    own = trained_on(loaded, args.data)
    fraction = args.val_fraction
    if fraction is None:
        fraction = loaded.extra.get("val_fraction") or 0.0
    split = args.split
    if split is None:
        if "test" in splits_of(args.data):
            split = "test"
        else:
            split = "val" if own and fraction else "all"
    if not own:
        return split, split
    seed = loaded.extra.get("seed", 0) if args.seed is None else args.seed
    held_out = f"the {fraction:.0%} of the training images held out for validation (seed {seed})"
    what = {
        "test": "held out from training",
        "val": f"{held_out}, not trained on",
        "train": "the images the model was trained on",
        "all": "every image, the model's training images among them"
        if fraction
        else "every image, all of them the model's training images",
    }[split]
    return split, f"{split}: {what}"


def run(args) -> int:
    from chainrule.report.metrics import accuracy, confusion_matrix, per_class_accuracy

    loaded = load_trained(args.run, args.model)
    split, described = choose_split(args, loaded)
    progress = not args.quiet and not args.json
    # The train/val carving of the model's own training run, unless told otherwise.
    val_fraction = args.val_fraction
    if val_fraction is None:
        val_fraction = loaded.extra.get("val_fraction", 0.2)
    seed = loaded.extra.get("seed", 0) if args.seed is None else args.seed
    prep = loaded.preprocessor
    ds = load_split(
        args.data,
        split,
        val_fraction=val_fraction,
        seed=seed,
        cache_dir=args.cache_dir,
        archive=args.archive,
        progress=progress,
        image_size=None if prep is None else prep.image_shape_[:2],
        strict=args.strict,
    )
    images = images_for_model(loaded, ds.images)
    mapping = label_map(ds.classes, loaded.classes)
    y = ds.labels if mapping is None else mapping[ds.labels]
    try:
        pred, seconds = predict_in_batches(loaded, images, args.batch_size, progress)
    except (ValueError, TypeError) as e:
        raise CommandError(f"cannot apply the model to {args.data!r}: {e}") from None
    acc = accuracy(y, pred)
    cm = confusion_matrix(y, pred, num_classes=len(loaded.classes))
    per_class = per_class_accuracy(cm)
    result = {
        "accuracy": acc,
        "n": int(len(ds)),
        "correct": int(np.count_nonzero(pred == y)),
        "model": loaded.name,
        "model_file": str(loaded.path),
        "data": str(args.data),
        "split": split,
        "split_description": described,
        "classes": loaded.classes,
        "per_class_accuracy": {
            c: (None if np.isnan(a) else float(a)) for c, a in zip(loaded.classes, per_class)
        },
        "confusion_matrix": cm.tolist(),
        "predict_time_s": seconds,
    }
    page = None if args.no_page else add_to_page(args, loaded, ds, images, y, pred, result)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"model:    {loaded.name} ({escaped(loaded.path)})")
    print(f"data:     {escaped(args.data)} ({described}; {len(ds)} images)")
    print(f"accuracy: {fmt_acc(acc)} ({result['correct']} of {len(ds)})")
    print(f"time:     {fmt_seconds(seconds)} (prediction)")
    worst = [
        (c, a) for c, a in sorted(zip(loaded.classes, per_class), key=lambda t: t[1]) if a == a
    ][:3]
    if len(loaded.classes) > 1 and worst:
        print("weakest:  " + ", ".join(f"{shown(c)} {fmt_acc(a)}" for c, a in worst))
    if page is not None:
        print(f"page:     {escaped(page)}")
    return 0


def add_to_page(args, loaded, ds, images, y, pred, result) -> str | None:
    """Add the evaluation to the page of the run folder the model belongs to (with the
    images it got wrong); the page's path, or None for a model outside a run folder. A
    folder that cannot take it (another run writing, no permission) gets a warning."""
    from chainrule.report.environment import now
    from chainrule.report.evaluations import add_evaluation, run_folder_of, sheet_name
    from chainrule.report.examples import mistakes_record, predicted_probability

    folder = run_folder_of(args.run, loaded.path)
    if folder is None:
        return None
    model_file = Path(loaded.path).name
    record = {**result, "model_file": model_file, "time": now()}
    name = sheet_name(model_file, str(args.data), result["split"])

    def probability(rows):
        return predicted_probability(loaded.predict_proba(images[rows]), pred[rows])

    def mistakes(where):
        return mistakes_record(
            where, name, ds.images, y, pred, loaded.classes, split=result["split"],
            files=getattr(ds, "files", None), probability=probability,
        )  # fmt: skip

    try:
        return str(add_evaluation(folder, record, mistakes))
    except (OSError, ValueError) as e:
        from chainrule.cli import describe_os_error

        why = describe_os_error(e) if isinstance(e, OSError) else str(e)
        print(escaped(f"chainrule eval: warning: the result was not added to {folder}: {why}"),
              file=sys.stderr)  # fmt: skip
        return None
