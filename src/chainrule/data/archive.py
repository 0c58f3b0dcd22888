"""Unpacking the few files a dataset needs from a tar archive, safely and atomically."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .cache import remove_stale_temps, temp_dir

__all__ = ["extract_files", "read_checksums"]

_STALE_TEMP_S = 600.0


def extract_files(
    archive: str | os.PathLike,
    target: str | os.PathLike,
    choose: Callable[[str], str | None],
    required: tuple[str, ...] = (),
    checksums: str | None = None,
) -> Path:
    """Copy selected regular files of a tar archive into the folder ``target``.

    ``choose(member_name)`` returns the file name to store the member under (a plain name,
    no folders) or None to skip it. Member paths are never used as paths, links and devices
    are never extracted, so an archive cannot write outside ``target``. The files go to a
    temporary folder that is renamed to ``target`` once complete: ``target`` exists only
    with every ``required`` file in it. With ``checksums`` (a file name), the SHA-256 of
    every stored file is written to ``target/checksums`` (see :func:`read_checksums`), so
    that a reader can check the files against what came out of the archive. Raises
    ``ValueError`` for an unreadable archive or one that lacks a required file.
    """
    import tarfile

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # What an unpacking killed midway left (an unpacking in progress keeps changing it).
    remove_stale_temps(target.parent, target.name, ".tmp", _STALE_TEMP_S)
    tmp = temp_dir(target.parent, target.name)
    try:
        found: dict[str, str] = {}
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
                    found[name] = _copy(tar.extractfile(member), tmp / name)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ValueError(f"cannot unpack {os.fspath(archive)}: {exc}") from exc
        missing = [r for r in required if r not in found]
        if missing:
            raise ValueError(f"{os.fspath(archive)} lacks {', '.join(missing)}")
        if checksums is not None:
            lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(found.items()))
            (tmp / checksums).write_text(lines, encoding="utf-8")
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


def _copy(source, dest: Path) -> str:
    """Copy the open archive member ``source`` to ``dest``; return its SHA-256."""
    h = hashlib.sha256()
    with source, open(dest, "wb") as out:
        for block in iter(lambda: source.read(1 << 20), b""):
            h.update(block)
            out.write(block)
    return h.hexdigest()


def read_checksums(path: str | os.PathLike) -> dict[str, str]:
    """``{file name: SHA-256 hex}`` from a checksum list written by :func:`extract_files`
    (``sha256sum`` format). Raises ``ValueError`` for a missing or garbled list."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{os.fspath(path)} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {os.fspath(path)}: {exc}") from exc
    sums = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"{os.fspath(path)} is not a list of SHA-256 checksums")
        sums[name] = digest
    return sums
