"""The run folders' pages as files: what they hold, what they link, what they escape,
and the commands that write them (train, compare, report, eval)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from chainrule.cli import main
from chainrule.experiment import recording
from chainrule.report.lock import RunLock
from chainrule.report.run import RunFolder
from chainrule.report.text import format_accuracy


def page_of(folder) -> str:
    return (folder / "report.html").read_text(encoding="utf-8")


def linked_files(page: str) -> set[str]:
    return set(re.findall(r'(?:src|href)="([^"#][^"]*)"', page))


def test_a_comparisons_page_holds_every_model_and_links_only_files_beside_it(digits_comparison):
    page = page_of(digits_comparison)
    metrics = json.loads((digits_comparison / "metrics.json").read_text())
    for name, record in metrics["models"].items():
        assert f'id="model-{name}"' in page
        assert format_accuracy(record["val_accuracy"]) in page
        assert format_accuracy(record["test_accuracy"]) in page
        assert record["settings"] in page
        assert record["mistakes"]["total"] == round((1 - record["val_accuracy"]) * 288)
    links = linked_files(page)
    assert {"knn.npz", "twolayer_loss.png", "samples.png", "svm_mistakes.png"} <= links
    for name in links:
        assert (digits_comparison / name).is_file(), name  # nothing outside the folder
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")
    assert '<meta name="generator" content="chainrule report">' in page
    # the leaderboard comes first, best validation accuracy on top
    ranked = sorted(metrics["models"], key=lambda n: -metrics["models"][n]["val_accuracy"])
    board = page[page.index('id="leaderboard"') : page.index('id="data"')]
    assert [board.index(f'href="#model-{n}"') for n in ranked] == sorted(
        board.index(f'href="#model-{n}"') for n in ranked
    )


def write_png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value, dtype=np.uint8)).save(path)


def test_class_and_file_names_are_escaped(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    evil_class = '<img src=x onerror="alert(1)">'
    evil_file = "<script>alert(2)</script>.png"
    rng = np.random.default_rng(0)
    for c in (evil_class, "a&b"):
        for i in range(12):
            write_png(root / c / f"{i:02d}.png", int(rng.integers(0, 256)))
    write_png(root / "a&b" / evil_file, 3)
    out = tmp_path / "run"
    assert (
        main(["train", "knn", "--k", "1", "--data", str(root), "--out", str(out), "--quiet"]) == 0
    )
    page = page_of(out)
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page or (
        '&lt;img src=x onerror="alert(1)"&gt;' in page
    )
    assert "a&amp;b" in page
    assert "<title>chainrule train knn on " in page
    mistakes = json.loads((out / "metrics.json").read_text())["mistakes"]
    files = [m["file"] for m in mistakes["items"]]
    assert all(f.split("/")[0] in (evil_class, "a&b") for f in files)
    for f in files:
        assert f.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in page


def test_report_writes_the_page_again_and_refuses_what_is_not_a_run(
    tmp_path, digits_comparison, capsys
):
    run = tmp_path / "cmp"
    shutil.copytree(digits_comparison, run)
    before = page_of(run)
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out == f"written: {run / 'report.html'}\n"
    assert page_of(run) == before
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a run folder: it has no metrics.json" in capsys.readouterr().err
    with RunLock(run).acquire():  # a run is writing into it
        assert main(["report", str(run)]) == 2
        assert "its page is written when the run ends" in capsys.readouterr().err


def test_a_page_comparing_runs_links_them_and_keeps_other_files(
    tmp_path, digits_comparison, capsys
):
    page = tmp_path / "pages" / "runs.html"
    page.parent.mkdir()
    page.write_text("my notes")
    argv = ["report", str(digits_comparison), str(digits_comparison), "--out", str(page)]
    assert main(argv) == 2
    assert "is not a page chainrule wrote" in capsys.readouterr().err
    assert page.read_text() == "my notes"
    assert main([*argv, "--force"]) == 0
    text = page.read_text()
    assert text.count('class="badge">best') == 1
    for href in linked_files(text):
        assert (page.parent / href).resolve().is_file(), href
    assert main(argv) == 0  # its own page it replaces


def test_eval_adds_its_result_to_the_runs_page(tmp_path, digits_comparison, capsys):
    run = tmp_path / "cmp"
    shutil.copytree(digits_comparison, run)
    assert main(["eval", str(run), "--model", "svm"]) == 0
    assert capsys.readouterr().out.endswith(f"page:     {run / 'report.html'}\n")
    metrics = json.loads((run / "metrics.json").read_text())
    (record,) = metrics["evaluations"]
    assert (record["model_file"], record["data"], record["split"]) == ("svm.npz", "digits", "test")
    assert record["mistakes"]["total"] == record["n"] - record["correct"]
    assert (run / record["mistakes"]["sheet"]).is_file()
    page = page_of(run)
    assert "svm on digits (test)" in page and format_accuracy(record["accuracy"]) in page
    assert (
        metrics["models"] == json.loads((digits_comparison / "metrics.json").read_text())["models"]
    )
    # the same evaluation again replaces it; another split is added
    assert main(["eval", str(run), "--model", "svm", "--quiet"]) == 0
    assert main(["eval", str(run), "--model", "svm", "--split", "val", "--quiet"]) == 0
    splits = [e["split"] for e in json.loads((run / "metrics.json").read_text())["evaluations"]]
    assert splits == ["test", "val"]
    # --no-page leaves the folder as it was; a model file outside a run folder has no page
    before = (run / "metrics.json").read_bytes()
    assert main(["eval", str(run), "--model", "knn", "--no-page", "--quiet"]) == 0
    assert (run / "metrics.json").read_bytes() == before
    shutil.copy(run / "knn.npz", tmp_path / "knn.npz")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "knn.npz"), "--quiet"]) == 0
    assert "page:" not in capsys.readouterr().out


def test_a_run_that_fails_still_gets_its_page(tmp_path):
    folder = RunFolder(tmp_path / "run")
    metrics = {"command": "train", "args": {"model": "svm"}, "data": {"name": "digits"}}
    with pytest.raises(RuntimeError), recording(folder, metrics):
        raise RuntimeError("the disk is full")
    page = page_of(tmp_path / "run")
    assert "This run is <b>failed</b>: RuntimeError: the disk is full" in page


def test_force_replaces_a_run_with_its_page_and_pictures(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "svm", "--epochs", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert {"report.html", "samples.png", "mistakes.png"} <= {p.name for p in out.iterdir()}
    assert main(argv[:-1] + ["--epochs", "2", "--quiet"]) == 2  # another run: refused
    assert main([*argv, "--force"]) == 0
    assert (out / "report.html").is_file()


def test_a_killed_runs_page_says_interrupted_and_a_damaged_record_is_one_line(
    tmp_path, digits_comparison, capsys
):
    run = tmp_path / "cmp"
    shutil.copytree(digits_comparison, run)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "running"}))
    assert main(["report", str(run)]) == 0  # nobody holds the lock: the run was killed
    assert "This run is <b>interrupted</b>" in page_of(run)
    (run / "metrics.json").write_text(json.dumps({**metrics, "models": {"svm": {"plots": 3}}}))
    assert main(["report", str(run)]) == 2
    assert "its metrics.json is damaged" in capsys.readouterr().err


def test_force_keeps_refusing_a_folder_with_someone_elses_page(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "svm", "--epochs", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    (out / "notes.html").write_text("mine")
    assert main([*argv, "--force"]) == 2
    assert (out / "notes.html").read_text() == "mine"
