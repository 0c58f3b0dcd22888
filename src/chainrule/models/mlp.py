"""Fully connected networks as estimators: `TwoLayerNet` and `FullyConnectedNet`.

The network is ``{Linear -> [BatchNorm1d] -> ReLU -> [Dropout]} x L -> Linear -> softmax``
built from `chainrule.nn` modules and trained by `chainrule.train.Solver` on the
softmax cross-entropy loss (with optional label smoothing) plus ``reg * sum(W**2)`` over
the weight matrices (not biases, not batch-norm scales), as in the course. Decoupled
weight decay (``optimizer="adamw"``, ``weight_decay=...``) is the alternative to `reg`.

Both follow scikit-learn's conventions (``fit``, ``predict``, ``predict_proba``,
``score``, ``get_params``) and save everything they learned, batch-norm running statistics
included, through ``_state_dict`` / ``_load_state_dict`` for model files.
"""

from __future__ import annotations

import functools
import json
import numbers

import numpy as np

from chainrule._random import as_generator
from chainrule.autograd.arraymath import softmax
from chainrule.autograd.engine import Tensor, no_grad
from chainrule.models._base import (
    BaseEstimator,
    ClassifierMixin,
    check_is_fitted,
    check_labels,
    check_X,
    check_X_y,
    decision_from_scores,
    label_indices,
    unique_labels,
)
from chainrule.nn.functional.losses import l2_penalty

__all__ = ["FullyConnectedNet", "TwoLayerNet"]


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)


class FullyConnectedNet(ClassifierMixin, BaseEstimator):
    """A fully connected ReLU network of any depth, trained with minibatch gradient descent.

    Parameters
    ----------
    hidden_dims : sequence of int
        Width of each hidden layer; ``(100,)`` is a two-layer network.
    dropout : float in [0, 1)
        Probability of dropping a hidden unit (inverted dropout after each ReLU).
    batchnorm : bool
        Batch normalization between each hidden Linear layer and its ReLU.
    reg : float
        L2 regularization strength: ``reg * sum(W**2)`` over the weight matrices is added
        to the loss.
    optimizer : "sgd", "momentum", "nesterov", "rmsprop", "adam" or "adamw"
    learning_rate : float
        The (peak, for "onecycle") learning rate.
    lr_schedule : None, "constant", "exponential", "step", "cosine", "warmup" or "onecycle"
        See `chainrule.optim.make_schedule`; sized for the whole run.
    schedule_per : "iteration" or "epoch"
        Whether the schedule steps after every minibatch or after every epoch.
    batch_size, epochs : int
    augment : bool
        Random crops (``aug_padding`` pixels of padding) and horizontal flips of every
        training minibatch; needs ``image_shape``.
    image_shape : (H, W, C) or None
        Shape of the images the rows were flattened from (HWC order), for `augment`.
    aug_padding : int or None
        Largest shift of a random crop, in pixels; None: 1 pixel per 16 pixels of image
        side, at least 1 (2 for 32x32 images).
    test_time_flip : bool or None
        Predict from the average of the class probabilities of each image and its mirror
        image (needs ``image_shape``); None: when `augment` is on (the network then
        learned mirrored images). The validation after each epoch (``history_``, the
        choice of the best epoch) looks at each image once, which costs half as much.
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

    Attributes (after fit)
    ----------------------
    classes_ : (C,) the sorted distinct labels (int64 or strings); n_features_in_ : int;
    net_ : the `chainrule.nn.Sequential`; history_ : dict of lists (``loss`` per iteration;
    ``epoch_loss``, ``train_acc``, ``val_acc``, ``lr``, ``epoch_time`` per epoch;
    ``best_epoch``, ``best_val_acc``).
    """

    def __init__(
        self,
        hidden_dims=(100,),
        dropout=0.0,
        batchnorm=False,
        reg=0.0,
        optimizer="adam",
        learning_rate=1e-3,
        lr_schedule=None,
        schedule_per="iteration",
        batch_size=200,
        epochs=10,
        augment=False,
        image_shape=None,
        aug_padding=None,
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

    # ------------------------------------------------------------ architecture
    def _architecture(self) -> tuple[tuple[int, ...], float, bool]:
        """(hidden widths, dropout, batchnorm), validated."""
        dims = self.hidden_dims
        if _is_int(dims):
            dims = (dims,)
        try:
            dims = tuple(dims)
        except TypeError:
            raise TypeError(
                f"hidden_dims must be a sequence of positive ints, got {self.hidden_dims!r}"
            ) from None
        if not all(_is_int(d) and d > 0 for d in dims):
            raise ValueError(
                f"hidden_dims must be a sequence of positive ints, got {self.hidden_dims!r}"
            )
        p = self.dropout
        if not _is_real(p) or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {p!r}")
        if not isinstance(self.batchnorm, (bool, np.bool_)):
            raise TypeError(f"batchnorm must be True or False, got {self.batchnorm!r}")
        return tuple(int(d) for d in dims), float(p), bool(self.batchnorm)

    def _build_network(self, n_features: int, n_classes: int, rng, dtype=np.float32):
        """The `Sequential` for rows of `n_features` and `n_classes` classes.

        Every layer that draws random numbers (initialisation, dropout masks) draws from
        `rng`, so one generator state describes the whole run.
        """
        from chainrule import nn

        dims, p, bn = self._architecture()
        if self.weight_scale is None:
            init = {"init": "kaiming"}
        else:
            if not _is_real(self.weight_scale) or self.weight_scale <= 0:
                raise ValueError(
                    f"weight_scale must be a positive number, got {self.weight_scale!r}"
                )
            init = {"init": "normal", "weight_scale": float(self.weight_scale)}
        layers = []
        d_in = n_features
        for d in dims:
            # The bias before batch norm would be cancelled by its mean subtraction.
            layers.append(nn.Linear(d_in, d, bias=not bn, random_state=rng, dtype=dtype, **init))
            if bn:
                layers.append(nn.BatchNorm1d(d, dtype=dtype))
            layers.append(nn.ReLU())
            if p > 0:
                layers.append(nn.Dropout(p, random_state=rng))
            d_in = d
        layers.append(nn.Linear(d_in, n_classes, random_state=rng, dtype=dtype, **init))
        return nn.Sequential(*layers)

    def _new_network(self, X, rng):
        """The network to train on rows X (N, D), `classes_` known (a family whose
        network depends on the training data, such as a whitening layer, overrides it)."""
        return self._build_network(X.shape[1], len(self.classes_), rng)

    def _weights(self, net) -> list:
        """The weight matrices (what `reg` penalises)."""
        from chainrule import nn

        return [m.weight for m in net.modules() if isinstance(m, nn.Linear)]

    def _make_loss(self, net):
        from chainrule.nn.functional import cross_entropy

        ls = float(self.label_smoothing)
        reg = float(self.reg)
        weights = self._weights(net)

        def loss_fn(scores, y):
            loss = cross_entropy(scores, y, label_smoothing=ls)
            if reg > 0:
                loss = loss + l2_penalty(weights, reg)
            return loss

        return loss_fn

    def _make_optimizer(self, net):
        from chainrule import optim

        lr = self.learning_rate
        if not _is_real(lr) or lr <= 0:
            raise ValueError(f"learning_rate must be a positive number, got {lr!r}")
        wd = self.weight_decay
        if not _is_real(wd) or wd < 0:
            raise ValueError(f"weight_decay must be a non-negative number, got {wd!r}")
        params = optim.weight_decay_groups(net, float(wd))
        return optim.make_optimizer(
            self.optimizer, params, lr, momentum=self.momentum, weight_decay=float(wd)
        )

    def _schedule_factory(self):
        """``(optimizer, total_steps) -> schedule`` for the Solver, which sizes it."""
        from chainrule import optim

        if self.lr_schedule not in optim.SCHEDULES:
            names = ", ".join(str(s) for s in optim.SCHEDULES)
            raise ValueError(f"lr_schedule must be one of {names}; got {self.lr_schedule!r}")
        kwargs = {}
        # Muon's momentum is its own per group (the orthogonalised filters' differs).
        if self.lr_schedule == "onecycle" and self.optimizer in ("sgd", "rmsprop", "muon"):
            kwargs["cycle_momentum"] = False
        return functools.partial(optim.make_schedule, self.lr_schedule, **kwargs)

    def _image_shape(self, n_features: int, why: str) -> tuple[int, int, int]:
        if self.image_shape is None:
            raise ValueError(
                f"{why} needs image_shape=(H, W, C), the shape the rows were flattened from"
            )
        try:
            shape = tuple(int(s) for s in self.image_shape)
        except (TypeError, ValueError):
            raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape!r}") from None
        if len(shape) != 3 or min(shape) <= 0 or int(np.prod(shape)) != n_features:
            raise ValueError(
                f"image_shape {self.image_shape!r} does not match rows of {n_features} features"
            )
        return shape

    def _flips(self) -> bool:
        tta = self.test_time_flip
        if tta is None:
            return bool(self.augment)
        if not isinstance(tta, (bool, np.bool_)):
            raise TypeError(f"test_time_flip must be True, False or None, got {tta!r}")
        return bool(tta)

    def _make_eval_views(self, n_features: int):
        """The mirror image of each row, for test-time flips (or None)."""
        if not self._flips():
            return None
        h, w, c = self._image_shape(n_features, "test_time_flip")

        def mirrored(X):
            return [X.reshape(-1, h, w, c)[:, :, ::-1].reshape(X.shape[0], -1)]

        return mirrored

    def _make_augment(self, n_features: int):
        if not self.augment:
            return None
        shape = self._image_shape(n_features, "augment=True")
        pad = self.aug_padding
        if pad is None:
            # Without convolutions a network must learn every shift separately; for a fully
            # connected network on CIFAR-10, shifts of up to 2 pixels train better than the
            # 4 usual for ConvNets (benchmarks/mlp_cifar10.py).
            pad = max(1, min(shape[0], shape[1]) // 16)
        if not _is_int(pad) or pad < 0:
            raise ValueError(f"aug_padding must be a non-negative int or None, got {pad!r}")
        from chainrule.data.augment import random_crop_flip_flat

        def augment(X, rng):
            return random_crop_flip_flat(X, shape, padding=int(pad), flip=True, rng=rng)

        return augment

    def _check_hyperparameters(self) -> None:
        self._architecture()
        for name in ("batch_size", "epochs"):
            v = getattr(self, name)
            if not _is_int(v) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not _is_real(self.reg) or self.reg < 0:
            raise ValueError(f"reg must be a non-negative number, got {self.reg!r}")
        ls = self.label_smoothing
        if not _is_real(ls) or not 0.0 <= ls < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {ls!r}")

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
        """Train on rows X (N, D) with labels y (N,) (integers or strings, at least two
        classes); validate on (X_val, y_val) if given.

        With validation data the model of the best validation epoch is kept. With
        `checkpoint_dir` a checkpoint is written after every epoch; ``resume=True``
        continues from the checkpoint found there (same data and hyperparameters give the
        same final model as an uninterrupted run). A checkpoint records the
        hyperparameters, the seed and the shapes of the data it was written for, plus
        `checkpoint_settings` (a dict of JSON values, e.g. where the data came from);
        resuming from a checkpoint that records others raises ValueError. Returns self.
        """
        from chainrule.train.solver import Solver

        self._check_hyperparameters()
        X, y = check_X_y(X, y, dtype=np.float32, estimator=self)
        self.classes_, y_idx = unique_labels(y, min_classes=2, estimator=self)
        self.n_features_in_ = X.shape[1]
        if y_val is not None:
            y_val = self._encode(check_labels(y_val, name="y_val"), "y_val")
        self._make_eval_views(X.shape[1])  # refuse a bad test_time_flip before training
        rng = as_generator(self.random_state)
        net = self._new_network(X, rng)
        opt = self._make_optimizer(net)
        solver = Solver(
            net,
            opt,
            self._make_loss(net),
            X,
            y_idx,
            X_val,
            y_val,
            batch_size=self.batch_size,
            epochs=self.epochs,
            lr_schedule=self._schedule_factory(),
            schedule_per=self.schedule_per,
            augment=self._make_augment(X.shape[1]),
            early_stopping_patience=self.early_stopping_patience,
            checkpoint_dir=checkpoint_dir,
            settings=self._run_settings(X, X_val, checkpoint_settings),
            random_state=rng,
            verbose=self.verbose,
        )
        solver.train(resume=resume)
        self.net_ = net
        self.history_ = dict(solver.history)
        self.history_["best_epoch"] = solver.best_epoch
        self.history_["best_val_acc"] = solver.best_val_acc if solver.X_val is not None else None
        return self

    def _run_settings(self, X, X_val, extra) -> dict:
        """What a checkpoint of this fit belongs to: hyperparameters (the seed included;
        not `verbose`), data shapes, classes, and the caller's `extra` dict."""

        def plain(v):
            try:
                json.dumps(v)
            except (TypeError, ValueError):
                return f"<{type(v).__name__}>"
            return v

        params = {k: plain(v) for k, v in self.get_params().items() if k != "verbose"}
        return {
            "estimator": type(self).__name__,
            "params": params,
            "n_train": int(X.shape[0]),
            "n_val": None if X_val is None else int(np.shape(X_val)[0]),
            "n_features": int(X.shape[1]),
            "classes": self.classes_.tolist(),
            "caller": extra,
        }

    def _encode(self, y, name: str) -> np.ndarray:
        idx = label_indices(self.classes_, y)
        bad = idx < 0
        if bad.any():
            raise ValueError(f"{name} has labels not seen in y: {np.unique(y[bad])[:10].tolist()}")
        return idx

    # ------------------------------------------------------------ prediction
    def _forward(self, X, batch_size: int = 1000) -> np.ndarray:
        self.net_.eval()
        out = []
        with no_grad():
            for i in range(0, X.shape[0], batch_size):
                out.append(self.net_(Tensor(X[i : i + batch_size])).data)
        return np.concatenate(out, axis=0)

    def _check_rows(self, X) -> np.ndarray:
        check_is_fitted(self, "net_")
        return check_X(X, dtype=np.float32, n_features=self.n_features_in_, estimator=self)

    def decision_function(self, X) -> np.ndarray:
        """Class scores of rows X (N, D): the network in eval mode (one view of each row,
        without test-time flips). (N, C) float32, columns in ``classes_``; with two
        classes, as scikit-learn's classifiers, (N,) float32: the score of
        ``classes_[1]`` minus that of ``classes_[0]``."""
        return decision_from_scores(self._forward(self._check_rows(X)))

    def _proba(self, X: np.ndarray, views) -> np.ndarray:
        """The softmax of X's scores averaged with those of its views (arrays of rows,
        or (rows, weight) pairs for a weighted average; the rows themselves weigh 1)."""
        p = softmax(self._forward(X))
        if views is not None:
            total = 1.0
            for view in views(X):
                V, weight = view if isinstance(view, tuple) else (view, 1.0)
                p += weight * softmax(self._forward(V))
                total += weight
            p /= total
        return p

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (N, C), float32; column j is class ``classes_[j]``.

        The softmax of the scores, averaged with that of the mirror images when
        test-time flips are on.
        """
        X = self._check_rows(X)
        return self._proba(X, self._make_eval_views(self.n_features_in_))

    def predict(self, X) -> np.ndarray:
        """Predicted labels (N,) of rows X (N, D): the class with the highest score (the
        highest averaged probability with test-time flips)."""
        X = self._check_rows(X)
        views = self._make_eval_views(self.n_features_in_)
        # Without flips, the argmax of the scores: the sign of the two-class
        # decision_function agrees with it exactly, which a softmax could blur.
        best = (self._forward(X) if views is None else self._proba(X, views)).argmax(axis=1)
        return self.classes_[best]

    # ------------------------------------------------------------ model files
    def _state_dict(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "net_")
        state = {f"net.{k}": v for k, v in self.net_.state_dict().items()}
        state["classes_"] = np.asarray(self.classes_)
        state["n_features_in_"] = np.array(self.n_features_in_, dtype=np.int64)
        return state

    def _load_state_dict(self, state) -> None:
        for k in ("classes_", "n_features_in_"):
            if k not in state:
                raise ValueError(f"{type(self).__name__} state has no {k!r}")
        classes = check_labels(state["classes_"], name="classes_")
        n_features = int(np.asarray(state["n_features_in_"]))
        net = self._build_network(n_features, len(classes), np.random.default_rng(0))
        net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        net.eval()
        self.classes_ = classes
        self.n_features_in_ = n_features
        self.net_ = net


class TwoLayerNet(FullyConnectedNet):
    """The lecture's two-layer network: ``Linear -> ReLU -> Linear -> softmax``.

    A `FullyConnectedNet` with one hidden layer of `hidden_size` units and no batch norm;
    the other parameters are those of `FullyConnectedNet`.
    """

    def __init__(
        self,
        hidden_size=100,
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
        aug_padding=None,
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

    @property
    def hidden_dims(self):
        return (self.hidden_size,)

    @property
    def batchnorm(self):
        return False

    def _architecture(self):
        if not _is_int(self.hidden_size) or self.hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive int, got {self.hidden_size!r}")
        return super()._architecture()
