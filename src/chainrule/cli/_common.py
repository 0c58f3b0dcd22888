"""Pieces shared by the commands: data loading, model construction, run folders, tables.

Everything a user can get wrong (a missing folder, an unknown model, a malformed list, a
model file that is not one) is turned into a :class:`chainrule.cli.CommandError` here, so
that the commands print one line instead of a traceback.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from chainrule.cli import CommandError

MODEL_NAMES = ("knn", "svm", "softmax", "twolayer", "mlp")
NET_MODELS = ("twolayer", "mlp")
DATA_HELP = (
    "dataset: digits (bundled, the default), cifar10, props, or an image folder "
    "DIR/<class>/*.png or DIR/{train,val,test}/<class>/..."
)


# -- arguments -----------------------------------------------------------------------------


def add_data_arguments(parser, default: str | None = "digits") -> None:
    parser.add_argument("--data", default=default, metavar="NAME_OR_DIR", help=DATA_HELP)
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


def check_model_name(name: str) -> str:
    if name not in MODEL_NAMES:
        raise CommandError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
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


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"1024,1024"`` -> ``(1024, 1024)``; positive integers only."""
    parts = [t.strip() for t in str(text).split(",")]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise CommandError(
            f"--hidden must be a comma-separated list of layer sizes like 1024,1024; got {text!r}"
        ) from None
    if not sizes or any(s < 1 for s in sizes):
        raise CommandError(f"--hidden layer sizes must be positive integers; got {text!r}")
    return sizes


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
        )
    except (OSError, ValueError, TypeError) as e:
        raise CommandError(f"cannot load {data!r} ({split}): {e}") from None


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


def model_class(name: str) -> type:
    from chainrule.models.registry import get_model_class

    check_model_name(name)
    try:
        return get_model_class(name)
    except ValueError as e:
        raise CommandError(str(e)) from None


def model_parameters(cls: type) -> list[str]:
    """Names of the hyperparameters of a model class (its ``__init__`` arguments)."""
    sig = inspect.signature(cls.__init__)
    return [p for p in sig.parameters if p != "self"]


def build_model(name: str, params: dict, flags: dict | None = None):
    """An unfitted model ``name`` with ``params``.

    ``flags`` maps parameter names to the option that set them, so that an option that
    does not apply to the model is reported as that option (``--k does not apply to svm``).
    """
    cls = model_class(name)
    known = set(model_parameters(cls))
    flags = flags or {}
    for key in params:
        if key not in known:
            flag = flags.get(key, key)
            raise CommandError(f"{flag} does not apply to model {name}")
    try:
        return cls(**params)
    except (TypeError, ValueError) as e:
        raise CommandError(f"bad settings for {name}: {e}") from None


def load_trained(run: str, model: str | None = None):
    """The :class:`~chainrule.models.io.LoadedModel` of a run folder or model file."""
    from chainrule.models.io import load_model
    from chainrule.report.run import find_model_file

    try:
        path = find_model_file(run, model)
        return load_model(path)
    except (OSError, ValueError) as e:
        raise CommandError(str(e)) from None


# -- running -------------------------------------------------------------------------------


@contextmanager
def stopwatch():
    """``with stopwatch() as t: ...`` then ``t()`` is the seconds the block took."""
    start = time.perf_counter()
    end = None

    def elapsed() -> float:
        return (end if end is not None else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()


# Below this many feature values (rows x features) the data set counts as small.
SMALL_DATA = 2_000_000


def blas_threads_for(X: np.ndarray):
    """A context that keeps BLAS to one thread while working on a small data set.

    The matrix products of small data (the bundled digits: 1,150 x 64) are far too small
    to gain from threads, and on a machine whose cores are busy with other work, waking a
    second BLAS thread for each of them made a small network's training ten times slower.
    Needs threadpoolctl (installed with scikit-learn); without it nothing changes.
    """
    import contextlib

    if X.size > SMALL_DATA:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def progress_enabled(args) -> bool:
    return not getattr(args, "quiet", False)


def info(args, message: str) -> None:
    """A progress line on stderr (stdout stays for results), unless ``--quiet``."""
    if progress_enabled(args):
        print(message, file=sys.stderr, flush=True)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def fmt_acc(acc: float | None) -> str:
    return "-" if acc is None else f"{100 * acc:.2f}%"


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
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"--out {path} exists and is not a folder")
    return path
