"""ONNX export: a fitted model, its preprocessing included, as one ONNX graph.

    from chainrule.models import export_onnx, load_model
    export_onnx(load_model("runs/mlp/model.npz"), "mlp.onnx")

The graph reads raw images, uint8 (N, H, W, C) of any height and width (resized to the
model's size inside the graph, as ``chainrule predict`` resizes them), and returns
``label`` (int64, N) and ``probabilities`` (float32, N x C), with the class names, the
chainrule version and the model's settings in its ``metadata_props``. See ``build`` for
the graph, ``modules`` for the table of layer converters (where a new layer type is
added), ``knn`` for k-nearest neighbours, ``verify`` for the comparison with chainrule
that every export passes before it is written, ``write`` for checking and writing,
``runtime`` for running a file with ONNX Runtime.

The ``onnx`` package (``pip install "chainrule[onnx]"``) is imported when a model is
exported, never by ``import chainrule``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["export_checked", "export_onnx", "load_onnx", "register_converter", "register_fold"]

_EXTRA = 'pip install "chainrule[onnx]"'


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportError(f"ONNX export needs the onnx package: {_EXTRA}") from None


def _exportable(model, preprocessor, classes, image_shape, resize=True):
    from chainrule.models.export.build import Exportable, family
    from chainrule.models.io import LoadedModel, _jsonable, _names_by_label, model_params
    from chainrule.models.registry import model_name

    if isinstance(model, LoadedModel):
        if preprocessor is not None or classes is not None:
            raise TypeError("a loaded model brings its own preprocessor and classes")
        model, preprocessor, classes, name, params = (
            model.model,
            model.preprocessor,
            model.classes,
            model.name,
            model.params,
        )
    else:
        try:
            name = model_name(model)
        except ValueError:
            name = type(model).__name__
        params = _jsonable(model_params(model))
    family(model)  # the model is one that can be exported, and fitted
    if not hasattr(model, "classes_"):
        raise ValueError(f"the {type(model).__name__} is not fitted (it has no classes_)")
    if classes is None:
        classes = [str(c) for c in model.classes_]
    # The metadata's `classes` names labels (classes[label]), as a model file's do.
    classes = _names_by_label([str(c) for c in classes], np.asarray(model.classes_))
    if preprocessor is not None:
        image_shape = tuple(int(s) for s in preprocessor.image_shape_)
    elif image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (H, W, C), got {image_shape}")
    return Exportable(
        model, preprocessor, [str(c) for c in classes], name, params, image_shape, bool(resize)
    )


def export_onnx(
    model,
    path,
    *,
    preprocessor=None,
    classes=None,
    image_shape=None,
    resize: bool = True,
    check: bool = True,
    external_data: bool | None = None,
) -> Path:
    """Write ``model`` as an ONNX graph from raw images to labels and probabilities.

    Parameters
    ----------
    model : a ``LoadedModel`` (from ``load_model``), or a fitted estimator
    path : str or Path, the ``.onnx`` file to write (its folder is created if missing)
    preprocessor : the fitted ``Preprocessor`` of an estimator (None: rows are the raw
        pixel values, flattened)
    classes : class names of an estimator, ``classes[label]`` (default: its labels)
    image_shape : (H, W, C) of the input images when there is no preprocessor (default:
        left open in the graph)
    resize : True (default): the graph reads images of any height and width and resizes
        them to the model's size as ``chainrule.data.resize_images`` does; False: it reads
        images of the model's size only
    check : run the graph with ONNX Runtime (when installed) on test images and refuse to
        write it unless it gives chainrule's answers (see ``verify``)
    external_data : True writes the weights to ``<path>.data`` beside the model file,
        False into it, None (default) beside it when they exceed 1 GiB

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ImportError
        Without the onnx package.
    TypeError
        For a model (or a layer) that cannot be exported.
    ValueError
        For an unfitted or inconsistent model (``verify.ExportMismatch`` for a graph that
        disagrees with chainrule).
    OSError
        When ``path`` cannot be written.
    """
    return export_checked(
        model, path, preprocessor=preprocessor, classes=classes, image_shape=image_shape,
        resize=resize, check=check, external_data=external_data,
    )[0]  # fmt: skip


def export_checked(
    model,
    path,
    *,
    preprocessor=None,
    classes=None,
    image_shape=None,
    resize: bool = True,
    check: bool = True,
    external_data: bool | None = None,
):
    """`export_onnx`, returning ``(path, verify.Check)``: what the check compared."""
    _require_onnx()
    from chainrule.models.export.build import build_model
    from chainrule.models.export.verify import Check, check_graph
    from chainrule.models.export.write import save_checked

    ex = _exportable(model, preprocessor, classes, image_shape, resize)
    proto = build_model(ex)
    checked = check_graph(proto, ex) if check else Check(skipped="check=False")
    return save_checked(proto, path, external_data=external_data), checked


def load_onnx(path, threads: int | None = None):
    """Open an exported file with ONNX Runtime (see `runtime.load_onnx`)."""
    from chainrule.models.export.runtime import load_onnx as _load

    return _load(path, threads=threads)


def register_converter(*module_types):
    """Register the ONNX converter of layer types (see `modules.register_converter`)."""
    _require_onnx()
    from chainrule.models.export.modules import register_converter as _register

    return _register(*module_types)


def register_fold(first, second):
    """Register the ONNX conversion of a layer pair (see `modules.register_fold`)."""
    _require_onnx()
    from chainrule.models.export.modules import register_fold as _register

    return _register(first, second)
