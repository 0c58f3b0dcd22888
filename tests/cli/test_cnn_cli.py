"""``chainrule train cnn`` -> eval -> predict -> --resume, and ``compare`` with the cnn, on
the bundled digits: the model reads images (N, C, H, W) and its file records their
shape, so every command gives the answers of the trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chainrule.cli import main
from chainrule.data import load
from chainrule.models.io import load_model

FAST = ["--channels", "4,8", "--epochs", "2", "--batch-size", "100", "--seed", "3"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "cnn"
    assert main(["train", "cnn", "--data", "digits", *FAST, "--out", str(run), "--quiet"]) == 0
    return run


def test_train_records_the_image_layout_and_draws_the_filters(digits_cnn):
    files = {p.name for p in digits_cnn.iterdir()}
    assert {"model.npz", "metrics.json", "filters.png", "loss.png", "confusion.png"} <= files
    loaded = load_model(digits_cnn / "model.npz")
    assert loaded.name == "cnn" and loaded.preprocessor.flatten is False
    assert loaded.model.image_shape_ == (8, 8, 1)
    assert tuple(loaded.preprocessor.image_shape_) == (8, 8, 1)
    metrics = json.loads((digits_cnn / "metrics.json").read_text())
    assert metrics["params"]["channels"] == [4, 8] and metrics["params"]["stem"] == "conv"
    assert metrics["val_accuracy"] > 0.5  # two epochs of a tiny network; chance is 0.1


def test_eval_reproduces_the_accuracy_the_training_run_reported(digits_cnn, capsys):
    metrics = json.loads((digits_cnn / "metrics.json").read_text())
    code, out, _ = cli(capsys, "eval", digits_cnn, "--split", "val", "--json")
    assert code == 0
    assert json.loads(out)["accuracy"] == metrics["val_accuracy"]
    code, out, _ = cli(capsys, "eval", digits_cnn, "--data", "digits", "--json")
    test = load("digits", "test")
    loaded = load_model(digits_cnn / "model.npz")
    assert json.loads(out)["accuracy"] == np.mean(loaded.predict(test.images) == test.labels)


def test_predict_on_image_files_and_eval_on_a_folder_agree_with_the_model(
    digits_cnn, tmp_path, capsys
):
    from PIL import Image

    test = load("digits", "test")
    loaded = load_model(digits_cnn / "model.npz")
    expected = loaded.predict(test.images[:20])
    proba = loaded.predict_proba(test.images[:20])
    paths = []
    for i in range(20):
        folder = tmp_path / "folder" / str(test.labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(folder / f"{i}.png")
        Image.fromarray(test.images[i, :, :, 0]).save(paths[-1])
    code, out, _ = cli(capsys, "predict", digits_cnn, *paths, "--json")
    assert code == 0
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert [int(r["class"]) for r in records] == expected.tolist()
    for r, p, label in zip(records, proba, expected):
        assert r["probability"] == pytest.approx(float(p[label]), rel=1e-6)
    code, out, _ = cli(capsys, "eval", digits_cnn, "--data", tmp_path / "folder", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["n"] == 20
    assert result["correct"] == int(np.sum(expected == test.labels[:20]))


def test_resume_an_interrupted_run_gives_the_uninterrupted_model(tmp_path, capsys, monkeypatch):
    from chainrule.train.solver import Solver

    argv = ["train", "cnn", *FAST, "--epochs", "3", "--stem", "whiten", "--quiet"]
    assert cli(capsys, *argv, "--out", tmp_path / "whole")[0] == 0
    real_epoch = Solver._run_epoch

    def interrupted(self, *args):
        if self.epoch == 2:
            raise KeyboardInterrupt
        real_epoch(self, *args)

    monkeypatch.setattr(Solver, "_run_epoch", interrupted)
    assert cli(capsys, *argv, "--out", tmp_path / "cut")[0] == 130
    monkeypatch.setattr(Solver, "_run_epoch", real_epoch)
    assert cli(capsys, "train", "--resume", tmp_path / "cut", "--quiet")[0] == 0
    whole = load_model(tmp_path / "whole" / "model.npz").model._state_dict()
    resumed = load_model(tmp_path / "cut" / "model.npz").model._state_dict()
    assert whole.keys() == resumed.keys()
    for key in whole:
        np.testing.assert_array_equal(whole[key], resumed[key], err_msg=key)


@pytest.mark.parametrize(
    "value, needle",
    [
        ("32,x", "expected channel widths (positive integers) separated by commas"),
        ("32,0", "expected channel widths"),
        ("", "expected channel widths"),
    ],
)
def test_bad_channels_are_one_line_and_exit_2(tmp_path, capsys, value, needle):
    code, _, err = cli(capsys, "train", "cnn", "--channels", value, "--out", tmp_path / "r")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "--channels" in lines[0]
    assert not (tmp_path / "r").exists()


def test_options_of_other_models_do_not_apply(tmp_path, capsys):
    code, _, err = cli(capsys, "train", "cnn", "--batchnorm", "--out", tmp_path / "r")
    assert code == 2 and "--batchnorm does not apply to model cnn" in err


def test_compare_with_the_cnn(tmp_path, capsys, monkeypatch):
    from chainrule.models import convnet_spec

    # the digits recipe, narrower and shorter: the command is under test, not the recipe
    monkeypatch.setitem(convnet_spec.SMALL_DATA_RECIPE, "channels", (4, 8))
    monkeypatch.setitem(convnet_spec.SMALL_DATA_RECIPE, "epochs", 2)
    run = tmp_path / "cmp"
    code, out, _ = cli(capsys, "compare", "--models", "softmax,cnn", "--out", run, "--quiet")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("cnn "))
    assert "channels=4,8" in row
    cnn = json.loads((run / "metrics.json").read_text())["models"]["cnn"]
    # eval of the saved model reproduces the test accuracy the comparison reported
    code, out, _ = cli(capsys, "eval", run, "--model", "cnn", "--data", "digits", "--json")
    assert code == 0 and json.loads(out)["accuracy"] == cnn["test_accuracy"] > 0.5
    assert (run / "cnn_filters.png").exists()


@pytest.mark.parametrize(
    "value, needle",
    [
        ("-1", "logit_scale must be a positive number"),
        ("0", "logit_scale must be a positive number"),
        ("nan", "logit_scale must be a positive number"),
        ("abc", "invalid float value"),
    ],
)
def test_bad_logit_scale_is_one_line_and_exit_2(tmp_path, capsys, value, needle):
    code, _, err = cli(capsys, "train", "cnn", f"--logit-scale={value}", "--out", tmp_path / "r")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "r").exists()
