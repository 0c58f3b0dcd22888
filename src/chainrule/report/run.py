"""Run folders: what a training or comparison run leaves behind.

A run folder holds the model file(s) (``model.npz`` for ``chainrule train``, ``<name>.npz``
per model for ``chainrule compare``, written by the experiment layer), ``metrics.json``
(accuracies, timings, hyperparameters, histories, the data used) and PNG plots. Files
are written atomically, so an interrupted run never leaves a half-written
``metrics.json`` or model behind, and never through a link.

A run folder belongs to one run. :meth:`RunFolder.start` opens it for a run: it takes the
folder's lock (``report/lock.py``: a second process is refused, naming the first one's
pid), opens the folder's record of the files chainrule wrote (`chainrule._files.FileRecord`:
while the run holds the folder, every file written into it is checked against the record
and added to it, and a file chainrule did not write is never replaced), refuses a new run
into a folder that holds anything but leftovers of killed writers unless told to replace
it (``force``, which deletes only the files the record lists, unchanged, and refuses a
folder holding anything else), and removes the temporary files that killed writers left.
A file that something other than a run writes into a run folder (a report page) is
recorded the same way: ``folder.write_file(name, data)`` on a started `RunFolder`.

``metrics.json`` records a ``status``: ``running`` while the run goes on, ``interrupted``
(Ctrl-C, SIGTERM) or ``failed`` when it stopped, ``done``; a ``running`` folder whose lock
no live process holds (a SIGKILLed run) reads as ``interrupted`` (:meth:`RunFolder.status`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from chainrule._files import (
    RECORD_FILE,
    FileRecord,
    read_file,
    remove_stale_temps,
    write_file,
)
from chainrule.report.lock import LOCK_FILE, RunLock, lock_holder

__all__ = [
    "METRICS_FILE",
    "RunFolder",
    "RunFolderError",
    "default_run_dir",
    "to_jsonable",
]

METRICS_FILE = "metrics.json"
# The longest metrics.json read (histories and search records of long runs take a few MB).
METRICS_LIMIT = 256 << 20
# The temporary files of chainrule._files (a writer killed before it renamed its file).
_TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}(?P<suffix>\.tmp|\.part)$")


class RunFolderError(ValueError):
    """A run folder that cannot take this run; the message is one line for the user."""


def to_jsonable(value: Any) -> Any:
    """``value`` with NumPy arrays and scalars, tuples, Paths made JSON-able.

    Non-finite floats become ``None`` (JSON has no NaN); dict keys become strings.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, np.random.Generator):
        return None
    return repr(value)


def _listed(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def default_run_dir(kind: str, root: str | os.PathLike = "runs") -> Path:
    """``runs/<kind>-YYYYmmdd-HHMMSS`` (with ``-2``, ``-3``... if that folder exists)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{kind}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class RunFolder:
    """A folder that receives a run's model files, metrics and plots.

    Parameters
    ----------
    path : the folder; created (with parents) unless ``create=False``
    create : make the folder if it is missing

    Attributes
    ----------
    path : Path
    plots : list of str, file names of the plots written through :meth:`plot`
    plot_errors : dict file name -> message for plots that could not be drawn
    record : the folder's `FileRecord` while a run holds it (:meth:`start`), else None
    """

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"run folder {self.path} exists and is not a folder")
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise FileNotFoundError(f"run folder {self.path} does not exist")
        self.plots: list[str] = []
        self.plot_errors: dict[str, str] = {}
        self._lock: RunLock | None = None
        self.record: FileRecord | None = None
        self._created = False

    # -- one run per folder -------------------------------------------------------------

    @classmethod
    def start(
        cls,
        path: str | os.PathLike,
        *,
        resume: bool = False,
        force: bool = False,
        same_run: Callable[[dict], bool] | None = None,
        writes: tuple[str, ...] = (),
    ):
        """Open ``path`` for one run: lock it, open its record, make sure it is the run's
        own, clean it.

        A new run (``resume=False``) takes a missing or empty folder, or one whose
        ``metrics.json`` ``same_run(metrics)`` recognises as the run's own (the same run
        started again); a folder holding another run is refused unless ``force``, which
        clears it first: it deletes the files the folder's record says chainrule wrote,
        and refuses (naming them) a folder holding anything else. ``resume=True`` takes
        the existing folder as it is. A run that continues in its folder (the same run, or
        a resume) is refused when a file of ``writes`` (names the run will write) is there
        and not chainrule's; in a folder of an older chainrule, which kept no record, it
        takes those files over as its own. Temporary files of killed writers are removed.
        Raises `RunFolderError`, `RunFolderBusy` (an ``OSError``) while another process
        holds the folder, or ``LockFileError`` (an ``OSError``) when something that is not
        a lock file has the lock's name. Call :meth:`release` (or use ``with``) when the
        run ends.
        """
        path = Path(path)
        created = not path.exists()
        if resume and created:
            raise RunFolderError(f"run folder {path} does not exist")
        folder = cls(path)
        folder._created = created
        folder._lock = RunLock(path).acquire()
        try:
            folder.record = FileRecord.open(path)
            if resume or (same_run is not None and folder._is_own(same_run)):
                folder._continue(writes)
            else:
                folder._make_fresh(force)
            folder.remove_stale_temps()
        except BaseException:
            folder.release()
            raise
        return folder

    def _entries(self) -> list[Path]:
        """What the folder holds besides its lock, its record and temporary files."""
        return sorted(
            p
            for p in self.path.iterdir()
            if p.name not in (LOCK_FILE, RECORD_FILE) and not _TEMP_FILE.match(p.name)
        )

    def is_run(self) -> bool:
        """Whether the folder holds a chainrule run: its ``metrics.json`` says so."""
        try:
            metrics = self.read_metrics()
        except (OSError, ValueError):
            return False
        return isinstance(metrics, dict) and metrics.get("command") in ("train", "compare")

    def _is_own(self, same_run: Callable[[dict], bool]) -> bool:
        try:
            metrics = self.read_metrics()
        except (OSError, ValueError):
            return False
        return isinstance(metrics, dict) and bool(metrics) and same_run(metrics)

    def _continue(self, writes: tuple[str, ...]) -> None:
        """A run continuing in its folder: the files it will write must be chainrule's."""
        if not self.record.known:  # a folder of an older chainrule: its run's own files
            self.record.adopt(writes)
        foreign = self.record.unknown(writes)
        if foreign:
            raise RunFolderError(
                f"{self.path} holds {_listed(foreign)}, which chainrule did not write and "
                "this run would replace; move them away, or choose another folder"
            )

    def _make_fresh(self, force: bool) -> None:
        entries = [p.name for p in self._entries()]
        if not entries:
            return
        names = ", ".join(entries[:4]) + (" ..." if len(entries) > 4 else "")
        what = "a run" if self.is_run() else "files"
        if not force:
            raise RunFolderError(
                f"{self.path} already holds {what} ({names}); replace it with --force, "
                "or choose another folder"
            )
        record = self.record
        if not record.known and self.is_run():
            raise RunFolderError(
                f"not clearing {self.path}: it was written by an older chainrule, which kept "
                "no record of its files, so they cannot be told from files of yours "
                f"({_listed(entries)}); remove them yourself, or choose another folder"
            )
        if not record.known:
            raise RunFolderError(
                f"not clearing {self.path}: it is not a chainrule run folder ({record.problem}; "
                f"it holds {_listed(entries)}); choose another folder"
            )
        foreign = record.unknown(entries)
        if foreign:
            raise RunFolderError(
                f"not clearing {self.path}: it holds files chainrule did not write "
                f"({_listed(foreign)}); move them away, or choose another folder"
            )
        for name in entries:
            record.remove(name)

    def remove_stale_temps(self) -> list[Path]:
        """Remove the temporary files writers left when they were killed (call it while
        holding the lock: no other writer can be at work)."""
        removed = []
        for p in list(self.path.iterdir()):
            m = _TEMP_FILE.match(p.name)
            if m and p.is_file() and not p.is_symlink():
                removed += remove_stale_temps(self.path, m["name"], m["suffix"])
        return removed

    def release(self) -> None:
        """Close the record and let go of the folder's lock; a folder this run created and
        left empty goes."""
        if self.record is not None:
            self.record.close()
            self.record = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only succeeds while empty

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def status(self) -> str | None:
        """The run's ``status`` in ``metrics.json`` (None without one); a run recorded
        as ``running`` that no live process holds was killed: ``interrupted``."""
        try:
            metrics = self.read_metrics()
        except (OSError, ValueError):
            return None
        status = metrics.get("status") if isinstance(metrics, dict) else None
        if status == "running" and self._lock is None and lock_holder(self.path) is None:
            return "interrupted"
        return status

    def file(self, name: str) -> Path:
        """Path of ``name`` inside the folder."""
        return self.path / name

    def write_file(self, name: str, data: bytes | str) -> Path:
        """Write ``data`` (bytes, or text as UTF-8) to the file ``name`` of the folder,
        atomically; returns its path. While a run holds the folder (:meth:`start`), the
        file is checked against the folder's record (a file of that name that chainrule
        did not write is refused with ``ForeignFileError``) and recorded, so that
        ``force`` clears it with the run. The one call a writer of another file needs::

            folder.write_file("report.html", html)

        A writer that wants a file object uses the same writer, recorded the same way:
        ``with chainrule._files.atomic_write(folder.file(name)) as f: ...``. Outside a
        run, hold the folder first: ``with RunFolder.start(path, resume=True) as folder:
        folder.write_file(...)``.
        """
        return write_file(self.file(name), data)

    def remove(self, name: str) -> None:
        """Delete the file ``name`` of a started folder if chainrule wrote it (nothing if it
        is not there); ``ForeignFileError`` for a file chainrule did not write."""
        if self.record is None:
            raise RuntimeError(f"{self.path} is not held by a run (use RunFolder.start)")
        self.record.remove(name)

    def write_metrics(self, metrics: dict, name: str = METRICS_FILE) -> Path:
        """Write ``metrics`` as indented JSON (NumPy values converted), atomically."""
        return self.write_file(name, json.dumps(to_jsonable(metrics), indent=2) + "\n")

    def read_metrics(self, name: str = METRICS_FILE) -> dict:
        """The metrics written earlier; ``{}`` when there are none yet. ``OSError`` for a
        link, a FIFO or a file over `METRICS_LIMIT` bytes, ``ValueError`` for bad JSON."""
        try:
            data = read_file(self.file(name), METRICS_LIMIT)
        except FileNotFoundError:
            return {}
        try:
            return json.loads(data.decode("utf-8"))
        except RecursionError:
            raise ValueError(f"{self.file(name)} is nested too deeply") from None

    def plot(self, function: Callable[..., Any], name: str, *args, **kwargs) -> Path | None:
        """Call ``function(*args, path=<folder>/<name>, **kwargs)``, a ``plot_xxx`` function.

        A plot that fails (bad values, a matplotlib problem) must not lose the run that
        produced it: the error is recorded in :attr:`plot_errors` and ``None`` returned.
        """
        path = self.file(name)
        try:
            function(*args, path=path, **kwargs)
        except Exception as e:  # any plotting failure is reported, not raised
            self.plot_errors[name] = f"{type(e).__name__}: {e}"
            return None
        self.plots.append(name)
        return path
