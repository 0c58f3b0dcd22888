"""What the resize in an exported graph costs, and the resize itself against chainrule's.

1. An exported MLP (32x32x3 -> 1024 -> 1024 -> 10, batch norm, test-time flips; the one
   of ``bench_onnx.py``) as ``export_onnx`` writes it (reading images of any size, a
   ``Resize`` node first) against the same model exported with ``resize=False`` (images
   of the model's size only), both run by ONNX Runtime on images of the model's size:
   the cost of the ``Resize`` node when there is nothing to resize.
2. A camera frame (640x480 by default) resized to 32x32: ONNX Runtime's ``Resize`` alone
   against ``chainrule.data.resize_images`` (the same pixels, bit for bit).

Both sides of a row run in alternating bursts on one thread (threadpoolctl for NumPy's
BLAS, ONNX Runtime's intra-op pool); each row is the median over burst pairs of the
ratio of their times, with the quartiles.

    python benchmarks/bench_onnx_resize.py
    python benchmarks/bench_onnx_resize.py --frame 1080x1920 --pairs 21
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def ratios(a, b, pairs: int, repeats: int) -> tuple[float, float, float, float, float]:
    """(median time of a, of b, median a/b, first and third quartile of a/b) over
    alternating bursts (the first side alternating too)."""
    ta, tb = [], []
    for i in range(pairs):
        for fn, out in ((a, ta), (b, tb)) if i % 2 else ((b, tb), (a, ta)):
            out.append(timed(fn, repeats))
    r = np.array(ta) / np.array(tb)
    return (float(np.median(ta)), float(np.median(tb)), float(np.median(r)),
            float(np.percentile(r, 25)), float(np.percentile(r, 75)))  # fmt: skip


def session(path, ort):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def resize_graph(h: int, w: int, ort):
    """A graph of one ``Resize`` node, uint8 (N, H, W, C) -> (N, h, w, C), as in exports."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
        coordinate_transformation_mode="half_pixel", antialias=1, axes=[1, 2],
    )  # fmt: skip
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [2], [h, w])
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", "H", "W", 3])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, ["N", h, w, 3])
    graph = helper.make_graph([node], "resize", [x], [y], initializer=[sizes])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def main() -> None:
    import onnxruntime as ort
    from threadpoolctl import threadpool_limits

    from chainrule.data import Preprocessor, resize_images
    from chainrule.data.resize import parse_size
    from chainrule.models import FullyConnectedNet, export_onnx

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frame", default="480x640", help="camera frame HEIGHTxWIDTH")
    parser.add_argument("--pairs", type=int, default=15, help="alternating burst pairs")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
    pre = Preprocessor().fit(images)
    model = FullyConnectedNet(
        hidden_dims=(1024, 1024), batchnorm=True, dropout=0.1, augment=True,
        image_shape=(32, 32, 3), epochs=1, random_state=0,
    ).fit(pre.transform(images), rng.integers(0, 10, len(images)))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        any_size = session(export_onnx(model, Path(tmp) / "any.onnx", preprocessor=pre), ort)
        one_size = session(
            export_onnx(model, Path(tmp) / "one.onnx", preprocessor=pre, resize=False), ort
        )
        print(f"ONNX Runtime {ort.__version__}, 1 thread")
        for n in (1, 256):
            x = {"images": images[:n]}
            ta, tb, r, lo, hi = ratios(
                lambda x=x: any_size.run(None, x), lambda x=x: one_size.run(None, x),
                args.pairs, 20 if n == 1 else 2,
            )  # fmt: skip
            print(f"MLP, {n} image(s) of 32x32: graph with Resize {ta * 1e3:.3f} ms, without "
                  f"{tb * 1e3:.3f} ms: {r:.3f}x the time ({lo:.3f}-{hi:.3f})")  # fmt: skip
        h, w = parse_size(args.frame)
        frame = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        graph = resize_graph(32, 32, ort)
        assert (graph.run(None, {"x": frame})[0] == resize_images(frame, 32, 32)).all()
        ta, tb, r, lo, hi = ratios(
            lambda: resize_images(frame, 32, 32), lambda: graph.run(None, {"x": frame}),
            args.pairs, 5,
        )  # fmt: skip
        print(f"a {w}x{h} frame to 32x32: chainrule.data.resize_images {ta * 1e3:.2f} ms, ONNX "
              f"Runtime's Resize {tb * 1e3:.2f} ms: {r:.2f}x the time ({lo:.2f}-{hi:.2f}); "
              "the same pixels")  # fmt: skip


if __name__ == "__main__":
    main()
