"""Training throughput of a small ConvNet: chainrule against PyTorch (CPU), same threads.

The network (3x3 convolutions, batch norm, ReLU, max pooling, a global max pool and a
linear layer; widths from ``--widths``) is trained with Nesterov SGD on a softmax
cross-entropy loss, batch 256, float32, on random 32x32 colour images. Both libraries
run in this process with the same number of threads (threadpoolctl limits NumPy's BLAS,
whose thread count chainrule's convolutions follow; ``torch.set_num_threads`` limits
PyTorch), in alternating short timing windows so that load from other processes hits
both alike. The result is the median over window pairs of the ratio of images per
second, chainrule / PyTorch; next to it, the median ratio of the CPU time (both
processes' threads) each side spent per step in the same windows, which moves less with
the load than wall time does, and the load average after the windows. The header names
each side's libraries and which chainrule kernel runs each convolution (im2col or
Winograd F(2x2, 3x3), see `chainrule.nn.functional.conv`).

It also times the convolutions alone (forward and backward of every convolution of the
network on the shapes it sees, in chainrule) and a plain float32 matrix product of the
same number of floating-point operations, in the same run: the matrix product is the
limit the convolutions can approach.

Usage::

    python benchmarks/bench_cnn.py                     # 1 and 2 threads, 3-8 minutes
    python benchmarks/bench_cnn.py --threads 2 --windows 7
    python benchmarks/bench_cnn.py --widths 32,64,64,128,128,256,256   # Winograd layers
    python benchmarks/bench_cnn.py --widths 32,64,64,128,128,256,256 --kernels-ab
    python benchmarks/bench_cnn.py --profile --threads 1   # where chainrule's time goes
    python benchmarks/bench_cnn.py --profile --threads 1 --cpu-time   # steadier when busy
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

STAGES_HELP = "stem width, then two convolutions per stage: e.g. 16,32,32,64,64,64,64"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", default="16,32,32,64,64,64,64", help=STAGES_HELP)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", default="1,2", help="thread counts to measure, e.g. 1,2")
    p.add_argument("--windows", type=int, default=11, help="timing windows per library")
    p.add_argument("--iters", type=int, default=2, help="training steps per window")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-torch", action="store_true", help="time chainrule only")
    p.add_argument("--profile", action="store_true", help="time of each Function in a step")
    p.add_argument(
        "--cpu-time", action="store_true", help="--profile in CPU time (with --threads 1)"
    )
    p.add_argument("--no-winograd", action="store_true", help="im2col for every convolution")
    p.add_argument(
        "--kernels-ab",
        action="store_true",
        help="chainrule only: windows with Winograd where it applies against im2col "
        "everywhere, interleaved (what the Winograd kernels are worth on this network)",
    )
    return p.parse_args(argv)


def _widths(text):
    w = [int(v) for v in text.split(",") if v]
    if len(w) < 3 or len(w) % 2 == 0:
        raise SystemExit(f"--widths: {STAGES_HELP}; got {text!r}")
    return w[0], [(w[i], w[i + 1]) for i in range(1, len(w), 2)]


# ---------------------------------------------------------------- the two networks
# stem: conv-BN-ReLU; each stage: conv - maxpool - BN - ReLU - conv - BN - ReLU (pooling
# right after the first convolution, so the rest of the stage works on a quarter of the
# pixels); then a global max pool and a linear layer.


def conv_shapes(widths, batch, size=32):
    """(N, C, H, W, F) of every 3x3 convolution, in order, and whether it needs dx."""
    stem, stages = _widths(widths)
    shapes = [((batch, 3, size, size, stem), False)]
    c, h = stem, size
    for a, b in stages:
        shapes.append(((batch, c, h, h, a), True))
        h //= 2
        shapes.append(((batch, a, h, h, b), True))
        c = b
    return shapes


def conv_flops(widths, batch):
    """Floating-point operations of the convolutions in one training step (forward,
    weight gradient, input gradient where needed)."""
    total = 0
    for (n, c, h, w, f), need_dx in conv_shapes(widths, batch):
        fwd = 2 * n * h * w * 9 * c * f
        total += fwd * (3 if need_dx else 2)
    return total


def chainrule_net(widths, seed):
    from chainrule import nn

    rng = np.random.default_rng(seed)
    stem, stages = _widths(widths)
    layers = [
        nn.Conv2d(3, stem, 3, padding=1, bias=False, random_state=rng),
        nn.BatchNorm2d(stem),
        nn.ReLU(),
    ]
    c = stem
    for a, b in stages:
        layers += [nn.Conv2d(c, a, 3, padding=1, bias=False, random_state=rng), nn.MaxPool2d(2)]
        layers += [nn.BatchNorm2d(a), nn.ReLU()]
        layers += [nn.Conv2d(a, b, 3, padding=1, bias=False, random_state=rng)]
        layers += [nn.BatchNorm2d(b), nn.ReLU()]
        c = b
    layers += [nn.GlobalMaxPool2d(), nn.Linear(c, 10, random_state=rng)]
    return nn.Sequential(*layers)


def torch_net(widths, seed):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    stem, stages = _widths(widths)
    layers = [nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()]
    c = stem
    for a, b in stages:
        layers += [nn.Conv2d(c, a, 3, padding=1, bias=False), nn.MaxPool2d(2)]
        layers += [nn.BatchNorm2d(a), nn.ReLU(), nn.Conv2d(a, b, 3, padding=1, bias=False)]
        layers += [nn.BatchNorm2d(b), nn.ReLU()]
        c = b
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c, 10)]
    return nn.Sequential(*layers)


def chainrule_trainer(widths, seed):
    import chainrule.nn.functional as F
    from chainrule import optim

    net = chainrule_net(widths, seed)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    def step(xb, yb):
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step, net


def torch_trainer(widths, seed):
    import torch

    net = torch_net(widths, seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    lossf = torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        loss = lossf(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


def make_data(batch, n_batches, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_batches, batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, (n_batches, batch))
    return [(X[i], y[i]) for i in range(n_batches)]


# ---------------------------------------------------------------- measurements


def numpy_blas():
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
            return f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')})"
    return "unknown BLAS"


def torch_backend():
    import torch

    lib = "MKL" if torch.backends.mkl.is_available() else "BLAS"
    dnn = "oneDNN" if torch.backends.mkldnn.is_available() else "no oneDNN"
    return f"PyTorch {torch.__version__} + {lib}, {dnn}, {torch.backends.cpu.get_cpu_capability()}"


def _window(step, data, n, batch):
    """(images per second, process CPU seconds per step) over n steps."""
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        step(*data[i % len(data)])
    return batch * n / (time.perf_counter() - t0), (time.process_time() - c0) / n


def measure_training(args, threads):
    """Interleaved windows; (chainrule, torch) lists of (img/s, CPU s per step)."""
    from threadpoolctl import threadpool_limits

    data = make_data(args.batch, 2, args.seed)
    cr_step, _ = chainrule_trainer(args.widths, args.seed)
    t_step = None
    if not args.no_torch:
        import torch

        torch.set_num_threads(threads)
        t_step = torch_trainer(args.widths, args.seed)
        t_data = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
    cr, th = [], []
    with threadpool_limits(limits=threads, user_api="blas"):
        _window(cr_step, data, 2, args.batch)  # warm-up: allocations, thread pools, state
        if t_step is not None:
            _window(t_step, t_data, 2, args.batch)
        for w in range(args.windows):
            sides = ("cr", "torch") if w % 2 == 0 else ("torch", "cr")
            for side in sides:
                if side == "cr":
                    cr.append(_window(cr_step, data, args.iters, args.batch))
                elif t_step is not None:
                    th.append(_window(t_step, t_data, args.iters, args.batch))
    return cr, th


def measure_conv_limit(args, threads, repeats=5):
    """Seconds per step of chainrule's convolutions alone, and of a matmul of equal work."""
    from threadpoolctl import threadpool_limits

    import chainrule as cr
    from chainrule.nn.functional import conv2d

    rng = np.random.default_rng(args.seed)
    layers = []
    for (n, c, h, w, f), need_dx in conv_shapes(args.widths, args.batch):
        x = rng.standard_normal((n, h, w, c), dtype=np.float32).transpose(0, 3, 1, 2)
        wt = cr.Tensor(rng.standard_normal((f, c, 3, 3), dtype=np.float32) * 0.1, True)
        g = rng.standard_normal((n, h, w, f), dtype=np.float32).transpose(0, 3, 1, 2)
        layers.append((cr.Tensor(x, requires_grad=need_dx), wt, g))
    flops = conv_flops(args.widths, args.batch)
    k = max(1, round(flops / (2 * 2048 * 2048)))
    a = rng.standard_normal((2048, k), dtype=np.float32)
    b = rng.standard_normal((k, 2048), dtype=np.float32)

    def convs():
        for x, wt, g in layers:
            conv2d(x, wt, None, 1, 1).backward(g)

    conv_t, mm_t = [], []
    with threadpool_limits(limits=threads, user_api="blas"):
        convs()
        a @ b
        for _ in range(repeats):
            t0 = time.perf_counter()
            convs()
            conv_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            a @ b
            mm_t.append((time.perf_counter() - t0) * flops / (2 * 2048 * 2048 * k))
    return flops, statistics.median(conv_t), statistics.median(mm_t)


def report(args, threads):
    cr, th = measure_training(args, threads)
    flops, conv_s, mm_s = measure_conv_limit(args, threads)
    cr_med = statistics.median(v for v, _ in cr)
    print(f"== {threads} thread(s), load {os.getloadavg()[0]:.1f} after the windows")
    print(
        f"   chainrule {cr_med:7.0f} img/s (median of {len(cr)} windows of {args.iters} steps);"
        f" {statistics.median(c for _, c in cr) * 1e3:.0f} ms CPU time per step"
    )
    if th:
        th_med = statistics.median(v for v, _ in th)
        print(
            f"   PyTorch   {th_med:7.0f} img/s;"
            f" {statistics.median(c for _, c in th) * 1e3:.0f} ms CPU time per step"
        )
        ratios = sorted(a / b for (a, _), (b, _) in zip(cr, th))
        cpu = statistics.median(b / a for (_, a), (_, b) in zip(cr, th))
        med = statistics.median(ratios)
        print(
            f"   ratio chainrule / PyTorch: median of per-pair ratios {med:.2f}"
            f" (range {ratios[0]:.2f}-{ratios[-1]:.2f}); of CPU time per step {cpu:.2f}"
        )
    step_s = args.batch / cr_med
    print(
        f"   convolutions: {flops / 1e9:.1f} GFLOP per step; alone {conv_s * 1e3:.0f} ms = "
        f"{flops / conv_s / 1e9:.0f} GFLOP/s; matmul of the same work {mm_s * 1e3:.0f} ms = "
        f"{flops / mm_s / 1e9:.0f} GFLOP/s; convolutions are {conv_s / step_s:.0%} of a "
        f"training step ({step_s * 1e3:.0f} ms), which runs at {flops / step_s / 1e9:.0f} "
        "conv GFLOP/s"
    )


def kernels(args):
    """Which chainrule kernel runs each convolution of the network (forward and both
    gradients take the same one)."""
    from chainrule.nn.functional import conv_kernel

    rows = []
    for (n, c, h, w, f), _ in conv_shapes(args.widths, args.batch):
        kernel = conv_kernel((n, h, w, c), (f, c, 3, 3), (1, 1), (1, 1))
        rows.append(f"{c}->{f} at {h}x{w}: {kernel}")
    return "; ".join(rows)


def kernels_ab(args):
    """Interleaved windows of chainrule's training step with the Winograd kernels where
    `conv_kernel` picks them and with im2col for every convolution; the median over
    window pairs of the ratio of CPU time per step, im2col / Winograd."""
    from threadpoolctl import threadpool_limits

    from chainrule.nn.functional import winograd

    pays = winograd.pays
    data = make_data(args.batch, 2, args.seed)
    step, _ = chainrule_trainer(args.widths, args.seed)
    sides = {"winograd": pays, "im2col": lambda *_: False}
    times = {name: [] for name in sides}
    try:
        for threads in (int(v) for v in args.threads.split(",") if v):
            for name in times:
                times[name].clear()
            with threadpool_limits(limits=threads, user_api="blas"):
                for w in range(args.windows + 1):
                    for name, rule in sides.items():
                        winograd.pays = rule
                        _, cpu = _window(step, data, args.iters, args.batch)
                        if w:  # the first round warms both up
                            times[name].append(cpu)
            ratio = statistics.median(b / a for a, b in zip(times["winograd"], times["im2col"]))
            print(
                f"== {threads} thread(s), load {os.getloadavg()[0]:.1f}: CPU time per step "
                f"with Winograd {statistics.median(times['winograd']) * 1e3:.0f} ms, "
                f"im2col only {statistics.median(times['im2col']) * 1e3:.0f} ms; "
                f"im2col / Winograd, median of {args.windows} pairs: {ratio:.2f}"
            )
    finally:
        winograd.pays = pays


# ---------------------------------------------------------------- profile


# The clock of --profile: wall time, or with --cpu-time this thread's CPU time (one
# thread only: it leaves out other threads' work, and the time the machine's other
# processes take from this one).
_clock = [time.perf_counter]


def _timed(table, cls):
    """Wrap cls.forward and cls.backward so that their wall time adds up in `table`."""
    for name in ("forward", "backward"):
        inner = getattr(cls, name)

        def timed(ctx, *a, inner=inner, key=f"{cls.__name__}.{name}"):
            t0 = _clock[0]()
            try:
                return inner(ctx, *a)
            finally:
                table[key] = table.get(key, 0.0) + _clock[0]() - t0

        setattr(cls, name, staticmethod(timed))


def _count_threaded(totals):
    """Wrap the chunk runner of the Functions' modules so that the wall time spent in
    it (the part that runs on every thread) adds up in totals[0]."""
    from chainrule.nn.functional import _matmul, conv, norm, pool, winograd

    modules = (conv, norm, pool, winograd, _matmul)
    inner = conv.map_chunks

    def timed(*a, **k):
        t0 = _clock[0]()
        try:
            return inner(*a, **k)
        finally:
            totals[0] += _clock[0]() - t0

    for m in modules:
        m.map_chunks = timed
    return lambda: [setattr(m, "map_chunks", inner) for m in modules]


def profile(args):
    """Wall time of each Function's forward and backward over a few training steps (the
    Functions run their chunks in threads, which a Python profiler would not see), and
    the time outside the chunked work, which runs on one thread whatever the thread
    count: with two threads that part does not shrink."""
    from threadpoolctl import threadpool_limits

    import chainrule.nn.functional as F
    from chainrule.nn.functional import layers, losses

    table = {}
    for cls in (F.Conv2d, F.BatchNorm2d, F.MaxPool2d, F.GlobalMaxPool2d, layers.Linear):
        _timed(table, cls)
    _timed(table, losses.SoftmaxCrossEntropy)
    threads = int(args.threads.split(",")[-1])
    data = make_data(args.batch, 2, args.seed)
    step, _ = chainrule_trainer(args.widths, args.seed)
    steps, threaded = 4, [0.0]
    restore = _count_threaded(threaded)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            step(*data[0])
            table.clear()
            threaded[0] = 0.0
            t0 = _clock[0]()
            for i in range(steps):
                step(*data[i % 2])
            total = (_clock[0]() - t0) / steps
    finally:
        restore()
    print(
        f"== where a training step goes: {steps} steps of batch {args.batch}, {threads} thread(s)"
    )
    print(f"   step {total * 1e3:.0f} ms = {args.batch / total:.0f} img/s")
    for key, t in sorted(table.items(), key=lambda kv: -kv[1]):
        print(f"   {key:32s} {t / steps * 1e3:7.1f} ms  {t / steps / total:5.1%}")
    rest = total - sum(table.values()) / steps
    print(f"   {'everything else (engine, SGD)':32s} {rest * 1e3:7.1f} ms  {rest / total:5.1%}")
    serial = total - threaded[0] / steps
    print(
        f"   outside the chunks run in threads (one thread always): {serial * 1e3:.1f} ms "
        f"{serial / total:.1%}"
    )


def main(argv=None):
    args = parse_args(argv)
    _widths(args.widths)
    if args.no_winograd:
        from chainrule.nn.functional import winograd

        winograd.pays = lambda *_: False
    if args.kernels_ab:
        print(f"ConvNet widths {args.widths}; convolutions: {kernels(args)}")
        kernels_ab(args)
        return 0
    if args.profile:
        if args.cpu_time:
            _clock[0] = time.thread_time
        profile(args)
        return 0
    print(
        f"ConvNet widths {args.widths} (stem, then two 3x3 convolutions per stage), "
        f"32x32x3 inputs, batch {args.batch}, float32, Nesterov SGD, cross-entropy; "
        f"{args.windows} windows x {args.iters} steps per library"
    )
    print(f"   chainrule: NumPy {np.__version__} + {numpy_blas()}; convolutions: {kernels(args)}")
    if not args.no_torch:
        print(f"   {torch_backend()}")
    print(
        f"   OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, load {os.getloadavg()[0]:.1f}"
    )
    for t in (int(v) for v in args.threads.split(",") if v):
        report(args, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
