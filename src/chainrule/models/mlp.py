"""Fully connected networks as estimators: `TwoLayerNet` and `FullyConnectedNet`.

The network is ``{Linear -> [BatchNorm1d] -> ReLU -> [Dropout]} x L -> Linear -> softmax``
built from `chainrule.nn` modules and trained by `chainrule.train.Solver` (through
`chainrule.models.NetworkClassifier`, the base of every estimator trained by gradient
descent) on the softmax cross-entropy loss (with optional label smoothing) plus
``reg * sum(W**2)`` over the weight matrices (not biases, not batch-norm scales), as in
the course. Decoupled weight decay (``optimizer="adamw"``, ``weight_decay=...``) is the
alternative to `reg`.

The two are siblings: the lecture's two-layer network names its one hidden layer
``hidden_size`` and has no batch norm; the deep network takes any widths. Their training
defaults are chosen from the data (``"auto"``): the recipe of the command line
(``models/mlp_spec.py``), which takes larger steps and more epochs on small data sets.
"""

from __future__ import annotations

import numpy as np

from chainrule.models._network import NetworkClassifier
from chainrule.models._options import AUTO, is_auto, is_int, is_real

__all__ = ["FullyConnectedNet", "TwoLayerNet"]


def build_mlp(d_in: int, dims, n_classes: int, rng, *, dropout=0.0, batchnorm=False,
              weight_scale=None, dtype=np.float32):  # fmt: skip
    """The `Sequential` ``{Linear -> [BatchNorm1d] -> ReLU -> [Dropout]} per width of
    dims -> Linear`` for rows of ``d_in`` features and ``n_classes`` classes.

    He initialisation, or normal with standard deviation ``weight_scale``. Every layer
    that draws random numbers (initialisation, dropout masks) draws from ``rng``, so one
    generator state describes the whole run.
    """
    from chainrule import nn

    init = {"init": "kaiming"}
    if weight_scale is not None:
        init = {"init": "normal", "weight_scale": float(weight_scale)}
    layers = []
    for d in dims:
        # The bias before batch norm would be cancelled by its mean subtraction.
        layers.append(nn.Linear(d_in, d, bias=not batchnorm, random_state=rng, dtype=dtype, **init))
        if batchnorm:
            layers.append(nn.BatchNorm1d(d, dtype=dtype))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout, random_state=rng))
        d_in = d
    layers.append(nn.Linear(d_in, n_classes, random_state=rng, dtype=dtype, **init))
    return nn.Sequential(*layers)


def _check_dropout(p) -> float:
    if not is_real(p) or not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {p!r}")
    return float(p)


def _check_weight_scale(s) -> None:
    if s is not None and (not is_real(s) or s <= 0):
        raise ValueError(f"weight_scale must be a positive number or None, got {s!r}")


class _FullyConnected(NetworkClassifier):
    """What the two fully connected networks share: the training defaults chosen from
    the data, and the network of `architecture`."""

    _auto = frozenset({"learning_rate", "batch_size", "epochs", "aug_padding"})

    def _architecture(self, p=None) -> tuple[tuple[int, ...], float, bool]:
        """(hidden widths, dropout, batchnorm) as the model uses them (or as ``p``
        says), checked."""
        raise NotImplementedError

    def _recipe(self, data) -> dict:
        from chainrule.models.mlp_spec import recipe

        return recipe(data, deep=isinstance(self, FullyConnectedNet))

    def _check_architecture(self, p) -> None:
        if is_auto(p.get("hidden_dims")):
            p = {**p, "hidden_dims": (1,)}  # chosen from the data in fit
        self._architecture(p)
        _check_weight_scale(p["weight_scale"])

    def _build_network(self, input_shape, n_classes, rng, dtype=np.float32):
        dims, dropout, bn = self._architecture()
        (d_in,) = input_shape
        return build_mlp(d_in, dims, n_classes, rng, dropout=dropout, batchnorm=bn,
                         weight_scale=self._params()["weight_scale"], dtype=dtype)  # fmt: skip


class FullyConnectedNet(_FullyConnected):
    """A fully connected ReLU network of any depth, trained with minibatch gradient descent.

    Parameters
    ----------
    hidden_dims : sequence of int, or "auto"
        Width of each hidden layer; ``(100,)`` is a two-layer network. "auto": (256, 256)
        below 20,000 training samples, (1024, 1024) from there.
    dropout : float in [0, 1)
        Probability of dropping a hidden unit (inverted dropout after each ReLU).
    batchnorm : bool
        Batch normalization between each hidden Linear layer and its ReLU.
    reg : float
        L2 regularization strength: ``reg * sum(W**2)`` over the weight matrices is added
        to the loss.
    optimizer : "sgd", "momentum", "nesterov", "rmsprop", "adam" or "adamw"
    learning_rate : float or "auto"
        The (peak, for "onecycle") learning rate; "auto": 3e-3 below 20,000 training
        samples, 1e-3 from there.
    lr_schedule : None, "constant", "exponential", "step", "cosine", "warmup" or "onecycle"
        See `chainrule.optim.make_schedule`; sized for the whole run.
    schedule_per : "iteration" or "epoch"
        Whether the schedule steps after every minibatch or after every epoch.
    batch_size : int or "auto"
        "auto": 200 below 20,000 training samples, 256 from there.
    epochs : int or "auto"
        "auto": enough epochs for about 600 updates, from 10 to 30.
    augment : bool
        Random crops (``aug_padding`` pixels of padding) and horizontal flips of every
        training minibatch; needs images (N, H, W, C) or ``image_shape``.
    image_shape : (H, W, C) or None
        For rows: the shape of the images they were flattened from (HWC order), for
        `augment` and test-time flips. Images carry their own shape.
    aug_padding : int or "auto"
        Largest shift of a random crop, in pixels; "auto": 1 pixel per 16 pixels of
        image side, at least 1 (2 for 32x32 images).
    test_time_flip : bool or None
        Predict from the average of the class probabilities of each image and its mirror
        image; None: when `augment` is on (the network then learned mirrored images).
        The validation after each epoch (``history_``, the choice of the best epoch)
        looks at each image once, which costs half as much.
    label_smoothing : float in [0, 1)
        Share of the target probability spread evenly over all classes.
    weight_decay : float
        Weight decay of the weight matrices (decoupled for "adamw", added to the gradient
        otherwise); biases and batch-norm parameters are never decayed.
    momentum : float
        Momentum of "momentum" / "nesterov" SGD.
    weight_scale : float or None
        Standard deviation of the initial weights (normal); None: He initialisation.
    early_stopping_patience : int or None
        Stop after this many epochs without a better validation accuracy.
    random_state : int, Generator or None
        Initialisation, shuffling, dropout masks and augmentation.
    verbose : int or bool, default 0
        Nonzero: a progress bar and one line per epoch (the command line turns it on).

    Notes
    -----
    The defaults are those of ``chainrule train mlp`` for the data. Attributes after fit:
    see `chainrule.models.NetworkClassifier`.
    """

    def __init__(
        self,
        hidden_dims=AUTO,
        dropout=0.1,
        batchnorm=True,
        reg=0.0,
        optimizer="adam",
        learning_rate=AUTO,
        lr_schedule=None,
        schedule_per="iteration",
        batch_size=AUTO,
        epochs=AUTO,
        augment=False,
        image_shape=None,
        aug_padding=AUTO,
        test_time_flip=None,
        label_smoothing=0.0,
        weight_decay=0.0,
        momentum=0.9,
        weight_scale=None,
        early_stopping_patience=None,
        random_state=None,
        verbose=0,
    ):
        self.hidden_dims = hidden_dims
        self.dropout = dropout
        self.batchnorm = batchnorm
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
        self.weight_scale = weight_scale
        self.early_stopping_patience = early_stopping_patience
        self.random_state = random_state
        self.verbose = verbose

    _auto = _FullyConnected._auto | {"hidden_dims"}

    def _architecture(self, p=None) -> tuple[tuple[int, ...], float, bool]:
        p = self._params() if p is None else p
        dims = p["hidden_dims"]
        if is_int(dims):
            dims = (dims,)
        try:
            dims = tuple(dims)
        except TypeError:
            dims = ()
        if not dims or not all(is_int(d) and d > 0 for d in dims):
            raise ValueError(
                f"hidden_dims must be a sequence of positive ints, got {p['hidden_dims']!r}"
            )
        if not isinstance(p["batchnorm"], (bool, np.bool_)):
            raise TypeError(f"batchnorm must be True or False, got {p['batchnorm']!r}")
        return tuple(int(d) for d in dims), _check_dropout(p["dropout"]), bool(p["batchnorm"])


class TwoLayerNet(_FullyConnected):
    """The lecture's two-layer network: ``Linear -> ReLU -> Linear -> softmax``.

    ``hidden_size`` units in its one hidden layer, no batch norm; the other parameters
    are those of `FullyConnectedNet`, with the defaults of ``chainrule train twolayer``.
    """

    def __init__(
        self,
        hidden_size=100,
        dropout=0.0,
        reg=0.0,
        optimizer="adam",
        learning_rate=AUTO,
        lr_schedule=None,
        schedule_per="iteration",
        batch_size=AUTO,
        epochs=AUTO,
        augment=False,
        image_shape=None,
        aug_padding=AUTO,
        test_time_flip=None,
        label_smoothing=0.0,
        weight_decay=0.0,
        momentum=0.9,
        weight_scale=None,
        early_stopping_patience=None,
        random_state=None,
        verbose=0,
    ):
        self.hidden_size = hidden_size
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
        self.weight_scale = weight_scale
        self.early_stopping_patience = early_stopping_patience
        self.random_state = random_state
        self.verbose = verbose

    def _architecture(self, p=None) -> tuple[tuple[int, ...], float, bool]:
        p = self._params() if p is None else p
        size = p["hidden_size"]
        if not is_int(size) or size <= 0:
            raise ValueError(f"hidden_size must be a positive int, got {size!r}")
        return (int(size),), _check_dropout(p["dropout"]), False
