"""Train a ConvNet on CIFAR-10 with chainrule and report accuracy against training time.

The data are those of ``chainrule train``: the decoded training images of a CIFAR-10
image folder (cached by `chainrule.data.load`), a stratified validation split of 20%
(10,000 of 50,000 images, seed 0) held out, the per-channel mean subtracted, the
images kept as images, channels-last (`chainrule.data.Preprocessor(flatten=False)`,
what `chainrule.models.ConvNet` reads). The network comes from
`chainrule.models.convnet_arch.build_convnet` (widths per stage, a 3x3 or a frozen
patch-whitening stem), trained by `chainrule.train.Solver` with Nesterov SGD, a
one-cycle schedule, label smoothing, random crops (translations) and flips, and
validated after every epoch (one view per image); the final accuracy adds test-time
flips.

Prints the validation accuracy per epoch against the training minutes, images per
second, peak memory and how busy the machine was (the wall time on a shared machine
depends on the neighbours)::

    python benchmarks/cnn_cifar10.py                    # the recipe of `chainrule train cnn`
    python benchmarks/cnn_cifar10.py --epochs 4 --no-val-every-epoch   # a 4-epoch proxy
    python benchmarks/cnn_cifar10.py --throughput --widths 48,96,192   # images/s only

Every option defaults to that recipe (`chainrule.models.convnet_spec.LARGE_DATA`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np

DEFAULT_DATA = "/work/data/cifar10/train"


def parse_args(argv=None):
    # The defaults are the recipe `chainrule train cnn` uses on CIFAR-10-sized data.
    from chainrule.models.convnet_spec import LARGE_DATA as R

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 image folder (class subfolders)")
    p.add_argument(
        "--widths", default=",".join(map(str, R["channels"])), help="channels of each stage"
    )
    p.add_argument("--convs-per-stage", type=int, default=2)
    p.add_argument("--stem", choices=("conv", "whiten"), default=R["stem"])
    p.add_argument("--stem-width", type=int, help="channels of a conv stem")
    p.add_argument("--bn-scale", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--lr", type=float, default=R["learning_rate"], help="peak learning rate")
    p.add_argument("--momentum", type=float, default=R["momentum"])
    p.add_argument("--weight-decay", type=float, default=R["weight_decay"])
    p.add_argument("--schedule", default=R["lr_schedule"])
    p.add_argument("--label-smoothing", type=float, default=R["label_smoothing"])
    p.add_argument(
        "--logit-scale", type=float, default=R["logit_scale"], help="fixed factor on the scores"
    )
    p.add_argument(
        "--lookahead",
        type=int,
        default=R["lookahead"],
        metavar="K",
        help="every K steps pull the weights toward their running average (0: off)",
    )
    p.add_argument(
        "--val-every-epoch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="validate after every epoch (the curve) or only at the end",
    )
    p.add_argument(
        "--init",
        choices=("kaiming", "dirac"),
        default=R.get("init", "kaiming"),
        help="3x3 convolutions: He normal, or He normal with identity filters first",
    )
    p.add_argument(
        "--bias-lr-factor",
        type=float,
        default=R.get("bias_lr_factor", 1.0),
        help="learning rate of biases and batch-norm shifts, times --lr",
    )
    p.add_argument(
        "--decay-biases",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="weight decay of biases and shifts too (divided by --bias-lr-factor)",
    )
    p.add_argument(
        "--flips",
        choices=("random", "alternate"),
        default=R.get("flips", "random"),
        help="training flips: random, or each image mirrored in every other epoch",
    )
    p.add_argument(
        "--optimizer",
        choices=("nesterov", "muon"),
        default=R["optimizer"],
        help="muon: the convolution filters by Muon (--muon-lr, --muon-momentum), the rest "
        "by Nesterov SGD",
    )
    p.add_argument("--muon-lr", type=float, default=R.get("muon_lr", 0.1))
    p.add_argument("--muon-momentum", type=float, default=R.get("muon_momentum", 0.6))
    p.add_argument(
        "--muon-normalize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep each filter bank's norm fixed (instead of weight decay on the filters)",
    )
    p.add_argument(
        "--lookahead-alpha",
        type=float,
        default=R.get("lookahead_alpha", 0.5),
        help="the pull toward the fast weights at each Lookahead sync",
    )
    p.add_argument(
        "--lookahead-ramp",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="the pull grows from none to --lookahead-alpha over the run (cubic)",
    )
    p.add_argument("--epochs", type=int, default=R["epochs"])
    p.add_argument("--batch-size", type=int, default=R["batch_size"])
    p.add_argument(
        "--aug-padding", type=int, default=R["aug_padding"], help="largest translation, pixels"
    )
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, default=0, help="initialisation, order, augmentation")
    p.add_argument(
        "--split-seed", type=int, default=0, help="the validation split (0: chainrule train's)"
    )
    p.add_argument("--subset", type=int, help="train on this many training images only")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--throughput", action="store_true", help="time training steps only (no data needed)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    return p.parse_args(argv)


def build(a, image_shape, n_classes, X=None):
    from chainrule.models.convnet_arch import build_convnet

    widths = tuple(int(w) for w in a.widths.split(",") if w)
    whiten = X if (a.stem == "whiten" and X is not None) else None
    if a.stem == "whiten" and whiten is None:  # throughput runs: any images will do
        whiten = np.random.default_rng(a.seed).standard_normal((256, *image_shape))
    return build_convnet(
        image_shape,
        n_classes,
        widths,
        convs_per_stage=a.convs_per_stage,
        stem=a.stem,
        stem_width=a.stem_width,
        whiten_images=whiten,
        bn_scale=a.bn_scale,
        logit_scale=a.logit_scale,
        random_state=a.seed,
        init=a.init,
    )


def make_optimizer(a, net, total_steps):
    from chainrule import optim

    groups = optim.network_groups(
        net, a.lr, a.weight_decay, bias_lr_factor=a.bias_lr_factor, decay_biases=a.decay_biases
    )
    if a.optimizer == "muon":
        filters = [p for p in net.parameters() if p.ndim == 4]
        rest = [
            {**g, "params": [p for p in g["params"] if p.ndim != 4], "orthogonalize": False}
            for g in groups
        ]
        muon = {
            "params": filters, "lr": a.muon_lr, "momentum": a.muon_momentum,
            "weight_decay": 0.0 if a.muon_normalize else a.weight_decay,
            "normalize_weights": a.muon_normalize,
        }  # fmt: skip
        opt = optim.Muon([muon, *rest], lr=a.lr, momentum=a.momentum, nesterov=True)
    else:
        opt = optim.SGD(groups, lr=a.lr, momentum=a.momentum, nesterov=True)
    if a.lookahead:
        ramp = total_steps if a.lookahead_ramp else None
        opt = optim.Lookahead(opt, k=a.lookahead, alpha=a.lookahead_alpha, ramp_steps=ramp)
    kwargs = {"cycle_momentum": False} if a.optimizer == "muon" else {}
    schedule = optim.make_schedule(
        None if a.schedule == "constant" else a.schedule, opt, total_steps, **kwargs
    )
    return opt, schedule


def loss_function(a):
    from chainrule.nn.functional import cross_entropy

    return lambda scores, y: cross_entropy(scores, y, label_smoothing=a.label_smoothing)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def throughput(a) -> int:
    """Images per second of training steps on random data (median of 5 windows)."""
    from chainrule.autograd.engine import Tensor
    from chainrule.models.convnet_arch import architecture_flops

    shape = (32, 32, 3)
    net = build(a, shape, 10)
    opt, _ = make_optimizer(a, net, 1)
    loss_fn = loss_function(a)
    rng = np.random.default_rng(a.seed)
    X = rng.standard_normal((2, a.batch_size, *shape), dtype=np.float32)
    y = rng.integers(0, 10, (2, a.batch_size))

    def step(i):
        opt.zero_grad()
        loss_fn(net(Tensor(X[i % 2])), y[i % 2]).backward()
        opt.step()

    step(0)
    rates, cpu_rates = [], []
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(2):
            step(i)
        rates.append(2 * a.batch_size / (time.perf_counter() - t0))
        cpu_rates.append(2 * a.batch_size / (time.process_time() - c0))
    flops = architecture_flops(net, shape)
    rate, cpu_rate = statistics.median(rates), statistics.median(cpu_rates)
    eval_rate = _eval_rate(net, X.reshape(-1, *shape))
    # What `chainrule train cnn` does per epoch on the CIFAR-10 split: train on 40,000
    # images, then evaluate 10,000 validation and 1,000 training images (one view).
    minutes = a.epochs * (40000 / rate + 11000 / eval_rate) / 60
    print(
        f"widths {a.widths} stem {a.stem}: {flops / 1e6:.1f} MFLOP/image forward, "
        f"{net.num_parameters()} parameters; {rate:.0f} images/s training "
        f"(batch {a.batch_size}, {a.threads} threads; ~{3 * flops * rate / 1e9:.0f} GFLOP/s); "
        f"{cpu_rate:.0f} images per CPU second (the rate on {a.threads} idle cores if the "
        f"threads were busy all the time: ~{a.threads * cpu_rate:.0f} images/s); "
        f"{eval_rate:.0f} images/s evaluation; {a.epochs} epochs of 40,000 images with "
        f"validation would take {minutes:.1f} min at these rates; load {os.getloadavg()[0]:.1f}"
    )
    return 0


def _eval_rate(net, X) -> float:
    """Images per second of evaluation (eval mode, no graph, batches of 1000; median of
    3 windows) on the images X (N, H, W, C)."""
    from chainrule.autograd.engine import Tensor, no_grad

    net.eval()
    rates = []
    with no_grad():
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(0, len(X), 1000):
                net(Tensor(X[i : i + 1000]))
            rates.append(len(X) / (time.perf_counter() - t0))
    net.train()
    return statistics.median(rates)


def load_data(a):
    from chainrule.data import Preprocessor, load

    split = dict(val_fraction=0.2, random_state=a.split_seed, progress=False)
    train = load(a.data, split="train", **split)
    val = load(a.data, split="val", **split)
    prep = Preprocessor(flatten=False).fit(train.images)
    X, y = prep.transform(train.images), train.labels
    Xv, yv = prep.transform(val.images), val.labels
    if a.subset:
        keep = np.sort(np.random.default_rng(a.seed).permutation(len(X))[: a.subset])
        X, y = X[keep], y[keep]
    return X, y, Xv, yv, tuple(train.image_shape)


def evaluate(solver, Xv, yv, shape) -> dict:
    """Validation accuracy of one view per image, of the average of the class
    probabilities of each image and its mirror image, and of those two and four
    copies of them shifted by one pixel (up-left and down-right)."""
    from chainrule.autograd.arraymath import softmax
    from chainrule.data.augment import crop_flip

    n = len(Xv)

    def probs(dy, dx, flip):
        offsets_y, offsets_x = np.full(n, dy), np.full(n, dx)
        view = crop_flip(Xv, offsets_y, offsets_x, np.full(n, flip), padding=1)
        return softmax(solver.predict_scores(view))

    one, mirror = probs(1, 1, False), probs(1, 1, True)
    shifted = sum(probs(d, d, f) for d in (0, 2) for f in (False, True))
    acc = lambda p: float(np.mean(p.argmax(axis=1) == yv))  # noqa: E731
    return {
        "one view": acc(one),
        "flips": acc(one + mirror),
        "flips and 1-pixel shifts": acc(one + mirror + 0.5 * shifted),
    }


def train(a) -> int:
    from chainrule.data.augment import CropFlip
    from chainrule.train.solver import Solver, batches_per_epoch

    t = time.perf_counter()
    X, y, Xv, yv, shape = load_data(a)
    t = time.perf_counter() - t
    print(f"data: {len(X)} training, {len(Xv)} validation images {shape}, loaded in {t:.0f}s")
    net = build(a, shape, int(y.max()) + 1, X)
    print(net)
    steps = batches_per_epoch(len(X), a.batch_size) * a.epochs
    opt, schedule = make_optimizer(a, net, steps)

    augment = CropFlip(shape, a.aug_padding, a.flips, seed=a.seed)

    val = (Xv, yv) if a.val_every_epoch else (None, None)
    solver = Solver(
        net, opt, loss_function(a), X, y, *val,
        batch_size=a.batch_size, epochs=a.epochs, lr_schedule=schedule,
        augment=augment if a.augment else None, random_state=a.seed, verbose=not a.quiet,
    )  # fmt: skip
    load0, cpu0, t0 = os.getloadavg(), cpu_seconds(), time.perf_counter()
    solver.train()
    train_s = time.perf_counter() - t0
    cpu_s = cpu_seconds() - cpu0
    accs = evaluate(solver, Xv, yv, shape)
    final_one_view, tta = accs["one view"], accs["flips"]
    hist = solver.history
    minutes = np.cumsum(hist["epoch_time"]) / 60
    print("\nepoch  minutes  loss    val acc (one view)")
    for e, m in enumerate(minutes, 1):
        acc = f"{hist['val_acc'][e - 1]:.4f}" if hist["val_acc"] else "-"
        print(f"{e:5d}  {m:7.2f}  {hist['epoch_loss'][e - 1]:.4f}  {acc}")
    result = {
        "config": vars(a),
        "n_train": len(X),
        "val_acc_per_epoch": hist["val_acc"],
        "minutes_per_epoch": minutes.tolist(),
        "best_val_acc_one_view": solver.best_val_acc,
        "final_val_acc_one_view": final_one_view,
        "val_acc_tta_flip": tta,
        "val_acc_tta_flip_shift": accs["flips and 1-pixel shifts"],
        "train_s": train_s,
        "images_per_s": len(X) * a.epochs / train_s,
        "peak_rss_gb": peak_rss_gb(),
        "cpu_s": cpu_s,
        "cpu_share": cpu_s / train_s / (os.cpu_count() or 1),
        "loadavg": [load0[0], os.getloadavg()[0]],
    }
    print(
        f"validation accuracy of the final model {tta:.4f} with test-time flips "
        f"({accs['flips and 1-pixel shifts']:.4f} with flips and 1-pixel shifts, "
        f"{final_one_view:.4f} one view); training {train_s / 60:.1f} min, "
        f"{result['images_per_s']:.0f} images/s including validation; peak RSS "
        f"{result['peak_rss_gb']:.2f} GB; CPU {cpu_s / 60:.1f} min, "
        f"{100 * result['cpu_share']:.0f}% of the cores; "
        f"load {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def main(argv=None) -> int:
    a = parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=a.threads, user_api="blas"):
        return throughput(a) if a.throughput else train(a)


if __name__ == "__main__":
    sys.exit(main())
