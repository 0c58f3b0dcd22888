"""The default recipes on a robot's small photo folder: a few hundred colour photos of
3 objects, 64x48 pixels, trained with ``chainrule train`` and no other option.

A robot's own photos are not public, so the folder is made from CIFAR-10 (the image
folder of ``--data``): ``--per-class`` photos of each of ``--classes``, resized to the
robot camera's 64x48 (bilinear), written as PNG files into ``--folder``. Each model of
``--models`` (``cnn`` without and with ``--augment``, and the ``mlp`` as the reference
it should at least match) is trained on it with its defaults for ``--seeds`` seeds
(the validation split is 20% of the photos, stratified, chosen by the seed), and the
validation and training accuracy, the epochs the recipe chose and the fit time are
printed, then their mean and range per model::

    python benchmarks/small_photos.py                        # 3 x 130 photos, seeds 0-2
    python benchmarks/small_photos.py --models cnn --seeds 0,1,2,3,4
    python benchmarks/small_photos.py --options "--lr 0.05"  # one setting changed

The training accuracy is measured in evaluation mode on the training photos (without
augmentation), so a model that did not learn them shows there too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = "/work/data/cifar10/train"
DEFAULT_CLASSES = "automobile,cat,ship"


def make_folder(source: Path, folder: Path, classes: list[str], per_class: int, size) -> Path:
    """``folder/<class>/NNNN.png``: the first `per_class` images of each class folder of
    `source`, resized to `size` (width, height). Reused when it is already complete."""
    from PIL import Image

    for name in classes:
        out = folder / name
        if out.is_dir() and len(list(out.glob("*.png"))) == per_class:
            continue
        out.mkdir(parents=True, exist_ok=True)
        files = sorted(p for p in (source / name).iterdir() if p.is_file())[:per_class]
        if len(files) < per_class:
            raise SystemExit(f"{source / name} has {len(files)} images, fewer than {per_class}")
        for i, path in enumerate(files):
            with Image.open(path) as im:
                im.convert("RGB").resize(size, Image.BILINEAR).save(out / f"{i:04d}.png")
    return folder


def train(folder: Path, model: str, seed: int, options: list[str], runs: Path) -> dict:
    """One ``chainrule train`` run; its metrics."""
    from chainrule.cli import main

    out = runs / f"{model}-{'-'.join(o.strip('-') for o in options) or 'defaults'}-{seed}"
    argv = ["train", model, "--data", str(folder), "--seed", str(seed), "--quiet"]
    argv += [*options, "--out", str(out), "--force"]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its summary: the table says it
        code = main(argv)
    if code != 0:
        raise SystemExit(f"chainrule {' '.join(argv)} failed")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["wall_s"] = time.perf_counter() - start
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="an image folder of CIFAR-10's classes")
    p.add_argument("--classes", default=DEFAULT_CLASSES)
    p.add_argument("--per-class", type=int, default=130)
    p.add_argument("--size", default="64x48", help="WIDTHxHEIGHT of the photos")
    p.add_argument("--folder", help="where the photos go (default: a temporary folder)")
    p.add_argument("--models", default="cnn,cnn --augment,mlp")
    p.add_argument("--options", default="", help="options added to every run")
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    classes = args.classes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp) / "photos"
        make_folder(Path(args.data), folder, classes, args.per_class, (width, height))
        runs = Path(tmp) / "runs"
        print(
            f"{len(classes)} x {args.per_class} photos of {width}x{height} ({', '.join(classes)})"
            f"; load {os.getloadavg()[0]:.1f}"
        )
        print(f"{'model':24s} seed  val acc  train acc  epochs  fit time")
        summary = {}
        for spec in args.models.split(","):
            model, *options = spec.split()
            options += args.options.split()
            label = " ".join([model, *options])
            for seed in (int(s) for s in args.seeds.split(",")):
                m = train(folder, model, seed, options, runs)
                val, fit = m["val_accuracy"], m["fit_time_s"]
                summary.setdefault(label, []).append(val)
                print(
                    f"{label:24s} {seed:4d}  {100 * val:6.2f}%  {100 * m['train_accuracy']:8.2f}%"
                    f"  {m['params'].get('epochs')!s:>6}  {fit:7.1f} s",
                    flush=True,
                )
    print("\nmean validation accuracy (range) over the seeds:")
    for label, accs in summary.items():
        print(
            f"  {label:24s} {100 * statistics.mean(accs):6.2f}% "
            f"({100 * min(accs):.2f}-{100 * max(accs):.2f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
