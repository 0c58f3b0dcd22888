"""`chainrule.nn` modules as ONNX nodes: one converter per module type, in one table.

A network is exported by walking its module tree: `convert_module` looks up the
converter registered for the module's exact type and calls it with the graph, the
module, the name of its input value and the module's dotted path; the converter adds
nodes and returns the name of its output. Containers (`Sequential`) convert their
children the same way, so any network built from known modules exports with no code of
its own. The graph is always the evaluation-mode network: dropout is the identity, batch
norm uses its running statistics.

A new layer type is one converter::

    @register_converter(MyLayer)
    def _my_layer(g, m, x, name):
        return g.op("Relu", [x], name)

and a pair of layers that merge into one (a Linear or a Conv2d followed by the batch norm
that normalizes its outputs) is one fold, tried by `Sequential` on consecutive children::

    @register_fold(nn.Linear, nn.BatchNorm1d)
    def _linear_bn(g, linear, bn, x, name): ...

Converters match exact types: a subclass may compute something else in ``forward``, so
it needs its own entry. A `Sequential` runs a batch norm directly followed by a `ReLU`
as one fused Function; the graph keeps them as two nodes of the same values, which
runtimes fuse themselves.

Images are NCHW in the graph as in `chainrule.nn` (a network reading channels-last images
begins with a `Permute`, a Transpose here), and the convolution and pooling
layers map one to one onto ONNX's operators: no padding in pooling, windows that do not
fit are dropped (floor mode), convolution padding is zeros on both sides.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from chainrule import nn
from chainrule.models.convnet_arch import PatchWhitening, Scale
from chainrule.models.export.graph import Graph

__all__ = ["convert_children", "convert_module", "register_converter", "register_fold"]

Converter = Callable[[Graph, nn.Module, str, str], str]
Fold = Callable[[Graph, nn.Module, nn.Module, str, str], str]

_CONVERTERS: dict[type, Converter] = {}
_FOLDS: dict[tuple[type, type], Fold] = {}


def register_converter(*module_types: type):
    """Decorator: ``fn(g, module, x, name) -> output name`` converts these module types."""

    def decorate(fn: Converter) -> Converter:
        for t in module_types:
            _CONVERTERS[t] = fn
        return fn

    return decorate


def register_fold(first: type, second: type):
    """Decorator: ``fn(g, first, second, x, name) -> output name`` converts ``first``
    directly followed by ``second`` (in a `Sequential`) as one computation."""

    def decorate(fn: Fold) -> Fold:
        _FOLDS[(first, second)] = fn
        return fn

    return decorate


class UnsupportedModule(TypeError):
    """A module type without a converter."""


def convert_module(g: Graph, module: nn.Module, x: str, name: str = "net") -> str:
    """Add the evaluation-mode computation of ``module`` on value ``x``; returns its output."""
    fn = _CONVERTERS.get(type(module))
    if fn is None:
        known = ", ".join(sorted(t.__name__ for t in _CONVERTERS))
        raise UnsupportedModule(
            f"no ONNX converter for a {type(module).__name__} layer ({name}); layers with "
            f"one: {known} (add one with chainrule.models.export.register_converter)"
        )
    return fn(g, module, x, name)


def _f32(a) -> np.ndarray:
    """Weights as float32, the graph's activation type (a float64 network is rounded)."""
    data = a.data if isinstance(a, nn.Parameter) else a
    return np.asarray(data, dtype=np.float32)


# -- containers ------------------------------------------------------------------------


@register_converter(nn.Sequential)
def _sequential(g, seq, x, name):
    return convert_children(g, seq, x, name)


def convert_children(g: Graph, seq: nn.Sequential, x: str, name: str, start: int = 0) -> str:
    """The children of ``seq`` from the ``start``-th on, one after the other (a pair with a
    registered fold as one computation); returns the last output."""
    # Sequential names its children "0", "1", ... in order.
    children = [(str(i), m) for i, m in enumerate(seq)][start:]
    i = 0
    while i < len(children):
        key, m = children[i]
        if i + 1 < len(children):
            fold = _FOLDS.get((type(m), type(children[i + 1][1])))
            if fold is not None:
                x = fold(g, m, children[i + 1][1], x, f"{name}.{key}")
                i += 2
                continue
        x = convert_module(g, m, x, f"{name}.{key}")
        i += 1
    return x


# -- layers ----------------------------------------------------------------------------


def _gemm(g, x, weight: np.ndarray, bias: np.ndarray | None, name: str) -> str:
    """``x @ weight + bias`` for x (N, in), weight (in, out) as chainrule stores it."""
    inputs = [x, g.const(_f32(weight), f"{name}.weight")]
    if bias is not None:
        inputs.append(g.const(_f32(bias), f"{name}.bias"))
    return g.op("Gemm", inputs, name)


@register_converter(nn.Linear)
def _linear(g, m, x, name):
    return _gemm(g, x, m.weight.data, None if m.bias is None else m.bias.data, name)


def _bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation-mode batch norm as ``x * a + c`` (a, c float64, per feature)."""
    var = np.asarray(bn.running_var, dtype=np.float64)
    mean = np.asarray(bn.running_mean, dtype=np.float64)
    a = 1.0 / np.sqrt(var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight.data.astype(np.float64)
    c = -mean * a
    if bn.bias is not None:
        c = c + bn.bias.data.astype(np.float64)
    return a, c


@register_converter(nn.BatchNorm1d)
def _batchnorm1d(g, m, x, name):
    a, c = _bn_affine(m)
    y = g.op("Mul", [x, g.const(_f32(a), f"{name}.scale")], f"{name}.scaled")
    return g.op("Add", [y, g.const(_f32(c), f"{name}.shift")], name)


@register_fold(nn.Linear, nn.BatchNorm1d)
def _linear_batchnorm1d(g, linear, bn, x, name):
    # bn(x W + b) = x (W a) + (b a + c): the statistics fold into the weights, and the
    # evaluation graph has one matrix product where training had two steps.
    a, c = _bn_affine(bn)
    W = linear.weight.data.astype(np.float64) * a
    b = c if linear.bias is None else linear.bias.data.astype(np.float64) * a + c
    return _gemm(g, x, W, b, name)


@register_converter(nn.ReLU)
def _relu(g, m, x, name):
    return g.op("Relu", [x], name)


@register_converter(nn.LeakyReLU)
def _leaky_relu(g, m, x, name):
    return g.op("LeakyRelu", [x], name, alpha=float(m.negative_slope))


@register_converter(nn.Tanh)
def _tanh(g, m, x, name):
    return g.op("Tanh", [x], name)


@register_converter(nn.Sigmoid)
def _sigmoid(g, m, x, name):
    return g.op("Sigmoid", [x], name)


@register_converter(nn.Flatten)
def _flatten(g, m, x, name):
    return g.op("Flatten", [x], name, axis=1)


@register_converter(nn.Dropout, nn.Identity)
def _identity(g, m, x, name):
    # Dropout is the identity in evaluation (inverted dropout scaled in training).
    return x


# -- convolutional layers --------------------------------------------------------------


def _conv(g, x, weight, bias, stride, padding, name: str) -> str:
    """ONNX ``Conv`` of x (N, C, H, W) with weight (F, C, kh, kw) as chainrule stores it,
    zero padding (ph, pw) on both sides of each axis."""
    weight = _f32(weight)
    inputs = [x, g.const(weight, f"{name}.weight")]
    if bias is not None:
        inputs.append(g.const(_f32(bias), f"{name}.bias"))
    (ph, pw), (sh, sw) = padding, stride
    return g.op(
        "Conv",
        inputs,
        name,
        kernel_shape=list(weight.shape[2:]),
        strides=[int(sh), int(sw)],
        pads=[int(ph), int(pw), int(ph), int(pw)],
    )


@register_converter(nn.Conv2d)
def _conv2d(g, m, x, name):
    bias = None if m.bias is None else m.bias.data
    return _conv(g, x, m.weight.data, bias, m.stride, m.padding, name)


@register_converter(PatchWhitening)
def _patch_whitening(g, m, x, name):
    # A frozen convolution: the weight is a buffer, stride 1, no padding.
    return _conv(g, x, m.weight, None, (1, 1), (0, 0), name)


@register_fold(nn.Conv2d, nn.BatchNorm2d)
def _conv2d_batchnorm2d(g, conv, bn, x, name):
    # As for Linear + BatchNorm1d: bn(conv(x, W) + b) = conv(x, W a) + (b a + c), with the
    # per-channel a scaling each output filter.
    a, c = _bn_affine(bn)
    W = conv.weight.data.astype(np.float64) * a[:, None, None, None]
    b = c if conv.bias is None else conv.bias.data.astype(np.float64) * a + c
    return _conv(g, x, W, b, conv.stride, conv.padding, name)


@register_converter(nn.BatchNorm2d)
def _batchnorm2d(g, m, x, name):
    # Per channel, broadcast over (N, C, H, W) by the trailing (C, 1, 1) shape. Without a
    # learned scale (scale=False: weight is None) gamma is 1, as _bn_affine reads it.
    a, c = _bn_affine(m)
    a, c = a.reshape(-1, 1, 1), c.reshape(-1, 1, 1)
    y = g.op("Mul", [x, g.const(_f32(a), f"{name}.scale")], f"{name}.scaled")
    return g.op("Add", [y, g.const(_f32(c), f"{name}.shift")], name)


def _window_attrs(m) -> dict:
    # chainrule's pooling has no padding and drops windows that do not fit, which are
    # ONNX's defaults (pads 0, ceil_mode 0); with no padding, AveragePool's
    # count_include_pad has nothing to count.
    return {"kernel_shape": [int(k) for k in m.kernel_size], "strides": [int(s) for s in m.stride]}


@register_converter(nn.MaxPool2d)
def _max_pool2d(g, m, x, name):
    return g.op("MaxPool", [x], name, **_window_attrs(m))


@register_converter(nn.AvgPool2d)
def _avg_pool2d(g, m, x, name):
    return g.op("AveragePool", [x], name, **_window_attrs(m))


@register_converter(nn.GlobalAvgPool2d)
def _global_avg_pool2d(g, m, x, name):
    # ONNX keeps the pooled axes, (N, C, 1, 1); chainrule returns (N, C).
    pooled = g.op("GlobalAveragePool", [x], f"{name}.pooled")
    return g.op("Flatten", [pooled], name, axis=1)


@register_converter(nn.GlobalMaxPool2d)
def _global_max_pool2d(g, m, x, name):
    pooled = g.op("GlobalMaxPool", [x], f"{name}.pooled")
    return g.op("Flatten", [pooled], name, axis=1)


@register_converter(nn.Residual)
def _residual(g, m, x, name):
    return g.op("Add", [x, convert_module(g, m.body, x, f"{name}.body")], name)


@register_converter(nn.RowsToImages)
def _rows_to_images(g, m, x, name):
    h, w, c = m.height, m.width, m.channels
    if m.order == "chw":
        return g.op("Reshape", [x, g.ints([-1, c, h, w], f"{name}.shape")], name)
    images = g.op("Reshape", [x, g.ints([-1, h, w, c], f"{name}.shape")], f"{name}.hwc")
    return g.op("Transpose", [images], name, perm=[0, 3, 1, 2])


@register_converter(nn.Permute)
def _permute(g, m, x, name):
    # Channels-last images (N, H, W, C) enter a ConvNet through Permute(0, 3, 1, 2).
    return g.op("Transpose", [x], name, perm=[int(d) for d in m.dims])


@register_converter(Scale)
def _scale(g, m, x, name):
    return g.op("Mul", [x, g.scalar(m.factor, np.float32, f"{name}.factor")], name)
