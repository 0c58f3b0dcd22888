"""Camera frames of any size and photo folders as they are, through the command line:
``predict`` resizes a frame to the model's size as ``chainrule.data.resize_images`` does,
the exported graph resizes it itself with the same answers, training takes a folder of
mixed sizes, and ``eval`` says which part of the data it scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from robot_photos import HEIGHT, WIDTH, photo, write_photos

from chainrule.cli import main
from chainrule.data import load, resize_images
from chainrule.models import load_model

# bigger, smaller, other aspect ratios, the model's own size, a 4:3 camera frame
FRAME_SIZES = [(42, 60), (7, 10), (30, 20), (14, 40), (14, 20), (120, 160)]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.strip().splitlines()]


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    """Run folders (cnn with flips, mlp, knn) trained on 14x20 photos, their exports, and
    frames of other sizes: {"runs": {name: (run, onnx)}, "frames": [paths]}."""
    root = tmp_path_factory.mktemp("frames")
    photos = write_photos(root / "photos", 10, seed=0)
    argvs = {
        "cnn": ["cnn", "--channels", "8,16", "--stem", "whiten", "--epochs", "2", "--augment"],
        "mlp": ["mlp", "--hidden", "16", "--epochs", "2"],
        "knn": ["knn", "--k", "3"],
    }
    runs = {}
    for name, argv in argvs.items():
        run, onnx_file = root / name, root / f"{name}.onnx"
        assert main(["train", *argv, "--data", str(photos), "--out", str(run), "--quiet"]) == 0
        assert main(["export", str(run), "--out", str(onnx_file), "--quiet"]) == 0
        runs[name] = (run, onnx_file)
    rng = np.random.default_rng(5)
    frames = []
    for i, (h, w) in enumerate(FRAME_SIZES):
        frames.append(root / "camera" / f"frame{i}_{w}x{h}.png")
        frames[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(photo(i % 3, rng, height=h, width=w)).save(frames[-1])
    return {"runs": runs, "frames": frames, "photos": photos, "root": root}


@pytest.mark.parametrize("name", ["cnn", "mlp", "knn"])
def test_frames_of_other_sizes_give_the_same_answers_in_chainrule_and_onnx(name, robot, capsys):
    pytest.importorskip("onnxruntime")
    run, onnx_file = robot["runs"][name]
    frames = robot["frames"]
    code, out, err = cli(capsys, "predict", run, *frames, "--json", "--top", "3")
    assert code == 0, err
    # said once, on stderr: how many, to what, how, which
    (note,) = err.strip().splitlines()
    assert note.startswith("chainrule predict: resizing 5 of 6 images to the model's 20x14 pixels")
    assert "antialiased when shrinking" in note and "160x120 pixels: " in note
    python = records(out)
    # chainrule's answer is the model's on the frame resized by the NumPy resize
    loaded = load_model(run)
    resized = np.stack([resize_images(np.asarray(Image.open(f)), HEIGHT, WIDTH) for f in frames])
    want = loaded.predict_proba(resized)
    assert [r["label"] for r in python] == loaded.predict(resized).tolist()
    np.testing.assert_allclose([r["probability"] for r in python], want.max(axis=1), atol=1e-6)
    # the exported graph resizes the raw frames itself
    code, out, err = cli(capsys, "predict", "--onnx", onnx_file, *frames, "--json", "--top", "3")
    assert code == 0, err
    assert "inside the ONNX graph" in err
    for got, ref in zip(records(out), python):
        assert (got["image"], got["class"], got["label"]) == (
            ref["image"],
            ref["class"],
            ref["label"],
        )
        assert got["probability"] == pytest.approx(ref["probability"], abs=1e-4)
        for g, r in zip(got["top"], ref["top"]):
            assert g["probability"] == pytest.approx(r["probability"], abs=1e-4)


def test_the_graph_resizes_as_numpy_does(robot):
    """The graph on raw frames against the model on frames resized in NumPy: the same
    pixels, so the probabilities differ only by float32 rounding."""
    pytest.importorskip("onnxruntime")
    from chainrule.models.export import load_onnx

    run, onnx_file = robot["runs"]["cnn"]
    loaded, graph = load_model(run), load_onnx(onnx_file)
    assert graph.resizes and graph.image_shape == (HEIGHT, WIDTH, 3)
    worst = 0.0
    for frame in robot["frames"]:
        pixels = np.asarray(Image.open(frame))[None]
        labels, proba = graph.run(pixels)
        want = loaded.predict_proba(resize_images(pixels, HEIGHT, WIDTH))
        assert labels[0] == loaded.model.classes_[want.argmax()]
        worst = max(worst, float(np.abs(proba - want).max()))
    assert worst < 1e-5


def test_a_graph_of_one_input_size_gets_frames_resized_by_chainrule(robot, capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    run, _ = robot["runs"]["knn"]
    fixed = tmp_path / "fixed.onnx"
    code, out, _ = cli(capsys, "export", run, "--out", fixed, "--no-resize", "--quiet")
    assert code == 0 and "input images uint8 (N, 14, 20, 3)" in out
    code, out, err = cli(capsys, "predict", "--onnx", fixed, *robot["frames"], "--json")
    assert code == 0, err
    assert "resizing 5 of 6 images to the model's 20x14 pixels, " in err  # here, not in the graph
    _, want, _ = cli(capsys, "predict", run, *robot["frames"], "--json", "--quiet")
    for got, ref in zip(records(out), records(want)):
        assert (got["image"], got["label"]) == (ref["image"], ref["label"])
        assert got["probability"] == pytest.approx(ref["probability"], abs=1e-6)


def test_no_resize_keeps_the_refusal(robot, capsys):
    run, onnx_file = robot["runs"]["mlp"]
    for argv in ([run], ["--onnx", onnx_file]):
        code, _, err = cli(capsys, "predict", *argv, *robot["frames"], "--no-resize")
        assert code == 2
        last = err.strip().splitlines()[-1]
        assert "reads images of 20x14 pixels" in last and "60x42 pixels: " in last
        assert "Traceback" not in err


def test_predict_takes_folders(robot, capsys, tmp_path):
    run, _ = robot["runs"]["knn"]
    camera = robot["frames"][0].parent
    (camera / "notes.txt").write_text("frames of the left camera")
    code, out, err = cli(capsys, "predict", run, camera, "--json", "--quiet")
    assert code == 0, err
    assert [r["image"] for r in records(out)] == [str(f) for f in sorted(robot["frames"])]
    assert "warning: left out 1 file: " in err and "notes.txt is not an image file" in err
    code, _, err = cli(capsys, "predict", run, camera, "--strict")
    assert code == 2 and "notes.txt" in err
    (camera / "notes.txt").unlink()
    # a broken file in a folder is left out with a warning, a named one is an error
    broken = camera / "zz_broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, out, err = cli(capsys, "predict", run, camera, "--json", "--quiet")
    assert code == 0 and len(records(out)) == len(robot["frames"])
    assert "left out 1 of 7 image files: cannot read image" in err and "zz_broken.png" in err
    code, _, err = cli(capsys, "predict", run, broken)
    assert code == 2 and "zz_broken.png" in err
    broken.unlink()
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "predict", run, tmp_path / "empty")
    assert code == 2 and "no image files" in err


def test_training_on_mixed_sizes_resizes_and_says_so(robot, capsys, tmp_path):
    photos = tmp_path / "photos"
    write_photos(photos, 6, seed=3)
    odd = photos / "mug" / "080x060.png"
    Image.fromarray(photo(2, np.random.default_rng(0), height=60, width=80)).save(odd)
    code, _, err = cli(capsys, "train", "svm", "--data", photos, "--epochs", "1", "--out",
                       tmp_path / "run", "--quiet")  # fmt: skip
    assert code == 0, err
    assert "warning: resized 1 of 19 images of" in err and "to 20x14 pixels, the most common" in err
    assert "80x60 pixels: mug/080x060.png" in err
    assert load_model(tmp_path / "run").preprocessor.image_shape_ == (HEIGHT, WIDTH, 3)
    code, _, err = cli(capsys, "train", "svm", "--data", photos, "--epochs", "1", "--out",
                       tmp_path / "small", "--image-size", "7x10", "--quiet")  # fmt: skip
    assert code == 0, err
    assert "resized 19 of 19 images" in err and "to 10x7 pixels, the size asked for" in err
    assert load_model(tmp_path / "small").preprocessor.image_shape_ == (7, 10, 3)
    with pytest.raises(SystemExit) as refused:
        main(["train", "svm", "--out", str(tmp_path / "x"), "--image-size", "7"])
    assert refused.value.code == 2 and "HEIGHTxWIDTH" in capsys.readouterr().err


def test_empty_class_folders_and_broken_files_in_training(capsys, tmp_path):
    photos = tmp_path / "photos"
    write_photos(photos, 6, seed=4)
    (photos / "spoon").mkdir()
    (photos / "cup" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (photos / "drill" / "empty.jpg").write_bytes(b"")
    code, out, err = cli(capsys, "train", "softmax", "--data", photos, "--epochs", "1",
                         "--out", tmp_path / "run", "--quiet")  # fmt: skip
    assert code == 0, err
    (warning,) = [line for line in err.splitlines() if "warning: left out" in line]
    assert "left out 2 files and 1 class folder of" in warning
    assert "cup/broken.png" in warning and "drill/empty.jpg" in warning and "'spoon'" in warning
    assert load_model(tmp_path / "run").classes == ["cup", "drill", "mug"]
    code, _, err = cli(capsys, "train", "softmax", "--data", photos, "--out", tmp_path / "strict",
                       "--strict", "--quiet")  # fmt: skip
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert "cannot use 2 files and 1 class folder" in last and "broken.png" in last
    assert not (tmp_path / "strict" / "model.npz").exists()


def test_eval_on_the_training_folder_scores_the_held_out_part(robot, capsys):
    run, _ = robot["runs"]["mlp"]
    photos = robot["photos"]
    code, out, _ = cli(capsys, "eval", run, "--data", photos, "--json", "--quiet")
    assert code == 0
    result = json.loads(out)
    assert result["split"] == "val" and result["n"] == 6  # 20% of 30, as in training
    assert "held out for validation (seed 0), not trained on" in result["split_description"]
    val = load(str(photos), "val", val_fraction=0.2, random_state=0, progress=False)
    assert result["n"] == len(val)
    metrics = json.loads((Path(run) / "metrics.json").read_text())
    assert result["accuracy"] == pytest.approx(metrics["val_accuracy"])
    code, out, _ = cli(capsys, "eval", run, "--data", photos, "--split", "all")
    assert "(all: every image, the model's training images among them; 30 images)" in out
    # other data: every image, and no claim about training
    other = write_photos(robot["root"] / "other", 2, seed=9)
    code, out, _ = cli(capsys, "eval", run, "--data", other, "--json", "--quiet")
    result = json.loads(out)
    assert (result["split"], result["split_description"], result["n"]) == ("all", "all", 6)


def test_the_robot_script_prints_what_predict_prints(robot, capsys):
    """examples/robot_onnx.py, in a Python that imports neither chainrule nor onnx, reads
    the class names from the file's metadata and classifies raw frames of any size."""
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    run, onnx_file = robot["runs"]["cnn"]
    frames = [str(f) for f in robot["frames"]]
    script = Path(__file__).resolve().parents[2] / "examples" / "robot_onnx.py"
    wrapper = (
        "import runpy, sys\n"
        f"sys.argv = [{str(script)!r}, *sys.argv[1:]]\n"
        "try:\n"
        f"    runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "finally:\n"
        "    loaded = [m for m in sys.modules if m.split('.')[0] in ('chainrule', 'onnx')]\n"
        "    print('loaded:', loaded, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", wrapper, str(onnx_file), *frames],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stderr
    assert "frames are resized to 20x14 pixels in the graph" in done.stderr
    code, out, _ = cli(capsys, "predict", run, *frames, "--quiet")
    assert code == 0
    assert done.stdout == out
