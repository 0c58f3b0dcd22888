"""Accuracy of fully connected networks on CIFAR-10 within a CPU time budget.

Trains `FullyConnectedNet` / `TwoLayerNet` exactly as ``chainrule train`` does: the
decoded training images of a CIFAR-10 image folder (cached by `chainrule.data.load`),
a stratified validation split of 20% (10,000 of 50,000 images, seed 0) held out, the
per-channel mean subtracted (`chainrule.data.Preprocessor`), then `fit` with validation
after every epoch. Prints the validation accuracy per epoch, the wall time of training,
the samples per second, the peak resident memory, and how busy the machine was (load
average, and the CPU time this process got against the wall time), because on a shared
machine the wall time depends on the neighbours.

The default configuration is the repository's best fully connected network::

    python benchmarks/mlp_cifar10.py                              # mlp, the full run
    python benchmarks/mlp_cifar10.py --model twolayer --hidden 1024 --epochs 20 ...
    python benchmarks/mlp_cifar10.py --epochs 3 --subset 10000    # a quick tuning run

With ``--reference`` the same configuration is also trained with PyTorch (CPU, same
thread count, same data, same augmentation function) to compare accuracies. The two runs
follow each other under whatever load the machine has, so their times are not a speed
comparison; ``benchmarks/bench_mlp.py`` measures that, with the two sides interleaved.
"""

from __future__ import annotations

import os
import sys

UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if "--unset-openblas-env" in sys.argv and any(k in os.environ for k in UNSET):
    # Must happen before NumPy loads OpenBLAS: restart this command without both variables.
    _env = {k: v for k, v in os.environ.items() if k not in UNSET}
    os.execve(sys.executable, [sys.executable, *sys.argv], _env)

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_DATA = "/work/data/cifar10/train"

# The best configuration found (the `chainrule train mlp` command of docs/numbers.md).
BEST = dict(
    model="mlp",
    hidden="1024,1024",
    dropout=0.1,
    batchnorm=True,
    optimizer="adamw",
    lr=6e-3,
    weight_decay=0.05,
    reg=0.0,
    schedule="onecycle",
    label_smoothing=0.1,
    augment=True,
    aug_padding=None,
    epochs=80,
    batch_size=256,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 image folder (class subfolders)")
    p.add_argument("--model", choices=("mlp", "twolayer"), default=BEST["model"])
    p.add_argument("--hidden", default=BEST["hidden"])
    p.add_argument("--dropout", type=float, default=BEST["dropout"])
    p.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=BEST["batchnorm"])
    p.add_argument("--optimizer", default=BEST["optimizer"])
    p.add_argument("--lr", type=float, default=BEST["lr"])
    p.add_argument("--weight-decay", type=float, default=BEST["weight_decay"])
    p.add_argument("--reg", type=float, default=BEST["reg"])
    p.add_argument("--schedule", default=BEST["schedule"])
    p.add_argument("--label-smoothing", type=float, default=BEST["label_smoothing"])
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=BEST["augment"])
    p.add_argument(
        "--aug-padding", type=int, default=BEST["aug_padding"], help="default: the model's (2 px)"
    )
    p.add_argument("--epochs", type=int, default=BEST["epochs"])
    p.add_argument("--batch-size", type=int, default=BEST["batch_size"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, help="train on this many training images only")
    p.add_argument("--reference", action="store_true", help="also train the PyTorch twin")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument(
        "--unset-openblas-env",
        action="store_true",
        help="run without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (this machine pins "
        "OpenBLAS to its Haswell kernels with them)",
    )
    return p.parse_args(argv)


def cli_command(a) -> str:
    """The `chainrule train` command that trains this configuration."""
    parts = [f"chainrule train {a.model} --data {a.data}"]
    parts.append(f"--hidden {a.hidden}")
    if a.model == "mlp":
        if a.batchnorm:
            parts.append("--batchnorm")
        if a.dropout:
            parts.append(f"--dropout {a.dropout:g}")
    parts.append(f"--optimizer {a.optimizer} --lr {a.lr:g}")
    if a.weight_decay:
        parts.append(f"--weight-decay {a.weight_decay:g}")
    if a.reg:
        parts.append(f"--reg {a.reg:g}")
    if a.schedule and a.schedule != "constant":
        parts.append(f"--schedule {a.schedule}")
    if a.label_smoothing:
        parts.append(f"--label-smoothing {a.label_smoothing:g}")
    if a.augment:
        parts.append("--augment")
        if a.aug_padding is not None:
            parts.append(f"--aug-padding {a.aug_padding}")
    parts.append(f"--epochs {a.epochs} --batch-size {a.batch_size} --seed {a.seed} --out RUN_DIR")
    return " ".join(parts)


def load_cifar(path: str, seed: int):
    from chainrule.data import load

    train = load(path, split="train", val_fraction=0.2, random_state=seed, progress=False)
    val = load(path, split="val", val_fraction=0.2, random_state=seed, progress=False)
    return train, val


def build_model(a, image_shape):
    from chainrule.models import FullyConnectedNet, TwoLayerNet

    hidden = tuple(int(h) for h in a.hidden.split(","))
    common = dict(
        reg=a.reg,
        optimizer=a.optimizer,
        learning_rate=a.lr,
        lr_schedule=None if a.schedule in ("none", "constant") else a.schedule,
        batch_size=a.batch_size,
        epochs=a.epochs,
        augment=a.augment,
        image_shape=tuple(image_shape),
        aug_padding=a.aug_padding,
        label_smoothing=a.label_smoothing,
        weight_decay=a.weight_decay,
        random_state=a.seed,
        verbose=not a.quiet,
    )
    if a.model == "twolayer":
        if len(hidden) != 1:
            raise SystemExit("twolayer has one hidden layer: --hidden N")
        return TwoLayerNet(hidden_size=hidden[0], dropout=a.dropout, **common)
    return FullyConnectedNet(hidden_dims=hidden, dropout=a.dropout, batchnorm=a.batchnorm, **common)


def peak_rss_gb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def train_reference(a, X, y, Xv, yv, image_shape) -> dict:
    """The same network, loss, optimizer, schedule and augmentation in PyTorch (CPU)."""
    import torch

    from chainrule.data.augment import random_crop_flip_flat

    torch.manual_seed(a.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(a.seed)
    hidden = [int(h) for h in a.hidden.split(",")]
    layers, d = [], X.shape[1]
    for h in hidden:
        layers.append(torch.nn.Linear(d, h))
        if a.batchnorm and a.model == "mlp":
            layers.append(torch.nn.BatchNorm1d(h))
        layers.append(torch.nn.ReLU())
        if a.dropout:
            layers.append(torch.nn.Dropout(a.dropout))
        d = h
    layers.append(torch.nn.Linear(d, int(y.max()) + 1))
    net = torch.nn.Sequential(*layers)
    decay = [p for p in net.parameters() if p.ndim >= 2]
    rest = [p for p in net.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": a.weight_decay},
        {"params": rest, "weight_decay": 0},
    ]
    opt = (
        torch.optim.AdamW(groups, lr=a.lr)
        if a.optimizer == "adamw"
        else torch.optim.Adam(groups, lr=a.lr)
    )
    steps = len(X) // a.batch_size
    sched = None
    if a.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.epochs * steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=a.label_smoothing)
    pad = a.aug_padding if a.aug_padding is not None else max(1, min(image_shape[:2]) // 16)
    yt = torch.from_numpy(y)
    Xvt = torch.from_numpy(Xv)
    h, w, c = image_shape
    Xvt_mirror = torch.from_numpy(Xv.reshape(-1, h, w, c)[:, :, ::-1].reshape(len(Xv), -1).copy())
    accs = []
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        net.train()
        order = rng.permutation(len(X))
        for i in range(steps):
            idx = order[i * a.batch_size : (i + 1) * a.batch_size]
            xb = X[idx]
            if a.augment:
                xb = random_crop_flip_flat(xb, image_shape, pad, True, rng)
            loss = loss_fn(net(torch.from_numpy(xb)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        net.eval()
        with torch.no_grad():
            p = net(Xvt).softmax(1)
            if a.augment:  # test-time flips, as FullyConnectedNet does after flip training
                p = p + net(Xvt_mirror).softmax(1)
            accs.append(float((p.argmax(1).numpy() == yv).mean()))
        print(f"  torch epoch {len(accs)}: val acc {accs[-1]:.4f}", flush=True)
    return {"val_acc": accs, "best_val_acc": max(accs), "train_s": time.perf_counter() - t0}


def main(argv=None) -> int:
    a = parse_args(argv)
    from chainrule.data import Preprocessor

    env = {k: os.environ.get(k) for k in UNSET}
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"BLAS env {env}" + (" (unset by --unset-openblas-env)" if a.unset_openblas_env else "")
    )
    t = time.perf_counter()
    train, val = load_cifar(a.data, a.seed)
    prep = Preprocessor().fit(train.images)
    X, y = prep.transform(train.images), train.labels
    Xv, yv = prep.transform(val.images), val.labels
    if a.subset:
        keep = np.random.default_rng(a.seed).permutation(len(X))[: a.subset]
        X, y = X[np.sort(keep)], y[np.sort(keep)]
    print(
        f"data: {len(X)} training, {len(Xv)} validation images {train.image_shape}, "
        f"loaded and preprocessed in {time.perf_counter() - t:.1f}s"
    )
    print("command:", cli_command(a))
    model = build_model(a, train.image_shape)
    print(model)

    load0 = os.getloadavg()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    model.fit(X, y, Xv, yv)
    train_s = time.perf_counter() - t0
    cpu_s = cpu_seconds() - cpu0
    load1 = os.getloadavg()
    h = model.history_
    rates = [len(X) / t for t in h["epoch_time"]]
    val_acc = model.score(Xv, yv)
    result = {
        "config": vars(a),
        "command": cli_command(a),
        "n_train": int(len(X)),
        "n_val": int(len(Xv)),
        "val_acc_per_epoch": h["val_acc"],
        "train_acc_per_epoch": h["train_acc"],
        "best_epoch": h["best_epoch"],
        "val_acc": val_acc,
        "val_acc_one_view": h["best_val_acc"],
        "train_s": train_s,
        "samples_per_s_median": float(np.median(rates)),
        "peak_rss_gb": peak_rss_gb(),
        "cpu_s": cpu_s,
        "cpu_share_of_2_cores": cpu_s / train_s / 2,
        "loadavg_before": load0,
        "loadavg_after": load1,
    }
    print(
        f"\nvalidation accuracy {val_acc:.4f} (best epoch {h['best_epoch']} of "
        f"{len(h['val_acc'])}; {h['best_val_acc']:.4f} looking at each image once, without "
        "test-time flips)"
    )
    print(
        f"training time {train_s:.0f}s ({train_s / 60:.1f} min), median "
        f"{result['samples_per_s_median']:.0f} samples/s (epoch incl. evaluation)"
    )
    print(f"peak RSS {result['peak_rss_gb']:.2f} GB")
    print(
        f"CPU time {cpu_s:.0f}s = {100 * result['cpu_share_of_2_cores']:.0f}% of 2 cores over "
        f"the run; load average before {load0[0]:.1f}, after {load1[0]:.1f}"
    )
    if a.reference:
        ref = train_reference(a, X, y, Xv, yv, train.image_shape)
        result["reference"] = ref
        print(
            f"PyTorch twin: val acc {ref['val_acc'][-1]:.4f} (best {ref['best_val_acc']:.4f}); "
            "for training speed see benchmarks/bench_mlp.py"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
