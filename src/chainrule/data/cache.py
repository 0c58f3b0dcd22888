"""Where downloaded archives, unpacked datasets and decoded image arrays are kept, and the
clean-up of what interrupted writers leave there."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import time
from pathlib import Path

from chainrule._files import temp_dir, temp_file  # noqa: F401  (re-exported)

__all__ = ["cache_root", "hold", "remove_stale_temps", "temp_dir", "temp_file"]

ENV_VAR = "CHAINRULE_CACHE"

try:
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted there anyway
    fcntl = None


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$CHAINRULE_CACHE``, else
    ``~/.cache/chainrule``. It is created when missing."""
    if cache_dir is None:
        cache_dir = os.environ.get(ENV_VAR) or Path.home() / ".cache" / "chainrule"
    root = Path(cache_dir).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create the cache folder {root}: {exc}") from exc
    if not root.is_dir():
        raise NotADirectoryError(f"the cache folder {root} is not a folder")
    return root


def hold(fd: int) -> None:
    """Mark the temporary file open as ``fd`` as being written, for as long as it stays
    open (an advisory lock), so that :func:`remove_stale_temps` in another process leaves
    it alone. The lock goes away with the process, however it ends."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_stale_temps(
    folder: str | os.PathLike, name: str, suffix: str, min_age_s: float
) -> list[Path]:
    """Remove the temporary files and folders that killed writers of ``folder/name`` left.

    Only entries named ``.<name>.<8 hex digits><suffix>`` (the pattern of
    :func:`chainrule._files.temp_file`; ``name`` may hold ``*`` wildcards) are candidates.
    One is removed when nothing in it changed for ``min_age_s`` seconds and no process
    holds it (:func:`hold`), so another process's download or unpacking in progress is
    never touched. Returns the paths removed.
    """
    pattern = re.compile(r"^\.(.+)\.[0-9a-f]{8}" + re.escape(suffix) + "$")
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    now = time.time()
    for entry in folder.iterdir():
        match = pattern.match(entry.name)
        if not match or not fnmatch.fnmatchcase(match.group(1), name):
            continue
        with contextlib.suppress(OSError):
            if now - _newest_change(entry) < min_age_s:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif not _in_use(entry):
                entry.unlink()
            else:
                continue
            removed.append(entry)
    return removed


def _newest_change(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            with contextlib.suppress(OSError):
                newest = max(newest, child.lstat().st_mtime)
    return newest


def _in_use(path: Path) -> bool:
    if fcntl is None:
        return False
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
