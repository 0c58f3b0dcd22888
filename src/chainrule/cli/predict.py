"""``chainrule predict RUN_DIR IMAGE...``: class and probability of each image file.

Each file is decoded exactly as image folders are (Pillow, RGB, or grayscale for a model
trained on one-channel images) and goes through the model file's preprocessing, so the
answer for a file is the one ``chainrule eval`` gives for the same image in a folder.
``chainrule predict --onnx model.onnx IMAGE...`` gives the answers of a file written by
``chainrule export``, run by ONNX Runtime, in the same format.
"""

from __future__ import annotations

import json

import numpy as np

from chainrule._text import escaped, shown
from chainrule.cli import CommandError
from chainrule.cli._common import load_trained


def add_arguments(parser) -> None:
    parser.usage = "%(prog)s [options] (RUN_DIR | --onnx FILE) IMAGE [IMAGE ...]"
    parser.add_argument("run", metavar="RUN_DIR", help="a run folder or a model file (.npz)")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files to classify")
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="which model of a comparison run folder (knn, svm, ...)",
    )
    parser.add_argument(
        "--top", type=int, default=1, metavar="K", help="also list the K most likely classes"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per image, one per line"
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="RUN_DIR is a file written by chainrule export: run it with ONNX Runtime",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress output (predict shows none)"
    )


def read_for_model(loaded, paths: list[str]) -> np.ndarray:
    """Decode image files to (N, H, W, C) uint8 as image folders are decoded (RGB), then
    convert them to the model's channel count exactly as ``chainrule eval`` converts a
    folder's images."""
    prep = loaded.preprocessor
    return read_images_for(paths, None if prep is None else prep.image_shape_)


def read_images_for(paths: list[str], shape) -> np.ndarray:
    """Image files as (N, H, W, C) uint8 for a model reading images of ``shape`` (H, W, C),
    or of any one size when ``shape`` is None."""
    from chainrule.cli._common import match_channels
    from chainrule.data import read_image

    images = []
    for p in paths:
        try:
            images.append(read_image(p, "RGB"))
        except FileNotFoundError:
            raise CommandError(f"no such image file: {p}") from None
        except (OSError, ValueError) as e:
            raise CommandError(str(e)) from None
    sizes = {im.shape for im in images}
    if shape is not None:
        h, w, c = (int(s) for s in shape)
        for p, im in zip(paths, images):
            if im.shape[:2] != (h, w):
                raise CommandError(
                    f"image {p} is {im.shape[1]}x{im.shape[0]} pixels but the model was "
                    f"trained on {w}x{h} images"
                )
        return match_channels(np.stack(images), c)
    if len(sizes) > 1:
        raise CommandError("the images have different sizes; the model needs one size")
    return np.stack(images)


def _predictions(args, paths: list[str]):
    """(labels (N,), probabilities (N, C), the label of each column, class names by label)."""
    if args.onnx:
        return _onnx_predictions(args, paths)
    loaded = load_trained(args.run, args.model)
    images = read_for_model(loaded, paths)
    try:
        labels = loaded.predict(images)
        proba = loaded.predict_proba(images)
    except (ValueError, TypeError) as e:
        raise CommandError(f"cannot apply the model to these images: {e}") from None
    return labels, proba, np.asarray(loaded.model.classes_), loaded.classes


def _onnx_predictions(args, paths: list[str]):
    from chainrule.models.export import load_onnx

    if args.model is not None:
        raise CommandError("--model picks a model of a run folder; it does not apply to --onnx")
    try:
        model = load_onnx(args.run)
    except (ImportError, OSError, ValueError) as e:
        raise CommandError(str(e)) from None
    images = read_images_for(paths, model.image_shape)
    try:
        labels, proba = model.run(images)
    except (ValueError, TypeError) as e:
        raise CommandError(f"cannot apply the model to these images: {e}") from None
    return labels, proba, model.labels, model.classes


def run(args) -> int:
    if args.top < 1:
        raise CommandError(f"--top must be at least 1, got {args.top}")
    labels, proba, model_labels, classes = _predictions(args, args.images)
    model_labels = np.asarray(model_labels).tolist()  # Python ints or strings
    column = {c: j for j, c in enumerate(model_labels)}
    # Class names are indexed by label for integer labels, by column for text labels.
    by_label = all(isinstance(c, int) for c in model_labels)

    def name_of(j: int) -> str:
        return classes[model_labels[j]] if by_label else classes[j]

    top = min(args.top, proba.shape[1])
    paths = [escaped(p) for p in args.images]  # names and paths may hold control characters
    width = max(len(p) for p in paths)
    for path, shown_path, label, p in zip(args.images, paths, labels, proba):
        label = np.asarray(label).tolist()
        j = column[label]
        name = name_of(j)
        prob = float(p[j])
        order = np.argsort(-p, kind="stable")[:top]
        ranked = [(name_of(int(k)), float(p[k])) for k in order]
        if args.json:
            record = {"image": path, "class": name, "label": label, "probability": prob}
            if args.top > 1:
                record["top"] = [{"class": c, "probability": q} for c, q in ranked]
            print(json.dumps(record))
        else:
            line = f"{shown_path.ljust(width)}  {shown(name)}  {prob:.3f}"
            if args.top > 1:
                line += "   (" + ", ".join(f"{shown(c)} {q:.3f}" for c, q in ranked) + ")"
            print(line)
    return 0
