"""Files that chainrule writes: whole or not at all, never through a link, and in a run
folder never over a file that chainrule did not write.

Every file chainrule writes for the user (model files, checkpoints, metrics, plots,
downloads, image caches, ONNX files) goes through `atomic_write` (or `write_file`, the same
in one call). The content goes to a hidden temporary file in the destination folder,
created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (never an existing file, never through a
link), is flushed to disk, then renamed over the destination: an interrupted or killed
writer never leaves a half-written file under the real name, and a rename replaces a link
itself, never the file it points to. The temporary file has the usual permissions (0o666
less the umask), so the renamed file looks like any other file the user writes
(``tempfile.mkstemp`` would make it owner-only). A temporary file that a killed process
could not remove keeps the ``.<name>.<8 hex digits><suffix>`` pattern, so
`remove_stale_temps` can find it later.

Run folders keep a record of the files chainrule wrote into them (`FileRecord`, the file
``.chainrule-files.json``: each file's name, size and SHA-256). While a process holds a
folder's record open (a run holds its run folder's), every `atomic_write` of that process
into that folder, whatever module it comes from and however the path is spelled, goes
through the record: a file already there under that name is replaced only if the record
says chainrule wrote it (same size and content), anything else (a user's file, a link, a
folder) is refused with `ForeignFileError`, and the file written is recorded. Deleting
(``--force``) asks the record too. A record is trusted only when it is a plain file owned
by the user running chainrule.

Reading goes through `read_file` where the file may have been planted (a run folder's
metrics, a lock file): never through a link, never from a FIFO or device, never more than a
stated number of bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "RECORD_FILE",
    "FileRecord",
    "ForeignFileError",
    "atomic_write",
    "open_file",
    "read_file",
    "remove_stale_temps",
    "temp_dir",
    "temp_file",
    "write_file",
]

RECORD_FILE = ".chainrule-files.json"
_RECORD_FORMAT = "chainrule-files"
_RECORD_VERSION = 1
_RECORD_LIMIT = 16 << 20  # bytes of the record file read (a few hundred per file)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
# Work inside a folder through one open descriptor of it, where the OS allows: a folder
# renamed or replaced by a link while chainrule works cannot redirect its files.
_AT = {os.open, os.stat, os.unlink, os.rename} <= os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


class ForeignFileError(FileExistsError):
    """A file that chainrule did not write is in the way; it is left as it is."""


# -- reading ---------------------------------------------------------------------------------


def _open_plain(path, flags: int = os.O_RDONLY, *, dir_fd: int | None = None, follow=False) -> int:
    """Open a plain file (not a link unless ``follow``, not a FIFO or device) for reading;
    ``OSError`` with a message naming ``path`` otherwise."""
    flags |= _FLAGS | _NONBLOCK | (0 if follow else _NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError:
        if not follow and _is_link(path, dir_fd):
            raise OSError(f"{path} is a symbolic link; chainrule does not follow it") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a plain file")
    return fd


def _is_link(path, dir_fd) -> bool:
    try:
        return stat.S_ISLNK(os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _read_fd(fd: int, limit: int, what) -> bytes:
    size = os.fstat(fd).st_size
    if size > limit:
        raise OSError(f"{what} is larger than {limit:,} bytes ({size:,})")
    chunks, total = [], 0
    while True:
        block = os.read(fd, min(1 << 20, limit + 1 - total))
        if not block:
            return b"".join(chunks)
        chunks.append(block)
        total += len(block)
        if total > limit:  # it grew while being read
            raise OSError(f"{what} is larger than {limit:,} bytes")


def open_file(path: str | os.PathLike, *, follow_symlinks: bool = True) -> IO[bytes]:
    """``path`` opened for reading in binary: a plain file (a link to one only with
    ``follow_symlinks``); ``OSError`` for a FIFO, device or folder, instead of waiting on
    it or reading it."""
    fd = _open_plain(os.fspath(path), follow=follow_symlinks)
    try:
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_file(path: str | os.PathLike, max_bytes: int, *, follow_symlinks: bool = False) -> bytes:
    """The bytes of the plain file ``path``, refusing (``OSError``) a symbolic link (unless
    ``follow_symlinks``), a FIFO, device or folder, and a file over ``max_bytes``."""
    fd = _open_plain(os.fspath(path), follow=follow_symlinks)
    try:
        return _read_fd(fd, max_bytes, path)
    finally:
        os.close(fd)


def _sha256(fd: int) -> str:
    """The SHA-256 of the whole file open as ``fd`` (its position is left at the end)."""
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while block := os.read(fd, 1 << 20):
        h.update(block)
    return h.hexdigest()


# -- one folder, through one descriptor ------------------------------------------------------


class _Folder:
    """A folder and the names in it, reached through one open descriptor where the OS
    allows (``dir_fd``), else through its path."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | _FLAGS) if _AT else None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def name(self, name: str):
        return name if self.fd is not None else self.path / name

    def key(self) -> tuple[int, int] | None:
        if self.fd is None:
            return _key(self.path)
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(self.name(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def open_plain(self, name: str) -> int:
        return _open_plain(self.name(name), dir_fd=self.fd)

    def temp(self, name: str, suffix: str) -> tuple[int, str]:
        """Create and open (read-write) ``.<name>.<random><suffix>``."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _FLAGS
        for _ in range(100):
            tmp = f".{name}.{os.urandom(4).hex()}{suffix}"
            try:
                return os.open(self.name(tmp), flags, 0o666, dir_fd=self.fd), tmp
            except FileExistsError:
                continue
        raise FileExistsError(f"cannot create a temporary file in {self.path}")

    def replace(self, src: str, dst: str) -> None:
        os.replace(self.name(src), self.name(dst), src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name(name), dir_fd=self.fd)


def _key(folder) -> tuple[int, int] | None:
    """What identifies a folder however its path is spelled."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# -- the record of the files chainrule wrote -------------------------------------------------

_OPEN: dict[tuple[int, int], FileRecord] = {}  # the records open in this process
_OPEN_LOCK = threading.Lock()


def _owner_ok(st: os.stat_result) -> bool:
    """A record is trusted only when it belongs to the user running chainrule."""
    return not hasattr(os, "geteuid") or st.st_uid == os.geteuid()


class FileRecord:
    """The files chainrule wrote into one folder, by name, size and SHA-256
    (``folder/.chainrule-files.json``).

    Open it with ``FileRecord.open(folder)`` (or ``with FileRecord.open(folder) as
    record``) and `close` it when done; while it is open, this process's `atomic_write`
    and `write_file` into the folder check and update it (see the module doc). A run
    holds its run folder's record open (``report/run.py``), so that whatever writes a
    file there (a model, a checkpoint, a plot, a page) needs no more than
    ``write_file(RUN_DIR / name, data)``.

    Attributes
    ----------
    path : the folder
    known : whether a trusted record was found (False: a folder of an older chainrule,
        or one whose record is damaged or someone else's; no file there counts as
        chainrule's until chainrule writes it or `adopt` takes it)
    problem : why the record is not known, in words ("" when it is)
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder)
        self._folder = _Folder(folder)
        self._files: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.known, self.problem = self._load()
        # The folder actually opened (its descriptor), however it is named later.
        self._key = self._folder.key()

    @classmethod
    def open(cls, folder: str | os.PathLike) -> FileRecord:
        record = cls(folder)
        with _OPEN_LOCK:
            if record._key in _OPEN:
                record._folder.close()
                raise RuntimeError(f"the record of {folder} is already open in this process")
            _OPEN[record._key] = record
        return record

    def close(self) -> None:
        with _OPEN_LOCK:
            if _OPEN.get(self._key) is self:
                del _OPEN[self._key]
        self._folder.close()

    def __enter__(self) -> FileRecord:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def names(self) -> list[str]:
        return sorted(self._files)

    def _load(self) -> tuple[bool, str]:
        try:
            fd = self._folder.open_plain(RECORD_FILE)
        except FileNotFoundError:
            return False, "it has no record of the files chainrule wrote"
        except OSError as e:
            return False, f"its record of chainrule's files is unreadable ({e})"
        try:
            if not _owner_ok(os.fstat(fd)):
                return False, "its record of chainrule's files belongs to another user"
            saved = json.loads(_read_fd(fd, _RECORD_LIMIT, RECORD_FILE))
        except (OSError, ValueError, RecursionError):
            return False, "its record of chainrule's files is damaged"
        finally:
            os.close(fd)
        files = saved.get("files") if isinstance(saved, dict) else None
        if not isinstance(files, dict) or saved.get("format") != _RECORD_FORMAT:
            return False, "its record of chainrule's files is damaged"
        for name, entry in files.items():
            if _valid_entry(name, entry):
                self._files[name] = entry
        return True, ""

    def _save(self) -> None:
        text = json.dumps(
            {"format": _RECORD_FORMAT, "version": _RECORD_VERSION, "files": self._files},
            indent=1,
            sort_keys=True,
        )
        fd, tmp = self._folder.temp(RECORD_FILE, ".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._folder.replace(tmp, RECORD_FILE)
        except BaseException:
            self._folder.unlink(tmp)
            raise
        self.known, self.problem = True, ""

    # -- asking -----------------------------------------------------------------------------

    def ours(self, name: str) -> bool:
        """Whether ``name`` is a plain file that chainrule wrote: in the record, with the
        recorded size and content (the same inode and time, or else the same SHA-256)."""
        entry = self._files.get(name)
        st = self._folder.lstat(name)
        if entry is None or st is None or not stat.S_ISREG(st.st_mode):
            return False
        if st.st_size != entry["size"]:
            return False
        if (st.st_ino, st.st_mtime_ns) == (entry.get("inode"), entry.get("mtime_ns")):
            return True
        try:
            fd = self._folder.open_plain(name)
        except OSError:
            return False
        try:
            return _sha256(fd) == entry["sha256"]
        finally:
            os.close(fd)

    def unknown(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` that exist (as anything) and are not chainrule's."""
        return [n for n in names if self._folder.lstat(n) is not None and not self.ours(n)]

    # -- changing ---------------------------------------------------------------------------

    def _entry(self, fd: int) -> dict:
        st = os.fstat(fd)
        return {
            "size": st.st_size,
            "sha256": _sha256(fd),
            "inode": st.st_ino,
            "mtime_ns": st.st_mtime_ns,
        }

    def publish(self, tmp: str, name: str, fd: int) -> None:
        """Rename the complete temporary file ``tmp`` (open as ``fd``) to ``name`` and
        record it; refuse (`ForeignFileError`) when ``name`` is there and not chainrule's."""
        with self._lock:
            if self._folder.lstat(name) is not None and not self.ours(name):
                raise ForeignFileError(
                    f"not replacing {self.path / name}: chainrule did not write it; move it "
                    "away or choose another folder"
                )
            entry = self._entry(fd)
            self._folder.replace(tmp, name)
            # The rename keeps the inode; its time is the one just recorded.
            self._files[name] = entry
            self._save()

    def remove(self, name: str) -> None:
        """Delete ``name`` if chainrule wrote it (nothing if it is not there); refuse
        (`ForeignFileError`) a file that chainrule did not write."""
        with self._lock:
            if self._folder.lstat(name) is None:
                changed = self._files.pop(name, None) is not None
            elif not self.ours(name):
                raise ForeignFileError(
                    f"not deleting {self.path / name}: chainrule did not write it"
                )
            else:
                self._folder.unlink(name)
                self._files.pop(name)
                changed = True
            if changed:
                self._save()

    def adopt(self, names: Iterable[str]) -> list[str]:
        """Record the plain files among ``names`` as they are now as chainrule's (a run
        continuing in a folder of an older chainrule takes over its own files); links
        and anything else are left out. Returns the names adopted."""
        adopted = []
        with self._lock:
            for name in names:
                try:
                    fd = self._folder.open_plain(name)
                except OSError:
                    continue
                try:
                    self._files[name] = self._entry(fd)
                finally:
                    os.close(fd)
                adopted.append(name)
            if adopted:
                self._save()
        return adopted


def _valid_entry(name, entry) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and os.sep not in name
        and isinstance(entry, dict)
        and type(entry.get("size")) is int
        and isinstance(entry.get("sha256"), str)
    )


def _record_for(folder: Path) -> FileRecord | None:
    if not _OPEN:
        return None
    key = _key(folder)
    with _OPEN_LOCK:
        return _OPEN.get(key) if key is not None else None


# -- writing ---------------------------------------------------------------------------------


def temp_file(folder: Path, name: str, suffix: str = ".part") -> tuple[int, Path]:
    """Create and open (for writing) a hidden temporary file ``.<name>.<random><suffix>``
    in ``folder``, with permissions 0o666 less the umask. Returns ``(fd, path)``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _FLAGS
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
    In a folder whose `FileRecord` this process holds open, a ``path`` that is there and
    not chainrule's is refused with `ForeignFileError` (after the content was written,
    before anything is replaced), and the file written is recorded.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes in mode 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = _record_for(path.parent)
    folder = record._folder if record is not None else _Folder(path.parent)
    try:
        fd, tmp = folder.temp(path.name, suffix)
        try:
            kwargs = {"encoding": "utf-8"} if mode == "w" else {}
            with os.fdopen(fd, mode, **kwargs) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
                if record is not None:
                    record.publish(tmp, path.name, f.fileno())
                else:
                    folder.replace(tmp, path.name)
        except BaseException:
            folder.unlink(tmp)
            raise
    finally:
        if record is None:
            folder.close()


def write_file(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` with `atomic_write`; returns
    the path. In a run folder that a run of this process holds, the file is checked
    against and added to the folder's record of chainrule's files::

        write_file(run_dir / "report.html", html)
    """
    with atomic_write(path, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)
    return Path(path)


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
