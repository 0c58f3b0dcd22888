"""Image folders: ``DIR/<class>/*.png`` or ``DIR/{train,val,test}/<class>/...``.

Images are decoded with Pillow (imported on first use) in a thread pool, and the decoded
arrays are cached as an ``.npz`` file (no pickle) in the cache folder, keyed on the folder's
file list, sizes and modification times: a second load reads one file instead of decoding
every image again, and any added, removed or changed image makes a fresh decode.

A folder is taken as it is. Images of other sizes are resized to one size, the most common
one or ``image_size`` (:mod:`chainrule.data.resize`). A file that cannot be read, is too
large to decode (judged from its header: :data:`MAX_IMAGE_PIXELS`) or is not an image,
and a class folder without images, are left out, and one warning names them all
(:class:`chainrule.data.report.DataWarning`); ``strict=True`` refuses the folder instead,
with the same list.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from chainrule._files import atomic_write, open_file
from chainrule._memory import physical_memory
from chainrule._npz import DamagedArchive, NotAnArchive, NpzArchive

from .cache import cache_root, remove_stale_temps
from .dataset import Dataset
from .decode import MAX_IMAGE_PIXELS, decode_photos, read_image, read_images
from .report import FolderReport
from .splits import carve

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "SPLIT_FOLDERS",
    "folder_splits",
    "image_files",
    "load_folder",
    "read_image",
    "read_images",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
SPLIT_FOLDERS = ("train", "val", "test")
_CACHE_VERSION = 2
_STALE_TEMP_S = 600.0  # a cache file being written is never unchanged this long


# -- listing ------------------------------------------------------------------------------


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _subdirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _walk_images(folder: Path, rel: str, out: list, odd: list | None = None) -> None:
    """Append (relative path, size, mtime_ns) of every image below ``folder``, sorted, and
    the relative path of every other file to ``odd`` (hidden files are ignored)."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            _walk_images(Path(entry.path), f"{rel}/{entry.name}", out, odd)
        elif entry.is_file() and _is_image(entry.name):
            st = entry.stat()
            out.append((f"{rel}/{entry.name}", st.st_size, st.st_mtime_ns))
        elif odd is not None:
            odd.append(f"{rel}/{entry.name}")


def image_files(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """(image files, other files) below ``folder``, each sorted by path; hidden files
    and folders are left out."""
    folder = Path(folder)
    found: list = []
    odd: list = []
    _walk_images(folder, ".", found, odd)
    return [folder / rel for rel, _, _ in found], [folder / rel for rel in odd]


def _list_classes(folder: Path) -> tuple[dict, list[str], list[str]]:
    """({class: [(relative path, size, mtime)]} of the class folders of ``folder`` that
    hold images, the class folders without images, the files that are not images)."""
    listing, empty, odd = {}, [], []
    for c in _subdirs(folder):
        files: list = []
        _walk_images(folder / c, c, files, odd)
        if files:
            listing[c] = files
        else:
            empty.append(c)
    return listing, empty, odd


def _layout(root: Path) -> dict[str, Path] | None:
    """The split folders of ``root`` if it is laid out as ``root/{train,val,test}/<class>``,
    or None for a plain ``root/<class>`` folder."""
    subdirs = _subdirs(root)
    if subdirs and all(d in SPLIT_FOLDERS for d in subdirs):
        return {d: root / d for d in SPLIT_FOLDERS if d in subdirs}
    return None


def folder_splits(path: str | os.PathLike) -> tuple[str, ...]:
    """The ``split`` values that :func:`load_folder` accepts for this folder."""
    root = _check_root(path)
    layout = _layout(root)
    if layout is None:
        return ("train", "val", "all")
    names = [s for s in SPLIT_FOLDERS if s in layout or (s == "val" and "train" in layout)]
    return (*names, "all")


def _check_root(path) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"no such dataset name or folder: {os.fspath(path)!r}")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder of images")
    return root


# -- loading with a cache -----------------------------------------------------------------


def _load_set(folder: Path, listing: dict, classes: list[str], how: dict, report: FolderReport):
    """Images, labels and file names (relative to ``folder``) of the files in ``listing``
    ({class: files}) of ``folder`` that could be read, all at ``how["size"]`` (None:
    their most common size), cached; what was skipped or resized goes to ``report``.
    ``how``: size, name, cache_dir, progress, shown (the prefix of the files' names in
    messages)."""
    files = [f for c in classes for f in listing.get(c, [])]
    if not files:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in the class folders of {folder}"
        )
    size = None if how["size"] is None else (int(how["size"][0]), int(how["size"][1]))
    cached = None
    if size is not None:
        # The folder at its most common size is that size's images when it is that size.
        natural = _read_cache(*_cache_entry(folder, classes, files, None, how), len(files))
        if natural is not None and tuple(natural[3]["size"]) == size:
            cached = natural
    entry = _cache_entry(folder, classes, files, size, how)
    if cached is None:
        cached = _read_cache(*entry, len(files))
    if cached is None:
        cached = _decode_set(folder, classes, files, size, how)
        _write_cache(*entry, *cached)
    images, labels, kept, notes = cached
    report.unreadable += notes["unreadable"]
    for h, w, rel in notes["resized"]:
        report.resized.setdefault((h, w), []).append(how["shown"] + rel)
    report.n_images += len(labels)
    report.size = tuple(notes["size"])
    return images, labels, [files[i][0] for i in kept]


def _cache_entry(folder: Path, classes, files, size, how) -> tuple[Path | None, str, str]:
    """(the cache file, or None without a cache folder; its key; its prefix): one entry per
    state of the folder's files and size asked for (None: the most common size)."""
    resolved = str(folder.resolve())
    state = {"version": _CACHE_VERSION, "root": resolved, "classes": classes, "files": files,
             "size": None if size is None else list(size)}  # fmt: skip
    key = hashlib.sha256(json.dumps(state, separators=(",", ":")).encode()).hexdigest()[:32]
    # Entries of an older state of the folder at the same size share the prefix.
    prefix = hashlib.sha256(f"{resolved}|{size}".encode()).hexdigest()[:16]
    try:
        cache = cache_root(how["cache_dir"]) / "folders"
    except OSError:
        if how["cache_dir"] is not None:
            raise
        return None, key, prefix  # no usable default cache folder: decode every time
    return cache / f"{prefix}-{key}.npz", key, prefix


def _decode_set(folder: Path, classes, files, size, how):
    """(images, labels, indices of the files read, notes) of ``files``, decoded."""
    class_index = {c: i for i, c in enumerate(classes)}
    labels = np.array([class_index[rel.split("/", 1)[0]] for rel, _, _ in files], np.int64)
    decoded = decode_photos(
        [folder / rel for rel, _, _ in files], size=size, progress=how["progress"],
        desc=f"decoding {how['name']}",
    )  # fmt: skip
    notes = {
        "unreadable": [reason for _, reason in decoded.failed],
        "resized": [[*s, files[i][0]] for i, s in decoded.resized],
        "size": list(decoded.size),
    }
    if len(decoded.kept) == 0:
        raise ValueError(f"no image in {folder} could be read: " + "; ".join(notes["unreadable"]))
    return decoded.images, labels[decoded.kept], decoded.kept, notes


def _read_cache(entry: Path | None, key: str, prefix: str, n_files: int):
    """The cached (images, labels, kept, notes) of ``entry``, or None when it is missing,
    for another key, or anything but what `_write_cache` writes. Every member's header is
    checked before any array is read (`chainrule._npz.NpzArchive`): at most ``n_files``
    images, within the machine's memory, so that a damaged or planted entry costs a
    fresh decode and never an allocation its header made up."""
    if entry is None:
        return None
    try:
        with open_file(entry, follow_symlinks=False) as f, NpzArchive(f) as z:
            if z.others or set(z.names) != _CACHE_MEMBERS or not _cache_headers_fit(z, n_files):
                return None
            if str(z.read("key")) != key:
                return None
            images, labels, kept = z.read("images"), z.read("labels"), z.read("kept")
            notes = json.loads(str(z.read("notes")))
    except (OSError, NotAnArchive, DamagedArchive, ValueError):
        return None  # an unreadable cache entry is rebuilt, never trusted
    n = images.shape[0]
    if n and (kept.min() < 0 or kept.max() >= n_files):
        return None
    if not isinstance(notes, dict) or {"unreadable", "resized", "size"} - set(notes):
        return None
    return images, labels, kept, notes


_CACHE_MEMBERS = {"images", "labels", "kept", "key", "notes"}
# The key is a short hex digest; the notes name at most every file once or twice.
_MAX_KEY_BYTES = 4096
_MAX_NOTE_BYTES_PER_FILE = 16384


def _cache_headers_fit(z: NpzArchive, n_files: int) -> bool:
    """Whether the members' headers describe what `_write_cache` writes for ``n_files``
    files: uint8 images (n, H, W, C) with n <= n_files within memory, int64 labels and
    indices of length n, a scalar key and notes of bounded size."""
    images, labels, kept = z.header("images"), z.header("labels"), z.header("kept")
    key, notes = z.header("key"), z.header("notes")
    if images.dtype != np.uint8 or len(images.shape) != 4 or images.shape[0] > n_files:
        return False
    if images.nbytes > physical_memory():
        return False
    n = images.shape[0]
    for h in (labels, kept):
        if h.dtype != np.dtype(np.int64) or h.shape != (n,):
            return False
    return (
        key.shape == () and key.dtype.kind == "U" and key.nbytes <= _MAX_KEY_BYTES
        and notes.shape == () and notes.dtype.kind == "U"
        and notes.nbytes <= _MAX_NOTE_BYTES_PER_FILE * (n_files + 1)
    )  # fmt: skip


def _write_cache(entry: Path | None, key: str, prefix: str, images, labels, kept, notes) -> None:
    if entry is None:
        return
    cache = entry.parent
    try:
        cache.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(cache, f"{prefix}-*.npz", ".tmp", _STALE_TEMP_S)
        with atomic_write(entry) as f:
            np.savez(f, images=images, labels=labels, kept=kept, key=np.array(key),
                     notes=np.array(json.dumps(notes)))  # fmt: skip
        # Entries for an older state of the same folder can never be hit again.
        for old in cache.glob(f"{prefix}-*.npz"):
            if old != entry:
                old.unlink(missing_ok=True)
    except OSError:
        # A cache that cannot be written (read-only, disk full) only costs speed next time.
        pass


def _without_empty_classes(ds: Dataset, report: FolderReport) -> Dataset:
    """``ds`` without the classes none of whose images could be read."""
    counts = ds.class_counts()
    if counts.all():
        return ds
    keep = [c for c, n in zip(ds.classes, counts) if n]
    report.empty_classes += [(c, "has no image that could be read") for c, n in
                             zip(ds.classes, counts) if not n]  # fmt: skip
    new_label = np.cumsum(counts > 0) - 1
    return Dataset(ds.images, new_label[ds.labels], keep, ds.name, ds.split, ds.files)


def load_folder(
    path: str | os.PathLike,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    random_state: int = 0,
    progress: bool = True,
    image_size: tuple[int, int] | None = None,
    strict: bool = False,
) -> Dataset:
    """Load an image folder (see :func:`chainrule.data.load` for the splits, the sizes and
    what is skipped)."""
    root = _check_root(path)
    name = os.fspath(path)
    report = FolderReport(name, size_chosen_by="the most common size")
    if image_size is not None:
        report.size_chosen_by = "the size asked for"
    how = {"size": image_size, "name": name, "cache_dir": cache_dir, "progress": progress,
           "shown": ""}  # fmt: skip
    layout = _layout(root)
    if layout is None:
        ds = _load_flat(root, split, how, report)
        ds = _without_empty_classes(ds, report)
        report.emit(strict)
        return carve(ds, split, val_fraction, random_state)
    ds = _load_split_layout(root, layout, split, how, report)
    report.emit(strict)
    if split in ("train", "val") and not (split in layout and "val" in layout):
        return carve(ds, split, val_fraction, random_state)
    return ds


def _load_flat(root: Path, split: str, how: dict, report: FolderReport) -> Dataset:
    if not _subdirs(root):
        raise ValueError(
            f"{root} has no class folders: expected {root}/<class>/*.png (or .jpg, .jpeg, "
            f".bmp), or {root}/train/<class>/... and {root}/test/<class>/..."
        )
    if split == "test":
        raise ValueError(
            f"{root} has no test/ folder (its images are in {root}/<class>/); use "
            "split='all' to take every image in it, e.g. to evaluate on it"
        )
    listing, empty, odd = _list_classes(root)
    report.odd += odd
    report.empty_classes += [(c, "has no image files") for c in empty]
    if not listing:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in the class folders of {root}"
        )
    classes = sorted(listing)
    images, labels, files = _load_set(root, listing, classes, how, report)
    return Dataset(images, labels, classes, how["name"], "all", files)


def _load_split_layout(root: Path, layout: dict, split: str, how: dict, report) -> Dataset:
    """The split of a ``root/{train,val,test}/<class>`` folder (train and val still to
    be carved when there is no val/ folder). Classes are the class folders holding
    images in any split folder; images of every split folder get the size of the first
    one loaded."""
    listings = {part: _list_classes(folder) for part, folder in layout.items()}
    classes = sorted({c for listing, _, _ in listings.values() for c in listing})
    named = {c for _, empty, _ in listings.values() for c in empty}
    report.empty_classes += [(c, "has no image files") for c in sorted(named - set(classes))]
    if not classes:
        raise ValueError(f"the split folders of {root} have no class folders with images")
    if split == "all":
        parts = [p for p in SPLIT_FOLDERS if p in layout]
    elif split in layout and (split != "train" or "val" in layout):
        parts = [split]
    elif split in ("train", "val") and "train" in layout:
        parts = ["train"]
    else:
        raise ValueError(
            f"{root} has no {split}/ folder; its splits are {', '.join(folder_splits(root))}"
        )
    images, labels, files = [], [], []
    for part in parts:
        listing, _, odd = listings[part]
        report.odd += [f"{part}/{rel}" for rel in odd]
        part_how = {**how, "name": f"{how['name']}/{part}", "shown": f"{part}/"}
        x, y, names = _load_set(layout[part], listing, classes, part_how, report)
        how = {**how, "size": report.size}  # the next parts at the first part's size
        images.append(x)
        labels.append(y)
        files += [f"{part}/{name}" for name in names]
    split_name = "all" if split == "all" else parts[0]
    return Dataset(
        np.concatenate(images), np.concatenate(labels), classes, how["name"], split_name, files
    )
