"""PROPS classification data (Progress Robot Object Perception Samples).

32x32 RGB crops of 10 YCB objects seen by a robot: 50,000 training and 10,000 test images,
the test images from scenes not in the training set. The archive
``Progress-Objects-Sample.tar.gz`` lives on Google Drive (:data:`FILE_ID`, checked against
:data:`MD5`); it holds ``meta.pkl`` and one pickle per object instance (``mug_3.pkl``, ...),
each a dict with ``data`` (n, 32, 32, 3) and ``labels`` (n,); ``meta["test_split"]`` names the
held-out instances. The pickles are read with
:class:`~chainrule.data.safe_pickle.RestrictedUnpickler`, which builds only plain data and
NumPy arrays of plain numbers, within size limits.

Every pickle is checked against the md5 of the official file each time it is read
(``bundled/props.md5``, the list published with the dataset's reference loader): a file
changed, planted or damaged in the unpacked folder is never unpickled, and
:func:`load_props` unpacks the (md5-checked) archive again instead. Files not on the list
are never read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from importlib import resources
from pathlib import Path

import numpy as np

from .cache import cache_root

__all__ = [
    "CLASSES",
    "FILE_ID",
    "MD5",
    "UnpackedFileError",
    "ensure_props",
    "load_props",
    "read_props",
]

FILE_ID = "1C8_JFsnPVm392C-S1rH0y4HFfNkdMlXi"
MD5 = "b32c587684bb54a9f918b6b081a18e28"
#: Google Drive endpoint; None means :data:`chainrule.data.download.GOOGLE_DRIVE_URL`.
DRIVE_URL: str | None = None
ARCHIVE_NAME = "Progress-Objects-Sample.tar.gz"
FOLDER = "Progress-Objects-Sample"
META_FILE = "meta.pkl"
#: ``{file name: md5}`` of the archive's pickles; None: the bundled ``props.md5``.
FILE_MD5: dict[str, str] | None = None
CLASSES = [
    "master_chef_can", "cracker_box", "sugar_box", "tomato_soup_can", "mustard_bottle",
    "tuna_fish_can", "gelatin_box", "potted_meat_can", "mug", "large_marker",
]  # fmt: skip


class UnpackedFileError(ValueError):
    """A file of the unpacked PROPS folder is missing or not the official one."""


def file_md5s() -> dict[str, str]:
    """``{file name: md5}`` of every pickle in the official archive (:data:`FILE_MD5`)."""
    if FILE_MD5 is not None:
        return dict(FILE_MD5)
    text = resources.files(__package__).joinpath("bundled", "props.md5").read_text("ascii")
    return {name: digest for digest, name in (line.split("  ") for line in text.splitlines())}


def load_props(
    cache_dir: str | os.PathLike | None = None,
    archive: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`read_props` of :func:`ensure_props`'s folder; a folder whose files are missing
    or not the official ones is unpacked again from the (md5-checked) archive, once."""
    folder = ensure_props(cache_dir, archive, progress)
    try:
        return read_props(folder)
    except UnpackedFileError:
        shutil.rmtree(folder)
        return read_props(ensure_props(cache_dir, archive, progress))


def ensure_props(
    cache_dir: str | os.PathLike | None = None,
    archive: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """The folder holding the unpacked pickles, downloading and unpacking if needed.

    ``archive`` is a ``Progress-Objects-Sample.tar.gz`` downloaded by hand (checked against
    :data:`MD5`).
    """
    from .archive import extract_files
    from .download import download_google_drive, obtain_archive

    root = cache_root(cache_dir) / "props"
    target = root / FOLDER
    if (target / META_FILE).is_file():
        return target
    if target.exists():
        shutil.rmtree(target)

    archive_path = obtain_archive(
        root / ARCHIVE_NAME,
        MD5,
        lambda dest: download_google_drive(
            FILE_ID, dest, md5=MD5, progress=progress, base_url=DRIVE_URL
        ),
        archive,
        expected=f"the PROPS {ARCHIVE_NAME}",
    )

    official = file_md5s()

    def choose(member: str) -> str | None:
        name = Path(member).name
        return name if name in official else None

    return extract_files(archive_path, target, choose=choose, required=tuple(official))


def read_props(folder: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parse an unpacked PROPS folder into ``{"train": (images, labels), "test": (...)}``.

    images (N, 32, 32, 3) uint8, labels (N,) int64 in :data:`CLASSES` order; object
    instances in name order. Only the files of :func:`file_md5s` are read, each checked
    against its md5 before it is unpickled. Raises :class:`UnpackedFileError` naming a file
    that is missing or not the official one, ``ValueError`` naming a file that does not fit
    the format.
    """
    folder = Path(folder)
    sums = file_md5s()
    meta = _load(folder / META_FILE, sums)
    if not isinstance(meta, dict) or "test_split" not in meta:
        raise ValueError(f"{folder / META_FILE} has no 'test_split' entry")
    held_out = meta["test_split"]
    if isinstance(held_out, str | bytes) or not hasattr(held_out, "__iter__"):
        raise ValueError(f"{folder / META_FILE}: 'test_split' must list instance names")
    held_out = {_instance_name(x) for x in held_out}

    instances = sorted(p[:-4] for p in sums if p.endswith(".pkl") and p != META_FILE)
    parts: dict[str, list] = {"train": [], "test": []}
    for inst in instances:
        images, labels = _read_instance(folder / f"{inst}.pkl", sums)
        parts["test" if inst in held_out else "train"].append((images, labels))
    out = {}
    for split, chunks in parts.items():
        if not chunks:
            raise ValueError(
                f"{folder} has no {split} instances (meta test_split: {sorted(held_out)})"
            )
        out[split] = (
            np.concatenate([c[0] for c in chunks]),
            np.concatenate([c[1] for c in chunks]),
        )
    return out


def _instance_name(x) -> str:
    if isinstance(x, bytes):
        x = x.decode("latin1")
    name = os.path.basename(str(x))
    return name[:-4] if name.endswith(".pkl") else name


def _load(path: Path, sums: dict[str, str]):
    """The unpickled content of ``path`` after checking its bytes against ``sums``."""
    from .safe_pickle import load_pickle

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnpackedFileError(f"{path} is missing from the unpacked PROPS folder") from None
    if hashlib.md5(data).hexdigest() != sums[path.name]:
        raise UnpackedFileError(
            f"{path} is not the file of the official PROPS archive (md5 mismatch); refusing "
            "to read it"
        )
    return load_pickle(path, data=data)


def _read_instance(path: Path, sums: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    entry = _load(path, sums)
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        raise ValueError(f"{path} is not a PROPS instance file (a dict with data and labels)")
    data = np.asarray(entry["data"])
    if data.ndim != 4 or data.shape[3] != 3:
        raise ValueError(f"{path}: data must have shape (n, H, W, 3), got {data.shape}")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or data.min() < 0 or data.max() > 255:
            raise ValueError(f"{path}: data must hold 8-bit pixel values, got {data.dtype}")
        data = data.astype(np.uint8)
    labels = _labels(entry["labels"], path)
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {data.shape[0]} images but {labels.size} labels")
    return data, labels


def _labels(raw, path: Path) -> np.ndarray:
    values = np.asarray(raw)
    if values.dtype.kind in "USO":
        index = {c: i for i, c in enumerate(CLASSES)}
        try:
            return np.array([index[_text(v)] for v in values.ravel()], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"{path}: unknown class name {exc.args[0]!r}") from None
    if values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{path}: labels must be integers or class names, got {values.dtype}")
    values = values.astype(np.int64).ravel()
    if values.size and (values.min() < 0 or values.max() >= len(CLASSES)):
        raise ValueError(f"{path}: labels must lie in 0..{len(CLASSES) - 1}")
    return values


def _text(v) -> str:
    return v.decode("latin1") if isinstance(v, bytes) else str(v)
