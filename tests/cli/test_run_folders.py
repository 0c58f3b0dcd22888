"""A run folder belongs to one run: a new run into a folder holding another is refused
(``--force`` replaces a chainrule run folder, and nothing else), a second process is kept
out while a run goes on, an interrupted run says so, a killed one is recognised, and the
temporary files of killed writers are cleaned up by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from chainrule._files import FileRecord
from chainrule.cli import main
from chainrule.models.io import load_model
from chainrule.report.run import RunFolder

NET = ["train", "twolayer", "--hidden", "16", "--epochs", "4", "--seed", "5", "--quiet"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def last_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def interrupt_at_epoch(monkeypatch, epoch: int):
    """Make every network stop with Ctrl-C when it starts ``epoch`` (counting from 0)."""
    from chainrule.train.solver import Solver

    real = Solver._run_epoch

    def stopping(self, *args, **kwargs):
        if self.epoch == epoch:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Solver, "_run_epoch", stopping)
    return lambda: monkeypatch.setattr(Solver, "_run_epoch", real)


def same_model(a: Path, b: Path) -> None:
    sa, sb = (load_model(p).model._state_dict() for p in (a, b))
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


# -- one run per folder --------------------------------------------------------------------


def test_a_new_run_into_a_run_folder_is_refused(tmp_path, capsys):
    run = tmp_path / "svm"
    assert cli(capsys, "train", "svm", "--epochs", "2", "--out", run, "--quiet")[0] == 0
    before = (run / "metrics.json").read_bytes()
    code, _, err = cli(capsys, "train", "svm", "--epochs", "3", "--out", run, "--quiet")
    line = last_error(code, err)
    assert "already holds a run" in line and "--force" in line
    assert (run / "metrics.json").read_bytes() == before
    code, _, err = cli(capsys, "compare", "--models", "svm", "--out", run, "--quiet")
    assert "already holds a run" in last_error(code, err)
    assert cli(capsys, "train", "svm", "--epochs", "3", "--out", run, "--quiet", "--force")[0] == 0
    assert metrics(run)["params"]["epochs"] == 3


def test_an_old_checkpoint_never_continues_under_new_settings(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    restore = interrupt_at_epoch(monkeypatch, 2)
    assert cli(capsys, *NET, "--out", run)[0] == 130
    assert (run / "checkpoint.npz").exists() and metrics(run)["status"] == "interrupted"
    new = ["train", "twolayer", "--hidden", "8", "--epochs", "4", "--seed", "1", "--quiet"]
    code, _, err = cli(capsys, *new, "--out", run)
    assert "already holds a run" in last_error(code, err)
    # replaced: the new run starts from nothing, is interrupted, and resumes as itself
    assert cli(capsys, *new, "--out", run, "--force")[0] == 130
    restore()
    assert cli(capsys, "train", "--resume", run, "--quiet")[0] == 0
    assert cli(capsys, *new, "--out", tmp_path / "whole")[0] == 0
    same_model(run, tmp_path / "whole")
    assert metrics(run)["params"]["hidden_size"] == 8


@pytest.mark.parametrize("extra", ["notes.txt", "data/", "model.npz@"])
def test_force_clears_only_a_chainrule_run_folder(tmp_path, capsys, extra):
    run = tmp_path / "run"
    assert cli(capsys, "train", "svm", "--epochs", "1", "--out", run, "--quiet")[0] == 0
    (run / "model.npz").rename(run / "real.npz")
    if extra.endswith("/"):
        (run / extra).mkdir()
    elif extra.endswith("@"):
        (run / extra[:-1]).symlink_to(run / "real.npz")
    else:
        (run / extra).write_text("mine")
    before = sorted(p.name for p in run.iterdir())
    code, _, err = cli(capsys, "train", "svm", "--out", run, "--force", "--quiet")
    assert "not clearing" in last_error(code, err)
    assert sorted(p.name for p in run.iterdir()) == before


def test_force_does_not_clear_a_folder_that_is_not_a_run(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.png").write_bytes(b"png")
    code, _, err = cli(capsys, "train", "svm", "--out", mine, "--quiet")
    assert "already holds files" in last_error(code, err)
    code, _, err = cli(capsys, "compare", "--models", "svm", "--out", mine, "--force", "--quiet")
    assert "not a chainrule run folder" in last_error(code, err)
    assert [p.name for p in mine.iterdir()] == ["photo.png"]


def test_an_empty_folder_takes_a_run_and_a_run_that_never_started_leaves_none(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "train", "svm", "--epochs", "1", "--out", empty, "--quiet")[0] == 0
    assert (empty / "model.npz").exists()
    missing = tmp_path / "never"
    code, _, _ = cli(capsys, "train", "svm", "--data", tmp_path / "nodata", "--out", missing)
    assert code == 2 and not missing.exists()


# -- one process per folder ------------------------------------------------------------


HOLD = """
import sys, time
sys.path[:0] = {path!r}
from chainrule.report.run import RunFolder
folder = RunFolder.start({run!r}, force=True)
print("held", flush=True)
time.sleep(120)
"""


def hold_in_another_process(run: Path) -> subprocess.Popen:
    code = textwrap.dedent(HOLD.format(path=sys.path, run=str(run)))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_kept_out_until_the_first_is_gone(tmp_path, capsys):
    run = tmp_path / "cmp"
    holder = hold_in_another_process(run)
    try:
        for argv in (
            ["compare", "--models", "svm", "--out", run, "--quiet", "--force"],
            ["train", "svm", "--out", run, "--quiet", "--force"],
            ["train", "--resume", run, "--quiet"],
        ):
            code, _, err = cli(capsys, *argv)
            line = last_error(code, err)
            assert f"in use by another chainrule process (pid {holder.pid})" in line
        assert [p.name for p in run.iterdir()] == [".chainrule.lock"]
    finally:
        holder.kill()  # SIGKILL: the lock file stays, its lock goes with the process
        holder.wait()
    assert (run / ".chainrule.lock").exists()
    code, _, _ = cli(capsys, "compare", "--models", "svm", "--out", run, "--quiet", "--force")
    assert code == 0
    assert metrics(run)["status"] == "done" and not (run / ".chainrule.lock").exists()


LONG_RUN = ["-m", "chainrule", "train", "twolayer", "--hidden", "16", "--epochs", "100000"]


def start_long_run(run: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, *LONG_RUN, "--out", str(run), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.npz").exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_sigterm_records_an_interrupted_run(tmp_path):
    run = tmp_path / "run"
    proc = start_long_run(run)
    assert metrics(run)["status"] == "running"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err
    assert metrics(run)["status"] == "interrupted"
    assert RunFolder(run, create=False).status() == "interrupted"
    assert not (run / ".chainrule.lock").exists()


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_a_killed_run_is_recognised_as_not_running(tmp_path, capsys):
    run = tmp_path / "run"
    proc = start_long_run(run)
    assert RunFolder(run, create=False).status() == "running"
    code, _, err = cli(capsys, "train", "--resume", run, "--quiet")
    assert f"pid {proc.pid}" in last_error(code, err)
    proc.kill()
    proc.wait()
    assert metrics(run)["status"] == "running"  # what the killed process last wrote
    assert RunFolder(run, create=False).status() == "interrupted"
    with RunFolder.start(run, resume=True) as folder:  # its lock is free again
        assert folder.status() == "running"


# -- leftovers of killed writers --------------------------------------------------------


def test_the_next_run_removes_temporary_files_of_killed_writers(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    restore = interrupt_at_epoch(monkeypatch, 2)
    assert cli(capsys, *NET, "--out", run)[0] == 130
    restore()
    stale = [
        ".metrics.json.0123abcd.tmp",
        ".checkpoint.npz.deadbeef.tmp",
        ".model.npz.89abcdef.part",
    ]
    kept = [".notes", "x.tmp"]
    for name in stale + kept:
        (run / name).write_bytes(b"half")
    assert cli(capsys, "train", "--resume", run, "--quiet")[0] == 0
    names = {p.name for p in run.iterdir()}
    assert not names & set(stale) and set(kept) <= names


# -- comparisons ----------------------------------------------------------------------------


def test_an_interrupted_comparison_says_so(tmp_path, capsys, monkeypatch):
    import chainrule.experiment as experiment

    real = experiment.run_trial

    def second_is_interrupted(trial, data, output=None, **kwargs):
        if trial.model == "softmax":
            raise KeyboardInterrupt
        return real(trial, data, output, **kwargs)

    monkeypatch.setattr(experiment, "run_trial", second_is_interrupted)
    run = tmp_path / "cmp"
    code, _, _ = cli(capsys, "compare", "--models", "svm,softmax", "--out", run, "--quiet")
    assert code == 130
    record = metrics(run)
    assert record["status"] == "interrupted" and record["command"] == "compare"
    assert (run / "svm.npz").exists() and not (run / ".chainrule.lock").exists()


def test_the_same_command_again_continues_its_run_without_its_checkpoint(
    tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    restore = interrupt_at_epoch(monkeypatch, 2)
    assert cli(capsys, *NET, "--out", run)[0] == 130
    assert (run / "checkpoint.npz").exists()
    restore()
    interrupt_at_epoch(monkeypatch, 0)  # stopped again before its first checkpoint
    assert cli(capsys, *NET, "--out", run)[0] == 130
    # a fit that is not a --resume started from nothing: the old checkpoint went first
    assert not (run / "checkpoint.npz").exists()
    assert metrics(run)["status"] == "interrupted"


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, capsys, monkeypatch):
    restore = interrupt_at_epoch(monkeypatch, 2)
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(capsys, *NET, "--out", a)[0] == 130
    other = [x if x != "5" else "6" for x in NET]  # another seed
    assert cli(capsys, *other, "--out", b)[0] == 130
    restore()
    (a / "checkpoint.npz").replace(b / "checkpoint.npz")  # a checkpoint moved by hand
    code, _, err = cli(capsys, "train", "--resume", b, "--quiet")
    assert "checkpoint.npz, which chainrule did not write" in last_error(code, err)
    # Even a checkpoint that the folder's record takes for its own is checked against the run.
    with FileRecord.open(b) as record:
        record.adopt(["checkpoint.npz"])
    code, _, err = cli(capsys, "train", "--resume", b, "--quiet")
    line = last_error(code, err)
    assert "belongs to another run" in line and "seed" in line
