"""Running an exported model with ONNX Runtime, the way a deployed robot runs it.

Needs only ``onnxruntime`` and NumPy: the file carries the preprocessing, the model and
the class names (in its ``metadata_props``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chainrule.models.export.metadata import read_metadata

__all__ = ["OnnxModel", "load_onnx"]


class OnnxModel:
    """An exported chainrule model in an ONNX Runtime session.

    Attributes
    ----------
    path : the file
    classes : list of str, ``classes[label]`` names label ``label``
    labels : (C,) int64, the label of each column of ``predict_proba``
    image_shape : (H, W, C) the model reads (None where the file leaves a size open)
    resizes : whether the graph takes images of any height and width (and resizes them
        to ``image_shape``) or of ``image_shape`` only
    params : dict of the model's settings (None where the file has none)
    preprocessing : dict of the preprocessing the graph holds, or None
    test_time_flip : whether the graph averages each image with its mirror image (None
        where the file does not say)
    metadata : dict of the file's ``metadata_props`` as they are (strings); the fields
        above are those chainrule reads, checked (``metadata.py``)
    """

    def __init__(self, path, session):
        self.path = Path(path)
        self.session = session
        where = f"ONNX file {str(path)!r}"
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        meta = dict(session.get_modelmeta().custom_metadata_map)
        if "images" not in inputs or not {"label", "probabilities"} <= outputs:
            raise ValueError(
                f"{where} is not a chainrule export (it needs an input 'images' and outputs "
                f"'label' and 'probabilities')"
            )
        columns = next(o.shape for o in session.get_outputs() if o.name == "probabilities")
        columns = columns[-1] if len(columns) == 2 and isinstance(columns[-1], int) else None
        checked = read_metadata(meta, where, columns)
        self.classes, self.labels = checked.classes, checked.labels
        self.params, self.preprocessing = checked.params, checked.preprocessing
        self.test_time_flip = checked.test_time_flip
        shape = inputs["images"].shape
        if len(shape) != 4:
            raise ValueError(f"{where}: input 'images' should be (N, H, W, C), got {shape}")
        dims = shape[1:]
        self.image_shape = tuple(dims) if all(isinstance(d, int) for d in dims) else None
        self.resizes = checked.resize is not None and isinstance(dims[2], int)
        if self.resizes:
            self.image_shape = (checked.resize["height"], checked.resize["width"], dims[2])
        self.metadata = meta

    def run(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(labels (N,) int64, probabilities (N, C) float32) of uint8 images (N, H, W, C)."""
        images = np.ascontiguousarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8 pixels, got dtype {images.dtype}")
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, H, W, C), got {images.shape}")
        if self.resizes and images.shape[3] != self.image_shape[2]:
            raise ValueError(
                f"images have {images.shape[3]} channels but the model reads {self.image_shape[2]}"
            )
        if (
            not self.resizes
            and self.image_shape is not None
            and images.shape[1:] != self.image_shape
        ):
            raise ValueError(
                f"images have shape (H, W, C) = {images.shape[1:]} but the model reads "
                f"{self.image_shape}"
            )
        try:
            label, proba = self.session.run(["label", "probabilities"], {"images": images})
        except Exception as e:  # ONNX Runtime's own error types (a wrong channel count)
            raise ValueError(f"ONNX Runtime could not run the model: {_first_line(e)}") from None
        self._check_outputs(np.asarray(label), np.asarray(proba), len(images))
        return label, proba

    def _check_outputs(self, label: np.ndarray, proba: np.ndarray, n: int) -> None:
        """The graph's answers must be what its metadata describes."""
        where = f"ONNX file {str(self.path)!r}"
        if label.shape != (n,) or proba.shape != (n, len(self.labels)):
            raise ValueError(
                f"{where}: its graph answered labels of shape {label.shape} and probabilities "
                f"of shape {proba.shape} for {n} images with {len(self.labels)} labels"
            )
        unknown = np.setdiff1d(label, self.labels)
        if unknown.size:
            raise ValueError(
                f"{where}: its graph produced label {unknown[0]}, which its metadata's "
                f"'labels' {self.labels.tolist()[:10]} do not list"
            )

    def predict(self, images) -> np.ndarray:
        return self.run(images)[0]

    def predict_proba(self, images) -> np.ndarray:
        return self.run(images)[1]


def load_onnx(path, threads: int | None = None) -> OnnxModel:
    """An :class:`OnnxModel` for an exported file (``threads``: ONNX Runtime's intra-op
    threads; None lets it choose, one per core)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError(
            'running an ONNX file needs onnxruntime: pip install "chainrule[onnx]"'
        ) from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such ONNX file: {path}")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # ONNX Runtime raises its own types for a bad file
        raise ValueError(f"cannot load ONNX file {str(path)!r}: {_first_line(e)}") from None
    return OnnxModel(path, session)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
