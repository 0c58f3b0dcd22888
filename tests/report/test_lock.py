"""The run folder lock: one holder at a time, the holder's pid in the file, a lock left by
a process that has ended taken over, with flock and with the O_EXCL file alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import chainrule.report.lock as lock_module
from chainrule.report.lock import LOCK_FILE, RunFolderBusy, RunLock, lock_holder


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
