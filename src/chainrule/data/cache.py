"""Where downloaded archives, unpacked datasets and decoded image arrays are kept."""

from __future__ import annotations

import os
from pathlib import Path

from chainrule._files import temp_dir, temp_file  # noqa: F401  (re-exported)

__all__ = ["cache_root", "temp_dir", "temp_file"]

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
