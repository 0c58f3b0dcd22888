"""ONNX export around the edges: clear errors, the layer-converter table, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from chainrule import nn
from chainrule.data import Preprocessor
from chainrule.data.resize import resize_images
from chainrule.models import FullyConnectedNet, KNearestNeighbors, LinearSVM, export_onnx
from chainrule.models.export import load_onnx


@pytest.fixture(scope="module")
def tiny():
    """(images (60, 4, 3, 2) uint8, labels, fitted Preprocessor)."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    images = rng.integers(0, 120, (60, 4, 3, 2)) + 60 * labels[:, None, None, None]
    images = images.astype(np.uint8)
    return images, labels, Preprocessor().fit(images)


def test_import_chainrule_does_not_import_onnx():
    code = (
        "import sys, chainrule, chainrule.models, chainrule.models.export, chainrule.cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_missing_onnx_package_is_one_clear_error(tiny, tmp_path, monkeypatch):
    images, labels, pre = tiny
    model = LinearSVM(epochs=1, verbose=False).fit(pre.transform(images), labels)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(
        ImportError, match=r'needs the onnx package: pip install "chainrule\[onnx\]"'
    ):
        export_onnx(model, tmp_path / "m.onnx", preprocessor=pre)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="needs onnxruntime"):
        load_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


class Foreign:
    """A fitted classifier that is not chainrule's."""

    classes_ = np.array([0, 1])
    coef_ = np.zeros((2, 3))

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)


def test_models_that_cannot_be_exported(tiny, tmp_path):
    images, labels, pre = tiny
    with pytest.raises(TypeError, match="cannot export a dict to ONNX"):
        export_onnx({"W_": 1}, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="cannot export a Foreign to ONNX"):
        export_onnx(Foreign(), tmp_path / "m.onnx", preprocessor=pre)
    for unfitted in (LinearSVM(), FullyConnectedNet(), KNearestNeighbors()):
        with pytest.raises(ValueError, match="not fitted"):
            export_onnx(unfitted, tmp_path / "m.onnx", preprocessor=pre)
    assert not (tmp_path / "m.onnx").exists()


def test_unwritable_destinations(tiny, tmp_path):
    images, labels, pre = tiny
    model = KNearestNeighbors().fit(pre.transform(images), labels)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot write .*file/m\.onnx"):
        export_onnx(model, tmp_path / "file" / "m.onnx", preprocessor=pre)
    with pytest.raises(OSError, match="it is a folder"):
        export_onnx(model, tmp_path, preprocessor=pre)
    # a missing folder is created, as for model files
    path = export_onnx(model, tmp_path / "new" / "m.onnx", preprocessor=pre)
    assert path.is_file()


def test_flips_need_the_image_shape_of_the_input(tiny, tmp_path):
    images, labels, pre = tiny
    X = pre.transform(images)
    net = FullyConnectedNet(hidden_dims=(4,), epochs=1, verbose=False, random_state=0)
    net.fit(X, labels)
    net.set_params(test_time_flip=True, image_shape=(3, 4, 2))  # transposed: not the input's
    with pytest.raises(ValueError, match="mirror images"):
        export_onnx(net, tmp_path / "m.onnx", preprocessor=pre)


class Doubler(nn.Module):
    """A layer the exporter does not know: x -> 2 x."""

    def forward(self, x):
        return x * 2.0


def _net_with(layer, tiny):
    images, labels, pre = tiny
    net = FullyConnectedNet(
        hidden_dims=(6,), batchnorm=False, dropout=0.0, epochs=1, verbose=False, random_state=0
    )
    net.fit(pre.transform(images), labels)
    net.net_ = nn.Sequential(*list(net.net_)[:-1], layer, list(net.net_)[-1])
    return net


def test_unknown_layer_is_named_and_a_registered_converter_exports_it(tiny, tmp_path):
    from chainrule.models.export import register_converter
    from chainrule.models.export.modules import _CONVERTERS

    images, _, pre = tiny
    net = _net_with(Doubler(), tiny)
    with pytest.raises(TypeError, match=r"no ONNX converter for a Doubler layer \(net\.2\)"):
        export_onnx(net, tmp_path / "m.onnx", preprocessor=pre)

    @register_converter(Doubler)
    def _doubler(g, m, x, name):
        return g.op("Mul", [x, g.scalar(2.0, np.float32, f"{name}.two")], name)

    try:
        path = export_onnx(net, tmp_path / "m.onnx", preprocessor=pre)
    finally:
        del _CONVERTERS[Doubler]
    labels, proba = load_onnx(path).run(images)
    X = pre.transform(images)
    np.testing.assert_array_equal(labels, net.predict(X))
    np.testing.assert_allclose(proba, net.predict_proba(X), rtol=0, atol=1e-5)


def test_a_graph_that_disagrees_with_chainrule_is_never_written(tiny, tmp_path):
    """A converter that computes something else (here: triples where the layer doubles)
    is caught by the check every export passes: ONNX Runtime against chainrule."""
    from chainrule.models.export import register_converter
    from chainrule.models.export.modules import _CONVERTERS
    from chainrule.models.export.verify import ExportMismatch

    _, _, pre = tiny
    net = _net_with(Doubler(), tiny)

    @register_converter(Doubler)
    def _wrong(g, m, x, name):
        return g.op("Mul", [x, g.scalar(3.0, np.float32, f"{name}.three")], name)

    try:
        with pytest.raises(ExportMismatch, match=r"other answers than chainrule on test images"
                           r" of 3x4 pixels .*nothing was written"):  # fmt: skip
            export_onnx(net, tmp_path / "m.onnx", preprocessor=pre)
        assert not (tmp_path / "m.onnx").exists()
        # check=False writes it anyway (for a model whose answers are checked elsewhere)
        assert export_onnx(net, tmp_path / "m.onnx", preprocessor=pre, check=False).exists()
    finally:
        del _CONVERTERS[Doubler]


@pytest.mark.parametrize(
    "layer", [nn.Tanh(), nn.Sigmoid(), nn.LeakyReLU(0.2), nn.Identity(), nn.Flatten()]
)
def test_every_layer_in_the_table(layer, tiny, tmp_path):
    images, _, pre = tiny
    net = _net_with(nn.Sequential(layer, nn.Dropout(0.3)), tiny)
    path = export_onnx(net, tmp_path / "m.onnx", preprocessor=pre)
    labels, proba = load_onnx(path).run(images)
    X = pre.transform(images)
    np.testing.assert_array_equal(labels, net.predict(X))
    np.testing.assert_allclose(proba, net.predict_proba(X), rtol=0, atol=1e-5)


def test_batchnorm_alone_and_folded(tiny, tmp_path):
    """A BatchNorm1d after a ReLU (no Linear to fold into) and one folded into a Linear
    with a bias, both with trained-looking statistics."""
    images, _, pre = tiny
    rng = np.random.default_rng(3)
    bn1, bn2 = nn.BatchNorm1d(6), nn.BatchNorm1d(5)
    for bn in (bn1, bn2):
        d = bn.num_features
        bn.running_mean[:] = rng.normal(size=d)
        bn.running_var[:] = rng.uniform(0.1, 3.0, size=d)
        bn.weight.data[:] = rng.normal(size=d)
        bn.bias.data[:] = rng.normal(size=d)
    net = _net_with(nn.Sequential(bn1, nn.Linear(6, 5, random_state=0), bn2, nn.ReLU()), tiny)
    setattr(net.net_, "3", nn.Linear(5, 3, random_state=1))
    net.net_.eval()
    path = export_onnx(net, tmp_path / "m.onnx", preprocessor=pre)
    labels, proba = load_onnx(path).run(images)
    X = pre.transform(images)
    np.testing.assert_array_equal(labels, net.predict(X))
    np.testing.assert_allclose(proba, net.predict_proba(X), rtol=0, atol=1e-5)


def test_model_without_preprocessor(tiny, tmp_path):
    images, labels, _ = tiny
    X = images.reshape(len(images), -1).astype(np.float32)
    model = KNearestNeighbors(k=3, metric="l1").fit(X, labels)
    open_path = export_onnx(model, tmp_path / "open.onnx")
    fixed_path = export_onnx(model, tmp_path / "fixed.onnx", image_shape=(4, 3, 2), resize=False)
    any_size = export_onnx(model, tmp_path / "any.onnx", image_shape=(4, 3, 2))
    assert load_onnx(open_path).image_shape is None
    assert load_onnx(fixed_path).image_shape == load_onnx(any_size).image_shape == (4, 3, 2)
    assert (load_onnx(fixed_path).resizes, load_onnx(any_size).resizes) == (False, True)
    for path in (open_path, fixed_path, any_size):
        labels_onnx, proba = load_onnx(path).run(images)
        np.testing.assert_array_equal(labels_onnx, model.predict(X))
        np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=1e-7)
    turned = images.transpose(0, 2, 1, 3)
    with pytest.raises(ValueError, match=r"shape \(H, W, C\) = \(3, 4, 2\)"):
        load_onnx(fixed_path).run(turned)
    resized = resize_images(turned, 4, 3).reshape(len(images), -1).astype(np.float32)
    np.testing.assert_array_equal(load_onnx(any_size).run(turned)[0], model.predict(resized))
    with pytest.raises(ValueError, match="images have 1 channels but the model reads 2"):
        load_onnx(any_size).run(images[..., :1])


def test_load_onnx_refuses_files_that_are_not_chainrule_exports(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        load_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="cannot load ONNX file"):
        load_onnx(tmp_path / "junk.onnx")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "relu.onnx")
    with pytest.raises(ValueError, match="not a chainrule export"):
        load_onnx(tmp_path / "relu.onnx")


class ImageNet:
    """A fitted network estimator reading images (N, C, H, W), reduced to what export
    reads."""

    def __init__(self, net):
        self.net_ = net
        self.classes_ = np.array([0, 1, 2])

    def get_params(self):
        return {}


def test_preprocessing_that_keeps_images_channels_first(tiny, tmp_path):
    from chainrule import Tensor, no_grad
    from chainrule.autograd.arraymath import softmax

    images, _, _ = tiny
    pre = Preprocessor(flatten=False).fit(images)
    net = nn.Sequential(nn.Flatten(), nn.Linear(24, 5, random_state=0), nn.ReLU())
    net.append(nn.Linear(5, 3, random_state=1)).eval()
    path = export_onnx(ImageNet(net), tmp_path / "m.onnx", preprocessor=pre)
    labels, proba = load_onnx(path).run(images)
    with no_grad():
        want = softmax(net(Tensor(pre.transform(images))).data)
    np.testing.assert_allclose(proba, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(labels, want.argmax(axis=1))


def test_a_network_that_reads_rows_fitted_on_images(tiny, tmp_path):
    """An MLP fitted on images (N, H, W, C) flattens them as it reads them (its
    ``input_shape_`` is (D,)): the graph flattens the images the preprocessing keeps."""
    images, labels, _ = tiny
    pre = Preprocessor(flatten=False).fit(images)
    net = FullyConnectedNet(hidden_dims=(6,), epochs=2, verbose=False, random_state=0)
    net.fit(pre.transform(images), labels)
    assert net.input_shape_ == (24,) and net.image_shape_ == (4, 3, 2)
    path = export_onnx(net, tmp_path / "m.onnx", preprocessor=pre)
    got_labels, proba = load_onnx(path).run(images)
    X = pre.transform(images)
    np.testing.assert_array_equal(got_labels, net.predict(X))
    np.testing.assert_allclose(proba, net.predict_proba(X), rtol=0, atol=1e-5)
