"""The run folder lock: one holder at a time, the holder's pid in the file, a lock left by
a process that has ended taken over, with flock and with the O_EXCL file alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import chainrule.report.lock as lock_module
from chainrule.report.lock import LOCK_FILE, LockFileError, RunFolderBusy, RunLock, lock_holder


@pytest.fixture(params=["flock", "exclusive file"])
def mechanism(request, monkeypatch):
    if request.param == "flock" and lock_module.fcntl is None:
        pytest.skip("no flock here")
    if request.param == "exclusive file":
        monkeypatch.setattr(lock_module, "fcntl", None)
    return request.param


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_one_holder_at_a_time(tmp_path, mechanism):
    first = RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert lock_holder(tmp_path) == os.getpid()
    with pytest.raises(
        RunFolderBusy, match=f"in use by another chainrule process \\(pid {os.getpid()}\\)"
    ):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_FILE).exists() and lock_holder(tmp_path) is None
    with RunLock(tmp_path) as second:
        assert second.held
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.skipif(os.name != "posix", reason="pids of ended processes")
def test_a_lock_left_by_an_ended_process_is_taken_over(tmp_path, mechanism):
    (tmp_path / LOCK_FILE).write_text(f"{dead_pid()}\n")
    assert lock_holder(tmp_path) is None
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


# -- a lock file that is not chainrule's -----------------------------------------------------

posix = pytest.mark.skipif(os.name != "posix", reason="links and FIFOs")


def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("important\n")
    return path


@posix
def test_a_symbolic_link_in_place_of_the_lock_is_refused_never_followed(tmp_path, mechanism):
    run = tmp_path / "run"
    run.mkdir()
    target = victim(tmp_path)
    (run / LOCK_FILE).symlink_to(target)
    with pytest.raises(LockFileError, match="symbolic link.*remove it"):
        RunLock(run).acquire()
    assert target.read_text() == "important\n" and (run / LOCK_FILE).is_symlink()
    assert lock_holder(run) is None  # nothing read through the link either


@posix
def test_a_hard_link_in_place_of_the_lock_is_refused_never_truncated(tmp_path, mechanism):
    run = tmp_path / "run"
    run.mkdir()
    target = victim(tmp_path)
    os.link(target, run / LOCK_FILE)
    with pytest.raises(LockFileError, match="other names"):
        RunLock(run).acquire()
    assert target.read_text() == "important\n"


def test_a_lock_file_holding_anything_but_a_pid_is_not_truncated(tmp_path, mechanism):
    (tmp_path / LOCK_FILE).write_text("my notes, not a process id\n")
    with pytest.raises(LockFileError, match="not a lock file"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_FILE).read_text() == "my notes, not a process id\n"


@posix
def test_a_fifo_in_place_of_the_lock_neither_hangs_nor_is_taken(tmp_path, mechanism):
    os.mkfifo(tmp_path / LOCK_FILE)
    with pytest.raises(LockFileError, match="not a plain file"):
        RunLock(tmp_path).acquire()
    assert lock_holder(tmp_path) is None
