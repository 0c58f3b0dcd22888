"""chainrule compare: the table, metrics.json, model files and plots of a run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chainrule.cli import main
from chainrule.data import load
from chainrule.models.io import load_model


def test_compare_on_digits_writes_a_complete_run_folder(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--models", "knn,svm,softmax", "--out", str(out), "--quiet"])
    stdout, _ = capsys.readouterr()
    assert code == 0
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    for word in ("val acc", "test acc", "fit time", "predict time"):
        assert word in lines[header]
    assert [line.split()[0] for line in lines[header + 2 : header + 5]] == ["knn", "svm", "softmax"]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["command"] == "compare"
    assert metrics["data"]["n_train"] == 1150
    assert metrics["data"]["n_val"] == 288
    assert metrics["data"]["n_test"] == 359
    assert list(metrics["models"]) == ["knn", "svm", "softmax"]
    test = load("digits", "test")
    for name, m in metrics["models"].items():
        for key in ("val_accuracy", "test_accuracy", "fit_time_s", "predict_time_s", "params"):
            assert key in m, (name, key)
        assert 0.8 < m["test_accuracy"] <= 1.0
        cm = np.array(m["confusion_matrix_test"])
        assert cm.sum() == 359 and np.trace(cm) / 359 == pytest.approx(m["test_accuracy"])
        # the file holds the model that was measured
        loaded = load_model(out / m["model_file"])
        assert loaded.name == name
        acc = float(np.mean(loaded.predict(test.images) == test.labels))
        assert acc == pytest.approx(m["test_accuracy"])
        # the accuracy in the table is the one in metrics.json
        row = next(line for line in lines if line.startswith(name + " "))
        assert f"{100 * m['test_accuracy']:.2f}%" in row
    knn = metrics["models"]["knn"]
    assert knn["params"]["k"] == knn["knn_cv"]["best_k"]
    assert len(metrics["models"]["svm"]["history"]["epoch_loss"]) > 0

    files = {p.name for p in out.iterdir()}
    expected = {"knn.npz", "svm.npz", "softmax.npz", "metrics.json"}
    expected |= {f"{m}_confusion.png" for m in ("knn", "svm", "softmax")}
    expected |= {f"{m}_{p}.png" for m in ("svm", "softmax") for p in ("loss", "weights")}
    assert expected <= files
    assert set(metrics["plots"]) <= files and metrics["plot_errors"] == {}


def test_compare_search_on_a_folder_without_test_images(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    for c, color in (("dark", 40), ("light", 200)):
        (folder / c).mkdir(parents=True)
        for i in range(20):
            img = np.clip(rng.normal(color, 30, size=(6, 6, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / c / f"{i}.png")
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--data",
            str(folder),
            "--models",
            "svm,knn",
            "--search",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    stdout, _ = capsys.readouterr()
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["search"] is True and metrics["data"]["n_test"] == 0
    svm = metrics["models"]["svm"]
    assert svm["test_accuracy"] is None and svm["val_accuracy"] == 1.0
    rows = svm["search"]["results"]
    assert len(rows) == 9  # 3 learning rates x 3 regularization strengths
    best = max(r["val_acc"] for r in rows)
    assert svm["search"]["best_val_accuracy"] == best
    assert svm["params"]["learning_rate"] == svm["search"]["best_params"]["learning_rate"]
    assert (out / "svm_search.png").exists()
    assert "no test split" in stdout


def test_compare_refuses_no_validation(tmp_path, capsys):
    code = main(["compare", "--val-fraction", "0", "--out", str(tmp_path / "x")])
    _, err = capsys.readouterr()
    assert code == 2 and "validation split" in err.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists()


def test_the_table_fits_100_columns_with_long_settings():
    from chainrule.cli._common import format_table

    headers = ["model", "val acc", "test acc", "fit time", "predict time", "settings"]
    long = "channels=32,64,128 stem=conv lr=0.2 epochs=10 batchnorm=True dropout=0.1 wd=5e-4"
    rows = [
        ["knn", "97.22%", "98.33%", "469 us", "6.2 ms", "k=3 metric=l2"],
        ["cnn", "98.61%", "99.44%", "3.5 s", "28 ms", long],
    ]
    lines = format_table(headers, rows, width=100).splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[2].endswith("k=3 metric=l2") and lines[3].startswith("cnn ")
    # the settings wrap onto a continuation line, whole words, nothing lost
    assert lines[4].startswith(" " * 40)
    assert " ".join(line[50:].strip() for line in lines[3:5]) == long
