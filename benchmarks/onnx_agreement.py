"""How closely exported models agree with chainrule: every model family trained by
``chainrule train`` on a folder of colour photos (made here: 3 objects, 64x48 by default),
exported by ``chainrule export``, run by ONNX Runtime on held-out photos and on camera
frames of other sizes and aspect ratios, against chainrule's ``predict_proba`` on the
same photos (frames resized by ``chainrule.data.resize_images``).

    python benchmarks/onnx_agreement.py                  # 64x48 photos, 20 per class
    python benchmarks/onnx_agreement.py --size 32x32 --families cnn-conv,cnn-whiten

Prints one line per family: the largest probability difference and the share of equal
labels on the held-out photos and on the frames, and the spread of chainrule's
probabilities (a model whose answers do not depend on the image could not show a
difference). Needs onnx and onnxruntime.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

NETWORKS = {
    "twolayer": ["twolayer", "--hidden", "32", "--epochs", "3"],
    "mlp": ["mlp", "--hidden", "32,16", "--batchnorm", "--epochs", "3"],
    "cnn-conv": ["cnn", "--stem", "conv", "--epochs", "8", "--lr", "0.05"],
    "cnn-whiten": ["cnn", "--stem", "whiten", "--epochs", "8", "--lr", "0.05"],
}
FAMILIES = {
    "knn": ["knn", "--k", "3"],
    "svm": ["svm"],
    "softmax": ["softmax"],
    **NETWORKS,
    **{f"{name}-flips": [*argv, "--augment"] for name, argv in NETWORKS.items()},
}
FRAMES = [(480, 640), (24, 32), (60, 80), (64, 48), (120, 90)]  # (height, width)


def photo(kind: int, rng, height: int, width: int) -> np.ndarray:
    """A red bar, green stripes or a blue disc, shifted a little, on noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    dx = int(rng.integers(-width // 10, width // 10 + 1))
    if kind == 0:
        mask, colour = xx + dx < width // 3, (200, 40, 40)
    elif kind == 1:
        mask, colour = (yy * 6 // height) % 2 == 0, (30, 180, 60)
    else:
        disc = (xx - width / 2 - dx) ** 2 + (yy - height / 2) ** 2
        mask, colour = disc < (min(height, width) / 3) ** 2, (40, 60, 210)
    noise = rng.integers(0, 70, (height, width, 3))
    return np.clip(noise + mask[..., None] * np.array(colour), 0, 255).astype(np.uint8)


def write_photos(root: Path, n: int, seed: int, height: int, width: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for kind, name in enumerate(("cup", "drill", "mug")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(photo(kind, rng, height, width)).save(root / name / f"{i:03d}.png")
    return root


def agreement(session, model, images, size) -> tuple[float, float]:
    """(largest |probability difference|, share of equal labels) of the graph on raw
    images against chainrule on the images resized to ``size``."""
    from chainrule.data import resize_images

    diffs, equal = [], []
    for frame in images:
        label, proba = session.run(["label", "probabilities"], {"images": frame[None]})
        resized = resize_images(frame[None], *size)
        diffs.append(np.abs(proba - model.predict_proba(resized)).max())
        equal.append(label[0] == model.predict(resized)[0])
    return float(max(diffs)), float(np.mean(equal))


def main() -> None:
    import onnxruntime as ort

    from chainrule.cli import main as chainrule
    from chainrule.data import load
    from chainrule.data.resize import parse_size
    from chainrule.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="48x64", help="photos' HEIGHTxWIDTH (default 48x64)")
    parser.add_argument("--n-per-class", type=int, default=20)
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()
    h, w = parse_size(args.size)
    rng = np.random.default_rng(7)
    frames = [photo(i % 3, rng, fh, fw) for i, (fh, fw) in enumerate(FRAMES)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photos = write_photos(root / "photos", args.n_per_class, 0, h, w)
        held = load(str(write_photos(root / "held", args.n_per_class, 1, h, w)), "all")
        print(f"{len(held)} held-out photos of {w}x{h} pixels; frames (WxH) "
              + ", ".join(f"{fw}x{fh}" for fh, fw in FRAMES))  # fmt: skip
        for name in args.families.split(","):
            run, onnx_file = root / name, root / f"{name}.onnx"
            argv = [*FAMILIES[name], "--data", str(photos), "--out", str(run), "--quiet"]
            assert chainrule(["train", *argv]) == 0
            assert chainrule(["export", str(run), "--out", str(onnx_file), "--quiet"]) == 0
            model = load_model(run)
            session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
            d1, a1 = agreement(session, model, held.images, (h, w))
            d2, a2 = agreement(session, model, frames, (h, w))
            spread = np.ptp(model.predict_proba(held.images), axis=0).max()
            print(f"{name:17s} photos: max|dp| {d1:.1e}, labels equal {a1:.0%}   "
                  f"frames: max|dp| {d2:.1e}, labels equal {a2:.0%}   "
                  f"(probability spread {spread:.2f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
