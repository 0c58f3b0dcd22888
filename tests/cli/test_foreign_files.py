"""A run never touches a file chainrule did not write: not through a link planted in the
run folder (its lock, metrics, model, checkpoint, plots, page or pictures), not with
``--force`` (which deletes only what the folder's record of chainrule's files lists), not
by writing over a user's file that has the name of one of chainrule's. The same holds for
what ``chainrule report`` and ``chainrule eval`` write into a run folder, and for the
pages they and ``chainrule graph`` write elsewhere."""

from __future__ import annotations

import hashlib
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
@pytest.mark.parametrize(
    "name",
    [
        "metrics.json", "model.npz", "checkpoint.npz", "loss.png", "report.html", "samples.png",
        "mistakes.png",
    ],
)  # fmt: skip
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
    if name.endswith((".png", ".html")):  # not the run's result: it ends, and says why
        assert code == 0, err
        assert name in err and "did not write" in err
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


# -- pages: report.html, its pictures, eval's additions ------------------------------------


def files_of(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


def test_force_after_a_compare_with_its_page_and_an_eval_clears_all_chainrule_wrote(
    tmp_path, capsys, digits_comparison
):
    run = tmp_path / "cmp"
    shutil.copytree(digits_comparison, run)
    assert cli(capsys, "eval", run, "--model", "svm", "--quiet")[0] == 0
    assert cli(capsys, "report", run)[0] == 0
    names = {p.name for p in run.iterdir()}
    sheets = {n for n in names if n.startswith("svm_eval_test_")}
    assert len(sheets) == 1 and sheets.pop().endswith("_mistakes.png")
    assert {"report.html", "samples.png", "svm_mistakes.png", "knn_mistakes.png"} <= names
    # every file there is in the record, as it is now (eval rewrote metrics.json and the page)
    record = json.loads((run / RECORD_FILE).read_text())["files"]
    assert set(record) == names - {RECORD_FILE}
    for name, entry in record.items():
        data = (run / name).read_bytes()
        assert (entry["size"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    # a file of the user's among them: --force deletes nothing, naming it
    (run / "notes.txt").write_text("mine\n")
    before = files_of(run)
    again = ["compare", "--models", "svm", "--out", run, "--force", "--quiet"]
    line = last_error(*cli(capsys, *again)[::2])
    assert "notes.txt" in line and "did not write" in line
    assert files_of(run) == before
    # without it, --force clears the old run whole: pages, sheets, eval's sheet and all
    (run / "notes.txt").unlink()
    assert cli(capsys, *again)[0] == 0
    left = {p.name for p in run.iterdir()}
    assert not left & {"knn.npz", "knn_mistakes.png", "knn_cv.png"}
    assert not [n for n in left if "_eval_" in n]
    assert {"svm.npz", "report.html", "samples.png", "svm_mistakes.png"} <= left
    record = json.loads((run / RECORD_FILE).read_text())["files"]
    assert set(record) == left - {RECORD_FILE}
    assert "evaluations" not in json.loads((run / "metrics.json").read_text())


@posix
@pytest.mark.parametrize("command", ["report", "eval"])
def test_a_planted_link_named_report_html_is_never_written_through(
    tmp_path, capsys, digits_comparison, command
):
    run = tmp_path / "cmp"
    shutil.copytree(digits_comparison, run)
    target = victim(tmp_path)
    (run / "report.html").unlink()
    (run / "report.html").symlink_to(target)
    before = files_of(run)
    if command == "report":
        line = last_error(*cli(capsys, "report", run)[::2])
    else:  # eval's result is an addition: the evaluation is printed, the folder refused
        code, out, err = cli(capsys, "eval", run, "--model", "svm", "--quiet")
        assert code == 0 and "accuracy:" in out and "page:" not in out
        line = err.strip().splitlines()[-1]
        assert "warning" in line
    assert "report.html" in line and "did not write" in line
    assert target.read_text() == "important\n"
    assert (run / "report.html").is_symlink()
    assert files_of(run) == before  # eval wrote nothing: not its sheet, not metrics.json


@posix
def test_a_user_page_in_a_run_folder_is_left_alone_by_report(tmp_path, capsys, digits_comparison):
    run = tmp_path / "cmp"
    shutil.copytree(digits_comparison, run)
    (run / "report.html").write_text("<p>my own page</p>\n")
    line = last_error(*cli(capsys, "report", run)[::2])
    assert "report.html" in line and "did not write" in line
    assert (run / "report.html").read_text() == "<p>my own page</p>\n"


@posix
@pytest.mark.parametrize("force", [False, True])
def test_the_page_of_several_runs_never_follows_a_link(tmp_path, capsys, digits_comparison, force):
    target = victim(tmp_path, "victim.html")
    out = tmp_path / "runs.html"
    out.symlink_to(target)
    argv = ["report", digits_comparison, digits_comparison, "--out", out]
    line = last_error(*cli(capsys, *argv, *(["--force"] if force else []))[::2])
    assert "symbolic link" in line
    assert target.read_text() == "important\n" and out.is_symlink()


@posix
@pytest.mark.parametrize("option,name", [("--html", "g.html"), ("--out", "g.dot")])
def test_graph_pages_replace_a_link_never_the_file_it_points_to(tmp_path, capsys, option, name):
    target = victim(tmp_path)
    out = tmp_path / name
    out.symlink_to(target)
    code, _, err = cli(capsys, "graph", "x * y", "x=2", "y=3", option, out)
    assert code == 0, err
    assert target.read_text() == "important\n"
    assert not out.is_symlink() and "x" in out.read_text()
