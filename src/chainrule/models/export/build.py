"""From a fitted model to one ONNX graph: raw images in, label and probabilities out.

The graph has one input and two outputs:

- ``images``: uint8 (N, H, W, C), the raw pixels ``chainrule predict`` reads, N dynamic;
- ``label``: int64 (N,), the predicted label (a value of the model's ``classes_``);
- ``probabilities``: float32 (N, C), what ``predict_proba`` gives (column j is label
  ``classes_[j]``).

Between them: the preprocessing (`preprocess`), the model family's *head* (below, and
`knn` for k-nearest neighbours), test-time flips when the model averages each image with
its mirror image, and the argmax that picks the label (the first maximum, as NumPy's).

A model family is recognised by its documented fitted attributes: a network by ``net_``
(an `nn.Module`, converted layer by layer by `modules`), a linear classifier by ``W_``
(D, C) and ``b_`` (C,), k-NN by its class. A network reads what its preprocessor gives
(rows, or images (N, H, W, C) from ``Preprocessor(flatten=False)``, which a ConvNet's first
layer, ``nn.Permute``, views as (N, C, H, W)), viewed as its ``input_shape_`` says (rows
as images for a network that reads images, as the estimator does), so any estimator whose
network is an ``nn.Module`` in ``net_`` and that predicts the argmax of the softmax of its
scores (averaged with the mirror images' with ``test_time_flip``), as every estimator on
``chainrule.models.NetworkClassifier`` does, exports with no code here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from onnx import helper

from chainrule import nn
from chainrule.models.export.graph import IR_VERSION, OPSET, Graph, value_info
from chainrule.models.export.modules import convert_module
from chainrule.models.export.preprocess import images_to_rows, resize_pixels

__all__ = ["Exportable", "build_model"]

INPUT = "images"
LABEL = "label"
PROBABILITIES = "probabilities"


@dataclass
class Exportable:
    """A fitted model with what is needed to apply it to raw images.

    model : the fitted estimator; preprocessor : fitted ``Preprocessor`` or None;
    classes : class names, ``classes[label]`` names label ``label``; name : registered
    model name (or the class name); params : JSON-able hyperparameters;
    image_shape : (H, W, C) of the input images, or None (only without a preprocessor:
    then H, W and C stay symbolic); resize : images of any other size are resized to
    ``image_shape`` in the graph (else the input has that size).
    """

    model: object
    preprocessor: object
    classes: list[str]
    name: str
    params: dict = field(default_factory=dict)
    image_shape: tuple[int, int, int] | None = None
    resize: bool = True

    @property
    def resizes(self) -> bool:
        """Whether the graph reads images of any size and resizes them to the model's."""
        return self.resize and self.image_shape is not None


@dataclass
class Head:
    """A family's part of the graph: ``probabilities`` (N, C) float32 and ``decision``,
    the (N, C) values whose first maximum is the predicted column."""

    probabilities: str
    decision: str
    describes: str


# -- the families ----------------------------------------------------------------------


def _linear_head(g: Graph, model, rows: str, images: bool) -> Head:
    W = np.asarray(model.W_, dtype=np.float32)
    b = np.asarray(model.b_, dtype=np.float32)
    scores = g.op("Gemm", [rows, g.const(W, "W"), g.const(b, "b")], "scores")
    proba = g.op("Softmax", [scores], "softmax", axis=-1)
    # predict takes the argmax of the scores themselves.
    return Head(proba, scores, "softmax of the class scores x W + b")


def _network_head(g: Graph, model, x: str, images: bool) -> Head:
    # What the estimator does between its preprocessing and its network: a network that
    # reads images (its `input_shape_` is (H, W, C)) views rows as images, one that reads
    # rows flattens images.
    shape = tuple(int(s) for s in getattr(model, "input_shape_", None) or ())
    if not images and len(shape) == 3:
        x = g.op("Reshape", [x, g.ints([-1, *shape], "net.input_shape")], "net.input")
    elif images and len(shape) == 1:
        x = g.op("Flatten", [x], "net.input", axis=1)
    scores = convert_module(g, model.net_, x, "net")
    proba = g.op("Softmax", [scores], "softmax", axis=-1)
    return Head(proba, proba, "softmax of the network's class scores")


def _knn_head(g: Graph, model, rows: str, images: bool) -> Head:
    from chainrule.models.export.knn import knn_votes

    counts, proba = knn_votes(g, model, rows)
    return Head(proba, counts, f"share of the votes of the {int(model.k)} nearest neighbours")


def family(model):
    """The head builder of ``model``'s family; a TypeError naming what can be exported,
    or a ValueError for a chainrule model that is not fitted yet."""
    from chainrule.models.knn import KNearestNeighbors
    from chainrule.models.registry import model_name

    if isinstance(model, KNearestNeighbors):
        return _knn_head
    if hasattr(model, "W_") and hasattr(model, "b_"):
        return _linear_head
    if isinstance(getattr(model, "net_", None), nn.Module):
        return _network_head
    try:
        model_name(model)
        registered = True
    except ValueError:
        registered = False
    if registered and not hasattr(model, "classes_"):
        raise ValueError(f"the {type(model).__name__} is not fitted yet")
    raise TypeError(
        f"cannot export a {type(model).__name__} to ONNX: chainrule exports fitted k-NN "
        "models, linear classifiers (W_, b_) and networks (net_, built from chainrule.nn "
        "layers)"
    )


def uses_flips(params: dict) -> bool:
    """Whether the model averages each image with its mirror image at prediction
    (``test_time_flip``; None means: when the model was trained with ``augment``)."""
    tta = params.get("test_time_flip")
    return bool(params.get("augment", False)) if tta is None else bool(tta)


# -- the graph -------------------------------------------------------------------------


def _check_flips(ex: Exportable) -> None:
    """Mirror images are made from the input; a model that names its image shape must
    name that one."""
    shape = ex.params.get("image_shape")
    if ex.image_shape is None or (shape is not None and tuple(shape) != tuple(ex.image_shape)):
        raise ValueError(
            f"the model averages mirror images (test-time flips) of shape {shape}, but its "
            f"input images have shape {ex.image_shape}"
        )


def _average_flips(g: Graph, proba: str) -> str:
    """(2N, C) probabilities of [images; mirrored] -> (N, C), their mean per image."""
    first, second = g.op("Split", [proba], "views", n_out=2, axis=0, num_outputs=2)
    total = g.op("Add", [first, second], "views_sum")
    return g.op("Div", [total, g.scalar(2.0, np.float32, "two")], "views_mean")


def _body(g: Graph, ex: Exportable, head_of, flips: bool) -> tuple[str, str, str]:
    """Nodes from ``images`` to (label, probabilities, description)."""
    images = resize_pixels(g, INPUT, *ex.image_shape[:2]) if ex.resizes else INPUT
    images = g.op("Cast", [images], "pixels", to=1)  # 1: FLOAT
    if flips:
        # Mirror the raw pixels: the per-channel preprocessing commutes with the flip,
        # so this is the mirrored row the model sees in Python.
        mirrored = g.op(
            "Slice",
            [
                images,
                g.ints([-1], "mirror.starts"),
                g.ints([np.iinfo(np.int64).min], "mirror.ends"),
                g.ints([2], "mirror.axes"),
                g.ints([-1], "mirror.steps"),
            ],
            "mirrored",
        )
        images = g.op("Concat", [images, mirrored], "views", axis=0)
    rows = images_to_rows(g, images, ex.preprocessor)
    # what the preprocessing gives: rows, or images (N, H, W, C) with flatten=False
    kept = ex.preprocessor is not None and not getattr(ex.preprocessor, "flatten", True)
    head = head_of(g, ex.model, rows, kept)
    proba, decision = head.probabilities, head.decision
    if flips:
        proba = decision = _average_flips(g, proba)
    column = g.op("ArgMax", [decision], "column", axis=1, keepdims=0, select_last_index=0)
    labels = np.asarray(ex.model.classes_).astype(np.int64)
    label = g.op("Gather", [g.const(labels, "classes_"), column], "label_value", axis=0)
    return label, proba, head.describes


def build_model(ex: Exportable):
    """The ``onnx.ModelProto`` of ``ex`` (see the module doc); `write` checks it."""
    from chainrule import __version__

    kind = np.asarray(ex.model.classes_).dtype.kind
    if kind not in "iub":
        raise TypeError(
            "this model's class labels are text; an exported graph's `label` output is an "
            "int64 label, so only models fitted on integer labels can be exported"
        )
    head_of = family(ex.model)
    shift = ex.params.get("test_time_shift") or 0
    if shift:
        raise ValueError(
            f"the model also averages views shifted by {shift} pixel(s) at prediction "
            "(test_time_shift), which an exported graph does not compute: it would give "
            "other answers than chainrule. Export a copy with test_time_shift=0 (in "
            "Python, model.set_params(test_time_shift=0)), or a model trained without "
            "--test-time-shift"
        )
    flips = head_of is _network_head and uses_flips(ex.params)
    if flips:
        _check_flips(ex)
    g = Graph(f"chainrule_{ex.name}")
    for reserved in (INPUT, LABEL, PROBABILITIES):
        g.fresh(reserved)
    label, proba, describes = _body(g, ex, head_of, flips)
    g.nodes.append(helper.make_node("Identity", [label], [LABEL], name="label/Identity"))
    g.nodes.append(
        helper.make_node("Identity", [proba], [PROBABILITIES], name="probabilities/Identity")
    )
    if flips:
        describes = "mean over the image and its mirror image of the " + describes
    n_classes = len(np.asarray(ex.model.classes_))
    h, w, c = ex.image_shape if ex.image_shape is not None else ("H", "W", "C")
    if ex.resizes:
        h, w = "H", "W"
    graph = g.to_graph(
        [value_info(INPUT, np.uint8, ["N", h, w, c])],
        [
            value_info(LABEL, np.int64, ["N"]),
            value_info(PROBABILITIES, np.float32, ["N", n_classes]),
        ],
        doc=f"images uint8 (N, H, W, C) -> label int64 (N,), probabilities float32 "
        f"(N, {n_classes}): {describes}",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="chainrule",
        producer_version=__version__,
        doc_string=f"chainrule {ex.name} model",
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, _metadata(ex, flips, describes, __version__))
    return model


def _metadata(ex: Exportable, flips: bool, describes: str, version: str) -> dict[str, str]:
    prep = ex.preprocessor
    preprocessing = None
    if prep is not None:
        preprocessing = {
            "image_shape": [int(s) for s in prep.image_shape_],
            "center": bool(prep.center),
            "standardize": bool(prep.standardize),
            "bias": bool(prep.bias),
            "flatten": bool(getattr(prep, "flatten", True)),
            "mean": [float(v) for v in prep.mean_],
            "std": [float(v) for v in prep.std_],
        }
    return {
        "chainrule_version": version,
        "model": ex.name,
        "classes": json.dumps(list(ex.classes)),
        "labels": json.dumps([int(v) for v in np.asarray(ex.model.classes_)]),
        "params": json.dumps(ex.params),
        "preprocessing": json.dumps(preprocessing),
        "test_time_flip": json.dumps(flips),
        "resize": json.dumps(_resize_record(ex)),
        "probabilities": describes,
    }


def _resize_record(ex: Exportable) -> dict | None:
    """What the graph does with images of another size (None: it reads one size only)."""
    if not ex.resizes:
        return None
    from chainrule.data.resize import RESIZE_METHOD

    h, w, _ = ex.image_shape
    return {"height": int(h), "width": int(w), "method": RESIZE_METHOD}
