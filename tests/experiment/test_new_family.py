"""A model family registered with a spec runs through train, compare, eval and predict with
no change to the command line or the experiment layer (the toy of conftest.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chainrule.cli import main
from chainrule.models.io import load_model


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def last_error(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_train_with_its_option_then_eval(toy_family, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = cli(capsys, "train", "nearest", "--shrink", "0.5", "--out", run, "--quiet")
    assert code == 0, err
    assert out.splitlines()[0] == "model:      nearest shrink=0.5"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["params"] == {"shrink": 0.5, "verbose": False}  # --quiet reaches verbose
    assert {"model.npz", "means.png", "confusion.png"} <= {p.name for p in run.iterdir()}
    assert metrics["plot_errors"] == {}
    loaded = load_model(run / "model.npz")
    assert loaded.name == "nearest" and loaded.model.shrink == 0.5
    code, out, _ = cli(capsys, "eval", run, "--split", "val", "--json")
    assert code == 0 and json.loads(out)["accuracy"] == metrics["val_accuracy"]


def test_its_defaults_and_search_and_the_one_parameter_search_plot(toy_family, tmp_path, capsys):
    run = tmp_path / "default"
    assert cli(capsys, "train", "nearest", "--out", run, "--quiet")[0] == 0
    assert json.loads((run / "metrics.json").read_text())["params"]["shrink"] == 0.1
    run = tmp_path / "search"
    code, _, err = cli(capsys, "train", "nearest", "--search", "--out", run, "--quiet")
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    search = metrics["search"]
    assert search["grid"] == {"shrink": [0.0, 0.3, 0.9]} and len(search["results"]) == 3
    best = max(search["results"], key=lambda r: r["val_acc"])
    assert metrics["params"]["shrink"] == best["params"]["shrink"]
    assert metrics["val_accuracy"] == best["val_acc"]
    # the search's model is the final one (the spec says so): its fit time is recorded
    assert metrics["fit_time_s"] == best["fit_time"]
    assert (run / "search.png").exists() and metrics["plot_errors"] == {}


def test_options_apply_to_the_models_that_declare_them(toy_family, tmp_path, capsys):
    out = tmp_path / "never"
    cases = [
        (["train", "nearest", "--lr", "1"], "--lr does not apply to model nearest"),
        (["train", "svm", "--shrink", "0.1"], "--shrink does not apply to model svm"),
        (["train", "nearest", "--search", "--shrink", "0.1"], "leave out --shrink"),
        (["train", "nearest", "--shrink", "1.5"], "bad settings for nearest: shrink must be"),
    ]
    for argv, needle in cases:
        code, _, err = cli(capsys, *argv, "--out", out, "--quiet")
        assert code == 2 and needle in last_error(err), (argv, err)
        assert "Traceback" not in err
    assert not out.exists()
    # a value its option cannot read is an argparse error, as for every typed option
    with pytest.raises(SystemExit) as exit_:
        main(["train", "nearest", "--shrink", "x", "--out", str(out)])
    assert exit_.value.code == 2
    assert "argument --shrink: invalid float value: 'x'" in capsys.readouterr().err


def test_compare_takes_it_among_the_others(toy_family, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = cli(capsys, "compare", "--models", "svm,nearest", "--out", out, "--quiet")
    assert code == 0, err
    row = next(line for line in stdout.splitlines() if line.startswith("nearest "))
    assert row.endswith("shrink=0.1")
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["models"]) == ["svm", "nearest"]
    m = metrics["models"]["nearest"]
    assert f"{100 * m['test_accuracy']:.2f}%" in row
    files = {p.name for p in out.iterdir()}
    assert {"nearest.npz", "nearest_means.png", "nearest_confusion.png"} <= files
    assert metrics["plot_errors"] == {}


def test_an_image_layout_family_gets_images_in_training_eval_and_predict(
    toy_family, tmp_path, capsys
):
    from PIL import Image

    from chainrule.data import load

    run = tmp_path / "img"
    code, _, err = cli(capsys, "train", "nearest_img", "--out", run, "--quiet")
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    loaded = load_model(run / "model.npz")
    assert loaded.model.input_shape_ == (8, 8, 1)  # fit saw images (N, H, W, C)
    assert loaded.preprocessor.flatten is False  # and the model file keeps that
    code, out, _ = cli(capsys, "eval", run, "--split", "val", "--json")
    assert code == 0 and json.loads(out)["accuracy"] == metrics["val_accuracy"]
    test = load("digits", "test")
    path = tmp_path / "digit.png"
    Image.fromarray(test.images[0, :, :, 0]).save(path)
    code, out, _ = cli(capsys, "predict", run, path, "--json")
    expected = loaded.classes[int(loaded.predict(test.images[:1])[0])]
    assert code == 0 and json.loads(out)["class"] == expected
    assert {"means.png", "confusion.png"} <= {p.name for p in run.iterdir()}
    assert metrics["plot_errors"] == {}


def test_help_lists_its_option_with_the_models_it_applies_to(toy_family, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--shrink" in out and "(nearest, nearest_img)" in out
    assert np.any(["nearest" in line for line in out.splitlines() if "MODEL" in line])
