"""Pieces shared by the commands: data loading, model construction, run folders, tables.

Everything a user can get wrong (a missing folder, an unknown model, a malformed list, a
model file that is not one) is turned into a :class:`chainrule.cli.CommandError` here, so
that the commands print one line instead of a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from chainrule._text import escaped
from chainrule.cli import CommandError

DATA_HELP = (
    "dataset: digits (bundled, the default), cifar10, props, or an image folder "
    "DIR/<class>/*.png or DIR/{train,val,test}/<class>/..."
)


# -- arguments -----------------------------------------------------------------------------


def add_data_arguments(parser, default: str | None = "digits", image_size: bool = False) -> None:
    """--data, --cache-dir, --archive, --strict (and --image-size for commands that train)."""
    parser.add_argument("--data", default=default, metavar="NAME_OR_DIR", help=DATA_HELP)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse an image folder holding files that cannot be read or are not images, "
        "or class folders without images (default: leave them out with a warning)",
    )
    if image_size:
        parser.add_argument(
            "--image-size",
            type=image_size_arg,
            default=None,
            metavar="HxW",
            help="resize every image to HEIGHTxWIDTH pixels, e.g. 48x64 (default: images of "
            "an image folder that have another size than its most common one are resized "
            "to it)",
        )
    parser.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="where downloads and decoded images are kept (default $CHAINRULE_CACHE or "
        "~/.cache/chainrule)",
    )
    parser.add_argument(
        "--archive",
        default=None,
        metavar="FILE",
        help="a hand-downloaded cifar10/props archive to use instead of downloading",
    )


def model_names() -> list[str]:
    """The registered models, in the registry's order."""
    from chainrule.models.registry import MODEL_REGISTRY

    return list(MODEL_REGISTRY)


def model_spec(name: str):
    """The spec of model ``name``; an unknown name is a :class:`CommandError`."""
    from chainrule.models.registry import get_model_spec

    try:
        return get_model_spec(name)
    except ValueError as e:
        raise CommandError(str(e)) from None


def check_model_name(name: str) -> str:
    model_spec(name)
    return name


def parse_models(text: str) -> list[str]:
    """``"knn,svm"`` -> ``["knn", "svm"]``, each a known model, no repeats."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise CommandError("--models needs at least one model name")
    for name in names:
        check_model_name(name)
    if len(set(names)) != len(names):
        raise CommandError(f"--models lists a model twice: {text}")
    return names


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def image_size_arg(text: str) -> list[int]:
    """argparse type: ``48x64`` -> [48, 64], height and width in pixels."""
    import argparse

    from chainrule.data.resize import parse_size

    try:
        return list(parse_size(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def fraction(text: str) -> float:
    """argparse type: a float in [0, 1)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


# -- data ----------------------------------------------------------------------------------


def load_split(
    data: str,
    split: str,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    cache_dir=None,
    archive=None,
    progress: bool = True,
    image_size=None,
    strict: bool = False,
):
    """``chainrule.data.load`` with its errors as one-line :class:`CommandError`."""
    from chainrule.data import load

    try:
        return load(
            data,
            split=split,
            cache_dir=cache_dir,
            archive=archive,
            val_fraction=val_fraction,
            random_state=seed,
            progress=progress,
            image_size=None if image_size is None else tuple(image_size),
            strict=strict,
        )
    except (OSError, ValueError, TypeError) as e:
        raise CommandError(f"cannot load {data!r} ({split}): {e}") from None


def prepare_data(args, progress: bool, *, test: bool = False):
    """The training and validation splits (and the test split with ``test``, where the
    data has one) of ``args.data`` as a ``chainrule.experiment.TrialData``.

    The validation split is absent with ``--val-fraction 0``.
    """
    from chainrule.experiment import TrialData

    common = {
        "seed": args.seed, "cache_dir": args.cache_dir, "progress": progress,
        "archive": getattr(args, "archive", None), "strict": getattr(args, "strict", False),
    }  # fmt: skip
    size = getattr(args, "image_size", None)
    loaded = {"train": None, "val": None, "test": None}
    wanted = ["train"] + (["val"] if args.val_fraction > 0 else [])
    for split in wanted:
        loaded[split] = load_split(
            args.data, split, val_fraction=args.val_fraction, image_size=size, **common
        )
    if test and "test" in splits_of(args.data):
        # the test images at the size of the training images
        size = loaded["train"].image_shape[:2]
        loaded["test"] = load_split(args.data, "test", image_size=size, **common)
    source = {"name": str(args.data), "val_fraction": args.val_fraction, "seed": args.seed}
    return TrialData(loaded["train"], loaded["val"], loaded["test"], source=source)


def splits_of(data: str) -> tuple[str, ...]:
    """The splits the dataset or folder offers."""
    from chainrule.data import available_splits

    try:
        return tuple(available_splits(data))
    except (OSError, ValueError) as e:
        raise CommandError(str(e)) from None


def label_map(data_classes: Sequence[str], model_classes: Sequence[str]) -> np.ndarray | None:
    """Map the dataset's labels onto the model's, by class name.

    Returns None when the class lists are equal (labels already agree), else an int64
    array ``m`` with ``m[data_label] = model_label``. A class the model does not know is a
    :class:`CommandError`.
    """
    data_classes = list(data_classes)
    model_classes = list(model_classes)
    if data_classes == model_classes:
        return None
    index = {c: i for i, c in enumerate(model_classes)}
    unknown = [c for c in data_classes if c not in index]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise CommandError(
            f"the data has classes the model was not trained on ({shown}); the model knows "
            f"{', '.join(model_classes[:12])}{' ...' if len(model_classes) > 12 else ''}"
        )
    return np.array([index[c] for c in data_classes], dtype=np.int64)


# -- models --------------------------------------------------------------------------------


def model_options() -> dict[str, list[tuple[str, Any]]]:
    """``{flag: [(model name, Option), ...]}``: every registered model's options."""
    options: dict[str, list] = {}
    for name in model_names():
        for opt in model_spec(name).options:
            options.setdefault(opt.flag, []).append((name, opt))
    return options


def _argparse_type(parse):
    """``parse`` (text -> value, ``ValueError`` with a message) as an argparse type."""
    import argparse

    if parse in (str, int, float):
        return parse

    def convert(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_model_options(parser) -> None:
    """One option per flag that some model declares, its help listing those models.

    Where the models agree on how to read the value it is read here (a bad value is an
    argparse error); where they differ (``--hidden``: one size or several) the text is
    kept and each model's spec reads it.
    """
    group = parser.add_argument_group("model options (each applies to the models listed)")
    for flag, declared in model_options().items():
        opts = [opt for _, opt in declared]
        helps: dict[str, list[str]] = {}
        for name, opt in declared:
            helps.setdefault(opt.help, []).append(name)
        text = "; ".join(f"{h} ({', '.join(names)})" for h, names in helps.items())
        if all(o.switch for o in opts):
            group.add_argument(flag, action="store_true", default=None, help=text)
            continue
        kwargs = {}
        if len({o.parse for o in opts}) == 1:
            kwargs["type"] = _argparse_type(opts[0].parse)
        if len({o.choices for o in opts}) == 1 and opts[0].choices:
            kwargs["choices"] = opts[0].choices
        group.add_argument(flag, help=text, **kwargs)


def option_values(args) -> dict:
    """``{flag: value}`` of the model options in ``args`` (None where not given)."""
    return {
        flag: getattr(args, declared[0][1].dest, None) for flag, declared in model_options().items()
    }


def option_dests() -> list[str]:
    """The argparse names of the model options (what a run records of its arguments)."""
    return [declared[0][1].dest for declared in model_options().values()]


@contextmanager
def user_errors():
    """Errors of the experiment layer (bad settings or data) as a :class:`CommandError`."""
    from chainrule.experiment import ExperimentError

    try:
        yield
    except ExperimentError as e:
        raise CommandError(str(e)) from None


def load_trained(run: str, model: str | None = None):
    """The :class:`~chainrule.models.io.LoadedModel` of a run folder or model file."""
    from chainrule.models.io import load_model

    try:
        return load_model(run, model)
    except (OSError, ValueError) as e:
        raise CommandError(str(e)) from None


# -- running -------------------------------------------------------------------------------


def progress_enabled(args) -> bool:
    return not getattr(args, "quiet", False)


def info(args, message: str) -> None:
    """A progress line on stderr (stdout stays for results), unless ``--quiet``; control
    characters (of class names, paths) escaped."""
    if progress_enabled(args):
        print(escaped(message), file=sys.stderr, flush=True)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], width: int | None = None
) -> str:
    """A plain text table: first column left-aligned, the others right-aligned.

    With ``width`` (a text column last, such as settings), the last column is
    left-aligned and, where a line would be longer than ``width``, wrapped at spaces onto
    continuation lines (the other columns blank there).
    """
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    room = None if width is None else width - sum(widths[:-1]) - 2 * (len(headers) - 1)
    wrap = room is not None and len(headers) > 1 and widths[-1] > room and room >= 12
    if wrap:
        widths[-1] = room
    lines = []
    for n, row in enumerate(cells):
        last = _wrap(row[-1], room) if wrap else [row[-1]]
        for k, text in enumerate(last):
            first = row[:-1] if k == 0 else [""] * (len(row) - 1)
            parts = [first[0].ljust(widths[0])] if first else []
            parts += [c.rjust(w) for c, w in zip(first[1:], widths[1:-1])]
            parts.append(text.ljust(widths[-1]) if width is not None else text.rjust(widths[-1]))
            if len(row) == 1:
                parts = [text.ljust(widths[0])]
            lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _wrap(text: str, room: int) -> list[str]:
    """``text`` broken at spaces into lines of at most ``room`` characters (a longer
    word stays whole)."""
    lines = [""]
    for word in text.split(" "):
        if lines[-1] and len(lines[-1]) + 1 + len(word) > room:
            lines.append(word)
        else:
            lines[-1] = f"{lines[-1]} {word}" if lines[-1] else word
    return lines


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def fmt_seconds(seconds: float | None) -> str:
    from chainrule.report.text import format_seconds

    return format_seconds(seconds)


def fmt_acc(acc: float | None) -> str:
    from chainrule.report.text import format_accuracy

    return format_accuracy(acc)


def match_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Images (N, H, W, C) uint8 with ``channels`` channels, converted as Pillow converts.

    RGB -> grayscale uses Pillow's ``convert("L")`` arithmetic (ITU-R 601-2 luma in 16-bit
    fixed point), so that a folder of RGB files evaluated by a grayscale model gives the
    values that decoding each file with ``mode="L"`` gives; grayscale -> RGB repeats the
    channel.
    """
    c = images.shape[-1]
    if c == channels:
        return images
    if c == 3 and channels == 1:
        rgb = images.astype(np.uint32)
        luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
        return luma.astype(np.uint8)[..., None]
    if c == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    raise CommandError(f"cannot convert images with {c} channels to {channels}")


def check_out_dir(path: str | os.PathLike) -> Path:
    """``--out``: a folder, or a path whose nearest existing part is a folder."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "exists and is not a folder" if part == path else "is not a folder"
                raise CommandError(f"--out {path}: {part} {where}")
            break
    return path
