"""Class names reach the terminal escaped: a name holding control characters (from a
model file, an ONNX file's metadata or an image folder's class folders) is printed as
``repr`` writes it, by every command that prints it, and draws no raw control
characters into matplotlib's warnings."""

from __future__ import annotations

import json
import unicodedata
import warnings

import numpy as np
import pytest

from chainrule.cli import main

HOSTILE = ["\x1b[2Jzero", "one\x07", "two\u202e"]
SHOWN = [repr(name) for name in HOSTILE]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def raw_controls(text: str) -> list[str]:
    """Characters a terminal would act on (newlines and tabs between lines aside)."""
    return [c for c in text if c not in "\n" and unicodedata.category(c) in ("Cc", "Cf")]


@pytest.fixture
def images(tmp_path):
    """An image folder whose three class folders have hostile names, and one image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for label, name in enumerate(HOSTILE):
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 60, size=(4, 4), dtype=np.uint8) + 60 * label
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def run(images, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "softmax", "--data", images, "--out", out, "--quiet")
    assert code == 0, err
    assert raw_controls(err) == []
    return out


def test_predict_escapes_class_names(run, images, capsys):
    image = sorted((images / HOSTILE[2]).iterdir())[0]
    code, out, err = cli(capsys, "predict", run, image, "--top", "3")
    assert code == 0, err
    assert raw_controls(out + err) == []
    assert all(name in out for name in SHOWN)
    code, out, _ = cli(capsys, "predict", run, image, "--json", "--top", "3")
    assert raw_controls(out) == []
    assert {t["class"] for t in json.loads(out)["top"]} == set(HOSTILE)  # JSON keeps them


def test_eval_escapes_class_names(run, images, capsys):
    code, out, err = cli(capsys, "eval", run, "--data", images, "--split", "all")
    assert code == 0, err
    assert raw_controls(out + err) == []
    assert "weakest:" in out and any(name in out for name in SHOWN)


def test_an_error_naming_class_names_is_escaped(run, images, capsys):
    (images / HOSTILE[0]).rename(images / "four\x1b]0;title\x07")
    code, out, err = cli(capsys, "eval", run, "--data", images, "--split", "all", "--quiet")
    assert code == 2
    assert raw_controls(out + err) == []
    assert "\\x1b]0;title\\x07" in err


def test_predict_onnx_escapes_class_names_from_metadata(run, images, capsys, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out_file = tmp_path / "m.onnx"
    assert cli(capsys, "export", run, "--out", out_file)[0] == 0
    image = sorted((images / HOSTILE[0]).iterdir())[0]
    code, out, err = cli(capsys, "predict", "--onnx", out_file, image, "--top", "3")
    assert code == 0, err
    assert raw_controls(out + err) == []
    assert all(name in out for name in SHOWN)


def test_plots_draw_escaped_names_and_warn_nothing_raw(tmp_path):
    from chainrule.report.plots import plot_confusion_matrix, plot_weight_templates

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_confusion_matrix(np.eye(3, dtype=int), HOSTILE, path=tmp_path / "cm.png")
        W = np.random.default_rng(0).normal(size=(16, 3))
        plot_weight_templates(W, (4, 4, 1), HOSTILE, path=tmp_path / "w.png")
    assert [str(w.message) for w in caught if raw_controls(str(w.message))] == []
    assert (tmp_path / "cm.png").stat().st_size > 0


def test_a_dollar_in_a_class_name_is_drawn_as_a_dollar(tmp_path):
    from chainrule.report.plots import _label

    assert _label("$5 bill") == r"\$5 bill"
    assert _label(HOSTILE[0]) == "'\\x1b[2Jzero'" == repr(HOSTILE[0])


def test_run_folder_paths_are_escaped_by_report_and_eval(run, images, tmp_path, capsys):
    import shutil

    hostile = tmp_path / "run\x1b[2J"
    shutil.copytree(run, hostile)
    code, out, err = cli(capsys, "report", hostile)
    assert code == 0, err
    assert raw_controls(out) == [] and "run\\x1b[2J" in out
    code, out, err = cli(capsys, "eval", hostile, "--data", images, "--split", "all", "--quiet")
    assert code == 0, err
    assert raw_controls(out + err) == []
    assert "page:     " in out and "run\\x1b[2J" in out
