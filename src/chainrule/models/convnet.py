"""Convolutional networks as an estimator: `ConvNet`.

The network is the one `chainrule.models.convnet_arch.build_convnet` makes from a short
spec (channel widths per stage)::

    stem -> {3x3 conv -> max pool -> BN -> ReLU -> (3x3 conv -> BN -> ReLU) x k-1} x stages
         -> global max pool -> [Dropout] -> Linear [-> fixed scale]

with a ``"conv"`` stem (3x3 convolution, BN, ReLU) or a ``"whiten"`` stem (a frozen 2x2
convolution that whitens the training images' patches, computed from them before
training). It trains exactly as `FullyConnectedNet` does (the same `Solver`, optimizers,
schedules, weight decay, label smoothing, crops and flips, test-time flips,
best-on-validation, checkpoints and exact resume); only the network differs.

Input: images (N, C, H, W) float, the layout of ``Preprocessor(flatten=False)``, or
rows (N, H*W*C) of images flattened in HWC order (with ``image_shape``). Inside, the
network reads HWC rows (its first layer views them as channels-last images, the memory
order its convolutions work in without a copy), so images (N, C, H, W) are copied once
into that order.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.models._base import check_is_fitted, check_X
from chainrule.models.mlp import FullyConnectedNet, _is_int, _is_real

__all__ = ["ConvNet"]

STEMS = ("whiten", "conv")
INITS = ("kaiming", "dirac")
FLIPS = ("random", "alternate")


class ConvNet(FullyConnectedNet):
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
        as the unshifted ones; 0: off.
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
        are 1x1 images of D channels. Images (N, C, H, W) carry their shape (a given
        `image_shape` must agree with it).
    reg, optimizer, learning_rate, lr_schedule, schedule_per, batch_size, epochs,
    augment, test_time_flip, label_smoothing, weight_decay, momentum,
    early_stopping_patience, random_state, verbose : as in `FullyConnectedNet`; `reg`
        and `weight_decay` act on the convolution and Linear weights (not on batch norm,
        not on the frozen whitening filters).

    Batch normalization is always part of this architecture (there is no ``batchnorm``
    parameter: its statistics are what make the high learning rates of the CIFAR-10
    recipe work); its shift is learned, its scale is not (the next convolution absorbs
    any scale). Initial weights are He-normal (no ``weight_scale``).

    Attributes (after fit)
    ----------------------
    classes_, n_features_in_ (H*W*C), net_, history_ : as in `FullyConnectedNet`;
    image_shape_ : (H, W, C) of the images the network reads.
    """

    def __init__(
        self,
        channels=(32, 64, 128),
        stem="conv",
        convs_per_stage=2,
        logit_scale=1.0,
        dropout=0.0,
        reg=0.0,
        optimizer="adam",
        learning_rate=1e-3,
        lr_schedule=None,
        schedule_per="iteration",
        batch_size=200,
        epochs=10,
        augment=False,
        image_shape=None,
        aug_padding=2,
        test_time_flip=None,
        label_smoothing=0.0,
        weight_decay=0.0,
        momentum=0.9,
        lookahead=0,
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

    @property
    def batchnorm(self) -> bool:
        """Always True: batch norm after every trained convolution."""
        return True

    @property
    def weight_scale(self):
        """Always None: He initialisation."""
        return None

    # ------------------------------------------------------------ architecture
    def _architecture(self) -> tuple[tuple[int, ...], str, int, float, float]:
        """(channels, stem, convs_per_stage, dropout, logit_scale), validated."""
        widths = self.channels
        if _is_int(widths):
            widths = (widths,)
        try:
            widths = tuple(widths)
        except TypeError:
            widths = ()
        if not widths or not all(_is_int(w) and w > 0 for w in widths):
            raise ValueError(f"channels must be a sequence of positive ints, got {self.channels!r}")
        if self.stem not in STEMS:
            raise ValueError(f'stem must be "whiten" or "conv", got {self.stem!r}')
        k = self.convs_per_stage
        if not _is_int(k) or k < 1:
            raise ValueError(f"convs_per_stage must be a positive int, got {k!r}")
        p = self.dropout
        if not _is_real(p) or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {p!r}")
        s = self.logit_scale
        if not _is_real(s) or s <= 0:
            raise ValueError(f"logit_scale must be a positive number, got {s!r}")
        return tuple(int(w) for w in widths), self.stem, int(k), float(p), float(s)

    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        k = self.lookahead
        if not _is_int(k) or k < 0:
            raise ValueError(f"lookahead must be a non-negative int (0: off), got {k!r}")
        a = self.lookahead_alpha
        if not _is_real(a) or not 0 < a <= 1:
            raise ValueError(f"lookahead_alpha must be in (0, 1], got {a!r}")
        r = self.lookahead_ramp
        if not _is_real(r) or not 0 <= r < math.inf:
            raise ValueError(f"lookahead_ramp must be a non-negative number (0: off), got {r!r}")
        pad = self.aug_padding
        if not _is_int(pad) or pad < 0:
            raise ValueError(f"aug_padding must be a non-negative int, got {pad!r}")
        if self.init not in INITS:
            raise ValueError(f'init must be "kaiming" or "dirac", got {self.init!r}')
        f = self.bias_lr_factor
        if not _is_real(f) or f <= 0:
            raise ValueError(f"bias_lr_factor must be a positive number, got {f!r}")
        if self.flips not in FLIPS:
            raise ValueError(f'flips must be "random" or "alternate", got {self.flips!r}')
        shift = self.test_time_shift
        if not _is_int(shift) or shift < 0:
            raise ValueError(f"test_time_shift must be a non-negative int, got {shift!r}")
        if not _is_real(self.muon_lr) or self.muon_lr <= 0:
            raise ValueError(f"muon_lr must be a positive number, got {self.muon_lr!r}")
        mu = self.muon_momentum
        if not _is_real(mu) or not 0 < mu < 1:
            raise ValueError(f"muon_momentum must be in (0, 1), got {mu!r}")
        if self.image_shape is not None:
            _shape_of(self.image_shape)

    def _build_network(self, n_features, n_classes, rng, dtype=np.float32, whiten_images=None):
        """The `Sequential` for rows of images of shape ``image_shape_``.

        The whitening stem's filters come from `whiten_images` (N, H, W, C); without
        them (a model file being read) they are zeros until the file's are loaded.
        """
        from chainrule.models.convnet_arch import build_convnet

        widths, stem, k, p, scale = self._architecture()
        shape = self.image_shape_
        filters = None
        if stem == "whiten" and whiten_images is None:
            c = shape[2]
            filters = np.zeros((8 * c, c, 2, 2), dtype=dtype)
        return build_convnet(
            shape, n_classes, widths, convs_per_stage=k, stem=stem,
            whiten_images=whiten_images, whiten_filters=filters, logit_scale=scale,
            random_state=rng, dtype=dtype, dropout=p, init=self.init,
        )  # fmt: skip

    def _new_network(self, X, rng):
        self._fit_rows = len(X)  # sizes Lookahead's ramp (see `_make_optimizer`)
        whiten = X.reshape(-1, *self.image_shape_) if self.stem == "whiten" else None
        return self._build_network(X.shape[1], len(self.classes_), rng, whiten_images=whiten)

    def _weights(self, net) -> list:
        """The convolution and Linear weights (what `reg` penalises)."""
        from chainrule import nn

        return [m.weight for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]

    def _make_optimizer(self, net):
        """The optimizer over two parameter groups: the convolution and Linear weights
        at `learning_rate` with `weight_decay`; biases and batch-norm shifts at
        ``bias_lr_factor * learning_rate`` without decay; with ``optimizer="muon"`` a
        third group of the convolution filters (see `muon_lr`); in `Lookahead` if
        asked."""
        from chainrule import optim

        lr, wd = self.learning_rate, self.weight_decay
        if not _is_real(lr) or lr <= 0:
            raise ValueError(f"learning_rate must be a positive number, got {lr!r}")
        if not _is_real(wd) or wd < 0:
            raise ValueError(f"weight_decay must be a non-negative number, got {wd!r}")
        groups = optim.network_groups(
            net, float(lr), float(wd), bias_lr_factor=float(self.bias_lr_factor)
        )
        if self.optimizer == "muon":
            opt = self._muon(net, groups)
        else:
            opt = optim.make_optimizer(
                self.optimizer, groups, float(lr), momentum=self.momentum, weight_decay=float(wd)
            )
        if self.lookahead:
            ramp = None
            if self.lookahead_ramp > 0:
                from chainrule.train.solver import batches_per_epoch

                steps = batches_per_epoch(self._fit_rows, self.batch_size) * int(self.epochs)
                ramp = max(1, round(float(self.lookahead_ramp) * steps))
            alpha = float(self.lookahead_alpha)
            opt = optim.Lookahead(opt, k=int(self.lookahead), alpha=alpha, ramp_steps=ramp)
        return opt

    def _muon(self, net, groups):
        """`Muon` over the filters (orthogonalised, fixed norm) and `groups` without
        them (Nesterov SGD steps)."""
        from chainrule import nn, optim

        filters = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)]
        rest = [
            {**g, "params": [p for p in g["params"] if all(p is not f for f in filters)]}
            for g in groups
        ]
        orthogonal = {
            "params": filters, "lr": float(self.muon_lr), "weight_decay": 0.0,
            "momentum": float(self.muon_momentum), "normalize_weights": True,
            "orthogonalize": True,
        }  # fmt: skip
        rest = [{**g, "orthogonalize": False} for g in rest if g["params"]]
        momentum = float(self.momentum)
        return optim.Muon([orthogonal, *rest], float(self.learning_rate), momentum=momentum)

    def _make_augment(self, n_features: int):
        """Random crops of `aug_padding` pixels and random or alternating flips."""
        if not self.augment:
            return None
        from chainrule.data.augment import CropFlip

        seed = self.random_state if _is_int(self.random_state) else 0
        return CropFlip(self.image_shape_, int(self.aug_padding), self.flips, seed=int(seed))

    def _make_eval_views(self, n_features: int):
        """The other views of each image at prediction: its mirror image (test-time
        flips), and with `test_time_shift` its shifts (and their mirror images) at
        half weight; a generator of (rows, weight), or None."""
        flips, shift = self._flips(), int(self.test_time_shift)
        if not flips and not shift:
            return None
        from chainrule.data.augment import crop_flip

        shape = self.image_shape_

        def views(X):
            n = X.shape[0]
            images = X.reshape(n, *shape)
            if flips:
                yield images[:, :, ::-1].reshape(n, -1), 1.0
            for offset in (0, 2 * shift) if shift else ():
                for mirror in (False, True) if flips else (False,):
                    at = np.full(n, offset)
                    view = crop_flip(images, at, at, np.full(n, mirror), padding=shift)
                    yield view.reshape(n, -1), 0.5

        return views

    def _image_shape(self, n_features: int, why: str) -> tuple[int, int, int]:
        return self.image_shape_

    # ------------------------------------------------------------ inputs
    def _as_rows(self, X, name: str = "X") -> np.ndarray:
        """Images (N, C, H, W) or rows (N, D) -> float32 rows (N, H*W*C) in HWC order.

        Before fitting (no ``image_shape_`` yet) the shape is taken from the input and
        set; after, the input must have the fitted shape.
        """
        X = check_X(X, name=name, dtype=np.float32, estimator=self, ensure_2d=False)
        fitted = getattr(self, "image_shape_", None)
        if X.ndim == 4:
            shape = (X.shape[2], X.shape[3], X.shape[1])
            given = self.image_shape if fitted is None else fitted
            if given is not None and _shape_of(given) != shape:
                h, w, c = _shape_of(given)
                raise ValueError(
                    f"{name} holds images (C, H, W) = {X.shape[1:]}, but {type(self).__name__} "
                    f"{'was fitted on' if fitted else 'has image_shape for'} images "
                    f"(C, H, W) = {(c, h, w)}"
                )
            rows = np.ascontiguousarray(X.transpose(0, 2, 3, 1)).reshape(X.shape[0], -1)
        elif X.ndim == 2:
            d = X.shape[1] if fitted is None else math.prod(fitted)
            rows = check_X(X, name=name, n_features=d, estimator=self)
            shape = fitted or self._row_shape(X.shape[1])
        elif X.ndim == 1:
            check_X(X, name=name)  # raises scikit-learn's "Reshape your data" message
        else:
            raise ValueError(
                f"{name} must be images (N, C, H, W) or rows (N, H*W*C), got shape {X.shape}"
            )
        if fitted is None:
            self.image_shape_ = shape
        return rows

    def _row_shape(self, n_features: int) -> tuple[int, int, int]:
        if self.image_shape is None:
            return (1, 1, n_features)
        shape = _shape_of(self.image_shape)
        if math.prod(shape) != n_features:
            raise ValueError(
                f"image_shape {self.image_shape!r} does not match rows of {n_features} features"
            )
        return shape

    def _check_rows(self, X) -> np.ndarray:
        check_is_fitted(self, "net_")
        return self._as_rows(X)

    # ------------------------------------------------------------ fitting
    def fit(
        self,
        X,
        y,
        X_val=None,
        y_val=None,
        *,
        checkpoint_dir=None,
        resume=False,
        checkpoint_settings=None,
    ):
        """Train on images X (N, C, H, W) or rows X (N, D) with labels y (N,); validate
        on (X_val, y_val) of the same form if given. Otherwise as
        `FullyConnectedNet.fit`. Returns self."""
        self._check_hyperparameters()
        self.__dict__.pop("image_shape_", None)  # a refit reads the shape again
        rows = self._as_rows(X)
        if X_val is not None:
            X_val = self._as_rows(X_val, "X_val")
        return super().fit(
            rows, y, X_val, y_val, checkpoint_dir=checkpoint_dir, resume=resume,
            checkpoint_settings=checkpoint_settings,
        )  # fmt: skip

    def _run_settings(self, X, X_val, extra) -> dict:
        return {**super()._run_settings(X, X_val, extra), "image_shape": list(self.image_shape_)}

    # ------------------------------------------------------------ model files
    def _state_dict(self) -> dict[str, np.ndarray]:
        state = super()._state_dict()
        state["image_shape_"] = np.array(self.image_shape_, dtype=np.int64)
        return state

    def _load_state_dict(self, state) -> None:
        if "image_shape_" not in state:
            raise ValueError(f"{type(self).__name__} state has no 'image_shape_'")
        shape = _shape_of(np.asarray(state["image_shape_"]).tolist())
        n_features = int(np.asarray(state.get("n_features_in_", -1)))
        if math.prod(shape) != n_features:
            raise ValueError(
                f"image_shape_ {shape} does not make n_features_in_ = {n_features} features"
            )
        self.image_shape_ = shape
        super()._load_state_dict(state)


def _shape_of(value) -> tuple[int, int, int]:
    """(H, W, C) of positive ints, or ValueError."""
    try:
        shape = tuple(value)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(_is_int(s) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (H, W, C) of positive ints, got {value!r}")
    return tuple(int(s) for s in shape)
