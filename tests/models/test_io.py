"""Model files: round trip, refusal of foreign, truncated and damaged files."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from chainrule.data import Preprocessor
from chainrule.models import registry
from chainrule.models.io import find_model_file, load_model, save_model


class NearestMean:
    """A minimal estimator: predicts the class whose training mean is closest."""

    def __init__(self, shrink=0.0, sizes=(1, 2)):
        self.shrink = shrink
        self.sizes = sizes

    def get_params(self, deep=True):
        return {"shrink": self.shrink, "sizes": self.sizes}

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_]).astype(np.float32)
        return self

    def predict_proba(self, X):
        d = ((X[:, None, :] - self.means_[None]) ** 2).sum(-1)
        e = np.exp(-(d - d.min(axis=1, keepdims=True)))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def _state_dict(self):
        return {"classes_": self.classes_, "means_": self.means_}

    def _load_state_dict(self, state):
        self.classes_ = np.asarray(state["classes_"])
        self.means_ = np.asarray(state["means_"], dtype=np.float32)


@pytest.fixture
def toy_registered(monkeypatch):
    loc = (NearestMean.__module__, NearestMean.__qualname__)
    monkeypatch.setitem(registry._LOCATIONS, "toy", loc)
    monkeypatch.setitem(registry.MODEL_REGISTRY._classes, "toy", NearestMean)
    return "toy"


@pytest.fixture
def fitted(toy_registered):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 4, 4, 3), dtype=np.uint8)
    labels = np.arange(30) % 3
    images[labels == 1] //= 2  # make classes distinguishable
    prep = Preprocessor().fit(images)
    model = NearestMean(shrink=0.5).fit(prep.transform(images), labels)
    return model, prep, images


def test_round_trip_keeps_predictions_params_and_preprocessing(tmp_path, fitted):
    model, prep, images = fitted
    path = save_model(
        tmp_path / "m.npz", model, prep, classes=["a", "b", "c"], extra={"acc": np.float32(0.5)}
    )
    loaded = load_model(path)
    assert loaded.name == "toy"
    assert isinstance(loaded.model, NearestMean)
    assert loaded.classes == ["a", "b", "c"]
    assert loaded.params == {"shrink": 0.5, "sizes": [1, 2]}
    assert loaded.extra == {"acc": 0.5}
    np.testing.assert_array_equal(loaded.preprocessor.mean_, prep.mean_)
    np.testing.assert_array_equal(loaded.predict(images), model.predict(prep.transform(images)))
    np.testing.assert_allclose(
        loaded.predict_proba(images), model.predict_proba(prep.transform(images))
    )


def test_file_has_no_pickled_members(tmp_path, fitted):
    model, prep, _ = fitted
    path = save_model(tmp_path / "m.bin", model, prep)  # suffix kept as given
    assert path.exists() and not (tmp_path / "m.bin.npz").exists()
    with np.load(path, allow_pickle=False) as npz:
        names = set(npz.files)
        assert {"__chainrule__", "model_class", "params_json", "classes_json"} <= names
        assert {"model/means_", "prep/mean"} <= names
        assert json.loads(str(npz["__chainrule__"]))["format"] == "chainrule-model"
    # default class names come from the model's classes_
    assert load_model(path).classes == ["0", "1", "2"]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run folder or model file"):
        load_model(tmp_path / "nope.npz")


def test_foreign_npz_and_other_files_are_refused(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="not a chainrule model file"):
        load_model(tmp_path / "other.npz")
    np.save(tmp_path / "plain.npy", np.arange(3))
    with pytest.raises(ValueError, match="not a chainrule model file"):
        load_model(tmp_path / "plain.npy")
    (tmp_path / "text.npz").write_text("hello, I am not a zip archive\n")
    with pytest.raises(ValueError, match="not a chainrule model file"):
        load_model(tmp_path / "text.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a chainrule model file"):
        load_model(tmp_path / "obj.npy")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file_is_refused(tmp_path, fitted, keep):
    model, prep, _ = fitted
    path = save_model(tmp_path / "m.npz", model, prep)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="truncated or damaged"):
        load_model(path)


def test_corrupted_member_fails_crc(tmp_path, fitted):
    model, prep, _ = fitted
    path = save_model(tmp_path / "m.npz", model, prep)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("model/means_.npy")
    # flip a byte inside the stored array data (after the local header and .npy header)
    data[info.header_offset + 30 + len(info.filename) + 140] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or damaged"):
        load_model(path)


def test_unknown_class_and_version(tmp_path, fitted, monkeypatch):
    model, prep, _ = fitted
    path = save_model(tmp_path / "m.npz", model, prep)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["model_class"] = np.array("nosuchmodel")
    np.savez(tmp_path / "unknown.npz", **arrays)
    with pytest.raises(ValueError, match="unknown class 'nosuchmodel'"):
        load_model(tmp_path / "unknown.npz")
    arrays["model_class"] = np.array("toy")
    arrays["__chainrule__"] = np.array(json.dumps({"format": "chainrule-model", "version": 99}))
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match="format version 99"):
        load_model(tmp_path / "future.npz")


def test_damaged_state_is_reported(tmp_path, fitted):
    model, prep, _ = fitted
    path = save_model(tmp_path / "m.npz", model, prep)
    with np.load(path) as npz:
        arrays = {k: v for k, v in npz.items() if k != "model/means_"}
    np.savez(tmp_path / "nomeans.npz", **arrays)
    with pytest.raises(ValueError, match="lacks 'model/means_', which its header declares"):
        load_model(tmp_path / "nomeans.npz")
    # A file whose header agrees: the family's own loader finds the state incomplete.
    header = json.loads(str(arrays["__chainrule__"]))
    header["members"].remove("model/means_")
    arrays["__chainrule__"] = np.array(json.dumps(header))
    np.savez(tmp_path / "nomeans.npz", **arrays)
    with pytest.raises(ValueError, match="model state is invalid"):
        load_model(tmp_path / "nomeans.npz")


def test_unregistered_model_cannot_be_saved(tmp_path):
    class Unknown(NearestMean):
        pass

    m = Unknown().fit(np.eye(4, dtype=np.float32), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="not a registered chainrule model"):
        save_model(tmp_path / "m.npz", m)


def test_registry_names_and_errors():
    assert list(registry.MODEL_REGISTRY) == ["knn", "svm", "softmax", "twolayer", "mlp", "cnn"]
    with pytest.raises(ValueError, match="unknown model 'forest'; choose one of knn"):
        registry.get_model_class("forest")


def test_every_registered_name_resolves_both_ways():
    for name in registry.MODEL_REGISTRY:
        cls = registry.get_model_class(name)
        assert registry.model_name(cls) == name
        assert registry.model_name(cls()) == name


@pytest.mark.parametrize(
    "name, params",
    [
        ("knn", {"k": 3, "metric": "l1"}),
        ("svm", {"epochs": 2, "random_state": 0, "verbose": False}),
        ("softmax", {"epochs": 2, "random_state": 0, "verbose": False}),
        ("twolayer", {"hidden_size": 7, "epochs": 2, "random_state": 0, "verbose": False}),
        (
            "mlp",
            {
                "hidden_dims": (6, 5),
                "batchnorm": True,
                "dropout": 0.2,
                "epochs": 2,
                "random_state": 0,
                "verbose": False,
            },
        ),
    ],
)
def test_real_models_round_trip(tmp_path, name, params):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 12)).astype(np.float32)
    y = np.arange(60) % 3
    X[:, 0] += 2.0 * y  # something to learn
    model = registry.get_model_class(name)(**params).fit(X, y)
    path = save_model(tmp_path / f"{name}.npz", model, classes=["a", "b", "c"])
    loaded = load_model(path)
    assert type(loaded.model) is type(model)
    assert loaded.preprocessor is None and loaded.classes == ["a", "b", "c"]
    np.testing.assert_array_equal(loaded.model.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.model.predict_proba(X), model.predict_proba(X), rtol=1e-6)


def test_find_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run folder or model file"):
        find_model_file(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="has no model file"):
        find_model_file(tmp_path)
    (tmp_path / "knn.npz").write_bytes(b"")
    (tmp_path / "checkpoint.npz").write_bytes(b"")
    assert find_model_file(tmp_path) == tmp_path / "knn.npz"
    (tmp_path / "svm.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"several models \(knn, svm\); pick one with --model"):
        find_model_file(tmp_path)
    assert find_model_file(tmp_path, "svm") == tmp_path / "svm.npz"
    with pytest.raises(FileNotFoundError, match="has no model 'mlp.npz'; it has knn.npz, svm.npz"):
        find_model_file(tmp_path, "mlp")
    (tmp_path / "model.npz").write_bytes(b"")
    assert find_model_file(tmp_path) == tmp_path / "model.npz"
    assert find_model_file(tmp_path / "svm.npz") == tmp_path / "svm.npz"
