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

and a pair of layers that merge into one (a Linear followed by the BatchNorm1d that
normalizes its outputs) is one fold, tried by `Sequential` on consecutive children::

    @register_fold(nn.Linear, nn.BatchNorm1d)
    def _linear_bn(g, linear, bn, x, name): ...

Converters match exact types: a subclass may compute something else in ``forward``, so
it needs its own entry.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from chainrule import nn
from chainrule.models.export.graph import Graph

__all__ = ["convert_module", "register_converter", "register_fold"]

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
    # Sequential names its children "0", "1", ... in order.
    children = [(str(i), m) for i, m in enumerate(seq)]
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
