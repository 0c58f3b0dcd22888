"""Unpacking the few files a dataset needs from a tar archive, safely and atomically."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .cache import remove_stale_temps, temp_dir

__all__ = ["extract_files"]

_STALE_TEMP_S = 600.0


def extract_files(
    archive: str | os.PathLike,
    target: str | os.PathLike,
    choose: Callable[[str], str | None],
    required: tuple[str, ...] = (),
) -> Path:
    """Copy selected regular files of a tar archive into the folder ``target``.

    ``choose(member_name)`` returns the file name to store the member under (a plain name,
    no folders) or None to skip it. Member paths are never used as paths, links and devices
    are never extracted, so an archive cannot write outside ``target``. The files go to a
    temporary folder that is renamed to ``target`` once complete: ``target`` exists only
    with every ``required`` file in it. Raises ``ValueError`` for an unreadable archive or
    one that lacks a required file.
    """
    import tarfile

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # What an unpacking killed midway left (an unpacking in progress keeps changing it).
    remove_stale_temps(target.parent, target.name, ".tmp", _STALE_TEMP_S)
    tmp = temp_dir(target.parent, target.name)
    try:
        found = set()
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    name = choose(member.name)
                    if name is None:
                        continue
                    if not name or "/" in name or "\\" in name or name in (".", ".."):
                        raise ValueError(f"refusing to store {member.name!r} as {name!r}")
                    source = tar.extractfile(member)
                    with source, open(tmp / name, "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                    found.add(name)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ValueError(f"cannot unpack {os.fspath(archive)}: {exc}") from exc
        missing = [r for r in required if r not in found]
        if missing:
            raise ValueError(f"{os.fspath(archive)} lacks {', '.join(missing)}")
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process unpacked the same archive meanwhile; keep its copy.
            if not all((target / r).is_file() for r in required):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        return target
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
