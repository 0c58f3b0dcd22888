"""CIFAR-10 from its official binary archive (raw bytes, no pickle).

The archive ``cifar-10-binary.tar.gz`` (162 MB) is downloaded once from :data:`URL`, checked
against :data:`MD5` and unpacked into ``<cache>/cifar10/cifar-10-batches-bin``. Each batch
file is a sequence of 10,000 records of 3,073 bytes: the label (0..9), then the 32x32 image
as three 1,024-byte planes (red, green, blue), row by row.

Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images",
https://www.cs.toronto.edu/~kriz/cifar.html
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .cache import cache_root

__all__ = ["CLASSES", "MD5", "URL", "ensure_cifar10", "read_batches"]

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
ARCHIVE_NAME = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"
CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
_RECORD = 1 + 3 * 32 * 32


def ensure_cifar10(
    cache_dir: str | os.PathLike | None = None,
    archive: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """The folder holding the unpacked batch files, downloading and unpacking if needed.

    ``archive`` is a ``cifar-10-binary.tar.gz`` downloaded by hand; it is checked against
    :data:`MD5` like a download. The download goes to ``<cache>/cifar10`` first.
    """
    from .archive import extract_files
    from .download import download, obtain_archive

    root = cache_root(cache_dir) / "cifar10"
    target = root / FOLDER
    needed = TRAIN_FILES + TEST_FILES
    if all((target / f).is_file() for f in needed):
        return target
    if target.exists():
        shutil.rmtree(target)  # an incomplete copy (files deleted by hand); unpack again

    archive_path = obtain_archive(
        root / ARCHIVE_NAME,
        MD5,
        lambda dest: download(URL, dest, md5=MD5, progress=progress),
        archive,
        expected=f"the official {ARCHIVE_NAME} from {URL}",
    )

    keep = set(needed) | {META_FILE}
    return extract_files(
        archive_path,
        target,
        choose=lambda member: Path(member).name if Path(member).name in keep else None,
        required=needed,
    )


def read_batches(paths) -> tuple[np.ndarray, np.ndarray]:
    """Parse CIFAR-10 binary batch files.

    Returns images (N, 32, 32, 3) uint8 (HWC, RGB) and labels (N,) int64.
    Raises ``ValueError`` naming a file whose size or labels do not fit the format.
    """
    raws = []
    for path in paths:
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % _RECORD:
            raise ValueError(
                f"{path} is not a CIFAR-10 binary batch: {raw.size} bytes is not a whole "
                f"number of {_RECORD}-byte records"
            )
        records = raw.reshape(-1, _RECORD)
        if records[:, 0].max() >= len(CLASSES):
            raise ValueError(f"{path} is not a CIFAR-10 binary batch: a label is above 9")
        raws.append(records)
    n = sum(r.shape[0] for r in raws)
    images = np.empty((n, 32, 32, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    start = 0
    for records in raws:
        stop = start + records.shape[0]
        labels[start:stop] = records[:, 0]
        images[start:stop] = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        start = stop
    return images, labels


def read_classes(folder: Path) -> list[str]:
    """Class names from ``batches.meta.txt`` when it lists ten, else the standard ones."""
    meta = folder / META_FILE
    if meta.is_file():
        names = [line.strip() for line in meta.read_text(errors="replace").splitlines()]
        names = [n for n in names if n]
        if len(names) == len(CLASSES) and len(set(names)) == len(names):
            return names
    return list(CLASSES)
