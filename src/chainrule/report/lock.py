"""One process at a time in a run folder: a lock file that holds the writer's pid.

The lock is ``RUN_DIR/.chainrule.lock``. Where the operating system offers ``flock``
(Linux, macOS, the BSDs), the lock is an exclusive ``flock`` on that file, which the
kernel releases when the process ends in any way, SIGKILL included: a lock file left by
a killed process is simply taken by the next one. Elsewhere the file is created with
``O_EXCL`` and holds the owner's pid; a file whose pid is no longer a running process is
stale and taken over (where a pid cannot be checked, the message names the file to
remove). Either way the pid in the file names the owner in messages.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunFolderBusy", "RunLock", "lock_holder"]

LOCK_FILE = ".chainrule.lock"


class RunFolderBusy(OSError):
    """Another process holds the run folder's lock."""


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


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
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _busy(self, pid: int | None) -> RunFolderBusy:
        who = f"pid {pid}" if pid is not None else "pid unknown"
        return RunFolderBusy(
            f"{self.folder} is in use by another chainrule process ({who}); wait for it "
            "to finish, or choose another folder"
        )

    def _flock(self) -> int:
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy(_read_pid(self.path)) from None
            # The owner before us removes the file as it releases it; a lock on a file
            # that is no longer under this name locks nothing.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)
        raise self._busy(None)

    def _exclusive(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        for _ in range(100):
            try:
                return os.open(self.path, flags, 0o666)
            except FileExistsError:
                pid = _read_pid(self.path)
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
    if not path.exists():
        return None
    pid = _read_pid(path)
    if fcntl is None:
        return pid if pid is not None and _pid_alive(pid) else None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return pid if pid is not None else -1
    finally:
        os.close(fd)  # closing drops the probe's own shared lock
    return None
