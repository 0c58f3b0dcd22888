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

from robot_photos import CLASSES, write_photos  # noqa: E402

from chainrule.cli import main  # noqa: E402
from chainrule.data import load  # noqa: E402
from chainrule.models import load_model  # noqa: E402

PROBA_TOL = 1e-4

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
