"""Linear classifiers: the multiclass SVM and the softmax classifier.

Both score a sample ``x`` (D,) as ``s = x W + b`` with weights ``W`` (D, C) and biases
``b`` (C,), and minimise

    mean data loss over a minibatch  +  reg * sum(W ** 2)

(the biases are not regularized) by minibatch stochastic gradient descent, trained by
`chainrule.train.Solver` like the networks: the model is one `chainrule.nn.Linear`
layer, the data loss is the fused `svm_loss` or `cross_entropy` Function plus
`l2_penalty`, the update is `chainrule.optim.SGD` (a plain step against the gradient),
and the learning rate is multiplied by ``lr_decay`` after every epoch (an
`~chainrule.optim.ExponentialLR` schedule).

Inputs are already preprocessed feature rows, float (N, D), for example from
``chainrule.data.Preprocessor`` (pixels scaled to [0, 1], training mean subtracted,
flattened); a bias column from the preprocessor's bias trick is simply one more
(regularized) feature.

The defaults were tuned on the validation split of CIFAR-10 features of that kind
(D = 3072, 40,000 training images; see ``benchmarks/linear_cifar10.py``): 39.5% for the
SVM, 41.0% for softmax. A good learning rate scales roughly with ``1 / mean(||x||^2)``,
so features of a very different size need another one: for the bundled 8x8 digits
(D = 64) ``LinearSVM(learning_rate=1.0, reg=1e-4)`` and
``SoftmaxClassifier(learning_rate=10.0, reg=1e-3)``.
"""

from __future__ import annotations

import contextlib
import functools
import numbers

import numpy as np

from chainrule._random import as_generator
from chainrule.autograd.arraymath import softmax
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
from chainrule.nn.functional.losses import cross_entropy, l2_penalty, svm_loss

__all__ = ["LinearSVM", "SoftmaxClassifier"]

# What ``history_`` keeps of the Solver's history (and what model files store).
_HISTORY_KEYS = ("loss", "epoch_loss", "train_acc", "val_acc")
# Rows per matrix product when scoring many samples (bounds the temporary memory).
_SCORE_CHUNK = 8192


def _one_blas_thread():
    """Limit BLAS to one thread while training, when threadpoolctl is available.

    A minibatch product (200, D) @ (D, 10) is far too small to gain from threads: on a
    busy machine, waking a second BLAS thread for it made an epoch several times slower
    (0.35 s against 2.2 s for 40,000 x 3072 CIFAR-10 features on 2 shared cores).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _scores(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """X @ W + b in blocks of rows: (N, C) float32 for X (N, D) float32."""
    if len(X) <= _SCORE_CHUNK:
        return X @ W + b
    out = np.empty((len(X), W.shape[1]), dtype=np.float32)
    for start in range(0, len(X), _SCORE_CHUNK):
        np.matmul(X[start : start + _SCORE_CHUNK], W, out=out[start : start + _SCORE_CHUNK])
    out += b
    return out


class _LinearClassifier(ClassifierMixin, BaseEstimator):
    """Shared training and inference of `LinearSVM` and `SoftmaxClassifier`."""

    def _data_loss(self, scores, y):
        raise NotImplementedError

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        """The rates; `epochs` and `batch_size` are checked by the Solver."""
        name = type(self).__name__
        for attr, allow_zero in (("learning_rate", False), ("reg", True), ("lr_decay", False)):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
                raise ValueError(f"{name}: {attr} must be a finite number, got {v!r}")
            if v < 0 or (v == 0 and not allow_zero):
                bound = ">= 0" if allow_zero else "> 0"
                raise ValueError(f"{name}: {attr} must be {bound}, got {v!r}")

    # ------------------------------------------------------------------ objective
    def _build_layer(self, n_features: int, n_classes: int, rng):
        """The `nn.Linear` layer ``x @ W + b``: W (D, C) float32 from ``0.001 * N(0, 1)``
        (the course's small random weights, which break the symmetry between classes),
        b (C,) zeros."""
        from chainrule import nn

        return nn.Linear(n_features, n_classes, init="normal", weight_scale=0.001, random_state=rng)

    def _make_loss(self, weight):
        """``loss_fn(scores, y)``: mean data loss + ``reg * sum(W**2)`` with `weight` the
        Tensor W (D, C); the biases are not regularized. Returns a scalar Tensor."""
        data_loss = self._data_loss
        reg = float(self.reg)

        def loss_fn(scores, y):
            loss = data_loss(scores, y)
            if reg:
                loss = loss + l2_penalty([weight], reg)
            return loss

        return loss_fn

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, X_val=None, y_val=None):
        """Train by minibatch SGD on shuffled minibatches (`chainrule.train.Solver`).

        Parameters
        ----------
        X : (N, D) float array (converted to float32)
        y : (N,) class labels, integers (any values) or strings; at least two classes
        X_val, y_val : optional validation split, (M, D) and (M,); its accuracy is
            recorded after every epoch in ``history_["val_acc"]`` (the model of the last
            epoch is kept; a label not seen in `y` counts as a wrong prediction).

        Sets ``W_`` (D, C) float32, ``b_`` (C,) float32, ``classes_`` (C,) the sorted
        distinct labels (int64 or strings),
        ``n_features_in_``, ``loss_history_`` (the objective at every iteration, float32
        array) and ``history_`` (dict of lists: ``loss`` per iteration; ``epoch_loss``,
        ``train_acc`` and ``val_acc`` per epoch; train accuracy is measured on a fixed
        random subsample of `chainrule.train.TRAIN_ACC_SAMPLES` training rows,
        ``val_acc`` is empty without a validation split). Returns self.
        """
        from chainrule import optim
        from chainrule.train.solver import Solver

        self._check_params()
        X, y = check_X_y(X, y, dtype=np.float32, estimator=self)
        classes, y_index = unique_labels(y, min_classes=2, estimator=self)
        if y_val is not None:
            # A label unseen in y gets -1, which matches no prediction.
            y_val = label_indices(classes, check_labels(y_val, name="y_val"))
        rng = as_generator(self.random_state)
        layer = self._build_layer(X.shape[1], len(classes), rng)
        solver = Solver(
            layer,
            optim.SGD(layer.parameters(), lr=float(self.learning_rate)),
            self._make_loss(layer.weight),
            X,
            y_index,
            X_val,
            y_val,
            batch_size=self.batch_size,
            epochs=self.epochs,
            # The rate is multiplied by lr_decay after every epoch.
            lr_schedule=functools.partial(optim.make_schedule, "exponential", gamma=self.lr_decay),
            schedule_per="epoch",
            restore_best=False,
            random_state=rng,
            verbose=self.verbose,
            progress="run",
        )
        with _one_blas_thread():
            solver.train()
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.W_ = layer.weight.data
        self.b_ = layer.bias.data
        self.loss_history_ = np.asarray(solver.history["loss"], dtype=np.float32)
        self.history_ = {k: list(solver.history[k]) for k in _HISTORY_KEYS}
        return self

    # ------------------------------------------------------------------ inference
    def _class_scores(self, X) -> np.ndarray:
        """Class scores ``X @ W_ + b_``: (N, C) float32 for X (N, D)."""
        check_is_fitted(self, "W_")
        X = check_X(X, dtype=np.float32, n_features=self.n_features_in_, estimator=self)
        return _scores(
            X, self.W_.astype(np.float32, copy=False), self.b_.astype(np.float32, copy=False)
        )

    def decision_function(self, X) -> np.ndarray:
        """Class scores ``X @ W_ + b_`` for X (N, D): (N, C) float32, columns in
        ``classes_``; with two classes, as scikit-learn's classifiers, (N,) float32: the
        score of ``classes_[1]`` minus that of ``classes_[0]`` (> 0 predicts
        ``classes_[1]``)."""
        return decision_from_scores(self._class_scores(X))

    def predict(self, X) -> np.ndarray:
        """Labels (N,) from ``classes_`` with the highest score, for X (N, D)."""
        scores = self._class_scores(X)  # checks first that the model is fitted
        return self.classes_[scores.argmax(axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the class scores: (N, C) float32, rows sum to 1, columns in ``classes_``."""
        return softmax(self._class_scores(X))

    # ------------------------------------------------------------------ model files
    def _state_dict(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "W_")
        h = getattr(self, "history_", {})
        return {
            "W_": np.asarray(self.W_, dtype=np.float32),
            "b_": np.asarray(self.b_, dtype=np.float32),
            "classes_": np.asarray(self.classes_),
            "loss_history_": np.asarray(getattr(self, "loss_history_", []), dtype=np.float32),
            "epoch_loss": np.asarray(h.get("epoch_loss", []), dtype=np.float64),
            "train_acc": np.asarray(h.get("train_acc", []), dtype=np.float64),
            "val_acc": np.asarray(h.get("val_acc", []), dtype=np.float64),
        }

    def _load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        name = type(self).__name__
        missing = [k for k in ("W_", "b_", "classes_") if k not in state]
        if missing:
            raise ValueError(f"{name} state is missing {', '.join(missing)}")
        W = np.asarray(state["W_"], dtype=np.float32)
        b = np.asarray(state["b_"], dtype=np.float32)
        classes = check_labels(state["classes_"], name="classes_")
        if W.ndim != 2 or b.shape != (W.shape[1],) or classes.shape != (W.shape[1],):
            raise ValueError(
                f"{name} state has inconsistent shapes: W_ {W.shape}, b_ {b.shape}, "
                f"classes_ {classes.shape}"
            )
        self.W_ = W.copy()
        self.b_ = b.copy()
        self.classes_ = classes.copy()
        self.n_features_in_ = W.shape[0]
        self.loss_history_ = np.asarray(state.get("loss_history_", []), dtype=np.float32)
        self.history_ = {
            "loss": self.loss_history_.tolist(),
            "epoch_loss": [float(v) for v in state.get("epoch_loss", [])],
            "train_acc": [float(v) for v in state.get("train_acc", [])],
            "val_acc": [float(v) for v in state.get("val_acc", [])],
        }


class LinearSVM(_LinearClassifier):
    """Multiclass linear SVM (hinge loss with margin 1) trained by minibatch SGD.

    Parameters
    ----------
    learning_rate : float > 0
        SGD step size.
    reg : float >= 0
        L2 regularization strength: ``reg * sum(W ** 2)`` is added to the mean hinge loss.
    epochs : int
        Passes over the training data.
    batch_size : int
        Samples per minibatch (capped at N); the last, smaller minibatch of an epoch is
        dropped when it holds fewer than half a batch.
    lr_decay : float > 0
        Factor applied to the learning rate after every epoch (1.0: constant).
    random_state : None, int or numpy.random.Generator
        Seeds the initial weights and the shuffling: the same seed gives the same model.
    verbose : int or bool, default 0
        Nonzero: show a progress bar (tqdm) with the loss and accuracies when writing to
        a terminal (the command line does); 0 never shows it.

    Attributes (after ``fit``)
    --------------------------
    W_ : (D, C) float32; b_ : (C,) float32; classes_ : (C,) labels, int64 or strings
    loss_history_ : (iterations,) float32, the objective at every minibatch
    history_ : dict with ``loss``, ``epoch_loss``, ``train_acc``, ``val_acc``

    ``predict_proba`` is the softmax of the SVM's scores: a monotone map of the scores
    that sums to 1, not a calibrated probability (the hinge loss does not estimate
    probabilities). ``decision_function`` gives the raw scores.
    """

    def __init__(
        self,
        learning_rate: float = 3e-2,
        reg: float = 1e-2,
        epochs: int = 20,
        batch_size: int = 200,
        lr_decay: float = 0.9,
        random_state=None,
        verbose: int = 0,
    ):
        self.learning_rate = learning_rate
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_decay = lr_decay
        self.random_state = random_state
        self.verbose = verbose

    def _data_loss(self, scores, y):
        return svm_loss(scores, y)


class SoftmaxClassifier(_LinearClassifier):
    """Softmax (multinomial logistic regression) classifier trained by minibatch SGD.

    Parameters and attributes as in `LinearSVM`; the data loss is the softmax
    cross-entropy, and ``predict_proba`` gives the model's class probabilities.
    """

    def __init__(
        self,
        learning_rate: float = 3e-1,
        reg: float = 1e-4,
        epochs: int = 20,
        batch_size: int = 200,
        lr_decay: float = 0.9,
        random_state=None,
        verbose: int = 0,
    ):
        self.learning_rate = learning_rate
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_decay = lr_decay
        self.random_state = random_state
        self.verbose = verbose

    def _data_loss(self, scores, y):
        return cross_entropy(scores, y)
