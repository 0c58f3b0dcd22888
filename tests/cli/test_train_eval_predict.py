"""End to end: chainrule train -> eval --json -> predict, on the bundled digits and on an
image folder made here; user errors give one line on stderr and exit status 2."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chainrule.cli import main
from chainrule.data import load
from chainrule.models.io import load_model


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    # progress bars may come first; the error is the last line, and there is no traceback
    last = err.strip().splitlines()[-1]
    assert last.startswith("chainrule ") and ": error: " in last, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in last


def make_folder(root: Path, n_per_class: int, seed: int, size=(10, 12)) -> Path:
    """root/<class>/*.png: three classes of RGB images told apart by their main color."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colors = {"blue": (0, 0, 200), "green": (0, 180, 0), "red": (220, 0, 0)}
    h, w = size
    for name, color in colors.items():
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            img = rng.integers(0, 90, size=(h, w, 3)) + np.array(color) * rng.uniform(0.5, 1.0)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def digits_svm(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "svm"
    code = main(["train", "svm", "--data", "digits", "--epochs", "3", "--out", str(run), "--quiet"])
    assert code == 0
    return run


def test_train_writes_model_metrics_and_plots(digits_svm):
    files = {p.name for p in digits_svm.iterdir()}
    assert {"model.npz", "metrics.json", "loss.png", "weights.png", "confusion.png"} <= files
    metrics = json.loads((digits_svm / "metrics.json").read_text())
    assert metrics["status"] == "done"
    assert metrics["model"] == "svm"
    assert metrics["params"]["epochs"] == 3
    assert metrics["data"]["n_train"] + metrics["data"]["n_val"] == 1438
    assert 0.5 < metrics["val_accuracy"] <= 1.0
    assert len(metrics["history"]["epoch_loss"]) == 3
    loaded = load_model(digits_svm / "model.npz")
    assert loaded.name == "svm" and loaded.classes == [str(d) for d in range(10)]
    # the validation accuracy recorded is the saved model's on the same split
    val = load("digits", "val")
    assert loaded.model.score(loaded.features(val.images), val.labels) == metrics["val_accuracy"]


def test_eval_json_matches_the_model(digits_svm, capsys):
    code, out, _ = cli(capsys, "eval", digits_svm, "--data", "digits", "--json")
    assert code == 0
    result = json.loads(out)
    test = load("digits", "test")
    loaded = load_model(digits_svm / "model.npz")
    expected = float(np.mean(loaded.predict(test.images) == test.labels))
    assert result["n"] == len(test) == 359
    assert result["split"] == "test"
    assert result["accuracy"] == pytest.approx(expected)
    assert np.trace(np.array(result["confusion_matrix"])) == result["correct"]
    # the validation split is the one the model was trained with, by default
    code, out, _ = cli(capsys, "eval", digits_svm, "--split", "val", "--json")
    metrics = json.loads((digits_svm / "metrics.json").read_text())
    assert json.loads(out)["accuracy"] == pytest.approx(metrics["val_accuracy"])


def test_predict_agrees_with_eval_on_digit_png_files(digits_svm, tmp_path, capsys):
    from PIL import Image

    test = load("digits", "test")
    loaded = load_model(digits_svm / "model.npz")
    expected = loaded.predict(test.images[:12])
    proba = loaded.predict_proba(test.images[:12])
    paths = []
    for i in range(12):
        # grayscale files for half of them, RGB for the other half: both decode the same
        img = Image.fromarray(test.images[i, :, :, 0])
        path = tmp_path / f"digit{i}.png"
        (img if i % 2 else img.convert("RGB")).save(path)
        paths.append(path)
    code, out, _ = cli(capsys, "predict", digits_svm, *paths, "--json")
    assert code == 0
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in paths]
    assert [int(r["class"]) for r in records] == expected.tolist()
    for r, p, label in zip(records, proba, expected):
        assert r["probability"] == pytest.approx(float(p[label]), rel=1e-6)
    code, out, _ = cli(capsys, "predict", digits_svm, paths[0], "--top", "3")
    assert code == 0 and out.startswith(str(paths[0])) and out.count("(") == 1


def test_image_folder_train_eval_predict(tmp_path, capsys):
    train_dir = make_folder(tmp_path / "train_imgs", 15, seed=1)
    test_dir = make_folder(tmp_path / "test_imgs", 6, seed=2)
    run = tmp_path / "run"
    code, out, _ = cli(
        capsys, "train", "softmax", "--data", train_dir, "--out", run, "--epochs", "20", "--quiet"
    )
    assert code == 0, out
    # a folder without split subfolders: every image in it is evaluated
    code, out, _ = cli(capsys, "eval", run, "--data", test_dir, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["n"] == 18 and result["split"] == "all"
    assert result["accuracy"] > 0.8  # the colors are easy to tell apart
    files = sorted(test_dir.glob("*/*.png"))
    code, out, _ = cli(capsys, "predict", run, *files, "--json")
    assert code == 0
    predicted = [json.loads(line)["class"] for line in out.strip().splitlines()]
    truth = [f.parent.name for f in files]
    correct = sum(p == t for p, t in zip(predicted, truth))
    assert correct == result["correct"]
    # and image by image, the same as the model on the loaded folder
    ds = load(test_dir, "all")
    loaded = load_model(run / "model.npz")
    order = {str(f.relative_to(test_dir)): i for i, f in enumerate(files)}
    assert len(order) == len(ds)
    by_eval = [loaded.classes[c] for c in loaded.predict(ds.images)]
    assert sorted(by_eval) == sorted(predicted)
    # a folder with only some of the classes is matched by name
    (tmp_path / "two").mkdir()
    for c in ("green", "red"):
        (test_dir / c).rename(tmp_path / "two" / c)
    code, out, _ = cli(capsys, "eval", run, "--data", tmp_path / "two", "--json")
    assert code == 0
    partial = json.loads(out)
    assert partial["n"] == 12
    green_red = [p for p, t in zip(predicted, truth) if t != "blue"]
    truth_gr = [t for t in truth if t != "blue"]
    assert partial["correct"] == sum(p == t for p, t in zip(green_red, truth_gr))


def test_knn_train_all_images_then_eval(tmp_path, capsys):
    run = tmp_path / "knn"
    code, out, _ = cli(
        capsys, "train", "knn", "--k", "1", "--val-fraction", "0", "--out", run, "--quiet"
    )
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["n_train"] == 1438 and metrics["data"]["n_val"] == 0
    assert metrics["val_accuracy"] is None
    assert metrics["params"]["k"] == 1
    assert metrics["train_accuracy"] == 1.0  # 1-NN recalls its own training images
    code, out, _ = cli(capsys, "eval", run, "--json")
    assert code == 0 and json.loads(out)["accuracy"] > 0.95


def test_knn_k_by_cross_validation(tmp_path, capsys):
    run = tmp_path / "knn"
    code, _, _ = cli(capsys, "train", "knn", "--out", run, "--quiet")
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    cv = metrics["knn_cv"]
    means = {int(k): v for k, v in cv["mean"].items()}
    assert metrics["params"]["k"] == cv["best_k"] == max(means, key=lambda k: (means[k], -k))


# -- user errors ---------------------------------------------------------------------------


def test_bad_arguments_are_one_line_errors(tmp_path, capsys, digits_svm):
    out = tmp_path / "r"
    cases = [
        (["train", "forest", "--out", out], ["unknown model 'forest'"]),
        (["train", "svm"], ["--out RUN_DIR is required"]),
        (["train", "mlp", "--hidden", "10,x", "--out", out], ["--hidden", "10,x"]),
        (["train", "mlp", "--hidden", "10,0", "--out", out], ["positive"]),
        (["train", "svm", "--k", "3", "--out", out], ["--k does not apply to model svm"]),
        (["train", "svm", "--data", "nosuchdata", "--out", out], ["nosuchdata"]),
        (["train", "svm", "--lr", "-1", "--out", out], ["learning_rate"]),
        (["train", "svm", "--search", "--val-fraction", "0", "--out", out], ["validation"]),
        (["train", "knn", "--search", "--k", "3", "--out", out], ["leave out --k"]),
        (["train", "svm", "--search", "--lr", "1", "--out", out], ["leave out --lr"]),
        (["eval", tmp_path / "missing"], ["no run folder or model file"]),
        (["eval", digits_svm, "--data", tmp_path / "nodata"], ["nodata"]),
        (["predict", digits_svm, tmp_path / "none.png"], ["no such image file"]),
        (["compare", "--models", "knn,tree"], ["unknown model 'tree'"]),
        (["train", "--resume", tmp_path], ["not a run folder written by chainrule train"]),
    ]
    for argv, needles in cases:
        code, _, err = cli(capsys, *argv)
        assert_user_error(code, err, *needles)
    assert not out.exists()


def test_unreadable_image_and_wrong_size(tmp_path, capsys, digits_svm):
    from PIL import Image

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, _, err = cli(capsys, "predict", digits_svm, bad)
    assert_user_error(code, err, "bad.png")
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((9, 8), dtype=np.uint8)).save(big)
    code, _, err = cli(capsys, "predict", digits_svm, big, "--no-resize")
    assert_user_error(code, err, "8x9 pixels", "8x8")
    code, _, err = cli(capsys, "predict", digits_svm, bad, big, tmp_path / "missing.png")
    assert_user_error(code, err, "bad.png", "no such image file", "missing.png")


def test_corrupted_and_foreign_model_files(tmp_path, capsys, digits_svm):
    data = (digits_svm / "model.npz").read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    code, _, err = cli(capsys, "eval", truncated)
    assert_user_error(code, err, "truncated or damaged")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    np.savez(foreign / "model.npz", W=np.zeros(3))
    code, _, err = cli(capsys, "predict", foreign, tmp_path / "x.png")
    assert_user_error(code, err, "not a chainrule model file")
    text = tmp_path / "text.npz"
    text.write_text("just text")
    code, _, err = cli(capsys, "eval", text, "--json")
    assert_user_error(code, err, "not a chainrule model file")


def test_class_names_must_match(tmp_path, capsys, digits_svm):
    from PIL import Image

    folder = tmp_path / "letters"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / c / "0.png")
    code, _, err = cli(capsys, "eval", digits_svm, "--data", folder)
    assert_user_error(code, err, "classes the model was not trained on (a, b)")


def test_console_entry_point_exit_status(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "chainrule", "eval", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"chainrule eval: error: no run folder or model file '{tmp_path / 'missing'}'"
    ]


# -- networks ------------------------------------------------------------------------------


def test_mlp_flags_reach_the_model_and_plots(tmp_path, capsys):
    run = tmp_path / "mlp"
    code, out, _ = cli(
        capsys,
        "train",
        "mlp",
        "--hidden",
        "32,16",
        "--dropout",
        "0.1",
        "--batchnorm",
        "--optimizer",
        "adamw",
        "--weight-decay",
        "1e-4",
        "--schedule",
        "cosine",
        "--label-smoothing",
        "0.1",
        "--lr",
        "3e-3",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--seed",
        "3",
        "--out",
        run,
        "--quiet",
    )
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    p = metrics["params"]
    assert p["hidden_dims"] == [32, 16] and p["dropout"] == 0.1 and p["batchnorm"] is True
    assert p["optimizer"] == "adamw" and p["weight_decay"] == 1e-4
    assert p["lr_schedule"] == "cosine" and p["label_smoothing"] == 0.1
    assert p["learning_rate"] == 3e-3 and p["epochs"] == 2 and p["batch_size"] == 128
    assert p["random_state"] == 3
    assert len(metrics["history"]["val_acc"]) == 2
    assert {"first_layer.png", "loss.png", "confusion.png"} <= {f.name for f in run.iterdir()}
    assert not (run / "checkpoint.npz").exists()  # removed once the run has finished
    loaded = load_model(run / "model.npz")
    assert loaded.model.hidden_dims == [32, 16]
    code, _, err = cli(capsys, "train", "twolayer", "--hidden", "8,8", "--out", tmp_path / "t")
    assert_user_error(code, err, "twolayer has one hidden layer")
    code, _, err = cli(capsys, "train", "knn", "--dropout", "0.5", "--out", tmp_path / "k")
    assert_user_error(code, err, "--dropout does not apply to model knn")


def test_resume_an_interrupted_run_gives_the_uninterrupted_model(tmp_path, capsys, monkeypatch):
    from chainrule.train.solver import Solver

    argv = ["train", "twolayer", "--hidden", "16", "--epochs", "4", "--seed", "5", "--quiet"]
    code, _, _ = cli(capsys, *argv, "--out", tmp_path / "whole")
    assert code == 0

    real_epoch = Solver._run_epoch

    def interrupted(self, n):
        if self.epoch == 2:
            raise KeyboardInterrupt
        real_epoch(self, n)

    monkeypatch.setattr(Solver, "_run_epoch", interrupted)
    code, _, err = cli(capsys, *argv, "--out", tmp_path / "cut")
    assert code == 130
    assert (tmp_path / "cut" / "checkpoint.npz").exists()
    assert not (tmp_path / "cut" / "model.npz").exists()
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(Solver, "_run_epoch", real_epoch)
    # the message names the command that continues the run: run it
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted; the run folder records it, and chainrule train")
    command = last.split(", and ")[1].removesuffix(" continues it")
    assert command == f"chainrule train --resume {tmp_path / 'cut'}"

    code, _, err = cli(capsys, *shlex.split(command)[1:], "--quiet")
    assert code == 0
    assert err == ""  # --quiet holds for a resumed run too: no progress bars
    whole = load_model(tmp_path / "whole" / "model.npz").model._state_dict()
    resumed = load_model(tmp_path / "cut" / "model.npz").model._state_dict()
    assert whole.keys() == resumed.keys()
    for key in whole:
        np.testing.assert_array_equal(whole[key], resumed[key], err_msg=key)
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert a["history"]["val_acc"] == b["history"]["val_acc"]
    code, _, err = cli(capsys, "train", "--resume", tmp_path / "cut")
    assert_user_error(code, err, "has finished")


def test_an_interrupted_run_that_cannot_resume_says_how_to_start_it_again(
    tmp_path, capsys, monkeypatch
):
    from chainrule.models import LinearSVM

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    argv = ["train", "svm", "--epochs", "2", "--out", tmp_path / "svm", "--quiet"]
    monkeypatch.setattr(LinearSVM, "fit", interrupted)
    code, _, err = cli(capsys, *argv)
    assert code == 130
    assert err.strip().splitlines()[-1] == (
        "interrupted; the run folder records it; the same command starts it again (a "
        "network's run or a search would continue with chainrule train --resume)"
    )
    monkeypatch.undo()
    code, _, err = cli(capsys, *argv)
    assert code == 0, err


def test_predict_names_the_classes_of_a_model_fitted_on_text_labels(tmp_path, capsys):
    from PIL import Image

    from chainrule.data import Preprocessor
    from chainrule.models import SoftmaxClassifier
    from chainrule.models.io import save_model

    train, test = load("digits", "train"), load("digits", "test")
    prep = Preprocessor().fit(train.images)
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    model = SoftmaxClassifier(learning_rate=10.0, epochs=3, random_state=0)
    model.fit(prep.transform(train.images), names[train.labels])
    path = save_model(tmp_path / "text.npz", model, prep)
    files = []
    for i in range(4):
        files.append(tmp_path / f"d{i}.png")
        Image.fromarray(test.images[i, :, :, 0]).save(files[-1])
    expected = model.predict(prep.transform(test.images[:4]))
    proba = model.predict_proba(prep.transform(test.images[:4]))
    code, out, err = cli(capsys, "predict", path, *files, "--json", "--top", "2")
    assert code == 0, err
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["class"] for r in records] == expected.tolist()
    assert [r["label"] for r in records] == expected.tolist()
    columns = {c: j for j, c in enumerate(model.classes_)}
    for r, p, label in zip(records, proba, expected):
        assert r["probability"] == pytest.approx(float(p[columns[label]]), rel=1e-6)
        assert r["top"][0]["class"] == label
    code, _, err = cli(capsys, "export", path, "--out", tmp_path / "text.onnx")
    assert_user_error(code, err, "text", "integer labels")


def test_search_prints_its_summary_not_every_trials_epochs(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code = main(["train", "twolayer", "--search", "--epochs", "2", "--out", str(out_dir)])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    # six trials of two epochs ran; only the final fit's two epoch lines are shown
    assert sum(line.startswith("epoch ") for line in lines) == 2
    summary = next(i for i, line in enumerate(lines) if line.startswith("search: 6 trials"))
    assert summary < next(i for i, line in enumerate(lines) if line.startswith("epoch 1/2"))
    rows = lines[summary + 2 : summary + 8]
    assert rows[0].startswith("  * ") and all(r.startswith("    ") for r in rows[1:])
    accs = [float(r.split()[-3].rstrip("%")) for r in rows]
    assert accs == sorted(accs, reverse=True)
    best = json.loads((out_dir / "metrics.json").read_text())["search"]["best_val_accuracy"]
    assert f"(validation {100 * best:.2f}%)" in lines[summary]
