"""Convolutional networks as an estimator: `ConvNet`.

The network is the one `chainrule.models.convnet_arch.build_convnet` makes from a short
spec (channel widths per stage)::

    stem -> {3x3 conv -> max pool -> BN -> ReLU -> (3x3 conv -> BN -> ReLU) x k-1} x stages
         -> global max pool -> [Dropout] -> Linear [-> fixed scale]

with a ``"conv"`` stem (3x3 convolution, BN, ReLU) or a ``"whiten"`` stem (a frozen 2x2
convolution that whitens the training images' patches, computed from them before
training). It is an estimator on `chainrule.models.NetworkClassifier` like the linear
classifiers and the fully connected networks (the same `Solver`, optimizers, schedules,
weight decay, label smoothing, crops and flips, test-time flips, best-on-validation,
checkpoints and exact resume); only the network differs.

Input: images (N, H, W, C) float, channels-last, the layout of
``Preprocessor(flatten=False)``; they stay images, in that memory order, from the
preprocessing to the last convolution (the network's first layer views them as the
(N, C, H, W) its convolutions take, without a copy). Rows (N, H*W*C) of images
flattened in HWC order are the same images viewed flat (with ``image_shape``; without
it, 1x1 images of D channels).

Every training default is ``"auto"``: the recipe of ``chainrule train cnn`` for the
size of the training data (``models/convnet_spec.py``, the one place of its values).
The tricks of the fast CIFAR-10 recipes (identity-initialised filters, a larger rate
for biases and batch-norm shifts, alternating flips, shifted test-time views, Muon on
the filters, Lookahead's ramped averaging) are options, off by default.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from chainrule.models._network import NetworkClassifier
from chainrule.models._options import AUTO, is_auto, is_int, is_real

__all__ = ["ConvNet"]

STEMS = ("whiten", "conv")
INITS = ("kaiming", "dirac")
FLIPS = ("random", "alternate")


class ConvNet(NetworkClassifier):
    """A convolutional network of 3x3 convolutions, batch norm, ReLU and max pooling.

    Parameters
    ----------
    channels : sequence of int
        Channels of each stage; each stage but those on a one-pixel image halves the
        image side. ``(32, 64, 128)`` suits 32x32 images and runs on 8x8 ones.
    stem : "conv" or "whiten"
        The first layer: a trained 3x3 convolution to ``max(8, channels[0] // 2)``
        channels with batch norm and ReLU, or a frozen 2x2 convolution whitening the
        training images' 2x2 patches, then ReLU (needs images of at least 2x2 pixels).
    convs_per_stage : int
        3x3 convolutions per stage (each followed by batch norm and ReLU).
    logit_scale : float
        Fixed factor on the class scores (1: none); a small one keeps the first steps'
        softmax near uniform.
    dropout : float in [0, 1)
        Dropout of the pooled features before the last Linear layer.
    lookahead : int
        ``k`` of `chainrule.optim.Lookahead` around the optimizer: every k steps the
        slow weights move by `lookahead_alpha` of the way to the fast ones, which then
        restart from them; 0: off.
    lookahead_alpha : float in (0, 1]
        Lookahead's pull toward the fast weights at each sync (0.5: halfway; 1 - 0.95^5
        = 0.226 at k = 5: a moving average over about 20 steps).
    lookahead_ramp : float >= 0
        The pull starts at 1 (no averaging) and reaches `lookahead_alpha` after this
        fraction of the run's steps, cubically (`Lookahead`'s ``ramp_steps``), so the
        averaging does not slow the start; 0: `lookahead_alpha` from the first step.
    init : "kaiming" or "dirac"
        Initial 3x3 filters: He normal, or He normal with the first
        ``min(out, in)`` filters of each convolution identities
        (`chainrule.nn.init.kaiming_dirac`).
    bias_lr_factor : float
        Learning rate of the biases and batch-norm shifts, as a multiple of
        `learning_rate` (a parameter group of the optimizer; schedules scale both).
    flips : "random" or "alternate"
        The flips of `augment`: each image mirrored with probability 1/2, or in every
        other epoch (`chainrule.data.augment.alternating_flips`).
    test_time_shift : int
        With s > 0, prediction also averages views shifted by s pixels up-left and
        down-right (each, with test-time flips, mirrored too), weighted half as much
        as the unshifted ones; 0: off. Like `test_time_flip`, it may be changed with
        ``set_params`` after fit.
    muon_lr, muon_momentum : float
        With ``optimizer="muon"``: the rate and the (Nesterov) momentum of the
        convolution filters, whose steps `chainrule.optim.Muon` orthogonalises, their
        norm held fixed (a batch norm follows each convolution, so only the filters'
        direction matters, and no weight decay acts on them); the Linear weights,
        biases and shifts take Nesterov SGD steps at `learning_rate` and `momentum`.
    aug_padding : int
        Largest translation of the random crops of `augment`, in pixels.
    image_shape : (H, W, C) or None
        For rows: the shape each row was flattened from (HWC order); rows without it
        are 1x1 images of D channels. Images (N, H, W, C) carry their shape (a given
        `image_shape` must agree with it).
    reg, optimizer, learning_rate, lr_schedule, schedule_per, batch_size, epochs,
    augment, test_time_flip, label_smoothing, weight_decay, momentum,
    early_stopping_patience, random_state, verbose : as in `FullyConnectedNet`; `reg`
        and `weight_decay` act on the convolution and Linear weights (not on batch norm,
        not on the frozen whitening filters).

    Notes
    -----
    ``"auto"`` (the default of channels, stem, logit_scale, lookahead, aug_padding and
    every training setting of the recipes) takes the value of the command line's recipe
    for the training data: `convnet_spec.LARGE_DATA` from 20,000 training samples on
    (CIFAR-10), `convnet_spec.SMALL_DATA_RECIPE` below (the digits, a robot's photos).

    Batch normalization is always part of this architecture (its statistics are what
    make the high learning rates of the recipes work); its shift is learned, its scale
    is not (the next convolution absorbs any scale). Initial weights are He-normal
    (with identity filters first for ``init="dirac"``).

    Attributes (after fit)
    ----------------------
    classes_, n_features_in_ (H*W*C), image_shape_ ((H, W, C) of the images the network
    reads), net_, history_, fitted_params_: see `chainrule.models.NetworkClassifier`.
    """

    _reads = "images"
    _auto = frozenset(
        {
            "channels", "stem", "logit_scale", "lookahead", "aug_padding", "optimizer",
            "learning_rate", "momentum", "weight_decay", "lr_schedule", "label_smoothing",
            "batch_size", "epochs", "augment",
        }
    )  # fmt: skip

    def __init__(
        self,
        channels=AUTO,
        stem=AUTO,
        convs_per_stage=2,
        logit_scale=AUTO,
        dropout=0.0,
        reg=0.0,
        optimizer=AUTO,
        learning_rate=AUTO,
        lr_schedule=AUTO,
        schedule_per="iteration",
        batch_size=AUTO,
        epochs=AUTO,
        augment=AUTO,
        image_shape=None,
        aug_padding=AUTO,
        test_time_flip=None,
        label_smoothing=AUTO,
        weight_decay=AUTO,
        momentum=AUTO,
        lookahead=AUTO,
        lookahead_alpha=0.5,
        lookahead_ramp=0.0,
        init="kaiming",
        bias_lr_factor=1.0,
        flips="random",
        test_time_shift=0,
        muon_lr=0.1,
        muon_momentum=0.6,
        early_stopping_patience=None,
        random_state=None,
        verbose=0,
    ):
        self.channels = channels
        self.stem = stem
        self.convs_per_stage = convs_per_stage
        self.logit_scale = logit_scale
        self.dropout = dropout
        self.reg = reg
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.schedule_per = schedule_per
        self.batch_size = batch_size
        self.epochs = epochs
        self.augment = augment
        self.image_shape = image_shape
        self.aug_padding = aug_padding
        self.test_time_flip = test_time_flip
        self.label_smoothing = label_smoothing
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.lookahead = lookahead
        self.lookahead_alpha = lookahead_alpha
        self.lookahead_ramp = lookahead_ramp
        self.init = init
        self.bias_lr_factor = bias_lr_factor
        self.flips = flips
        self.test_time_shift = test_time_shift
        self.muon_lr = muon_lr
        self.muon_momentum = muon_momentum
        self.early_stopping_patience = early_stopping_patience
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ architecture
    def _architecture(self, p=None) -> tuple[tuple[int, ...], str, int, float, float]:
        """(channels, stem, convs_per_stage, dropout, logit_scale) as the model uses them
        (or as ``p`` says), checked."""
        p = self._params() if p is None else p
        widths = p["channels"]
        if is_int(widths):
            widths = (widths,)
        try:
            widths = tuple(widths)
        except TypeError:
            widths = ()
        if not widths or not all(is_int(w) and w > 0 for w in widths):
            raise ValueError(f"channels must be a sequence of positive ints, got {p['channels']!r}")
        if p["stem"] not in STEMS:
            raise ValueError(f'stem must be "whiten" or "conv", got {p["stem"]!r}')
        k = p["convs_per_stage"]
        if not is_int(k) or k < 1:
            raise ValueError(f"convs_per_stage must be a positive int, got {k!r}")
        drop = p["dropout"]
        if not is_real(drop) or not 0.0 <= drop < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {drop!r}")
        s = p["logit_scale"]
        if not is_real(s) or s <= 0:
            raise ValueError(f"logit_scale must be a positive number, got {s!r}")
        return tuple(int(w) for w in widths), p["stem"], int(k), float(drop), float(s)

    def _check_architecture(self, p) -> None:
        # "auto" values are chosen from the data in fit; check the rest now.
        stand_in = {"channels": (1,), "stem": "conv", "logit_scale": 1.0}
        self._architecture({**p, **{k: v for k, v in stand_in.items() if is_auto(p[k])}})
        _check_tricks(p)

    def _recipe(self, data) -> dict:
        from chainrule.models.convnet_spec import recipe

        return recipe(data)

    def _rows_shape(self, n_features: int):
        return (1, 1, n_features)

    def _image_shape_of(self, X, p):
        shape = super()._image_shape_of(X, p)
        if X.ndim == 4 and X.shape[1] in (1, 3) and X.shape[3] > 4 and X.shape[2] > 1:
            warnings.warn(
                f"X has shape {X.shape}: ConvNet reads it as channels-last images "
                f"(N, H, W, C) of {shape[0]}x{shape[1]} pixels with {shape[2]} channels; "
                "if these are channels-first images (N, C, H, W), pass "
                "X.transpose(0, 2, 3, 1)",
                UserWarning,
                stacklevel=3,
            )
        return shape

    def _build_network(self, input_shape, n_classes, rng, dtype=np.float32):
        """The `Sequential` of `build_convnet` for images of ``input_shape`` (H, W, C).

        A whitening stem's filters are zeros until `_initialise` computes them from the
        training images (or a model file's are loaded)."""
        from chainrule.models.convnet_arch import build_convnet

        widths, stem, k, p, scale = self._architecture()
        filters = None
        if stem == "whiten":
            c = input_shape[2]
            filters = np.zeros((8 * c, c, 2, 2), dtype=dtype)
        return build_convnet(
            input_shape, n_classes, widths, convs_per_stage=k, stem=stem,
            whiten_filters=filters, logit_scale=scale, random_state=rng, dtype=dtype,
            dropout=p, init=self._params()["init"],
        )  # fmt: skip

    def _initialise(self, net, X) -> None:
        """The whitening stem's filters, from the training images X (N, H, W, C)."""
        if self._architecture()[1] == "whiten":
            from chainrule.models.convnet_arch import patch_whitening_filters

            stem = net[1].weight
            np.copyto(stem, patch_whitening_filters(X), casting="same_kind")

    # ------------------------------------------------------------ training and views
    def _optimizer(self, net, p, n_samples):
        """The optimizer over two parameter groups: the convolution and Linear weights
        at `learning_rate` with `weight_decay`; biases and batch-norm shifts at
        ``bias_lr_factor * learning_rate`` without decay; with ``optimizer="muon"`` a
        third group of the convolution filters (see `muon_lr`); in `Lookahead` (alpha
        `lookahead_alpha`, ramped over `lookahead_ramp` of the run's steps) if asked."""
        from chainrule import optim

        lr, wd = float(p["learning_rate"]), float(p["weight_decay"])
        groups = optim.network_groups(net, lr, wd, bias_lr_factor=float(p["bias_lr_factor"]))
        if p["optimizer"] == "muon":
            opt = _muon(net, groups, p)
        else:
            opt = optim.make_optimizer(
                p["optimizer"], groups, lr, momentum=p["momentum"], weight_decay=wd
            )
        if p["lookahead"]:
            ramp = None
            if p["lookahead_ramp"] > 0:
                from chainrule.train.solver import batches_per_epoch

                steps = batches_per_epoch(n_samples, int(p["batch_size"])) * int(p["epochs"])
                ramp = max(1, round(float(p["lookahead_ramp"]) * steps))
            alpha = float(p["lookahead_alpha"])
            opt = optim.Lookahead(opt, k=int(p["lookahead"]), alpha=alpha, ramp_steps=ramp)
        return opt

    def _augmentation(self, p):
        """Random crops of `aug_padding` pixels with random or alternating flips."""
        if not p["augment"] or p["flips"] == "random":
            return super()._augmentation(p)
        from chainrule.data.augment import CropFlip

        shape = self._need_shape("augment=True")
        seed = p["random_state"] if is_int(p["random_state"]) else 0
        return CropFlip(shape, int(p["aug_padding"]), p["flips"], seed=int(seed))

    def _eval_views(self, p):
        """The other views of each image at prediction: its mirror image (test-time
        flips), and with `test_time_shift` its shifts (and their mirror images) at
        half weight."""
        shift = p["test_time_shift"]
        if not is_int(shift) or shift < 0:
            raise ValueError(f"test_time_shift must be a non-negative int, got {shift!r}")
        if not shift:
            return super()._eval_views(p)
        from chainrule.data.augment import crop_flip

        flips = self._flips(p)
        self._need_shape("test_time_shift")

        def views(X):
            n = X.shape[0]
            if flips:
                yield np.ascontiguousarray(X[:, :, ::-1]), 1.0
            for offset in (0, 2 * shift):
                at = np.full(n, offset)
                for mirror in (False, True) if flips else (False,):
                    yield crop_flip(X, at, at, np.full(n, mirror), padding=shift), 0.5

        return views


def _check_tricks(p: dict) -> None:
    """Refuse bad values of the options of the fast recipes (off by default)."""
    a = p["lookahead_alpha"]
    if not is_real(a) or not 0 < a <= 1:
        raise ValueError(f"lookahead_alpha must be in (0, 1], got {a!r}")
    r = p["lookahead_ramp"]
    if not is_real(r) or not 0 <= r < math.inf:
        raise ValueError(f"lookahead_ramp must be a non-negative number (0: off), got {r!r}")
    if p["init"] not in INITS:
        raise ValueError(f'init must be "kaiming" or "dirac", got {p["init"]!r}')
    f = p["bias_lr_factor"]
    if not is_real(f) or f <= 0:
        raise ValueError(f"bias_lr_factor must be a positive number, got {f!r}")
    if p["flips"] not in FLIPS:
        raise ValueError(f'flips must be "random" or "alternate", got {p["flips"]!r}')
    shift = p["test_time_shift"]
    if not is_int(shift) or shift < 0:
        raise ValueError(f"test_time_shift must be a non-negative int, got {shift!r}")
    if not is_real(p["muon_lr"]) or p["muon_lr"] <= 0:
        raise ValueError(f"muon_lr must be a positive number, got {p['muon_lr']!r}")
    mu = p["muon_momentum"]
    if not is_real(mu) or not 0 < mu < 1:
        raise ValueError(f"muon_momentum must be in (0, 1), got {mu!r}")


def _muon(net, groups, p):
    """`Muon` over the convolution filters (orthogonalised, fixed norm, at ``muon_lr``
    and ``muon_momentum``) and `groups` without them (Nesterov SGD steps)."""
    from chainrule import nn, optim

    filters = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)]
    rest = [
        {**g, "params": [q for q in g["params"] if all(q is not f for f in filters)]}
        for g in groups
    ]
    orthogonal = {
        "params": filters, "lr": float(p["muon_lr"]), "weight_decay": 0.0,
        "momentum": float(p["muon_momentum"]), "normalize_weights": True,
        "orthogonalize": True,
    }  # fmt: skip
    rest = [{**g, "orthogonalize": False} for g in rest if g["params"]]
    lr, momentum = float(p["learning_rate"]), float(p["momentum"])
    return optim.Muon([orthogonal, *rest], lr, momentum=momentum)
