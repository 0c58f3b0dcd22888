"""The robot's path for every model family: a folder of colour photos that are not square
-> ``chainrule train`` -> ``chainrule export`` -> ONNX Runtime in a process that has only
NumPy and onnxruntime. The exported file gives chainrule's labels exactly and its
probabilities to 1e-4, for the whitening and the conv stem of the ConvNet and for the
networks with and without test-time flips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from chainrule.cli import main  # noqa: E402
from chainrule.data import load  # noqa: E402
from chainrule.models import load_model  # noqa: E402

PROBA_TOL = 1e-4
HEIGHT, WIDTH = 14, 20  # H != W and C = 3: an axis or channel mix-up changes the answers
CLASSES = ("cup", "drill", "mug")

# name -> chainrule train arguments (tiny networks, two epochs: the answers must agree,
# whatever the accuracy); "-flips" adds --augment, which turns on test-time flips
_NETWORKS = {
    "twolayer": ["twolayer", "--hidden", "16", "--epochs", "2"],
    "mlp": ["mlp", "--hidden", "16,8", "--batchnorm", "--dropout", "0.1", "--epochs", "2"],
    "cnn-conv": ["cnn", "--stem", "conv", "--channels", "8,16", "--epochs", "2"],
    "cnn-whiten": ["cnn", "--stem", "whiten", "--channels", "8,16", "--epochs", "2"],
}
FAMILIES = {
    "knn": ["knn", "--k", "3"],
    "svm": ["svm", "--epochs", "2"],
    "softmax": ["softmax", "--epochs", "2"],
    **_NETWORKS,
    **{f"{name}-flips": [*argv, "--augment"] for name, argv in _NETWORKS.items()},
}


def photo(kind: int, rng, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """One (H, W, 3) uint8 photo of object ``kind``: a red bar on the left, green
    horizontal stripes or a blue disc, shifted a little, on noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    dx = rng.integers(-2, 3)
    if kind == 0:
        mask, colour = xx + dx < width // 3, (200, 40, 40)
    elif kind == 1:
        mask, colour = (yy * 6 // height) % 2 == 0, (30, 180, 60)
    else:
        disc = (xx - width / 2 - dx) ** 2 + (yy - height / 2) ** 2
        mask, colour = disc < (min(height, width) / 3) ** 2, (40, 60, 210)
    noise = rng.integers(0, 70, (height, width, 3))
    return np.clip(noise + mask[..., None] * np.array(colour), 0, 255).astype(np.uint8)


def write_photos(root: Path, n_per_class: int, seed: int, **size) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for kind, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(photo(kind, rng, **size)).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{family: (run folder, .onnx file)} for every entry of FAMILIES, trained on one
    folder of colour photos, and the images (held out from training) to compare on."""
    root = tmp_path_factory.mktemp("robot")
    photos = write_photos(root / "photos", 12, seed=0)
    runs = {}
    for name, argv in FAMILIES.items():
        run, onnx_file = root / "runs" / name, root / f"{name}.onnx"
        assert main(["train", *argv, "--data", str(photos), "--out", str(run), "--quiet"]) == 0
        assert main(["export", str(run), "--out", str(onnx_file), "--quiet"]) == 0
        runs[name] = (run, onnx_file)
    images = load(str(write_photos(root / "held-out", 8, seed=1)), "all", progress=False).images
    return runs, images, root


def run_without_chainrule(jobs: list[tuple[Path, Path]], tmp: Path) -> dict:
    """Run each (.onnx file, .npy images) pair in a fresh Python that imports only NumPy and
    onnxruntime; returns the class names each file names and the modules it loaded."""
    script = """
import json, sys
import numpy as np
import onnxruntime as ort
report = {"classes": {}}
for i, (model, images) in enumerate(json.loads(sys.argv[1])):
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    label, proba = session.run(["label", "probabilities"], {"images": np.load(images)})
    np.savez(sys.argv[2] + f"/answers{i}.npz", label=label, proba=proba)
    report["classes"][model] = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
report["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("chainrule", "onnx"))
print(json.dumps(report))
"""
    argv = json.dumps([[str(m), str(i)] for m, i in jobs])
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, argv, str(tmp)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def answers(exported, tmp_path_factory):
    """{family: (labels, probabilities)} of ONNX Runtime in a process without chainrule."""
    runs, images, _ = exported
    tmp = tmp_path_factory.mktemp("answers")
    np.save(tmp / "images.npy", images)
    names = list(runs)
    report = run_without_chainrule([(runs[n][1], tmp / "images.npy") for n in names], tmp)
    assert report["loaded"] == []
    out = {}
    for i, name in enumerate(names):
        assert report["classes"][str(runs[name][1])] == list(CLASSES)
        got = np.load(tmp / f"answers{i}.npz")
        out[name] = got["label"], got["proba"]
    return out


@pytest.mark.parametrize("name", list(FAMILIES))
def test_onnx_runtime_gives_chainrules_answers(name, exported, answers):
    runs, images, _ = exported
    loaded = load_model(runs[name][0])
    want = loaded.predict_proba(images)
    # a model whose answers do not depend on the image could not show a mix-up
    assert np.ptp(want, axis=0).max() > 0.02
    labels, proba = answers[name]
    np.testing.assert_array_equal(labels, loaded.predict(images))
    np.testing.assert_allclose(proba, want, rtol=0, atol=PROBA_TOL)
