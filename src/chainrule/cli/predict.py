"""``chainrule predict RUN_DIR IMAGE_OR_FOLDER...``: class and probability of each image.

Each file (or every image file in a folder) is decoded exactly as image folders are
(Pillow, RGB, or grayscale for a model trained on one-channel images), resized to the
model's size where it has another (``chainrule.data.resize_images``; ``--no-resize``
refuses it instead) and goes through the model file's preprocessing, so the answer for a
file is the one ``chainrule eval`` gives for the same image in a folder.
``chainrule predict --onnx model.onnx IMAGE...`` gives the answers of a file written by
``chainrule export``, run by ONNX Runtime (whose graph resizes frames itself), in the same
format.
"""

from __future__ import annotations

import json

import numpy as np

from chainrule._text import escaped, shown
from chainrule.cli import CommandError
from chainrule.cli._common import load_trained


def add_arguments(parser) -> None:
    parser.usage = "%(prog)s [options] (RUN_DIR | --onnx FILE) IMAGE_OR_FOLDER [...]"
    parser.add_argument("run", metavar="RUN_DIR", help="a run folder or a model file (.npz)")
    parser.add_argument(
        "images",
        metavar="IMAGE_OR_FOLDER",
        nargs="+",
        help="image files to classify, or folders: every image file below them",
    )
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
        "--no-resize",
        action="store_true",
        help="refuse images of another size than the model's (default: resize them to it)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse a folder holding files that cannot be read or are not images (default: "
        "leave them out with a warning)",
    )
    parser.add_argument("--quiet", action="store_true", help="no notes on stderr")


def _predictions(args):
    """(the image files, labels (N,), probabilities (N, C), the label of each column,
    class names by label)."""
    from chainrule.cli import _images

    files, named = _images.collect(args.images, args.strict)
    if args.onnx:
        return _onnx_predictions(args, files, named)
    loaded = load_trained(args.run, args.model)
    paths, images = _images.decode(files, named, args.strict)
    prep = loaded.preprocessor
    shape = None if prep is None else prep.image_shape_
    images = _images.sized(args, paths, images, shape, resize_here=True)
    if len({im.shape for im in images}) > 1:
        raise CommandError("the images have different sizes; the model needs one size")
    images = np.stack(images)
    try:
        labels = loaded.predict(images)
        proba = loaded.predict_proba(images)
    except (ValueError, TypeError) as e:
        raise CommandError(f"cannot apply the model to these images: {e}") from None
    return paths, labels, proba, np.asarray(loaded.model.classes_), loaded.classes


def _onnx_predictions(args, files: list[str], named: set[str]):
    from chainrule.cli import _images
    from chainrule.models.export import load_onnx

    if args.model is not None:
        raise CommandError("--model picks a model of a run folder; it does not apply to --onnx")
    try:
        model = load_onnx(args.run)
    except (ImportError, OSError, ValueError) as e:
        raise CommandError(str(e)) from None
    paths, images = _images.decode(files, named, args.strict)
    # a graph that resizes gets the frames as they are; for one that does not, chainrule
    # resizes them as the graph would
    images = _images.sized(args, paths, images, model.image_shape, not model.resizes)
    labels = np.empty(len(images), dtype=np.int64)
    proba = np.empty((len(images), len(model.labels)), dtype=np.float32)
    for index, batch in _images.batches(images):
        try:
            labels[index], proba[index] = model.run(batch)
        except (ValueError, TypeError) as e:
            raise CommandError(f"cannot apply the model to these images: {e}") from None
    return paths, labels, proba, model.labels, model.classes


def run(args) -> int:
    if args.top < 1:
        raise CommandError(f"--top must be at least 1, got {args.top}")
    paths, labels, proba, model_labels, classes = _predictions(args)
    model_labels = np.asarray(model_labels).tolist()  # Python ints or strings
    column = {c: j for j, c in enumerate(model_labels)}
    # Class names are indexed by label for integer labels, by column for text labels.
    by_label = all(isinstance(c, int) for c in model_labels)

    def name_of(j: int) -> str:
        return classes[model_labels[j]] if by_label else classes[j]

    top = min(args.top, proba.shape[1])
    printed = [escaped(p) for p in paths]  # names and paths may hold control characters
    width = max(len(p) for p in printed)
    for path, shown_path, label, p in zip(paths, printed, labels, proba):
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
