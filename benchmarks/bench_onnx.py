"""Inference speed of an exported model: ONNX Runtime against chainrule's Python path.

The model is the README's best fully connected network on CIFAR-10-size images
(32x32x3 -> 1024 -> 1024 -> 10, batch norm, dropout 0.1, trained with augmentation, so
each image is averaged with its mirror image at prediction), trained briefly: timing does
not depend on the weights. It is saved and loaded as a model file, exported with
``export_onnx``, and both sides classify the same raw uint8 images:

- chainrule: ``LoadedModel.predict_proba(images)`` (preprocessing, the network in NumPy,
  test-time flips), which is the work of ``chainrule predict`` (the label is its argmax);
- ONNX Runtime: ``session.run`` of the exported graph (the same work, label included).

Both sides get the same number of threads (threadpoolctl limits NumPy's BLAS, ONNX
Runtime's intra-op pool is set to it) and run in alternating bursts, so that load from
other processes hits them alike; each row reports the median time per call of each side
and the median over burst pairs of the ratio chainrule / ONNX Runtime. Before timing,
the labels of both sides are compared on every image.

Usage::

    python benchmarks/bench_onnx.py                     # threads = CPUs of this process
    python benchmarks/bench_onnx.py --threads 1
    python benchmarks/bench_onnx.py --data /path/to/cifar10/train   # train on real images
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--hidden", default="1024,1024")
    p.add_argument("--pairs", type=int, default=15, help="interleaved burst pairs per size")
    p.add_argument("--data", default=None, help="image folder to train on (default: random)")
    p.add_argument("--n-train", type=int, default=4096, help="training images")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# -- the model ---------------------------------------------------------------------------


def training_images(args):
    """(images (n, 32, 32, 3) uint8, labels, class names)."""
    if args.data is None:
        rng = np.random.default_rng(args.seed)
        images = rng.integers(0, 256, (args.n_train, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, args.n_train)
        return images, labels, [f"class{i}" for i in range(10)]
    from chainrule.data import load

    ds = load(args.data, "train", progress=False)
    pick = np.random.default_rng(args.seed).permutation(len(ds))[: args.n_train]
    return ds.images[pick], ds.labels[pick], ds.classes


def train_and_save(args, folder: Path):
    """The model file of a briefly trained MLP with the README's settings."""
    from chainrule.data import Preprocessor
    from chainrule.models import FullyConnectedNet, save_model

    images, labels, classes = training_images(args)
    pre = Preprocessor().fit(images)
    net = FullyConnectedNet(
        hidden_dims=tuple(int(h) for h in args.hidden.split(",")),
        batchnorm=True,
        dropout=0.1,
        optimizer="adamw",
        weight_decay=0.05,
        augment=True,
        image_shape=pre.image_shape_,
        batch_size=256,
        epochs=args.epochs,
        random_state=args.seed,
        verbose=False,
    )
    net.fit(pre.transform(images), labels)
    return save_model(folder / "mlp.npz", net, pre, classes), images


# -- timing ------------------------------------------------------------------------------


def burst(fn, images, calls: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call of ``fn(images)``, over ``calls`` calls.

    CPU time is the whole process's: with one thread per side it is the time the call
    would take on an idle core, however busy the machine is; with more it also counts
    worker threads (spinning ones included).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn(images)
    return (time.perf_counter() - t0) / calls, (time.process_time() - c0) / calls


def compare(python_fn, onnx_fn, images, pairs: int, budget_s: float = 0.25):
    """Interleaved bursts: ``{side: (wall per call of each burst, CPU per call of each
    burst)}`` and the median over pairs of the wall-time ratio chainrule / ONNX Runtime."""
    python_fn(images)
    onnx_fn(images)  # warm-up: allocations, thread pools
    one = max(burst(python_fn, images, 1)[0], burst(onnx_fn, images, 1)[0])
    calls = max(1, int(budget_s / max(one, 1e-6)))
    times = {"chainrule": ([], []), "onnx": ([], [])}
    for i in range(pairs):
        sides = [("chainrule", python_fn), ("onnx", onnx_fn)]
        for side, fn in sides if i % 2 == 0 else sides[::-1]:
            wall, cpu = burst(fn, images, calls)
            times[side][0].append(wall)
            times[side][1].append(cpu)
    ratio = statistics.median(a / b for a, b in zip(times["chainrule"][0], times["onnx"][0]))
    return times, ratio


def _ms(side) -> str:
    """'median wall (best wall) median CPU' in ms."""
    wall, cpu = side
    return (
        f"{statistics.median(wall) * 1e3:8.3f} ({min(wall) * 1e3:7.3f}) "
        f"{statistics.median(cpu) * 1e3:8.3f}"
    )


def libraries(threads: int) -> str:
    import onnxruntime as ort
    from threadpoolctl import threadpool_info

    blas = next(
        (i for i in threadpool_info() if i.get("user_api") == "blas"),
        {"internal_api": "unknown BLAS"},
    )
    return (
        f"chainrule: NumPy {np.__version__} + {blas.get('internal_api')} "
        f"{blas.get('version', '')} ({blas.get('architecture', '?')} kernels), "
        f"{threads} BLAS threads\nONNX Runtime {ort.__version__} (CPU execution provider, "
        f"its own MLAS kernels), {threads} intra-op threads"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits

    from chainrule.models import export_onnx, load_model
    from chainrule.models.export import load_onnx

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with threadpool_limits(limits=args.threads, user_api="blas"):
            model_file, images = train_and_save(args, Path(tmp))
        loaded = load_model(model_file)
        onnx_file = export_onnx(loaded, Path(tmp) / "mlp.onnx")
        onnx_model = load_onnx(onnx_file, threads=args.threads)
        print(
            f"MLP 3072-{args.hidden.replace(',', '-')}-10, batch norm (folded), test-time "
            f"flips; trained {args.epochs} epoch(s) on {len(images)} "
            f"{'random' if args.data is None else 'real'} images in "
            f"{time.perf_counter() - t0:.1f} s; ONNX file {onnx_file.stat().st_size / 1e6:.1f} MB"
        )
        print(libraries(args.threads))
        test = images[:256]
        with threadpool_limits(limits=args.threads, user_api="blas"):
            labels, proba = onnx_model.run(test)
            same = np.mean(labels == loaded.predict(test))
            diff = np.abs(proba - loaded.predict_proba(test)).max()
            print(f"agreement on {len(test)} images: labels {same:.0%}, probabilities {diff:.1e}")
            print(f"{'':5}  {'chainrule ms':>28}  {'ONNX Runtime ms':>28}")
            print(
                f"{'batch':>5}  {'wall (best)':>19} {'CPU':>8}  {'wall (best)':>19} {'CPU':>8}"
                f"  {'ratio (wall)':>12}  {'ORT images/s':>12}"
            )
            for n in (1, 256):
                times, ratio = compare(loaded.predict_proba, onnx_model.run, test[:n], args.pairs)
                ort_rate = n / statistics.median(times["onnx"][0])
                print(
                    f"{n:5d}  {_ms(times['chainrule'])}  {_ms(times['onnx'])}  {ratio:11.2f}x  "
                    f"{ort_rate:12.0f}"
                )
    print(
        f"(per call: median and best wall time, median CPU time of the process, over "
        f"{args.pairs} interleaved bursts per side; ratio: median over burst pairs of "
        f"chainrule / ONNX Runtime; goal: ONNX Runtime under 1 ms at batch 1)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
