"""Where downloaded archives, unpacked datasets and decoded image arrays are kept."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]

ENV_VAR = "CHAINRULE_CACHE"


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


def temp_file(folder: Path, name: str, suffix: str = ".part") -> tuple[int, Path]:
    """Create and open (for writing) a hidden temporary file in ``folder``.

    Unlike ``tempfile.mkstemp`` the file gets the usual permissions (0o666 less the umask),
    so a file renamed into place from it looks like any other file the user writes.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = folder / f".{name}.{os.urandom(4).hex()}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file in {folder}")


def temp_dir(folder: Path, name: str, suffix: str = ".tmp") -> Path:
    """Create a hidden temporary folder in ``folder`` (permissions 0o777 less the umask)."""
    for _ in range(100):
        path = folder / f".{name}.{os.urandom(4).hex()}{suffix}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder in {folder}")
