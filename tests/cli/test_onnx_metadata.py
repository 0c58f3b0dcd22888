"""An ``.onnx`` file's metadata is checked before it is used: every field chainrule reads
(class names, labels, settings, preprocessing) is parsed within bounds and must agree with
the graph and with itself; anything else is one line and exit status 2, never a
traceback, and never a dict taken for a list of names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chainrule.cli import main

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A softmax classifier of 4x4 gray images, exported; and one such image."""
    from PIL import Image

    from chainrule.data import Preprocessor
    from chainrule.models import export_onnx, registry

    folder = tmp_path_factory.mktemp("onnx")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 4, 4, 1), dtype=np.uint8)
    prep = Preprocessor().fit(images)
    model = registry.get_model_class("softmax")(epochs=3, random_state=0, verbose=False)
    model.fit(prep.transform(images), np.arange(60) % 3)
    path = export_onnx(model, folder / "model.onnx", preprocessor=prep, classes=["a", "b", "c"])
    Image.fromarray(images[0][..., 0]).save(folder / "image.png")
    return path, folder / "image.png"


def with_metadata(exported, tmp_path, **changes):
    source, _ = exported
    model = onnx.load(source)
    meta = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    path = tmp_path / "changed.onnx"
    onnx.save(model, path)
    return path


def test_the_file_as_exported_predicts(exported, capsys):
    path, image = exported
    code, out, err = cli(capsys, "predict", "--onnx", path, image)
    assert code == 0, err
    assert out.split()[1] in ("a", "b", "c")


DEEP = "[" * 100_000 + "]" * 100_000
BAD = {
    "classes nested 100,000 deep": ({"classes": DEEP}, "classes"),
    "labels nested 100,000 deep": ({"labels": DEEP}, "labels"),
    "a dict as classes": ({"classes": json.dumps({"0": "a", "1": "b", "2": "c"})}, "classes"),
    "class names that are not text": ({"classes": json.dumps([1, 2, 3])}, "classes"),
    "fewer class names than labels": ({"classes": json.dumps(["a"])}, "class names"),
    "labels the graph does not produce": ({"labels": json.dumps([5, 6, 7])}, "labels"),
    "labels the graph does not produce, each with a name": (
        {"classes": json.dumps(list("abcd")), "labels": json.dumps([1, 2, 3])},
        "its graph produced label 0",
    ),
    "fewer labels than columns": ({"labels": json.dumps([0, 1])}, "labels"),
    "a label twice": ({"labels": json.dumps([0, 0, 1])}, "labels"),
    "labels that are not integers": ({"labels": json.dumps([0.5, 1, 2])}, "labels"),
    "booleans as labels": ({"labels": json.dumps([False, True, 2])}, "labels"),
    "negative labels": ({"labels": json.dumps([-1, 0, 1])}, "labels"),
    "no labels": ({"labels": None}, "labels"),
    "no classes": ({"classes": None}, "classes"),
    "classes that are not JSON": ({"classes": "a, b, c"}, "classes"),
    "settings that are a list": ({"params": "[1, 2]"}, "params"),
    "settings nested 100,000 deep": ({"params": DEEP}, "params"),
    "preprocessing that is a string": ({"preprocessing": json.dumps("center")}, "preprocessing"),
    "preprocessing of a bad shape": (
        {"preprocessing": json.dumps({"image_shape": [4, 4], "mean": [0.0], "std": [1.0]})},
        "preprocessing",
    ),
    "test_time_flip that is not a boolean": ({"test_time_flip": '"yes"'}, "test_time_flip"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_hostile_metadata_is_one_line_and_exit_2(exported, tmp_path, capsys, case):
    changes, field = BAD[case]
    path = with_metadata(exported, tmp_path, **changes)
    code, out, err = cli(capsys, "predict", "--onnx", path, exported[1])
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert field in err and "changed.onnx" in err, err


def test_load_onnx_refuses_what_predict_refuses(exported, tmp_path):
    from chainrule.models.export import load_onnx

    with pytest.raises(ValueError, match="classes"):
        load_onnx(with_metadata(exported, tmp_path, classes=DEEP))
    model = load_onnx(exported[0])
    assert model.classes == ["a", "b", "c"] and model.labels.tolist() == [0, 1, 2]
    assert model.preprocessing["image_shape"] == [4, 4, 1] and model.params["epochs"] == 3
    assert model.test_time_flip is False


def test_an_export_names_classes_by_label_as_its_metadata_says(tmp_path, capsys):
    """A model fitted on labels 2, 5, 7 without class names: the file's ``classes`` are
    indexed by label (what the metadata check, and predict, read)."""
    from PIL import Image

    from chainrule.data import Preprocessor
    from chainrule.models import export_onnx, registry
    from chainrule.models.export import load_onnx

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(30, 4, 4, 1), dtype=np.uint8)
    prep = Preprocessor().fit(images)
    model = registry.get_model_class("softmax")(epochs=2, random_state=0, verbose=False)
    model.fit(prep.transform(images), np.array([2, 5, 7] * 10))
    path = export_onnx(model, tmp_path / "m.onnx", preprocessor=prep)
    loaded = load_onnx(path)
    assert [loaded.classes[label] for label in loaded.labels] == ["2", "5", "7"]
    Image.fromarray(images[0][..., 0]).save(tmp_path / "x.png")
    code, out, err = cli(capsys, "predict", "--onnx", path, tmp_path / "x.png")
    assert code == 0, err
    assert out.split()[1] in ("2", "5", "7")
