"""Linear classifiers: the multiclass SVM and the softmax classifier.

Both score a sample ``x`` (D,) as ``s = x W + b`` with weights ``W`` (D, C) and biases
``b`` (C,), and minimise

    mean data loss over a minibatch  +  reg * sum(W ** 2)

(the biases are not regularized) by minibatch stochastic gradient descent through the
autograd engine: the data loss is the fused `svm_loss` or `cross_entropy` Function,
``loss.backward()`` fills ``W.grad`` and ``b.grad``, and the update is a plain step
against the gradient.

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
import numbers

import numpy as np

from chainrule.autograd.arraymath import softmax
from chainrule.autograd.engine import Tensor, no_grad
from chainrule.models._base import (
    BaseEstimator,
    ClassifierMixin,
    check_is_fitted,
    check_labels,
    check_random_state,
    check_X,
    check_X_y,
)
from chainrule.nn.functional.losses import cross_entropy, svm_loss

__all__ = ["LinearSVM", "SoftmaxClassifier"]

# Training accuracy per epoch is measured on at most this many training samples, so
# that the check costs a fraction of an epoch on large data sets.
_TRAIN_ACC_SAMPLES = 10_000
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


def _accuracy(X, y_index, W, b) -> float:
    return float(np.mean(_scores(X, W, b).argmax(axis=1) == y_index))


class _LinearClassifier(ClassifierMixin, BaseEstimator):
    """Shared training and inference of `LinearSVM` and `SoftmaxClassifier`."""

    def _data_loss(self, scores, y):
        raise NotImplementedError

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        name = type(self).__name__

        def positive_number(attr, allow_zero=False):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
                raise ValueError(f"{name}: {attr} must be a finite number, got {v!r}")
            if v < 0 or (v == 0 and not allow_zero):
                bound = ">= 0" if allow_zero else "> 0"
                raise ValueError(f"{name}: {attr} must be {bound}, got {v!r}")

        def positive_int(attr):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name}: {attr} must be a positive integer, got {v!r}")

        positive_number("learning_rate")
        positive_number("reg", allow_zero=True)
        positive_number("lr_decay")
        positive_int("epochs")
        positive_int("batch_size")

    # ------------------------------------------------------------------ objective
    def _objective(self, W: Tensor, b: Tensor, X, y_index) -> Tensor:
        """mean data loss of ``X @ W + b`` against class indices + reg * sum(W**2).

        X: (N, D) float array, y_index: (N,) int in [0, C). Returns a scalar Tensor.
        """
        loss = self._data_loss(X @ W + b, y_index)
        if self.reg:
            loss = loss + (W * W).sum() * float(self.reg)
        return loss

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, X_val=None, y_val=None):
        """Train by minibatch SGD on shuffled minibatches.

        Parameters
        ----------
        X : (N, D) float array (converted to float32)
        y : (N,) int labels (any integer values; at least two distinct classes)
        X_val, y_val : optional validation split, (M, D) and (M,); its accuracy is
            recorded after every epoch in ``history_["val_acc"]``.

        Sets ``W_`` (D, C) float32, ``b_`` (C,) float32, ``classes_`` (C,) int64 sorted,
        ``n_features_in_``, ``loss_history_`` (the objective at every iteration, float32
        array) and ``history_`` (dict of lists: ``loss`` per iteration; ``epoch_loss``,
        ``train_acc`` and ``val_acc`` per epoch; train accuracy is measured on up to
        10,000 training samples, ``val_acc`` is empty without a validation split).
        Returns self.
        """
        self._check_params()
        X, y = check_X_y(X, y, dtype=np.float32)
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes in y, got only {classes.tolist()}"
            )
        if (X_val is None) != (y_val is None):
            raise ValueError("pass both X_val and y_val, or neither")
        if X_val is not None:
            X_val = check_X(
                X_val, name="X_val", dtype=np.float32, n_features=X.shape[1], estimator=self
            )
            y_val = check_labels(y_val, name="y_val")
            if len(y_val) != len(X_val):
                raise ValueError(
                    f"X_val has {len(X_val)} samples but y_val has {len(y_val)} labels"
                )

        n, d = X.shape
        c = len(classes)
        rng = check_random_state(self.random_state)
        # Small random weights (the course's 0.001 * randn) break the symmetry between
        # classes; zero biases.
        W = Tensor((0.001 * rng.standard_normal((d, c))).astype(np.float32), requires_grad=True)
        b = Tensor(np.zeros(c, dtype=np.float32), requires_grad=True)
        batch = min(int(self.batch_size), n)
        per_epoch = -(-n // batch)
        epochs = int(self.epochs)
        lr = float(self.learning_rate)
        train_idx = (
            rng.choice(n, _TRAIN_ACC_SAMPLES, replace=False) if n > _TRAIN_ACC_SAMPLES else None
        )
        train_acc_X = X if train_idx is None else X[train_idx]
        train_acc_y = y_index if train_idx is None else y_index[train_idx]
        if X_val is not None:
            # Validation labels as indices into classes; a class unseen in training can
            # never be predicted, so it gets an index that matches no prediction.
            pos = np.searchsorted(classes, y_val).clip(0, c - 1)
            y_val_index = np.where(classes[pos] == y_val, pos, -1)

        losses = np.empty(per_epoch * epochs, dtype=np.float32)
        history = {"loss": [], "epoch_loss": [], "train_acc": [], "val_acc": []}

        from tqdm.auto import tqdm

        bar = tqdm(
            total=per_epoch * epochs,
            desc=type(self).__name__,
            unit="it",
            # verbose=True shows the bar on a terminal only (tqdm's disable=None).
            disable=None if self.verbose else True,
            leave=False,
        )
        it = 0
        # Overflow is reported below as divergence, with advice, not as NumPy warnings.
        with bar, _one_blas_thread(), np.errstate(over="ignore", invalid="ignore"):
            for _epoch in range(epochs):
                order = rng.permutation(n)
                for start in range(0, n, batch):
                    idx = order[start : start + batch]
                    loss = self._objective(W, b, X[idx], y_index[idx])
                    loss.backward()
                    with no_grad():
                        W.data -= lr * W.grad
                        b.data -= lr * b.grad
                    W.grad = None
                    b.grad = None
                    value = losses[it] = loss.item()
                    if not (np.isfinite(value) and np.isfinite(W.data).all()):
                        raise ValueError(
                            f"{type(self).__name__}: training diverged at iteration {it + 1} "
                            f"(the loss or the weights became NaN or infinite); lower "
                            f"learning_rate (now {self.learning_rate!r})"
                        )
                    it += 1
                    bar.update(1)
                epoch_loss = float(losses[it - per_epoch : it].mean())
                history["epoch_loss"].append(epoch_loss)
                history["train_acc"].append(_accuracy(train_acc_X, train_acc_y, W.data, b.data))
                if X_val is not None:
                    history["val_acc"].append(_accuracy(X_val, y_val_index, W.data, b.data))
                bar.set_postfix(
                    loss=f"{epoch_loss:.4f}",
                    train=f"{history['train_acc'][-1]:.3f}",
                    **({"val": f"{history['val_acc'][-1]:.3f}"} if X_val is not None else {}),
                )
                lr *= float(self.lr_decay)
        self.classes_ = classes
        self.n_features_in_ = d
        self.W_ = W.data
        self.b_ = b.data
        history["loss"] = losses.tolist()
        self.loss_history_ = losses
        self.history_ = history
        return self

    # ------------------------------------------------------------------ inference
    def decision_function(self, X) -> np.ndarray:
        """Class scores ``X @ W_ + b_``: (N, C) float32 for X (N, D)."""
        check_is_fitted(self, "W_")
        X = check_X(X, dtype=np.float32, n_features=self.n_features_in_, estimator=self)
        return _scores(
            X, self.W_.astype(np.float32, copy=False), self.b_.astype(np.float32, copy=False)
        )

    def predict(self, X) -> np.ndarray:
        """Labels (N,) int64 from ``classes_`` with the highest score, for X (N, D)."""
        scores = self.decision_function(X)  # checks first that the model is fitted
        return self.classes_[scores.argmax(axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the class scores: (N, C) float32, rows sum to 1, columns in ``classes_``."""
        return softmax(self.decision_function(X))

    # ------------------------------------------------------------------ model files
    def _state_dict(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "W_")
        h = getattr(self, "history_", {})
        return {
            "W_": np.asarray(self.W_, dtype=np.float32),
            "b_": np.asarray(self.b_, dtype=np.float32),
            "classes_": np.asarray(self.classes_, dtype=np.int64),
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
        classes = np.asarray(state["classes_"], dtype=np.int64)
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
        Samples per minibatch (capped at N).
    lr_decay : float > 0
        Factor applied to the learning rate after every epoch (1.0: constant).
    random_state : None, int or numpy.random.Generator
        Seeds the initial weights and the shuffling: the same seed gives the same model.
    verbose : bool
        Show a progress bar (tqdm) with the loss and accuracies when writing to a
        terminal; False never shows it.

    Attributes (after ``fit``)
    --------------------------
    W_ : (D, C) float32; b_ : (C,) float32; classes_ : (C,) int64
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
        verbose: bool = True,
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
        verbose: bool = True,
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
