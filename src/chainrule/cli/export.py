"""``chainrule export RUN_DIR [--model NAME] --out model.onnx``: a trained model as one
ONNX graph, preprocessing included, for ONNX Runtime, TensorRT or OpenVINO.

The graph reads uint8 images (N, H, W, C) of any height and width (resized to the model's
size inside it; ``--no-resize``: of the model's size only) and returns ``label`` and
``probabilities``; ``chainrule predict --onnx model.onnx IMAGE...`` runs it on image
files. Before the file is written, ONNX Runtime runs the graph on test images and must
give chainrule's answers (``chainrule.models.export.verify``); the last line on stderr
says what was checked.
"""

from __future__ import annotations

from chainrule._text import escaped
from chainrule.cli import CommandError
from chainrule.cli._common import load_trained


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN_DIR", help="a run folder or a model file (.npz)")
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="which model of a comparison run folder (knn, svm, ...)",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="the .onnx file to write")
    parser.add_argument(
        "--external-data",
        choices=("auto", "yes", "no"),
        default="auto",
        help="weights in FILE.data beside the model (default: when over 1 GiB)",
    )
    parser.add_argument(
        "--no-resize",
        action="store_true",
        help="the graph reads images of the model's size only (default: images of any "
        "size, resized to it inside the graph)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no notes on stderr (what the export checked)"
    )


def _size(path) -> str:
    n = path.stat().st_size
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def run(args) -> int:
    from chainrule.cli._common import info
    from chainrule.data.resize import format_size
    from chainrule.models.export import export_checked
    from chainrule.models.export.write import data_file, side_file_of

    loaded = load_trained(args.run, args.model)
    external = {"auto": None, "yes": True, "no": False}[args.external_data]
    try:
        path, check = export_checked(
            loaded, args.out, external_data=external, resize=not args.no_resize
        )
    except (ImportError, OSError, TypeError, ValueError) as e:
        raise CommandError(str(e)) from None
    prep = loaded.preprocessor
    if prep is None:
        shape = "(N, H, W, C)"
    else:
        h, w, c = prep.image_shape_
        shape = f"(N, {h}, {w}, {c})"
        if not args.no_resize:
            shape = f"(N, H, W, {c}) of any size, resized to {format_size(h, w)} in the graph"
    data = data_file(path)
    side = f" + {data} {_size(data)}" if side_file_of(path) else ""
    print(
        escaped(
            f"wrote {path} ({_size(path)}{side}): {loaded.name}, {len(loaded.classes)} classes, "
            f"input images uint8 {shape}"
        )
    )
    info(args, check.describe())
    return 0
