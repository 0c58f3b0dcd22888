"""``chainrule export RUN_DIR [--model NAME] --out model.onnx``: a trained model as one
ONNX graph, preprocessing included, for ONNX Runtime, TensorRT or OpenVINO.

The graph reads uint8 images (N, H, W, C) and returns ``label`` and ``probabilities``;
``chainrule predict --onnx model.onnx IMAGE...`` runs it on image files.
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
        "--quiet", action="store_true", help="no progress output (export shows none)"
    )


def _size(path) -> str:
    n = path.stat().st_size
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def run(args) -> int:
    from chainrule.models import export_onnx
    from chainrule.models.export.write import data_file

    loaded = load_trained(args.run, args.model)
    external = {"auto": None, "yes": True, "no": False}[args.external_data]
    try:
        path = export_onnx(loaded, args.out, external_data=external)
    except (ImportError, OSError, TypeError, ValueError) as e:
        raise CommandError(str(e)) from None
    prep = loaded.preprocessor
    shape = "(N, H, W, C)" if prep is None else "(N, {}, {}, {})".format(*prep.image_shape_)
    data = data_file(path)
    side = f" + {data} {_size(data)}" if data.exists() else ""
    print(
        escaped(
            f"wrote {path} ({_size(path)}{side}): {loaded.name}, {len(loaded.classes)} classes, "
            f"input images uint8 {shape}"
        )
    )
    return 0
