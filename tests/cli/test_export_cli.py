"""``chainrule export`` then ``chainrule predict --onnx``: the same answers as
``chainrule predict`` on the run folder, in the same format; mistakes are one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from chainrule.cli import main
from chainrule.data import Preprocessor, load
from chainrule.models import FullyConnectedNet, KNearestNeighbors, save_model


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("chainrule ") and ": error: " in last, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in last, last


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A `chainrule train svm` run folder on the digits."""
    run = tmp_path_factory.mktemp("runs") / "svm"
    assert main(["train", "svm", "--epochs", "3", "--out", str(run), "--quiet"]) == 0
    return run


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory) -> list[Path]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("pngs")
    test = load("digits", "test")
    paths = []
    for i in range(0, 40, 3):
        paths.append(folder / f"digit{i}.png")
        Image.fromarray(test.images[i][..., 0]).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def comparison_run(tmp_path_factory):
    """A run folder holding knn.npz and mlp.npz (test-time flips on), as compare writes."""
    run = tmp_path_factory.mktemp("runs") / "compare"
    train = load("digits", "train")
    pre = Preprocessor().fit(train.images)
    X = pre.transform(train.images)
    mlp = FullyConnectedNet(
        hidden_dims=(16,), augment=True, image_shape=pre.image_shape_, epochs=2, verbose=False
    )
    for name, model in (("knn", KNearestNeighbors(k=5)), ("mlp", mlp)):
        save_model(run / f"{name}.npz", model.fit(X, train.labels), pre, train.classes)
    return run


def _records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.strip().splitlines()]


def assert_same_records(onnx_out: str, python_out: str) -> None:
    got, want = _records(onnx_out), _records(python_out)
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert set(g) == set(w)
        assert (g["image"], g["class"], g["label"]) == (w["image"], w["class"], w["label"])
        assert g["probability"] == pytest.approx(w["probability"], abs=1e-5)
        for gt, wt in zip(g.get("top", []), w.get("top", [])):
            assert gt["probability"] == pytest.approx(wt["probability"], abs=1e-5)


def test_export_then_predict_onnx_gives_the_run_folders_answers(
    digits_run, digit_pngs, tmp_path, capsys
):
    out_file = tmp_path / "svm.onnx"
    code, out, err = cli(capsys, "export", digits_run, "--out", out_file)
    assert code == 0, err
    assert out.startswith(f"wrote {out_file} (") and "svm, 10 classes" in out
    assert "input images uint8 (N, H, W, 1) of any size, resized to 8x8 pixels" in out
    assert err.startswith("checked: ONNX Runtime ") and "on 12 test images (8x8, " in err
    code, out, err = cli(capsys, "export", digits_run, "--out", out_file, "--no-resize")
    assert code == 0 and "input images uint8 (N, 8, 8, 1)\n" in out
    assert "on 4 test images (8x8 pixels; probabilities within" in err
    code, onnx_out, err = cli(capsys, "predict", "--onnx", out_file, *digit_pngs, "--json")
    assert code == 0, err
    code, python_out, _ = cli(capsys, "predict", digits_run, *digit_pngs, "--json")
    assert_same_records(onnx_out, python_out)
    # one image, text output with the top classes: the same lines up to rounding
    code, onnx_text, _ = cli(capsys, "predict", "--onnx", out_file, digit_pngs[0], "--top", "3")
    _, python_text, _ = cli(capsys, "predict", digits_run, digit_pngs[0], "--top", "3")
    assert code == 0 and onnx_text.split()[:2] == python_text.split()[:2]


@pytest.mark.parametrize("name", ["knn", "mlp"])
def test_export_one_model_of_a_comparison_run(name, comparison_run, digit_pngs, tmp_path, capsys):
    out_file = tmp_path / f"{name}.onnx"
    code, out, err = cli(capsys, "export", comparison_run, "--model", name, "--out", out_file)
    assert code == 0, err
    assert f": {name}, 10 classes" in out
    _, onnx_out, _ = cli(capsys, "predict", "--onnx", out_file, *digit_pngs, "--json", "--top", "2")
    _, python_out, _ = cli(
        capsys, "predict", comparison_run, "--model", name, *digit_pngs, "--json", "--top", "2"
    )
    assert_same_records(onnx_out, python_out)


def test_external_data_flag(comparison_run, digit_pngs, tmp_path, capsys):
    out_file = tmp_path / "knn.onnx"
    code, out, _ = cli(
        capsys, "export", comparison_run, "--model", "knn", "--out", out_file,
        "--external-data", "yes",
    )  # fmt: skip
    assert code == 0
    assert f"+ {out_file}.data" in out and Path(f"{out_file}.data").is_file()
    code, _, err = cli(capsys, "predict", "--onnx", out_file, digit_pngs[0])
    assert code == 0, err


def test_user_errors_are_one_line(digits_run, digit_pngs, tmp_path, capsys, monkeypatch):
    out_file = tmp_path / "svm.onnx"
    assert cli(capsys, "export", digits_run, "--out", out_file)[0] == 0
    (tmp_path / "plain").write_text("a file, not a folder")
    code, _, err = cli(capsys, "export", digits_run, "--out", tmp_path / "plain" / "m.onnx")
    assert_user_error(code, err, "cannot write")
    code, _, err = cli(capsys, "export", tmp_path / "no-such-run", "--out", out_file)
    assert_user_error(code, err, "no-such-run")
    code, _, err = cli(capsys, "predict", "--onnx", out_file, "--model", "svm", digit_pngs[0])
    assert_user_error(code, err, "--model", "--onnx")
    code, _, err = cli(capsys, "predict", "--onnx", tmp_path / "missing.onnx", digit_pngs[0])
    assert_user_error(code, err, "no such ONNX file")
    code, _, err = cli(capsys, "predict", "--onnx", digits_run / "model.npz", digit_pngs[0])
    assert_user_error(code, err, "cannot load ONNX file")
    from PIL import Image

    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "big.png")
    code, _, err = cli(capsys, "predict", "--onnx", out_file, tmp_path / "big.png", "--no-resize")
    assert_user_error(code, err, "8x9 pixels", "8x8")
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, _, err = cli(capsys, "export", digits_run, "--out", tmp_path / "again.onnx")
    assert_user_error(code, err, 'pip install "chainrule[onnx]"')


def test_convnet_run_exports_with_its_preprocessing(digit_pngs, tmp_path, capsys):
    """`chainrule train cnn` -> `export` -> `predict --onnx`: the answers of the run folder,
    and the model file's own preprocessing (images kept as images or flattened) in the
    graph."""
    import chainrule.models

    if not hasattr(chainrule.models, "ConvNet"):
        pytest.skip("chainrule.models.ConvNet is not part of this version")
    from chainrule.models import export_onnx, load_model
    from chainrule.models.export import load_onnx

    run = tmp_path / "cnn"
    assert main(["train", "cnn", "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    out_file = tmp_path / "cnn.onnx"
    code, out, err = cli(capsys, "export", run, "--out", out_file)
    assert code == 0, err
    assert ": cnn, 10 classes" in out and "input images uint8 (N, H, W, 1) of any size" in out
    _, onnx_out, _ = cli(capsys, "predict", "--onnx", out_file, *digit_pngs, "--json", "--top", "2")
    _, python_out, _ = cli(capsys, "predict", run, *digit_pngs, "--json", "--top", "2")
    assert_same_records(onnx_out, python_out)
    loaded = load_model(run / "model.npz")
    images = load("digits", "test").images[:50]
    labels, proba = load_onnx(export_onnx(loaded, tmp_path / "py.onnx")).run(images)
    np.testing.assert_array_equal(labels, loaded.predict(images))
    np.testing.assert_allclose(proba, loaded.predict_proba(images), rtol=0, atol=1e-5)
