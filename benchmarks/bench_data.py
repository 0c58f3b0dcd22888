"""Data pipeline speed: loading an image folder (first decode, cached reload) and augmentation.

(a) Image folder: ``chainrule.data.load(DIR, "all")`` with an empty cache (threaded Pillow
    decoding, then the decoded arrays are written to the cache) and again with the cache
    filled (median of --repeats). Reference, in the same run: a plain serial Pillow loop
    over the same files (``np.asarray(Image.open(p).convert("RGB"))`` per file, then
    ``np.stack``). Ratios = chainrule time / reference time.
(b) Augmentation of a 256x32x32x3 minibatch (random crop with 4 pixels of zero padding,
    random horizontal flip): ``random_crop_flip`` on uint8 images and
    ``random_crop_flip_flat`` on float32 rows (256, 3072), median ms per batch. Reference:
    the same operation image by image (np.pad, slice, flip), as a per-sample transform
    does it; and, when PyTorch is installed, the same per-image loop with torch tensors.

Run:  .venv/bin/python benchmarks/bench_data.py [DIR] [--repeats 3] [--cache-dir D]
DIR defaults to /work/data/cifar10/train (the 50,000 CIFAR-10 training JPEGs). Without
--cache-dir a temporary cache folder is used and removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import chainrule.data as crdata


def bench_folder(root: Path, cache_dir: Path, repeats: int, reference: bool) -> None:
    from PIL import Image

    from chainrule.data import folder as folder_mod

    files = []
    for c in folder_mod._subdirs(root):
        folder_mod._walk_images(root / c, c, files)
    print(f"(a) image folder {root}: {len(files)} images")

    t = time.perf_counter()
    ds = crdata.load(root, "all", cache_dir=cache_dir, progress=False)
    first = time.perf_counter() - t
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        again = crdata.load(root, "all", cache_dir=cache_dir, progress=False)
        seconds.append(time.perf_counter() - t)
    second = statistics.median(seconds)
    assert np.array_equal(again.images, ds.images)
    print(f"    images {ds.images.shape} {ds.images.dtype}, {len(ds.classes)} classes")
    print(f"    chainrule first load (decode + write cache): {first:8.2f} s")
    print(
        f"    chainrule cached load (median of {repeats}):  {second:8.2f} s"
        f"   (runs: {', '.join(f'{s:.2f}' for s in seconds)})"
    )
    print(f"    cached / first:                            {second / first:8.3f}")
    if reference:
        t = time.perf_counter()
        ref = np.stack([np.asarray(Image.open(root / rel).convert("RGB")) for rel, _, _ in files])
        plain = time.perf_counter() - t
        assert np.array_equal(ref, ds.images)
        print(f"    reference serial Pillow loop:              {plain:8.2f} s")
        print(f"    first load / reference:                    {first / plain:8.3f}")
        print(f"    cached load / reference:                   {second / plain:8.3f}")


def per_image_numpy(x: np.ndarray, rng: np.random.Generator, p: int = 4) -> np.ndarray:
    out = np.empty_like(x)
    n, h, w, _ = x.shape
    for i in range(n):
        padded = np.pad(x[i], ((p, p), (p, p), (0, 0)))
        dy, dx = rng.integers(0, 2 * p + 1, size=2)
        crop = padded[dy : dy + h, dx : dx + w]
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def bench_augment(repeats: int) -> None:
    rng = np.random.default_rng(0)
    x8 = rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    xf = x8.astype(np.float32)
    rows = xf.reshape(256, -1) / 255.0 - 0.5
    print("(b) augmentation, batch 256x32x32x3, padding 4, flip p=0.5 (median ms per batch)")
    ours8 = median_ms(lambda: crdata.random_crop_flip(x8, 4, rng=rng), repeats)
    oursf = median_ms(lambda: crdata.random_crop_flip(xf, 4, rng=rng), repeats)
    ours_flat = median_ms(
        lambda: crdata.random_crop_flip_flat(rows, (32, 32, 3), 4, rng=rng), repeats
    )
    ref8 = median_ms(lambda: per_image_numpy(x8, rng), max(5, repeats // 20))
    print(f"    chainrule random_crop_flip uint8:          {ours8:8.3f} ms")
    print(f"    chainrule random_crop_flip float32:        {oursf:8.3f} ms")
    print(f"    chainrule random_crop_flip_flat float32:   {ours_flat:8.3f} ms")
    print(f"    reference per-image NumPy loop, uint8:     {ref8:8.3f} ms")
    print(f"    uint8 ratio chainrule / per-image NumPy:   {ours8 / ref8:8.3f}")
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("    (PyTorch not installed: no torch reference)")
        return
    t8 = torch.from_numpy(x8).permute(0, 3, 1, 2).contiguous()  # NCHW, as torch works

    def per_image_torch():
        out = torch.empty_like(t8)
        offsets = torch.randint(0, 9, (256, 2))
        flips = torch.rand(256) < 0.5
        for i in range(256):
            padded = F.pad(t8[i], (4, 4, 4, 4))
            dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
            crop = padded[:, dy : dy + 32, dx : dx + 32]
            out[i] = crop.flip(-1) if flips[i] else crop
        return out

    torch_ms = median_ms(per_image_torch, max(5, repeats // 20))
    print(
        f"    reference per-image torch loop, uint8 (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads): {torch_ms:8.3f} ms"
    )
    print(f"    uint8 ratio chainrule / per-image torch:   {ours8 / torch_ms:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="/work/data/cifar10/train")
    parser.add_argument("--repeats", type=int, default=3, help="cached loads to time")
    parser.add_argument("--aug-repeats", type=int, default=200)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--no-reference", action="store_true", help="skip the serial loop")
    parser.add_argument("--skip-folder", action="store_true")
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    if not args.skip_folder:
        root = Path(args.folder)
        if not root.is_dir():
            sys.exit(f"{root} is not a folder; unpack CIFAR-10 there or pass a folder")
        tmp = None
        cache = Path(args.cache_dir) if args.cache_dir else None
        if cache is None:
            tmp = cache = Path(tempfile.mkdtemp(prefix="chainrule-bench-"))
        try:
            bench_folder(root, cache, args.repeats, not args.no_reference)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    bench_augment(args.aug_repeats)


if __name__ == "__main__":
    main()
