"""Inference speed of an exported model: ONNX Runtime against chainrule's Python path.

Two models (``--models mlp,cnn``). The MLP is the best fully connected network of the
docs' numbers page on CIFAR-10-size images (32x32x3 -> 1024 -> 1024 -> 10, batch norm,
dropout 0.1, trained with augmentation, so each image is averaged with its mirror image
at prediction),
trained briefly: timing does not depend on the weights. It is saved and loaded as a
model file, exported with ``export_onnx``, and both sides classify the same raw uint8
images:

- chainrule: ``LoadedModel.predict_proba(images)`` (preprocessing, the network in NumPy,
  test-time flips), which is the work of ``chainrule predict`` (the label is its argmax);
- ONNX Runtime: ``session.run`` of the exported graph (the same work, label included).

The ConvNet is a ``build_convnet`` network for 32x32x3 images (``--widths 32,64,128``,
``--stem whiten``: a frozen 2x2 whitening convolution, then per stage a 3x3 convolution,
2x2 max pooling, batch norm, ReLU and a second 3x3 convolution with batch norm and ReLU;
a global max pool and a linear layer), untrained but with batch norm statistics from a
few training-mode passes over the images. chainrule's side is the work of a ConvNet's
``predict_proba`` without test-time flips: ``Preprocessor.transform``, the network in
evaluation mode, the softmax; ONNX Runtime runs the graph ``export_onnx`` writes (batch
norm folded into the convolutions where one follows the other).

Both sides get the same number of threads (threadpoolctl limits NumPy's BLAS, ONNX
Runtime's intra-op pool is set to it) and run in alternating bursts, so that load from
other processes hits them alike; each row reports the median time per call of each side
and the median over burst pairs of the ratio chainrule / ONNX Runtime. Before timing,
the labels of both sides are compared on every image.

Usage::

    python benchmarks/bench_onnx.py                     # threads = CPUs of this process
    python benchmarks/bench_onnx.py --threads 1
    python benchmarks/bench_onnx.py --data /path/to/cifar10/train   # train on real images
    python benchmarks/bench_onnx.py --models cnn --threads 1
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
    p.add_argument("--models", default="mlp,cnn", help="mlp, cnn or both")
    p.add_argument("--hidden", default="1024,1024", help="the MLP's hidden widths")
    p.add_argument("--widths", default="32,64,128", help="the ConvNet's stage widths")
    p.add_argument("--stem", default="whiten", choices=["whiten", "conv"])
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
    """The model file of a briefly trained MLP with the numbers page's settings."""
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


class _Network:
    """A network reading preprocessed images, as ``export_onnx`` reads a fitted network
    estimator (``net_``, ``classes_``), with its ``predict_proba``."""

    def __init__(self, net, preprocessor, n_classes: int):
        self.net_ = net
        self.preprocessor = preprocessor
        self.classes_ = np.arange(n_classes)

    def get_params(self):
        return {}

    def predict_proba(self, images):
        from chainrule import Tensor, no_grad
        from chainrule.autograd.arraymath import softmax

        with no_grad():
            return softmax(self.net_(Tensor(self.preprocessor.transform(images))).data)


def build_cnn(args):
    """(network estimator, images): a ``build_convnet`` network whose batch norms hold
    the statistics of the images (training-mode passes, momentum 1 on the last)."""
    from chainrule import Tensor, nn, no_grad
    from chainrule.data import Preprocessor
    from chainrule.models.convnet_arch import build_convnet

    images, _, classes = training_images(args)
    pre = Preprocessor(flatten=False).fit(images)  # images (N, H, W, C), as ConvNet reads
    X = pre.transform(images[:512])
    net = build_convnet(
        (32, 32, 3),
        len(classes),
        tuple(int(w) for w in args.widths.split(",")),
        stem=args.stem,
        whiten_images=X,
        random_state=args.seed,
    )
    net.train()
    with no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 1.0
        net(Tensor(X[:256]))
    net.eval()
    return _Network(net, pre, len(classes)), images


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


def mlp_case(args, folder: Path):
    """(title, chainrule side (a LoadedModel), ONNX file, images)."""
    from chainrule.models import export_onnx, load_model

    t0 = time.perf_counter()
    model_file, images = train_and_save(args, folder)
    loaded = load_model(model_file)
    onnx_file = export_onnx(loaded, folder / "mlp.onnx")
    title = (
        f"MLP 3072-{args.hidden.replace(',', '-')}-10, batch norm (folded), test-time "
        f"flips; trained {args.epochs} epoch(s) on {len(images)} "
        f"{'random' if args.data is None else 'real'} images in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return title, loaded, onnx_file, images


def cnn_case(args, folder: Path):
    from chainrule.models import export_onnx
    from chainrule.models.convnet_arch import architecture_flops

    model, images = build_cnn(args)
    onnx_file = export_onnx(model, folder / "cnn.onnx", preprocessor=model.preprocessor)
    flops = architecture_flops(model.net_, (32, 32, 3))
    title = (
        f"ConvNet 32x32x3, {args.stem} stem, widths {args.widths}, batch norm, global max "
        f"pool, no test-time flips; {flops / 1e6:.0f} MFLOP per image; batch norm "
        f"statistics of {'random' if args.data is None else 'real'} images"
    )
    return title, model, onnx_file, images


def time_case(args, title, model, onnx_file, images) -> None:
    from chainrule.models.export import load_onnx

    onnx_model = load_onnx(onnx_file, threads=args.threads)
    print(f"{title}; ONNX file {onnx_file.stat().st_size / 1e6:.1f} MB")
    test = images[:256]
    probe = model.predict_proba(test)
    labels, proba = onnx_model.run(test)
    same = np.mean(labels == np.asarray(model.classes_)[probe.argmax(axis=1)])
    diff = np.abs(proba - probe).max()
    print(f"agreement on {len(test)} images: labels {same:.0%}, probabilities {diff:.1e}")
    print(f"{'':5}  {'chainrule ms':>28}  {'ONNX Runtime ms':>28}")
    print(
        f"{'batch':>5}  {'wall (best)':>19} {'CPU':>8}  {'wall (best)':>19} {'CPU':>8}"
        f"  {'ratio (wall)':>12}  {'images/s: chainrule':>19} {'ORT':>7}"
    )
    for n in (1, 256):
        times, ratio = compare(model.predict_proba, onnx_model.run, test[:n], args.pairs)
        rates = [n / statistics.median(times[side][0]) for side in ("chainrule", "onnx")]
        print(
            f"{n:5d}  {_ms(times['chainrule'])}  {_ms(times['onnx'])}  {ratio:11.2f}x  "
            f"{rates[0]:19.0f} {rates[1]:7.0f}"
        )


CASES = {"mlp": mlp_case, "cnn": cnn_case}


def main(argv=None) -> int:
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown or not names:
        print(f"--models: choose from {', '.join(CASES)}, got {args.models!r}", file=sys.stderr)
        return 2
    print(libraries(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            folder = Path(tmp) / name
            folder.mkdir()
            # Both sides (and the model's making) run under the same thread limit: NumPy's
            # BLAS and chainrule's convolution threads, which follow it.
            with threadpool_limits(limits=args.threads, user_api="blas"):
                time_case(args, *CASES[name](args, folder))
                print()
    print(
        f"(per call: median and best wall time, median CPU time of the process, over "
        f"{args.pairs} interleaved bursts per side; ratio: median over burst pairs of "
        f"chainrule / ONNX Runtime; goal: ONNX Runtime under 1 ms at batch 1 for the MLP)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
