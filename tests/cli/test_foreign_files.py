"""A run never touches a file chainrule did not write: not through a link planted in the
run folder (its lock, metrics, model, checkpoint or plots), not with ``--force`` (which
deletes only what the folder's record of chainrule's files lists), not by writing over a
user's file that has the name of one of chainrule's."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from chainrule._files import RECORD_FILE
from chainrule.cli import main

posix = pytest.mark.skipif(os.name != "posix", reason="symbolic and hard links")
SVM = ["train", "svm", "--epochs", "1", "--quiet"]
NET = ["train", "twolayer", "--hidden", "8", "--epochs", "3", "--seed", "2", "--quiet"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def last_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def victim(tmp_path: Path, name: str = "victim.txt") -> Path:
    path = tmp_path / name
    path.write_text("important\n")
    return path


# -- the lock ------------------------------------------------------------------------------


@posix
@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_the_lock_never_writes_through_a_link(tmp_path, capsys, link):
    run = tmp_path / "run"
    run.mkdir()
    target = victim(tmp_path)
    if link == "symbolic":
        (run / ".chainrule.lock").symlink_to(target)
    else:
        os.link(target, run / ".chainrule.lock")
    line = last_error(*cli(capsys, *SVM, "--out", run)[::2])
    assert ".chainrule.lock" in line and "remove it" in line
    assert target.read_text() == "important\n"


# -- every other file of a run folder ----------------------------------------------------------


@posix
@pytest.mark.parametrize("name", ["metrics.json", "model.npz", "checkpoint.npz", "loss.png"])
def test_a_run_continued_in_its_folder_never_writes_through_a_planted_link(
    tmp_path, capsys, monkeypatch, name
):
    """A shared run folder holding the user's unfinished run: someone plants a link under
    the name of a file the run writes; the same command again never writes through it."""
    from chainrule.train.solver import Solver

    run = tmp_path / "run"
    real = Solver._run_epoch

    def stop_at_epoch_1(self, *args, **kwargs):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Solver, "_run_epoch", stop_at_epoch_1)
    assert cli(capsys, *NET, "--out", run)[0] == 130
    monkeypatch.setattr(Solver, "_run_epoch", real)
    target = victim(tmp_path)
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(target)
    code, _, err = cli(capsys, *NET, "--out", run)
    assert target.read_text() == "important\n"
    assert (run / name).is_symlink()
    if name == "loss.png":  # a plot is not the run's result: the run ends, and says why
        assert code == 0, err
        assert "loss.png" in err and "did not write" in err
    else:
        line = last_error(code, err)
        assert name in line


# -- --force ---------------------------------------------------------------------------------


def test_force_deletes_only_the_files_the_record_lists(tmp_path, capsys):
    run = tmp_path / "r"
    assert cli(capsys, *SVM, "--out", run)[0] == 0
    shutil.copy(run / "model.npz", run / "model-good-backup.npz")
    (run / "figure.png").write_text("x\n")
    line = last_error(*cli(capsys, *SVM, "--out", run, "--force")[::2])
    assert "model-good-backup.npz" in line and "figure.png" in line
    assert (run / "model-good-backup.npz").read_bytes() == (run / "model.npz").read_bytes()
    assert (run / "figure.png").read_text() == "x\n"


@pytest.mark.parametrize("name", ["confusion.png", "model.npz", "metrics.json"])
def test_force_never_replaces_a_user_file_named_like_chainrules(tmp_path, capsys, name):
    run = tmp_path / "r"
    assert cli(capsys, *SVM, "--out", run)[0] == 0
    (run / name).write_text("the user's own\n")
    line = last_error(*cli(capsys, *SVM, "--out", run, "--force")[::2])
    assert name in line and "did not write" in line
    assert (run / name).read_text() == "the user's own\n"


def test_force_clears_a_folder_whose_files_are_all_recorded(tmp_path, capsys):
    run = tmp_path / "r"
    assert cli(capsys, *SVM, "--out", run)[0] == 0
    record = json.loads((run / RECORD_FILE).read_text())
    on_disk = {p.name for p in run.iterdir()} - {RECORD_FILE}
    assert set(record["files"]) == on_disk
    assert cli(capsys, *SVM, "--out", run, "--force", "--epochs", "2")[0] == 0
    assert json.loads((run / "metrics.json").read_text())["params"]["epochs"] == 2


def test_a_copied_run_folder_is_still_a_chainrule_run_folder(tmp_path, capsys):
    """The record names files by their content: a copy (new inodes, new times) is cleared."""
    assert cli(capsys, *SVM, "--out", tmp_path / "r")[0] == 0
    shutil.copytree(tmp_path / "r", tmp_path / "copy")
    assert cli(capsys, *SVM, "--out", tmp_path / "copy", "--force")[0] == 0


def test_force_refuses_a_folder_of_an_older_chainrule_naming_its_files(tmp_path, capsys):
    """A run folder written before the record existed: its files cannot be told from the
    user's, so nothing is deleted and the message says which files are in the way."""
    run = tmp_path / "old"
    assert cli(capsys, *SVM, "--out", run)[0] == 0
    (run / RECORD_FILE).unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    line = last_error(*cli(capsys, *SVM, "--out", run, "--force")[::2])
    assert "older chainrule" in line and "metrics.json" in line and "model.npz" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_record_of_another_user_is_not_trusted(tmp_path, capsys, monkeypatch):
    run = tmp_path / "r"
    assert cli(capsys, *SVM, "--out", run)[0] == 0
    import chainrule._files as files

    monkeypatch.setattr(files, "_owner_ok", lambda st: False)
    line = last_error(*cli(capsys, *SVM, "--out", run, "--force")[::2])
    assert "not clearing" in line
    assert (run / "model.npz").exists()
