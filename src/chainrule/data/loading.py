"""``load``: one entry point for the bundled digits, CIFAR-10, PROPS and image folders."""

from __future__ import annotations

import numbers
import os

import numpy as np

from .dataset import Dataset
from .splits import _check_fraction, carve, stratified_split_indices

__all__ = ["DATASETS", "SPLITS", "available_splits", "load"]

#: Names that ``load`` resolves to a known dataset (anything else is taken as a folder).
DATASETS = ("digits", "cifar10", "props")
SPLITS = ("train", "val", "test", "all")


def available_splits(name_or_path: str | os.PathLike) -> tuple[str, ...]:
    """The ``split`` values that :func:`load` accepts for this dataset or folder.

    ``"test"`` is missing for an image folder without a ``test/`` subfolder (load it with
    ``split="all"`` to evaluate on every image in it).
    """
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        return SPLITS
    from .folder import folder_splits

    return folder_splits(name_or_path)


def load(
    name_or_path: str | os.PathLike,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    archive: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    random_state: int = 0,
    progress: bool = True,
    image_size: tuple[int, int] | None = None,
    strict: bool = False,
) -> Dataset:
    """Load a dataset split as a :class:`Dataset` (images (N, H, W, C) uint8, labels int64).

    Parameters
    ----------
    name_or_path : ``"digits"``, ``"cifar10"``, ``"props"`` or a folder path
        ``"digits"``: the bundled 8x8 handwritten digits (1,797 images (8, 8, 1), classes
        ``"0".."9"``), offline. ``"cifar10"``: CIFAR-10 (32, 32, 3), downloaded once from
        the official binary archive. ``"props"``: PROPS (32, 32, 3), 10 YCB objects,
        downloaded once from Google Drive. A path: an image folder ``DIR/<class>/*.png``
        (``.jpg``, ``.jpeg``, ``.bmp``) or ``DIR/{train,val,test}/<class>/...``, classes
        the class folders that hold images (sorted by name), images decoded to RGB and
        resized to one size (``image_size``), decoded arrays cached. (A folder named like a
        dataset is loaded as ``./digits``.)
    split : ``"train"``, ``"val"``, ``"test"`` or ``"all"``
        Where a source has no validation part, ``"val"`` is carved out of its training
        part: a stratified ``val_fraction`` of it, chosen by ``random_state``, and ``"train"``
        is the rest (``val_fraction=0``: the whole training part). ``"all"`` is every image.

        ================  ==========================  ===================================
        source            ``"test"``                  ``"train"`` + ``"val"``
        ================  ==========================  ===================================
        digits            fixed 20% (359 images),     the other 1,438, split by
                          stratified, never changes   ``val_fraction``
        cifar10           official test batch (10k)   the five data batches (50k)
        props             held-out instances (10k)    the other instances (50k)
        DIR/<class>       not available: use "all"   every image in DIR
        DIR/train, test   DIR/test                    DIR/train, or DIR/train and DIR/val
                                                      when DIR/val exists (no carving)
        ================  ==========================  ===================================
    cache_dir : folder for downloads, unpacked archives and decoded image folders; default
        ``$CHAINRULE_CACHE`` or ``~/.cache/chainrule``.
    archive : a hand-downloaded archive (``cifar10``, ``props`` only), checked against the
        official checksum.
    val_fraction : float in [0, 1), default 0.2.
    random_state : int, default 0. An int only (not a Generator), so that separate calls for
        ``"train"`` and ``"val"`` always agree on the split.
    progress : show progress bars for downloads and decoding.
    image_size : (height, width) of the images of a folder. Images of another size are
        resized to it (:func:`chainrule.data.resize.resize_images`: linear, antialiased
        when shrinking); None: the most common size of the folder (of its first split
        folder). A warning (:class:`chainrule.data.report.DataWarning`) says which
        images were resized.
    strict : for a folder: refuse it (``ValueError``) when a file in a class folder cannot
        be read or is not an image, or a class folder has no images, listing them all.
        Without it they are left out, and one warning lists them all.

    Raises
    ------
    ValueError for a bad argument, an empty, corrupt or inconsistent dataset (naming the
    file); FileNotFoundError for a path that does not exist; DownloadError / ChecksumError
    (from :mod:`chainrule.data.download`) when a download fails.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    val_fraction = _check_fraction(val_fraction)
    if (
        isinstance(random_state, bool)
        or not isinstance(random_state, numbers.Integral)
        or random_state < 0
    ):
        raise TypeError(
            "random_state for load() must be a non-negative int (the same int for the train "
            f"and val splits), got {random_state!r}"
        )
    random_state = int(random_state)
    is_name = isinstance(name_or_path, str) and name_or_path in DATASETS
    if archive is not None and name_or_path not in ("cifar10", "props"):
        raise ValueError("archive= applies only to 'cifar10' and 'props'")

    if not is_name:
        from .folder import load_folder

        return load_folder(
            name_or_path, split, cache_dir, val_fraction, random_state, progress,
            image_size=image_size, strict=strict,
        )  # fmt: skip

    ds = _load_named(name_or_path, split, cache_dir, archive, val_fraction, random_state, progress)
    return ds if image_size is None else _resized(ds, image_size)


def _resized(ds: Dataset, image_size) -> Dataset:
    """Every image of ``ds`` at ``image_size`` (height, width), with a warning."""
    import warnings

    from .report import DataWarning
    from .resize import format_size, resize_images

    h, w = (int(v) for v in image_size)
    if ds.image_shape[:2] == (h, w):
        return ds
    warnings.warn(
        DataWarning(
            f"resized all {len(ds)} images of {ds.name} from {format_size(*ds.image_shape[:2])} "
            f"to {format_size(h, w)}, the size asked for (linear, antialiased when shrinking)"
        ),
        stacklevel=3,
    )
    images = resize_images(ds.images, h, w)
    return Dataset(images, ds.labels, ds.classes, ds.name, ds.split, ds.files)


def _load_named(name_or_path, split, cache_dir, archive, val_fraction, random_state, progress):
    """``load`` of digits, cifar10 or props."""
    if name_or_path == "digits":
        from .digits import CLASSES, TEST_FRACTION, TEST_SEED, read_digits

        images, labels = read_digits()
        full = Dataset(images, labels, CLASSES, "digits", "all")
        if split == "all":
            return full
        rest, test = stratified_split_indices(labels, TEST_FRACTION, TEST_SEED)
        if split == "test":
            return full.subset(test, split="test")
        return carve(full.subset(rest, split="train"), split, val_fraction, random_state)

    if name_or_path == "cifar10":
        from .cifar10 import TEST_FILES, TRAIN_FILES, ensure_cifar10, read_batches, read_classes

        folder = ensure_cifar10(cache_dir, archive, progress)
        classes = read_classes(folder)
        files = {"test": TEST_FILES, "all": TRAIN_FILES + TEST_FILES}.get(split, TRAIN_FILES)
        images, labels = read_batches([folder / f for f in files])
        ds = Dataset(
            images, labels, classes, "cifar10", split if split in ("test", "all") else "train"
        )
        return carve(ds, split, val_fraction, random_state)

    from .props import CLASSES, load_props

    parts = load_props(cache_dir, archive, progress)
    if split == "all":
        images = np.concatenate([parts["train"][0], parts["test"][0]])
        labels = np.concatenate([parts["train"][1], parts["test"][1]])
        return Dataset(images, labels, CLASSES, "props", "all")
    if split == "test":
        return Dataset(*parts["test"], CLASSES, "props", "test")
    return carve(
        Dataset(*parts["train"], CLASSES, "props", "train"), split, val_fraction, random_state
    )
