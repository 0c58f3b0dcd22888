"""One process at a time in a run folder: a lock file that holds the writer's pid.

The lock is ``RUN_DIR/.chainrule.lock``. Where the operating system offers ``flock``
(Linux, macOS, the BSDs), the lock is an exclusive ``flock`` on that file, which the
kernel releases when the process ends in any way, SIGKILL included: a lock file left by
a killed process is simply taken by the next one. Elsewhere the file is created with
``O_EXCL`` and holds the owner's pid; a file whose pid is no longer a running process is
stale and taken over (where a pid cannot be checked, the message names the file to
remove). Either way the pid in the file names the owner in messages.

The lock file is opened without following a link (``O_NOFOLLOW``) and checked on the open
descriptor before anything is written to it: a plain file, with no other name (a hard
link), holding nothing but a pid, and still the file under the lock's name. Anything else
in its place (a link to a user's file, a FIFO, a file of the user's) is refused with
`LockFileError`, and left as it is.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from chainrule._files import read_file

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "LockFileError", "RunFolderBusy", "RunLock", "lock_holder"]

LOCK_FILE = ".chainrule.lock"
# A lock file holds a pid and a newline; anything longer is not one.
_PID_BYTES = 24
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


class RunFolderBusy(OSError):
    """Another process holds the run folder's lock."""


class LockFileError(OSError):
    """Something that is not a chainrule lock file has the lock file's name."""


def _pid_of(data: bytes) -> int | None:
    text = data.strip()
    return int(text) if text.isdigit() else None


def _read_pid(path: Path) -> int | None:
    try:
        return _pid_of(read_file(path, _PID_BYTES))
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (True where that cannot be told)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunLock:
    """The lock of run folder ``folder``: `acquire`, then `release` (or ``with``)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock; `RunFolderBusy` names the pid of the process that has it."""
        if self.held:
            return self
        fd = self._flock() if fcntl is not None else self._exclusive()
        try:
            self._check_open(fd)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _refuse(self, why: str) -> LockFileError:
        return LockFileError(
            f"{self.path} {why}, not a lock file chainrule made; chainrule leaves it as it "
            "is: remove it if no chainrule process is using the folder"
        )

    def _open(self, flags: int) -> int:
        """Open the lock file without following a link."""
        try:
            return os.open(self.path, flags | _NOFOLLOW | _FLAGS, 0o666)
        except FileExistsError:
            raise
        except OSError:
            if self.path.is_symlink():
                raise self._refuse("is a symbolic link") from None
            raise

    def _what_is(self) -> str:
        """Why what is under the lock's name is not a lock file ("" if it may be one)."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return ""
        if stat.S_ISLNK(st.st_mode):
            return "is a symbolic link"
        if not stat.S_ISREG(st.st_mode):
            return "is not a plain file"
        if st.st_nlink != 1:
            return "has other names (a hard link)"
        return ""

    def _check_open(self, fd: int) -> None:
        """Refuse to write into the open ``fd`` unless it is a lock file: a plain file of
        one name, holding a pid at most, still the file under the lock's name."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise self._refuse("is not a plain file")
        if st.st_nlink != 1:
            raise self._refuse("has other names (a hard link)")
        if st.st_size > _PID_BYTES or (st.st_size and _pid_of(os.read(fd, _PID_BYTES)) is None):
            raise self._refuse("holds something other than a process id")
        if not self._still_named(st):
            raise self._busy(None)

    def _busy(self, pid: int | None) -> RunFolderBusy:
        who = f"pid {pid}" if pid is not None else "pid unknown"
        return RunFolderBusy(
            f"{self.folder} is in use by another chainrule process ({who}); wait for it "
            "to finish, or choose another folder"
        )

    def _flock(self) -> int:
        for _ in range(100):
            fd = self._open(os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy(_read_pid(self.path)) from None
            except OSError:  # flock refused on what is not a lock file (a FIFO, ...)
                os.close(fd)
                raise self._refuse("is not a plain file") from None
            # The owner before us removes the file as it releases it; a lock on a file
            # that is no longer under this name locks nothing.
            if self._still_named(os.fstat(fd)):
                return fd
            os.close(fd)
        raise self._busy(None)

    def _still_named(self, st: os.stat_result) -> bool:
        """Whether the file open with status ``st`` is the one under the lock's name."""
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)

    def _exclusive(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        for _ in range(100):
            try:
                return self._open(flags)
            except FileExistsError:
                why = self._what_is()
                if why:
                    raise self._refuse(why) from None
                try:
                    data = read_file(self.path, _PID_BYTES)
                except FileNotFoundError:
                    continue
                except OSError:
                    raise self._refuse("holds something other than a process id") from None
                pid = _pid_of(data)
                if data.strip() and pid is None:
                    raise self._refuse("holds something other than a process id") from None
                if pid is not None and _pid_alive(pid):
                    raise self._busy(pid) from None
                if pid is None and os.name != "posix":
                    raise RunFolderBusy(
                        f"{self.folder} is locked by {self.path}; remove that file if no "
                        "chainrule process is writing to the folder"
                    ) from None
                # stale: its process is gone
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        raise self._busy(None)

    def release(self) -> None:
        """Remove the lock file and let go of the lock."""
        if self._fd is None:
            return
        # Removed before it is unlocked, so that no one waits on a file that is gone.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(folder: str | os.PathLike) -> int | None:
    """The pid of the live process holding ``folder``'s lock, None when no one holds it
    (no lock file, or one left by a process that has ended)."""
    path = Path(folder) / LOCK_FILE
    pid = _read_pid(path)  # None for anything but a plain file holding a pid
    if fcntl is None:
        return pid if pid is not None and _pid_alive(pid) else None
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _FLAGS)
    except OSError:  # none there, or a link: no lock
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return pid if pid is not None else -1
    finally:
        os.close(fd)  # closing drops the probe's own shared lock
    return None
