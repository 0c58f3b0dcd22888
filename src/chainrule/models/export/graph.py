"""A small builder for ONNX graphs: named values, constants and nodes.

Every value in the graph is a string name. ``g.op("Relu", [x])`` adds a node and returns
the name of its output; ``g.const(array, "fc.weight")`` adds an initializer and returns
its name. Names are made unique here, so converters can pass readable hints (the dotted
module path, what a value is) without coordinating with each other.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["OPSET", "Graph"]

# Opset 18 (ONNX 1.13, 2022) is the first whose Resize antialiases when it shrinks an
# image (ONNX Runtime >= 1.14, OpenVINO 2023.0+); nothing here needs a newer operator. IR
# version 8 is the one that opset shipped with.
OPSET = 18
IR_VERSION = 8

_ONNX_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.bool_): TensorProto.BOOL,
}


def onnx_type(dtype) -> int:
    """The ``TensorProto`` element type of a NumPy dtype (float32, float64, int64, uint8)."""
    return _ONNX_TYPES[np.dtype(dtype)]


class Graph:
    """Nodes and initializers of one ONNX graph (or of a subgraph, see `subgraph`).

    ``op`` and ``const`` return value names; `to_graph` assembles the ``GraphProto``.
    A subgraph (the body of a ``Loop``) shares the name space of its parent, so a body
    never shadows an outer value by accident.
    """

    def __init__(self, name: str = "chainrule", _names: set[str] | None = None):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names = set() if _names is None else _names

    def fresh(self, hint: str) -> str:
        """A name not used anywhere in this graph or its parent: ``hint``, ``hint_1``..."""
        hint = hint or "v"
        name, n = hint, 0
        while name in self._names:
            n += 1
            name = f"{hint}_{n}"
        self._names.add(name)
        return name

    def subgraph(self, name: str) -> Graph:
        return Graph(name, _names=self._names)

    # -- values -------------------------------------------------------------------------

    def const(self, array, hint: str) -> str:
        """An initializer holding ``array`` (its dtype and shape kept); returns its name."""
        arr = np.asarray(array)
        if arr.dtype not in _ONNX_TYPES:
            raise TypeError(f"cannot store a {arr.dtype} array ({hint}) in an ONNX graph")
        name = self.fresh(hint)
        # (ascontiguousarray would make a 0-d scalar 1-d; Clip needs true scalars.)
        arr = np.ascontiguousarray(arr) if arr.ndim else arr
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def ints(self, values, hint: str = "ints") -> str:
        """A 1-D int64 constant (shapes, axes, slice bounds)."""
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), hint)

    def scalar(self, value, dtype, hint: str = "scalar") -> str:
        return self.const(np.asarray(value, dtype=dtype), hint)

    # -- nodes --------------------------------------------------------------------------

    def op(self, op_type: str, inputs, hint: str | None = None, n_out: int = 1, **attrs):
        """Add a node; returns its output name, or a tuple of ``n_out`` names.

        An empty string in ``inputs`` is an omitted optional input, as in ONNX.
        """
        base = hint or op_type.lower()
        outputs = [self.fresh(base if n_out == 1 else f"{base}_{i}") for i in range(n_out)]
        node = helper.make_node(
            op_type, list(inputs), outputs, name=self.fresh(f"{base}/{op_type}"), **attrs
        )
        self.nodes.append(node)
        return outputs[0] if n_out == 1 else tuple(outputs)

    def to_graph(self, inputs, outputs, doc: str = "") -> onnx.GraphProto:
        """The ``GraphProto``: inputs and outputs are ``ValueInfoProto``s."""
        return helper.make_graph(
            self.nodes, self.name, inputs, outputs, initializer=self.initializers, doc_string=doc
        )


def value_info(name: str, dtype, shape) -> onnx.ValueInfoProto:
    """A typed value: ``shape`` holds ints (fixed) and strings (symbolic, like ``"N"``)."""
    return helper.make_tensor_value_info(name, onnx_type(dtype), list(shape))
