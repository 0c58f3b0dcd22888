"""Files that are always either the old version or the complete new one.

Every file chainrule writes for the user (model files, checkpoints, metrics, downloads,
image caches) goes through `atomic_write`: the content is written to a hidden temporary
file in the destination folder, flushed to disk, then renamed over the destination, so an
interrupted or killed writer never leaves a half-written file under the real name. The
temporary file is created with the usual permissions (0o666 less the umask), so the
renamed file looks like any other file the user writes (``tempfile.mkstemp`` would make it
owner-only). A temporary file that a killed process could not remove keeps the
``.<name>.<random><suffix>`` pattern, so `remove_stale_temps` can find it later.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "remove_stale_temps", "temp_dir", "temp_file"]


def temp_file(folder: Path, name: str, suffix: str = ".part") -> tuple[int, Path]:
    """Create and open (for writing) a hidden temporary file ``.<name>.<random><suffix>``
    in ``folder``, with permissions 0o666 less the umask. Returns ``(fd, path)``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = Path(folder) / f".{name}.{os.urandom(4).hex()}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file in {folder}")


def temp_dir(folder: Path, name: str, suffix: str = ".tmp") -> Path:
    """Create a hidden temporary folder in ``folder`` (permissions 0o777 less the umask)."""
    for _ in range(100):
        path = Path(folder) / f".{name}.{os.urandom(4).hex()}{suffix}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder in {folder}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", suffix: str = ".tmp") -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"`` (UTF-8 text). On an exception the temporary file is
    removed and ``path`` is left as it was. The parent folder is created when missing.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes in mode 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, path.name, suffix=suffix)
    try:
        kwargs = {"encoding": "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: str | os.PathLike, name: str, suffix: str = ".tmp") -> list[Path]:
    """Remove the temporary files that writers of ``folder/name`` left behind when killed.

    Only files matching ``.<name>.<8 hex digits><suffix>`` are touched. Returns the paths
    removed. Call it where no other process can be writing ``name`` at the same time.
    """
    removed = []
    for p in Path(folder).glob(f".{name}.*{suffix}"):
        middle = p.name[len(name) + 2 : len(p.name) - len(suffix)]
        if len(middle) == 8 and all(c in "0123456789abcdef" for c in middle):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed
