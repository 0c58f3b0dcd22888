"""The one estimator base of the classifiers trained by gradient descent.

The linear classifiers (`LinearSVM`, `SoftmaxClassifier`), the fully connected networks
(`TwoLayerNet`, `FullyConnectedNet`) and the convolutional network (`ConvNet`) are
siblings on `NetworkClassifier`, which owns what they share:

- the training options (`chainrule.models._options`: optimizer, learning rate and its
  schedule, minibatches, epochs, regularization, label smoothing, augmentation, ...) and
  the one `chainrule.train.Solver` that trains every family;
- the inputs: rows (N, D), or images (N, H, W, C) channels-last, handed to the network
  in the form it reads (rows, or images) by a reshape, never a copy;
- defaults that learn: a hyperparameter left at ``"auto"`` takes the value that the
  family's recipe gives for the training data, the recipe the command line uses (its
  spec's ``defaults``), so ``ConvNet().fit(X, y)`` trains as ``chainrule train cnn``;
- ``predict``, ``predict_proba`` and ``decision_function`` (with test-time flips);
- the state of model files, and checkpoints with an exact resume.

A family is a subclass whose ``__init__`` lists its hyperparameters (the rules of
``models/_base.py``) and that builds its network in one hook::

    class Logistic(NetworkClassifier):
        _fixed = {"optimizer": "sgd"}           # training options it does not take

        def __init__(self, learning_rate=0.1, batch_size=64, epochs=20, random_state=None):
            self.learning_rate = learning_rate
            self.batch_size = batch_size
            self.epochs = epochs
            self.random_state = random_state

        def _build_network(self, input_shape, n_classes, rng, dtype=np.float32):
            (d,) = input_shape                  # rows: (D,); images: (H, W, C)
            return nn.Linear(d, n_classes, random_state=rng, dtype=dtype)

Optional hooks: ``_recipe(data)`` (the values of ``"auto"`` hyperparameters for a
`DataSummary`), ``_check_architecture(params)``, ``_initialise(net, X)`` (an
initialisation computed from the training inputs, such as a whitening layer),
``_penalised(net)`` (the weights ``reg`` acts on), ``_data_loss(scores, y, params)``,
``_optimizer(net, params, n_samples)`` (parameter groups, another optimizer),
``_augmentation(params)`` and ``_eval_views(params)`` (training and test-time views).
Class attributes: ``_reads`` (``"rows"`` or ``"images"``: what the network takes),
``_auto`` (the hyperparameters that may be ``"auto"``), ``_restore_best``,
``_progress`` and ``_one_blas_thread`` (how the Solver runs: BLAS keeps to one thread
for small data sets, `chainrule._blas`, or always with ``_one_blas_thread``: the linear
classifiers' minibatch products, (200, D) @ (D, 10), are far too small to gain from
threads).
"""

from __future__ import annotations

import copy
import json

import numpy as np

from chainrule._blas import blas_threads_for, one_blas_thread
from chainrule._random import as_generator
from chainrule.autograd.arraymath import softmax
from chainrule.autograd.engine import Tensor, no_grad
from chainrule.data.layout import as_images, image_shape
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
from chainrule.models._options import (
    TRAINING_OPTIONS,
    check_options,
    is_auto,
    make_optimizer,
    schedule_factory,
)
from chainrule.nn.functional.losses import cross_entropy, l2_penalty

__all__ = ["NetworkClassifier"]

# Samples per forward pass when predicting, and input values per pass (both bound the
# float64 activations held at once).
_PREDICT_BATCH = 1000
_PREDICT_VALUES = 1 << 20


class NetworkClassifier(ClassifierMixin, BaseEstimator):
    """Base of the estimators trained by gradient descent (see the module docstring).

    Fitted attributes: ``classes_`` (C,) the sorted labels (int64 or strings),
    ``n_features_in_`` (values per sample), ``image_shape_`` ((H, W, C) of the images
    the samples are, or None for rows of no known image shape), ``input_shape_`` (one
    sample as the network reads it: ``(D,)`` or ``(H, W, C)``), ``net_`` (the trained
    `chainrule.nn` module), ``history_`` (``loss`` per iteration; ``epoch_loss``,
    ``train_acc``, ``val_acc``, ``lr``, ``epoch_time`` per epoch; ``best_epoch``,
    ``best_val_acc``; absent from a model read from a file), ``fitted_params_`` (the
    hyperparameters as trained: ``get_params()`` with each ``"auto"`` replaced by its
    value for the training data; model files store the hyperparameters with ``"auto"``
    so replaced). A hyperparameter that acts at prediction (``test_time_flip``) may be
    changed with ``set_params`` after fit.
    """

    _reads = "rows"
    _auto: frozenset = frozenset({"aug_padding"})
    _fixed: dict = {}
    _restore_best = True
    _progress = "epoch"
    _one_blas_thread = False

    # ------------------------------------------------------------ hooks
    def _build_network(self, input_shape, n_classes: int, rng, dtype=np.float32):
        """The `chainrule.nn` module mapping inputs of ``input_shape`` (rows: ``(D,)``,
        images: ``(H, W, C)``; a batch adds N in front) to ``n_classes`` class scores.
        Layers that draw random numbers draw them from ``rng``."""
        raise NotImplementedError(f"{type(self).__name__} must define _build_network")

    def _recipe(self, data) -> dict:
        """The values of ``"auto"`` hyperparameters for the training data (a
        `chainrule.models.spec.DataSummary`)."""
        return {}

    def _check_architecture(self, p: dict) -> None:
        """Refuse bad hyperparameters of the family's own (beyond the training options)."""

    def _initialise(self, net, X: np.ndarray) -> None:
        """Set what the network computes from the training inputs ``X`` before training."""

    def _penalised(self, net) -> list:
        """The weights ``reg * sum(W**2)`` is added for: those of Linear and Conv2d layers."""
        from chainrule import nn

        return [m.weight for m in net.modules() if isinstance(m, nn.Linear | nn.Conv2d)]

    def _optimizer(self, net, p: dict, n_samples: int):
        """The optimizer over ``net`` for a run on ``n_samples`` training samples:
        `chainrule.models._options.make_optimizer` of ``p``."""
        return make_optimizer(net, p)

    def _data_loss(self, scores, y, p: dict):
        return cross_entropy(scores, y, label_smoothing=float(p["label_smoothing"]))

    def _rows_shape(self, n_features: int):
        """The image shape of rows given without ``image_shape`` (None: not images)."""
        return None

    # ------------------------------------------------------------ hyperparameters
    def _params(self) -> dict:
        """Every hyperparameter and training option as the model uses it: as given, with
        each ``"auto"`` replaced by its value for the training data once fit has begun
        (``fitted_params_``)."""
        own = self.get_params(deep=False)
        fitted = self.__dict__.get("fitted_params_")
        if fitted:
            own = {k: fitted.get(k, v) if is_auto(v) else v for k, v in own.items()}
        return {**TRAINING_OPTIONS, **self._fixed, **own}

    def _check_hyperparameters(self) -> None:
        """Refuse bad hyperparameters, as given, before any data is seen (``"auto"``
        passes where the family allows it)."""
        p = {**TRAINING_OPTIONS, **self._fixed, **self.get_params(deep=False)}
        check_options(p, self._auto)
        self._check_architecture(p)

    def _resolve(self, X: np.ndarray, shape) -> dict:
        """``get_params()`` with each ``"auto"`` replaced by its value for inputs ``X``."""
        from chainrule.models.spec import DataSummary

        params = self.get_params(deep=False)
        wanted = [k for k, v in params.items() if is_auto(v)]
        if not wanted:
            return params
        summary_shape = shape or (1, 1, int(np.prod(X.shape[1:])))
        recipe = self._recipe(DataSummary.of(X, len(self.classes_), summary_shape))
        for k in wanted:
            if k in recipe:
                params[k] = recipe[k]
            elif k == "aug_padding":
                # Shifts of 1 pixel per 16 of image side, at least 1 (2 for 32x32 images).
                params[k] = max(1, min(shape[:2]) // 16) if shape else 1
            else:
                raise ValueError(f"{type(self).__name__} has no value for {k}='auto'")
        return params

    # ------------------------------------------------------------ inputs
    def _image_shape_of(self, X: np.ndarray, p: dict):
        """(H, W, C) of the training samples X (images, or rows with ``image_shape``)."""
        given = p["image_shape"]
        if X.ndim == 4:
            shape = image_shape(X.shape[1:], name="the images' shape")
            if given is not None and image_shape(given) != shape:
                raise ValueError(
                    f"X holds images (H, W, C) = {shape}, but image_shape is {tuple(given)}"
                )
            return shape
        if given is not None:
            return image_shape(given, X.shape[1])
        return self._rows_shape(X.shape[1])

    def _check_input(self, X, name: str = "X", dtype=None) -> np.ndarray:
        """Rows (N, D) or images (N, H, W, C) as an array of real numbers, finite."""
        X = check_X(X, name=name, dtype=dtype, estimator=self, ensure_2d=False)
        if X.ndim == 1:
            check_X(X, name=name)  # scikit-learn's "Reshape your data" message
        if X.ndim not in (2, 4):
            raise ValueError(
                f"{name} must be rows (N, D) or images (N, H, W, C), got shape {X.shape}"
            )
        return X

    def _network_input(self, X: np.ndarray, name: str = "X") -> np.ndarray:
        """Checked inputs as the network reads them (a view of ``X``), for a model whose
        ``n_features_in_`` and ``image_shape_`` are set."""
        shape, who = self.image_shape_, type(self).__name__
        if X.ndim == 2:
            if X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"{name} has {X.shape[1]} features, but {who} is expecting "
                    f"{self.n_features_in_} features as input (the number it was fitted with)"
                )
        elif shape is None:
            raise ValueError(
                f"{name} holds images, but {who} was fitted on rows of no image shape: "
                f"pass rows (N, {self.n_features_in_})"
            )
        else:
            as_images(X, shape, name=name, owner=who)
        if self._reads == "rows":
            return X.reshape(X.shape[0], -1)
        return as_images(X, shape)

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
        """Train on rows X (N, D) or images X (N, H, W, C) with labels y (N,) (integers
        or strings, at least two classes); validate on (X_val, y_val) of the same form.

        With validation data the model of the best validation epoch is kept (the last
        one for a family that keeps the last). With `checkpoint_dir` a checkpoint is
        written after every epoch; ``resume=True`` continues from the one found there
        (same data and hyperparameters give the same final model as an uninterrupted
        run). A checkpoint records the hyperparameters, the seed and the shapes of the
        data it was written for, plus `checkpoint_settings` (a dict of JSON values);
        resuming from a checkpoint that records others raises ValueError. Returns self.
        """
        for name in ("net_", "history_", "fitted_params_"):
            self.__dict__.pop(name, None)  # a failed fit leaves no half-fitted model
        self._check_hyperparameters()
        X, y = check_X_y(X, y, dtype=np.float32, estimator=self, ensure_2d=False)
        X = self._check_input(X)
        self.classes_, y_idx = unique_labels(y, min_classes=2, estimator=self)
        shape = self._image_shape_of(X, self._params())
        self.fitted_params_ = self._resolve(X, shape)
        try:
            self._train(X, y_idx, X_val, y_val, shape, checkpoint_dir, resume, checkpoint_settings)
        except BaseException:
            self.__dict__.pop("fitted_params_", None)
            raise
        return self

    def _train(self, X, y_idx, X_val, y_val, shape, checkpoint_dir, resume, extra) -> None:
        """Check the resolved hyperparameters, build the network and train it: `fit`
        once ``classes_`` and ``fitted_params_`` are set."""
        from chainrule.train.solver import Solver

        p = self._params()
        check_options(p)
        self._check_architecture(p)
        self.image_shape_ = shape
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        X = self._network_input(X)
        if y_val is not None:
            y_val = self._encode(check_labels(y_val, name="y_val"), "y_val")
        if X_val is not None:
            X_val = self._network_input(self._check_input(X_val, "X_val", np.float32), "X_val")
        augment = self._augmentation(p)
        self._eval_views(p)  # flips without an image shape are refused before training
        rng = as_generator(p["random_state"])
        net = self._build_network(self._network_shape(), len(self.classes_), rng)
        self._initialise(net, X)
        optimizer = self._optimizer(net, p, len(X))
        solver = Solver(
            net, optimizer, self._make_loss(net, p), X, y_idx, X_val, y_val,
            batch_size=p["batch_size"], epochs=p["epochs"], lr_schedule=schedule_factory(p),
            schedule_per=p["schedule_per"], augment=augment,
            early_stopping_patience=p["early_stopping_patience"],
            restore_best=self._restore_best, checkpoint_dir=checkpoint_dir,
            settings=self._run_settings(X, X_val, extra), random_state=rng,
            verbose=p["verbose"], progress=self._progress,
        )  # fmt: skip
        with one_blas_thread() if self._one_blas_thread else blas_threads_for(X.size):
            solver.train(resume=resume)
        self.net_ = net
        self.history_ = dict(solver.history)
        self.history_["best_epoch"] = solver.best_epoch
        self.history_["best_val_acc"] = solver.best_val_acc if solver.X_val is not None else None

    def _network_shape(self) -> tuple:
        """The shape of one sample as the network reads it."""
        if self._reads == "rows":
            return (self.n_features_in_,)
        return self.image_shape_

    @property
    def input_shape_(self) -> tuple:
        """The shape of one sample as ``net_`` reads it: ``(D,)`` for a network that reads
        rows, ``(H, W, C)`` for one that reads images (inputs of the other form are
        viewed so, without a copy)."""
        check_is_fitted(self, "net_")
        return self._network_shape()

    def _make_loss(self, net, p: dict):
        """``loss_fn(scores, y)``: the family's data loss plus ``reg * sum(W**2)`` over
        the weights of ``_penalised(net)``."""
        reg = float(p["reg"])
        weights = self._penalised(net)
        data_loss = self._data_loss

        def loss_fn(scores, y):
            loss = data_loss(scores, y, p)
            if reg > 0:
                loss = loss + l2_penalty(weights, reg)
            return loss

        return loss_fn

    def _need_shape(self, why: str):
        if self.image_shape_ is None:
            raise ValueError(
                f"{why} needs images (N, H, W, C), or rows with image_shape=(H, W, C), the "
                "shape the rows were flattened from"
            )
        return self.image_shape_

    def _augmentation(self, p: dict):
        """Random crops (``aug_padding`` pixels) and flips of each training minibatch."""
        if not p["augment"]:
            return None
        from chainrule.data.augment import random_crop_flip, random_crop_flip_flat

        shape, pad = self._need_shape("augment=True"), int(p["aug_padding"])
        if self._reads == "images":
            return lambda X, rng: random_crop_flip(X, padding=pad, flip=True, rng=rng)
        return lambda X, rng: random_crop_flip_flat(X, shape, padding=pad, flip=True, rng=rng)

    def _flips(self, p: dict) -> bool:
        """Test-time flips: ``test_time_flip``, or when None, whether it trained on flips."""
        tta = p["test_time_flip"]
        return bool(p["augment"]) if tta is None else bool(tta)

    def _eval_views(self, p: dict):
        """The other views of each input whose probabilities prediction averages with
        its own: a function of the network inputs giving arrays of their shape (weight
        1) or (array, weight) pairs; None for none. Here the mirror image of each input
        (a list of one array), for test-time flips."""
        if not self._flips(p):
            return None
        h, w, c = self._need_shape("test_time_flip")
        if self._reads == "images":
            return lambda X: [np.ascontiguousarray(X[:, :, ::-1])]
        return lambda X: [X.reshape(-1, h, w, c)[:, :, ::-1].reshape(X.shape[0], -1)]

    def _run_settings(self, X, X_val, extra) -> dict:
        """What a checkpoint of this fit belongs to: the hyperparameters as trained (the
        seed included; not `verbose`), the data shapes and classes, the caller's dict."""

        def plain(v):
            try:
                json.dumps(v)
            except (TypeError, ValueError):
                return f"<{type(v).__name__}>"
            return v

        params = {k: plain(v) for k, v in self.fitted_params_.items() if k != "verbose"}
        return {
            "estimator": type(self).__name__,
            "params": params,
            "n_train": int(X.shape[0]),
            "n_val": None if X_val is None else int(np.shape(X_val)[0]),
            "input_shape": [int(s) for s in X.shape[1:]],
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
    def _inputs(self, X) -> np.ndarray:
        """Checked prediction inputs as the network reads them: float64 stays float64,
        anything else becomes float32."""
        check_is_fitted(self, "net_")
        X = self._check_input(X)
        X = X.astype(np.float64 if X.dtype == np.float64 else np.float32, copy=False)
        return self._network_input(X)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """Class scores (N, C) of network inputs, in eval mode: float32 values, in X's
        dtype.

        A sample's scores do not depend on the other samples of the batch or on where it
        sits in it, to the bit. float32 matrix products round each output by where its
        row falls in the BLAS kernel's tiles and in the threads' split of the batch (a
        row alone is even a matrix-vector product): about 1e-7 apart in one product,
        thousands of float32 ulps after a few layers (`tests/models/test_row_invariance.py`
        measures it). So the network runs on a float64 copy, whose results differ by
        position only around 1e-16, far below float32's rounding, and the scores are
        rounded to float32, the precision of the trained weights. That costs about twice
        a float32 pass; training and its validation scores stay in float32.
        """
        net = copy.deepcopy(self.net_).to(np.float64)
        net.eval()
        self.net_.eval()
        per_pass = max(1, min(_PREDICT_BATCH, _PREDICT_VALUES // max(1, X[:1].size)))
        out = []
        with no_grad(), blas_threads_for(X.size):
            for i in range(0, X.shape[0], per_pass):
                rows = X[i : i + per_pass].astype(np.float64, copy=False)
                out.append(net(Tensor(rows)).data.astype(np.float32))
        return np.concatenate(out, axis=0).astype(X.dtype, copy=False)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        """The softmax of X's scores, averaged with those of its `_eval_views` (weighted
        where a view says; X's own weigh 1)."""
        p = softmax(self._scores(X))
        views = self._eval_views(self._params())
        if views is not None:
            total = 1.0
            for view in views(X):
                V, weight = view if isinstance(view, tuple) else (view, 1.0)
                p += weight * softmax(self._scores(V))
                total += weight
            p /= total
        return p

    def decision_function(self, X) -> np.ndarray:
        """Class scores of X (rows or images): the network in eval mode on one view of
        each sample (no test-time flips). (N, C), columns in ``classes_``; with two
        classes, as scikit-learn's classifiers, (N,): the score of ``classes_[1]`` minus
        that of ``classes_[0]``. float32 (float64 for float64 input, of the same
        values); a sample gets the same scores whatever the other samples of X."""
        return decision_from_scores(self._scores(self._inputs(X)))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (N, C), column j for ``classes_[j]``: the softmax of the
        scores, averaged with that of the mirror images with test-time flips (and of
        the family's other views, `_eval_views`). float32, float64 for float64 input."""
        return self._proba(self._inputs(X))

    def predict(self, X) -> np.ndarray:
        """Labels (N,): the class of the highest score (the highest averaged
        probability with test-time flips or the family's other views)."""
        X = self._inputs(X)
        # Without other views, the argmax of the scores: the sign of the two-class
        # decision_function agrees with it exactly, which a softmax could blur.
        views = self._eval_views(self._params()) is not None
        best = (self._proba(X) if views else self._scores(X)).argmax(axis=1)
        return self.classes_[best]

    # ------------------------------------------------------------ model files
    def _state_dict(self) -> dict[str, np.ndarray]:
        """What a model file stores: the network's parameters and buffers (``net.*``),
        ``classes_``, ``n_features_in_`` and, for images, ``image_shape_``."""
        check_is_fitted(self, "net_")
        state = {f"net.{k}": v for k, v in self.net_.state_dict().items()}
        state["classes_"] = np.asarray(self.classes_)
        state["n_features_in_"] = np.array(self.n_features_in_, dtype=np.int64)
        if self.image_shape_ is not None:
            state["image_shape_"] = np.array(self.image_shape_, dtype=np.int64)
        return state

    def _load_state_dict(self, state) -> None:
        """Rebuild the fitted model from `_state_dict`'s arrays, with the network of the
        model's hyperparameters (those of the file: no ``"auto"`` left)."""
        for k in ("classes_", "n_features_in_"):
            if k not in state:
                raise ValueError(f"{type(self).__name__} state has no {k!r}")
        params = self.get_params(deep=False)
        auto = [k for k, v in params.items() if is_auto(v)]
        if auto:
            raise ValueError(f"the model's {auto[0]} is 'auto': a model file has its value")
        classes = check_labels(state["classes_"], name="classes_")
        n_features = int(np.asarray(state["n_features_in_"]))
        shape = state.get("image_shape_")
        if shape is not None:
            shape = image_shape(np.asarray(shape), n_features, name="image_shape_")
        elif params.get("image_shape") is not None:
            shape = image_shape(params["image_shape"], n_features)
        else:
            shape = self._rows_shape(n_features)
        self.fitted_params_ = params
        self.classes_, self.n_features_in_, self.image_shape_ = classes, n_features, shape
        net = self._build_network(self._network_shape(), len(classes), np.random.default_rng(0))
        net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        net.eval()
        self.net_ = net
