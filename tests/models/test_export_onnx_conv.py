"""ONNX export of convolutional networks: ONNX Runtime computes chainrule's evaluation-mode
class scores, layer type by layer type and for the networks `build_convnet` makes.

Scores are compared relative to their scale: ``max |onnx - chainrule| <= SCORE_RTOL *
max |chainrule|``. Both sides compute in float32 but sum the convolutions in different
orders, and the graph folds batch norm into the convolutions' weights (rounded once from
float64), so a few float32 roundings per layer separate them (measured: under 1e-6 of the
scale for these networks); 1e-5 leaves room for other BLAS and MLAS kernels while a wrong
axis, padding or statistic moves the scores by 1e-2 or more.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from chainrule import Tensor, nn, no_grad  # noqa: E402
from chainrule.autograd.arraymath import softmax  # noqa: E402
from chainrule.data import Preprocessor  # noqa: E402
from chainrule.models import ConvNet, export_onnx  # noqa: E402
from chainrule.models.convnet_arch import Scale, build_convnet  # noqa: E402
from chainrule.models.export import load_onnx  # noqa: E402

SCORE_RTOL = 1e-5
PROBA_TOL = 1e-5


def images_of(shape, n: int, seed: int) -> np.ndarray:
    """(n, H, W, C) uint8 images: smooth blobs plus noise, so that the convolutions see
    structure and the batch norm statistics below are not all that moves the scores."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    yy, xx = np.mgrid[0:h, 0:w]
    centres = rng.uniform(0, 1, (n, 1, 1, 2)) * [h, w]
    blob = np.exp(-((yy - centres[..., 0]) ** 2 + (xx - centres[..., 1]) ** 2) / (0.1 * h * w))
    colour = rng.uniform(60, 200, (n, 1, 1, c))
    noise = rng.integers(0, 50, (n, h, w, c))
    return np.clip(blob[..., None] * colour + noise, 0, 255).astype(np.uint8)


def set_statistics(net: nn.Module, seed: int) -> None:
    """Running statistics (and learned scales and shifts) far from their initial values,
    as after training: a fold that ignored any of them would change the scores."""
    rng = np.random.default_rng(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean[:] = rng.normal(0.0, 0.3, c)
            m.running_var[:] = rng.uniform(0.4, 2.5, c)
            m.bias.data[:] = rng.normal(0.0, 0.2, c)
            if m.weight is not None:
                m.weight.data[:] = rng.uniform(0.5, 1.5, c)
    net.eval()


def chainrule_scores(net: nn.Module, x: np.ndarray) -> np.ndarray:
    net.eval()
    with no_grad():
        return net(Tensor(x)).data


def onnx_scores(net: nn.Module, x: np.ndarray) -> np.ndarray:
    """The network alone (no preprocessing) as an ONNX graph, run by ONNX Runtime."""
    from onnx import helper

    from chainrule.models.export.graph import Graph, value_info
    from chainrule.models.export.modules import convert_module

    g = Graph()
    g.fresh("x")
    scores = convert_module(g, net, "x", "net")
    graph = g.to_graph(
        [value_info("x", np.float32, ["N", *x.shape[1:]])],
        [value_info(scores, np.float32, ["N", None])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"x": x})[0]


def assert_same_scores(net: nn.Module, x: np.ndarray) -> None:
    want = chainrule_scores(net, x)
    got = onnx_scores(net, x)
    assert got.shape == want.shape
    scale = np.abs(want).max()
    assert scale > 0
    assert np.abs(got - want).max() <= SCORE_RTOL * scale
    np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))


class NetworkOnly:
    """A fitted network estimator reduced to what export reads: ``net_`` and
    ``classes_`` (its input is whatever the preprocessor gives)."""

    def __init__(self, net, n_classes: int):
        self.net_ = net
        self.classes_ = np.arange(n_classes)

    def get_params(self):
        return {}


# -- the networks build_convnet makes ---------------------------------------------------

CONVNETS = {
    "digits-conv": ((8, 8, 1), {"widths": (8, 16), "stem": "conv"}),
    "digits-whiten": ((8, 8, 1), {"widths": (8,), "stem": "whiten", "convs_per_stage": 3}),
    "cifar-conv-scaled": (
        (32, 32, 3),
        {"widths": (8, 16, 16), "stem": "conv", "bn_scale": True, "logit_scale": 0.125},
    ),
    "cifar-whiten": ((32, 32, 3), {"widths": (16, 32, 32), "stem": "whiten"}),
}


def convnet(name: str, seed: int = 0):
    """(network, Preprocessor, test images) for one entry of CONVNETS."""
    shape, settings = CONVNETS[name]
    images = images_of(shape, 40, seed)
    pre = Preprocessor(flatten=False).fit(images)  # images (N, H, W, C), as ConvNet reads
    net = build_convnet(
        shape, 5, whiten_images=pre.transform(images), random_state=seed, **settings
    )
    set_statistics(net, seed + 1)
    return net, pre, images_of(shape, 23, seed + 2)


@pytest.mark.parametrize("name", list(CONVNETS))
def test_build_convnet_scores_match(name):
    net, pre, test = convnet(name)
    assert_same_scores(net, pre.transform(test))


@pytest.mark.parametrize("name", list(CONVNETS))
def test_build_convnet_exports_from_raw_images(name, tmp_path):
    net, pre, test = convnet(name)
    path = export_onnx(NetworkOnly(net, 5), tmp_path / "cnn.onnx", preprocessor=pre)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    convs = [m for m in net.modules() if type(m).__name__ in ("Conv2d", "PatchWhitening")]
    assert ops.count("Conv") == len(convs)
    # Every batch norm right after a convolution is folded into it; the ones after a
    # max pool are one Mul and one Add each.
    after_pool = sum(
        type(a) is nn.MaxPool2d and type(b) is nn.BatchNorm2d for a, b in zip(net, list(net)[1:])
    )
    scaled = any(type(m) is Scale for m in net)
    assert ops.count("Mul") == 1 + after_pool + scaled  # 1: the preprocessing's scaling
    assert "BatchNormalization" not in ops
    for n in (1, len(test)):
        labels, proba = load_onnx(path).run(test[:n])
        want = softmax(chainrule_scores(net, pre.transform(test[:n])))
        np.testing.assert_allclose(proba, want, rtol=0, atol=PROBA_TOL)
        np.testing.assert_array_equal(labels, want.argmax(axis=1))


def test_a_network_reading_rows_of_flattened_images(tmp_path):
    """The same network behind `RowsToImages`, reading the rows of ``Preprocessor()``."""
    net, _, test = convnet("cifar-whiten")
    pre = Preprocessor().fit(images_of((32, 32, 3), 40, 0))
    on_rows = nn.Sequential(nn.RowsToImages(32, 32, 3), *list(net)[1:])  # not Permute
    path = export_onnx(NetworkOnly(on_rows, 5), tmp_path / "cnn.onnx", preprocessor=pre)
    labels, proba = load_onnx(path).run(test)
    want = softmax(chainrule_scores(on_rows, pre.transform(test)))
    np.testing.assert_allclose(proba, want, rtol=0, atol=PROBA_TOL)
    np.testing.assert_array_equal(labels, want.argmax(axis=1))


# -- every layer type --------------------------------------------------------------------


def zoo(order: str, pool: type, global_pool: type, seed: int = 0) -> nn.Sequential:
    """Every convolutional layer type on 7 x 5 images (H != W catches swapped axes), with
    odd sizes that floor-mode pooling must cut, strides, asymmetric padding, a non-square
    kernel, a convolution bias folded with a learned batch norm scale, and residuals."""
    rng = np.random.default_rng(seed)

    def block(c):
        body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False, random_state=rng),
            nn.BatchNorm2d(c, scale=False),
            nn.ReLU(),
        )
        return nn.Residual(body)

    net = nn.Sequential(
        nn.RowsToImages(7, 5, 3, order=order),
        nn.Conv2d(3, 6, (3, 2), stride=(1, 2), padding=(2, 1), random_state=rng),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        block(6),
        pool(3, stride=(2, 1)),
        nn.BatchNorm2d(6, scale=False),
        nn.Residual(nn.Sequential(nn.BatchNorm2d(6), nn.ReLU())),
        nn.Conv2d(6, 4, 1, random_state=rng),
        global_pool(),
        nn.Linear(4, 3, random_state=rng),
        Scale(0.5),
    )
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            m.bias.data[:] = rng.normal(0.0, 0.5, m.out_channels)
    set_statistics(net, seed + 1)
    return net


@pytest.mark.parametrize("order", ["hwc", "chw"])
@pytest.mark.parametrize(
    "pool, global_pool",
    [(nn.MaxPool2d, nn.GlobalMaxPool2d), (nn.AvgPool2d, nn.GlobalAvgPool2d)],
)
def test_every_convolutional_layer_type(order, pool, global_pool):
    net = zoo(order, pool, global_pool)
    rows = np.random.default_rng(5).normal(size=(11, 7 * 5 * 3)).astype(np.float32)
    assert_same_scores(net, rows)


def test_batch_norm_statistics_reach_the_graph():
    """The same network with its initial statistics gives other scores: the comparison
    above would see a fold that dropped them."""
    net = zoo("hwc", nn.MaxPool2d, nn.GlobalMaxPool2d)
    rows = np.random.default_rng(5).normal(size=(11, 105)).astype(np.float32)
    trained = onnx_scores(net, rows)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[:] = 0.0
            m.running_var[:] = 1.0
    assert np.abs(onnx_scores(net, rows) - trained).max() > 1e-2 * np.abs(trained).max()


class ShiftedConv2d(nn.Conv2d):
    """A Conv2d that computes something else: converters match exact types."""

    def forward(self, x):
        return super().forward(x) + 1.0


def test_a_layer_without_converter_is_named(tmp_path):
    net, pre, _ = convnet("digits-conv")
    odd = ShiftedConv2d(1, 8, 3, padding=1, bias=False)
    layers = list(net)
    net = nn.Sequential(layers[0], odd, *layers[2:])
    with pytest.raises(TypeError, match=r"no ONNX converter for a ShiftedConv2d layer \(net\.1\)"):
        export_onnx(NetworkOnly(net, 5), tmp_path / "m.onnx", preprocessor=pre)
    assert not (tmp_path / "m.onnx").exists()


# -- the ConvNet estimator ---------------------------------------------------------------


@pytest.mark.parametrize("flips", [False, True])
def test_fitted_estimator_with_test_time_flips(flips, tmp_path):
    shape = (8, 6, 3)
    images = images_of(shape, 48, 0)
    labels = (images.mean(axis=(1, 2, 3)) > np.median(images.mean(axis=(1, 2, 3)))).astype(int)
    pre = Preprocessor(flatten=False).fit(images)
    model = ConvNet(
        channels=(8, 16), augment=True, test_time_flip=flips, batch_size=16, epochs=2,
        random_state=0, verbose=False,
    )  # fmt: skip
    model.fit(pre.transform(images), labels)
    path = export_onnx(model, tmp_path / "cnn.onnx", preprocessor=pre, classes=["dark", "light"])
    test = images_of(shape, 17, 3)
    got_labels, proba = load_onnx(path).run(test)
    X = pre.transform(test)
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=PROBA_TOL)
    np.testing.assert_array_equal(got_labels, model.predict(X))
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["test_time_flip"] == ("true" if flips else "false")


def test_test_time_shifts_are_refused_by_name(tmp_path):
    # The graph averages the mirror images only: a model that also averages shifted
    # views is refused before anything is written, and exports with the shifts off.
    shape = (8, 6, 3)
    images = images_of(shape, 32, 0)
    labels = np.arange(32) % 2
    pre = Preprocessor(flatten=False).fit(images)
    model = ConvNet(channels=(8,), augment=True, test_time_shift=1, batch_size=16, epochs=1,
                    random_state=0)  # fmt: skip
    model.fit(pre.transform(images), labels)
    with pytest.raises(ValueError, match="test_time_shift=0"):
        export_onnx(model, tmp_path / "cnn.onnx", preprocessor=pre)
    assert not (tmp_path / "cnn.onnx").exists()
    model.set_params(test_time_shift=0)
    _, proba = load_onnx(export_onnx(model, tmp_path / "cnn.onnx", preprocessor=pre)).run(images)
    np.testing.assert_allclose(proba, model.predict_proba(pre.transform(images)), atol=PROBA_TOL)


# -- the ConvNet estimator ----------------------------------------------------------------


def fitted_convnet(stem: str, flatten: bool, flips: bool = False):
    """(ConvNet, Preprocessor, test images) on colour images 7 high and 10 wide, fitted on
    what the preprocessor gives: rows, or images (N, H, W, C) as the command line keeps
    them for a ConvNet."""
    from chainrule.models import ConvNet

    shape = (7, 10, 3)
    labels = np.arange(48) % 2
    images = reddened(images_of(shape, 48, 0), labels)
    pre = Preprocessor(flatten=flatten).fit(images)
    model = ConvNet(
        channels=(8, 16), stem=stem, image_shape=shape if flatten else None, augment=flips,
        learning_rate=0.02 if stem == "conv" else 0.003, batch_size=16, epochs=3,
        optimizer="adam", lr_schedule=None, weight_decay=0.0, label_smoothing=0.0,
        logit_scale=1.0, lookahead=0, aug_padding=2, random_state=0,
    )  # fmt: skip
    model.fit(pre.transform(images), labels)
    return model, pre, reddened(images_of(shape, 19, 4), np.arange(19) % 2)


def reddened(images, labels):
    """Class 1 gets more red in its top-left corner: a colour and a place to learn."""
    out = images.astype(np.int64)
    out[labels == 1, :3, :4, 0] += 120
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("flips", [False, True])
@pytest.mark.parametrize("flatten", [False, True])
@pytest.mark.parametrize("stem", ["conv", "whiten"])
def test_convnet_estimator_on_images_or_rows(stem, flatten, flips, tmp_path):
    """The estimator's network reads channels-last images, or rows viewed as such images:
    the graph must feed it the same (an export that fed it another layout mixed up pixels
    and channels of colour images)."""
    model, pre, test = fitted_convnet(stem, flatten, flips)
    path = export_onnx(model, tmp_path / "cnn.onnx", preprocessor=pre)
    labels, proba = load_onnx(path).run(test)
    X = pre.transform(test)
    want = model.predict_proba(X)
    assert np.ptp(want, axis=0).max() > 0.05
    np.testing.assert_allclose(proba, want, rtol=0, atol=PROBA_TOL)
    np.testing.assert_array_equal(labels, model.predict(X))
