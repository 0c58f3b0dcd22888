"""Options every command shares, and what ``eval`` reports as its time."""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import re
import sys
import time

import numpy as np
import pytest
from PIL import Image

from chainrule.cli import COMMANDS, main


@pytest.fixture(scope="module")
def svm_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "svm"
    assert main(["train", "svm", "--epochs", "2", "--out", str(run), "--quiet"]) == 0
    return run


def test_quiet_is_accepted_by_every_command(svm_run, tmp_path, capsys):
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
    runs = {
        "compare": ["compare", "--models", "svm", "--out", tmp_path / "cmp"],
        "train": ["train", "svm", "--epochs", "1", "--out", tmp_path / "t"],
        "eval": ["eval", svm_run],
        "predict": ["predict", svm_run, image],
        "export": ["export", svm_run, "--out", tmp_path / "svm.onnx"],
        "report": ["report", svm_run],
    }
    for name in COMMANDS:
        if name == "graph":  # its own module, with its own tests
            continue
        if name == "export" and importlib.util.find_spec("onnx") is None:
            continue  # an optional extra
        code = main([str(a) for a in runs[name]] + ["--quiet"])
        out, err = capsys.readouterr()
        assert code == 0, (name, err)
        assert err == "", (name, err)
        assert out


class SlowImport(importlib.abc.MetaPathFinder):
    """Importing ``tqdm.auto`` takes 0.3 s longer, as on a slow disk or a cold cache."""

    def find_spec(self, name, path=None, target=None):
        if name == "tqdm.auto":
            time.sleep(0.3)
        return None


def test_eval_times_the_prediction_alone(svm_run, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "tqdm" or m.startswith("tqdm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [SlowImport(), *sys.meta_path])
    start = time.perf_counter()
    # batches of 100: a progress bar is drawn (and its module imported, slowly)
    assert main(["eval", str(svm_run), "--batch-size", "100"]) == 0
    whole = time.perf_counter() - start
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("time:"))
    assert whole > 0.3 and "tqdm" in sys.modules
    value, unit = re.match(r"time:\s+([\d.]+) (us|ms|s|min)", line).groups()
    # 359 digits through a linear model take about a millisecond
    assert unit == "us" or (unit == "ms" and float(value) < 100), line


def test_metrics_record_the_command_and_the_software(svm_run, tmp_path, capsys):
    env = json.loads((svm_run / "metrics.json").read_text())["environment"]
    assert env["command_line"] == f"chainrule train svm --epochs 2 --out {svm_run} --quiet"
    assert env["numpy"] == np.__version__ and env["python"] and env["platform"] and env["blas"]
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "svm", "--out", str(out), "--quiet"]) == 0
    env = json.loads((out / "metrics.json").read_text())["environment"]
    assert env["command_line"].startswith("chainrule compare --models svm")
