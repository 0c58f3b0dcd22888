"""ONNX export: for every model kind, ONNX Runtime on the exported file gives chainrule's
labels and probabilities on raw images, for the bundled digits and a colour image folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from chainrule.data import Preprocessor, load
from chainrule.models import (
    FullyConnectedNet,
    KNearestNeighbors,
    LinearSVM,
    SoftmaxClassifier,
    TwoLayerNet,
    export_onnx,
    load_model,
    save_model,
)
from chainrule.models.export import load_onnx

PROBA_TOL = 1e-5


def make_colour_images(n_per_class: int, seed: int, size=(7, 5)):
    """Three classes of RGB images (7 high, 5 wide: H != W catches axis mix-ups), told
    apart by their main colour."""
    rng = np.random.default_rng(seed)
    colours = np.array([(0, 0, 200), (0, 180, 0), (220, 0, 0)])
    images, labels = [], []
    for label, colour in enumerate(colours):
        noise = rng.integers(0, 90, size=(n_per_class, *size, 3))
        images.append(
            np.clip(noise + colour * rng.uniform(0.5, 1.0, (n_per_class, 1, 1, 1)), 0, 255)
        )
        labels.append(np.full(n_per_class, label))
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels)


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """A small colour image folder DIR/<class>/*.png, loaded as chainrule loads folders."""
    from PIL import Image

    root = tmp_path_factory.mktemp("colours")
    images, labels = make_colour_images(20, seed=1)
    for i, (im, label) in enumerate(zip(images, labels)):
        folder = root / ["blue", "green", "red"][label]
        folder.mkdir(exist_ok=True)
        Image.fromarray(im).save(folder / f"{i}.png")
    return root


def _split(name, colour_folder, cache):
    if name == "digits":
        train, test = load("digits", "train"), load("digits", "test")
        return train.images, train.labels, test.images, train.classes
    ds = load(str(colour_folder), "all", cache_dir=cache)
    order = np.random.default_rng(0).permutation(len(ds))
    tr, te = order[:40], order[40:]
    return ds.images[tr], ds.labels[tr], ds.images[te], ds.classes


@pytest.fixture(scope="module", params=["digits", "colours"])
def data(request, colour_folder, tmp_path_factory):
    """(train images, train labels, test images, class names, fitted Preprocessor)."""
    cache = tmp_path_factory.mktemp("cache")
    images, labels, test_images, classes = _split(request.param, colour_folder, cache)
    pre = Preprocessor().fit(images)
    return images, labels, test_images, classes, pre


def _models(image_shape):
    quiet = {"random_state": 0, "verbose": False}
    return {
        "svm": LinearSVM(learning_rate=1.0, reg=1e-4, epochs=3, **quiet),
        "softmax": SoftmaxClassifier(learning_rate=5.0, epochs=3, **quiet),
        "twolayer": TwoLayerNet(hidden_size=16, epochs=3, **quiet),
        # batch norm (folded), dropout (gone in the graph), test-time flips (in the graph)
        "mlp": FullyConnectedNet(
            hidden_dims=(24, 16),
            batchnorm=True,
            dropout=0.2,
            augment=True,
            image_shape=image_shape,
            epochs=3,
            **quiet,
        ),
        "knn": KNearestNeighbors(k=3),
    }


KINDS = ["svm", "softmax", "twolayer", "mlp", "knn"]


def fit(kind, data):
    images, labels, _, _, pre = data
    model = _models(pre.image_shape_)[kind]
    return model.fit(pre.transform(images), labels)


def assert_same_answers(model, pre, path: Path, images) -> None:
    """ONNX Runtime's labels equal chainrule's, probabilities within 1e-5."""
    X = pre.transform(images)
    labels, proba = load_onnx(path).run(images)
    assert labels.dtype == np.int64 and labels.shape == (len(images),)
    assert proba.dtype == np.float32 and proba.shape == (len(images), len(model.classes_))
    np.testing.assert_array_equal(labels, model.predict(X))
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=PROBA_TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_runtime_gives_chainrule_answers(kind, data, tmp_path):
    model = fit(kind, data)
    images, _, test_images, classes, pre = data
    path = export_onnx(model, tmp_path / f"{kind}.onnx", preprocessor=pre, classes=classes)
    assert_same_answers(model, pre, path, test_images)
    rng = np.random.default_rng(2)
    for n in (1, 37):
        assert_same_answers(model, pre, path, test_images[rng.choice(len(test_images), n)])


@pytest.mark.parametrize("resize", [True, False])
def test_graph_is_checked_with_opset_18_and_declares_its_interface(resize, data, tmp_path):
    model = fit("mlp", data)
    _, _, _, classes, pre = data
    path = export_onnx(model, tmp_path / "m.onnx", preprocessor=pre, classes=classes, resize=resize)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain == ""] == [18]
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    h, w, c = pre.image_shape_
    assert dims == (["N", "H", "W", c] if resize else ["N", h, w, c])
    resizes = [n for n in proto.graph.node if n.op_type == "Resize"]
    assert len(resizes) == int(resize)
    if resize:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in resizes[0].attribute}
        assert attrs == {
            "mode": b"linear", "coordinate_transformation_mode": b"half_pixel",
            "antialias": 1, "axes": [1, 2],
        }  # fmt: skip
    outputs = {o.name: o.type.tensor_type for o in proto.graph.output}
    assert outputs["label"].elem_type == onnx.TensorProto.INT64
    assert outputs["probabilities"].elem_type == onnx.TensorProto.FLOAT
    assert outputs["probabilities"].shape.dim[1].dim_value == len(classes)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == list(classes)
    assert json.loads(meta["params"])["hidden_dims"] == [24, 16]
    assert meta["chainrule_version"] and meta["model"] == "mlp"
    assert json.loads(meta["test_time_flip"]) is True
    resize_meta = json.loads(meta["resize"])
    if resize:
        assert (resize_meta["height"], resize_meta["width"]) == (h, w)
        assert "antialias=1" in resize_meta["method"]
    else:
        assert resize_meta is None
    # evaluation graph: no dropout, batch norm folded into the matrix products
    ops = [n.op_type for n in proto.graph.node]
    assert "Dropout" not in ops and "BatchNormalization" not in ops
    assert ops.count("Gemm") == 3


def test_a_loaded_model_file_exports_with_its_own_preprocessing(data, tmp_path):
    model = fit("softmax", data)
    images, _, test_images, classes, pre = data
    save_model(tmp_path / "m.npz", model, pre, classes)
    loaded = load_model(tmp_path / "m.npz")
    path = export_onnx(loaded, tmp_path / "m.onnx")
    labels, proba = load_onnx(path).run(test_images)
    np.testing.assert_array_equal(labels, loaded.predict(test_images))
    np.testing.assert_allclose(proba, loaded.predict_proba(test_images), rtol=0, atol=PROBA_TOL)
    assert load_onnx(path).classes == loaded.classes


def test_preprocessing_in_the_graph_is_bit_exact(data):
    """The rows entering the model are exactly Preprocessor.transform's (bias column, or
    images channels first, too)."""
    import onnxruntime as ort
    from onnx import helper

    from chainrule.models.export.graph import Graph, value_info
    from chainrule.models.export.preprocess import images_to_rows

    images, _, test_images, _, _ = data
    for pre in (
        Preprocessor(bias=True),
        Preprocessor(standardize=True),
        Preprocessor(center=False),
        Preprocessor(flatten=False),
    ):
        pre.fit(images)
        g = Graph()
        g.fresh("images")
        pixels = g.op("Cast", ["images"], "pixels", to=1)
        rows = images_to_rows(g, pixels, pre)
        graph = g.to_graph(
            [value_info("images", np.uint8, ["N", *pre.image_shape_])],
            [value_info(rows, np.float32, ["N", *pre.transform(images[:1]).shape[1:]])],
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        proto.ir_version = 8
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        (out,) = session.run(None, {"images": test_images})
        np.testing.assert_array_equal(out, pre.transform(test_images))


@pytest.mark.parametrize(
    "settings",
    [
        {"hidden_dims": (20,), "test_time_flip": False},
        {"hidden_dims": (20, 12), "batchnorm": True, "test_time_flip": True},
        {"hidden_dims": (16,), "dropout": 0.5, "optimizer": "sgd", "learning_rate": 0.1},
    ],
)
def test_network_variants(settings, data, tmp_path):
    images, labels, test_images, _, pre = data
    model = FullyConnectedNet(
        epochs=2, image_shape=pre.image_shape_, random_state=0, verbose=False, **settings
    ).fit(pre.transform(images), labels)
    path = export_onnx(model, tmp_path / "net.onnx", preprocessor=pre)
    assert_same_answers(model, pre, path, test_images)


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
@pytest.mark.parametrize("k", [1, 5])
def test_knn_metrics(metric, k, data, tmp_path):
    images, labels, test_images, _, pre = data
    model = KNearestNeighbors(k=k, metric=metric).fit(pre.transform(images), labels)
    path = export_onnx(model, tmp_path / "knn.onnx", preprocessor=pre)
    assert_same_answers(model, pre, path, test_images)


def test_model_with_a_bias_column_and_standardized_pixels(data, tmp_path):
    images, labels, test_images, _, _ = data
    pre = Preprocessor(standardize=True, bias=True).fit(images)
    for model in (
        LinearSVM(learning_rate=0.5, epochs=2, random_state=0, verbose=False),
        TwoLayerNet(hidden_size=8, epochs=2, random_state=0, verbose=False),
        KNearestNeighbors(k=3, metric="cosine"),
    ):
        model.fit(pre.transform(images), labels)
        path = export_onnx(model, tmp_path / "m.onnx", preprocessor=pre)
        assert_same_answers(model, pre, path, test_images)


def test_exported_file_runs_in_a_process_with_only_onnxruntime_and_numpy(data, tmp_path):
    _, _, test_images, classes, pre = data
    models = {kind: fit(kind, data) for kind in ("mlp", "knn")}
    paths = [
        str(export_onnx(m, tmp_path / f"{kind}.onnx", preprocessor=pre, classes=classes))
        for kind, m in models.items()
    ]
    np.save(tmp_path / "images.npy", test_images)
    script = f"""
import json, sys
import numpy as np
import onnxruntime as ort
images = np.load({str(tmp_path / "images.npy")!r})
report = {{}}
for i, path in enumerate({paths!r}):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    label, proba = session.run(["label", "probabilities"], {{"images": images}})
    np.savez({str(tmp_path)!r} + f"/out{{i}}.npz", label=label, proba=proba)
    report[path] = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
report["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("chainrule", "onnx"))
print(json.dumps(report))
"""
    # -I: no PYTHONPATH, no current folder on the path
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {**{p: list(classes) for p in paths}, "loaded": []}
    X = pre.transform(test_images)
    for i, model in enumerate(models.values()):
        out = np.load(tmp_path / f"out{i}.npz")
        np.testing.assert_array_equal(out["label"], model.predict(X))
        np.testing.assert_allclose(out["proba"], model.predict_proba(X), rtol=0, atol=PROBA_TOL)


# -- k-NN: ties ----------------------------------------------------------------------


def _pixels(*values) -> np.ndarray:
    """Images of 1 x 2 pixels, one channel: (N, 1, 2, 1) uint8 from pairs of values."""
    return np.asarray(values, dtype=np.uint8).reshape(-1, 1, 2, 1)


def _knn_answers(train, y, queries, tmp_path, center=False, **params):
    pre = Preprocessor(center=center).fit(train)
    model = KNearestNeighbors(**params).fit(pre.transform(train), y)
    path = export_onnx(model, tmp_path / "knn.onnx", preprocessor=pre)
    labels, proba = load_onnx(path).run(queries)
    X = pre.transform(queries)
    np.testing.assert_array_equal(labels, model.predict(X))
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=PROBA_TOL)
    return labels, proba


def test_knn_vote_tie_goes_to_the_smallest_label(tmp_path):
    # the nearest neighbour has label 7, the second label 2: one vote each -> 2
    train = _pixels((10, 10), (30, 30), (200, 200))
    labels, proba = _knn_answers(
        train, np.array([7, 2, 5]), _pixels((15, 15), (195, 195)), tmp_path, k=2
    )
    assert labels.tolist() == [2, 2]  # second query: votes 5 and 2 -> 2
    np.testing.assert_allclose(proba, [[0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])  # classes 2, 5, 7


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
def test_knn_equal_distances_go_to_the_smaller_training_index(metric, tmp_path):
    # rows 0 and 1 are the same image with different labels; rows 2 and 3 are mirror
    # images of each other, exactly equally far from the second query in every metric
    train = _pixels((50, 20), (50, 20), (40, 50), (50, 40), (10, 250))
    y = np.array([4, 1, 6, 3, 0])
    queries = _pixels((50, 20), (50, 50))
    labels, _ = _knn_answers(train, y, queries, tmp_path, metric=metric, k=1)
    assert labels.tolist() == [4, 6]
    labels, _ = _knn_answers(train, y[::-1].copy(), queries, tmp_path, metric=metric, k=1)
    assert labels.tolist() == [0, 6]  # y reversed: rows 0..4 have labels 0, 3, 6, 1, 4


def test_knn_exact_tie_whose_float32_candidates_come_in_the_other_order(tmp_path):
    """Two rows at the same exact distance 3 from the query (3 pixels one lower, or one
    higher), whose float32 values ``||x||^2 - 2 q.x`` round to -2**26 + 4 and -2**26 (the
    squared norms straddle 2**26): the lower training index must still win."""
    q = np.full((1, 64, 64, 1), 128, np.uint8)
    lower, higher = q.copy(), q.copy()
    lower[0, 0, :3] -= 1
    higher[0, 0, :3] += 1
    far = np.random.default_rng(0).integers(0, 60, (20, 64, 64, 1)).astype(np.uint8)
    train = np.concatenate([far, lower, higher])
    X = train.reshape(len(train), -1).astype(np.float32)
    model = KNearestNeighbors(k=1).fit(X, np.array([0] * 20 + [1, 2]))
    path = export_onnx(model, tmp_path / "knn.onnx", image_shape=(64, 64, 1))
    assert load_onnx(path).predict(q).tolist() == model.predict(q.reshape(1, -1)).tolist() == [1]


def test_knn_many_duplicates_beyond_the_candidate_pool(tmp_path):
    """Sixteen distinct 2x2 images, about 37 copies each with random labels: every query has
    more tied neighbours than the graph re-measures, and still gets chainrule's vote."""
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 2, (600, 2, 2, 1)) * 255).astype(np.uint8)
    y = rng.integers(0, 4, 600)
    queries = (rng.integers(0, 3, (100, 2, 2, 1)) * 127).astype(np.uint8)
    for metric in ("l2", "l1", "cosine"):
        _knn_answers(train, y, queries, tmp_path, center=True, metric=metric, k=7)


def test_knn_zero_vector_is_at_cosine_distance_one(tmp_path):
    train = _pixels((0, 0), (10, 10), (0, 0), (200, 0))
    y = np.array([3, 2, 1, 0])
    # a black query has cos = 0 with everything: all at distance 1, the first rows win
    labels, proba = _knn_answers(train, y, _pixels((0, 0)), tmp_path, metric="cosine", k=2)
    assert labels.tolist() == [2]  # rows 0 and 1: labels 3 and 2, one vote each -> 2


def test_knn_training_set_smaller_than_the_candidate_pool(tmp_path):
    train = _pixels((0, 5), (9, 9), (100, 3))
    _knn_answers(train, np.array([1, 0, 1]), _pixels((1, 1), (90, 2), (50, 50)), tmp_path, k=3)


def test_knn_external_data(data, tmp_path):
    images, labels, test_images, _, pre = data
    model = KNearestNeighbors(k=3).fit(pre.transform(images), labels)
    path = export_onnx(model, tmp_path / "knn.onnx", preprocessor=pre, external_data=True)
    data_file = tmp_path / "knn.onnx.data"
    assert data_file.stat().st_size >= pre.transform(images).nbytes > path.stat().st_size
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert_same_answers(model, pre, path, test_images)
    # written again as one file: the side file of the earlier export goes
    export_onnx(model, path, preprocessor=pre, external_data=False)
    assert not data_file.exists()
    assert_same_answers(model, pre, path, test_images)


def test_export_leaves_a_data_file_it_did_not_write(data, tmp_path):
    """A file named like the side file, that no export to this path wrote, is the user's:
    a one-file export leaves it alone, an external-data export refuses to replace it,
    and a link there is never written through."""
    images, labels, test_images, _, pre = data
    model = KNearestNeighbors(k=3).fit(pre.transform(images), labels)
    path = tmp_path / "knn.onnx"
    side = tmp_path / "knn.onnx.data"
    side.write_bytes(b"the user's own data")
    export_onnx(model, path, preprocessor=pre, external_data=False)
    assert side.read_bytes() == b"the user's own data"
    with pytest.raises(OSError, match="knn.onnx.data is in the way"):
        export_onnx(model, path, preprocessor=pre, external_data=True)
    assert side.read_bytes() == b"the user's own data"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"important")
    side.unlink()
    side.symlink_to(victim)
    with pytest.raises(OSError, match="in the way"):
        export_onnx(model, path, preprocessor=pre, external_data=True)
    export_onnx(model, path, preprocessor=pre, external_data=False)
    assert side.is_symlink() and victim.read_bytes() == b"important"
    # a side file an export to this path did write is replaced by the next one
    side.unlink()
    export_onnx(model, path, preprocessor=pre, external_data=True)
    export_onnx(model, path, preprocessor=pre, external_data=True)
    assert_same_answers(model, pre, path, test_images)
