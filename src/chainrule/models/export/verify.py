"""The exported graph checked against chainrule before it is written.

ONNX Runtime runs the graph on test images (random pixels at the model's size and, where
the graph resizes, frames larger and smaller than it, of other aspect ratios) and must
give chainrule's probabilities for the same images (resized by
``chainrule.data.resize_images``, which gives ONNX Runtime's pixels bit for bit) within
1e-4 (measured: under 1e-6; both compute in float32 and sum in other orders), and the
same labels wherever chainrule's two most likely classes are further apart than that. A
graph that disagrees is never written: it would fail silently on the robot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Check", "ExportMismatch", "check_graph"]

TOLERANCE = 1e-4
N_IMAGES = 4


class ExportMismatch(ValueError):
    """ONNX Runtime's answers on the exported graph differ from chainrule's."""


@dataclass
class Check:
    """What `check_graph` compared: ``images`` test images in ``sizes`` (H, W) pairs, the
    largest probability difference and ONNX Runtime's version; or why nothing was
    compared (``skipped``)."""

    images: int = 0
    sizes: tuple = ()
    max_difference: float = 0.0
    onnxruntime: str | None = None
    skipped: str | None = None

    def describe(self) -> str:
        if self.skipped is not None:
            return f"not checked against chainrule ({self.skipped})"
        sizes = ", ".join(f"{w}x{h}" for h, w in self.sizes)
        return (
            f"checked: ONNX Runtime {self.onnxruntime} gives chainrule's answers on "
            f"{self.images} test images ({sizes} pixels; probabilities within "
            f"{self.max_difference:.1g})"
        )


def _probe_sizes(h: int, w: int, resizes: bool) -> list[tuple[int, int]]:
    sizes = [(h, w)]
    if resizes:
        sizes += [(2 * h + 3, 3 * w - 1), (max(1, h // 2), max(1, (2 * w) // 3 + 1))]
    return sizes


def _chainrule_proba(ex, images: np.ndarray) -> np.ndarray:
    """chainrule's probabilities for raw images at the model's size."""
    model, prep = ex.model, ex.preprocessor
    if prep is not None:
        x = prep.transform(images)
    else:
        x = images.reshape(images.shape[0], -1).astype(np.float32)
    return np.asarray(model.predict_proba(x), dtype=np.float64)


def check_graph(proto, ex) -> Check:
    """Run the model (an ``onnx.ModelProto``) with ONNX Runtime on test images and compare
    its answers with chainrule's for ``ex`` (an `build.Exportable`); raises
    `ExportMismatch`. Skipped without onnxruntime, and for weights over 1 GiB (a copy of
    them in ONNX Runtime's memory)."""
    from chainrule.models.export.write import EXTERNAL_DATA_BYTES, initializer_bytes

    try:
        import onnxruntime as ort
    except ImportError:
        return Check(skipped="onnxruntime is not installed")
    if initializer_bytes(proto) > EXTERNAL_DATA_BYTES:
        return Check(skipped="weights over 1 GiB")
    if not hasattr(ex.model, "predict_proba"):
        return Check(skipped=f"a {type(ex.model).__name__} has no predict_proba")
    serialized = proto.SerializeToString()
    from chainrule.data.resize import resize_images

    if ex.image_shape is None:
        h, w, c = 1, 1, int(getattr(ex.model, "n_features_in_", 1))
    else:
        h, w, c = (int(s) for s in ex.image_shape)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    labels = np.asarray(ex.model.classes_)
    check = Check(onnxruntime=ort.__version__)
    for size in _probe_sizes(h, w, ex.resizes):
        frames = rng.integers(0, 256, (N_IMAGES, *size, c), dtype=np.uint8)
        want = _chainrule_proba(ex, resize_images(frames, h, w))
        label, proba = session.run(["label", "probabilities"], {"images": frames})
        diff = float(np.abs(proba - want).max())
        tol = TOLERANCE
        top2 = np.sort(want, axis=1)[:, -2:] if want.shape[1] > 1 else np.ones((len(want), 2))
        clear = top2[:, 1] - top2[:, 0] > 2 * tol
        wrong = clear & (label != labels[want.argmax(axis=1)])
        if diff > tol or wrong.any():
            raise ExportMismatch(
                f"the exported graph gives other answers than chainrule on test images of "
                f"{size[1]}x{size[0]} pixels (largest probability difference {diff:.3g}, "
                f"{int(wrong.sum())} labels differ); nothing was written. This is a bug in "
                "chainrule's ONNX export: please report it"
            )
        check.images += N_IMAGES
        check.sizes += (size,)
        check.max_difference = max(check.max_difference, diff)
    return check
