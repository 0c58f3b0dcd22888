"""Linear classifiers: the multiclass SVM and the softmax classifier.

Both score a sample ``x`` (D,) as ``s = x W + b`` with weights ``W`` (D, C) and biases
``b`` (C,), and minimise

    mean data loss over a minibatch  +  reg * sum(W ** 2)

(the biases are not regularized) by minibatch stochastic gradient descent. They are
estimators on `chainrule.models.NetworkClassifier` like the networks: the network is one
`chainrule.nn.Linear` layer, the data loss the fused `svm_loss` or `cross_entropy`
Function plus `l2_penalty`, the update plain SGD (a step against the gradient), and the
learning rate follows ``lr_schedule`` stepped after every epoch (by default
``"exponential"``: down to 1% of it by the end of the run).

Inputs are already preprocessed feature rows, float (N, D), for example from
``chainrule.data.Preprocessor`` (pixels scaled to [0, 1], training mean subtracted,
flattened); a bias column from the preprocessor's bias trick is simply one more
(regularized) feature.

The learning rate a run can take scales roughly with ``1 / mean(||x||^2)``, so its
default (``"auto"``) is chosen from the training rows: the rate tuned on CIFAR-10
features of the kind above (D = 3072, 40,000 training images; see
``benchmarks/linear_cifar10.py``) scaled by their mean squared norm over that of the
rows at hand, with enough epochs for a few hundred updates (``models/linear_spec.py``,
the recipe the command line uses too).
"""

from __future__ import annotations

import numpy as np

from chainrule.models._base import check_is_fitted
from chainrule.models._network import NetworkClassifier
from chainrule.models._options import AUTO
from chainrule.nn.functional.losses import cross_entropy, svm_loss

__all__ = ["LinearSVM", "SoftmaxClassifier"]


class _LinearClassifier(NetworkClassifier):
    """Shared training and inference of `LinearSVM` and `SoftmaxClassifier`."""

    _auto = NetworkClassifier._auto | {"learning_rate", "epochs"}
    # plain SGD, one schedule step per epoch; the model of the last epoch is kept
    _fixed = {"optimizer": "sgd", "schedule_per": "epoch"}
    _restore_best = False
    _progress = "run"
    _one_blas_thread = True
    _loss = "softmax"  # or "svm"

    def _recipe(self, data) -> dict:
        from chainrule.models.linear_spec import recipe

        return recipe(data, self._loss, self._params()["batch_size"])

    def _data_loss(self, scores, y, p):
        return svm_loss(scores, y) if self._loss == "svm" else cross_entropy(scores, y)

    def _build_network(self, input_shape, n_classes, rng, dtype=np.float32):
        """The `nn.Linear` layer ``x @ W + b``: W (D, C) from ``0.001 * N(0, 1)`` (the
        course's small random weights, which break the symmetry between classes), b (C,)
        zeros."""
        from chainrule import nn

        (d,) = input_shape
        return nn.Linear(
            d, n_classes, init="normal", weight_scale=0.001, random_state=rng, dtype=dtype
        )

    @property
    def W_(self) -> np.ndarray:
        """The weights (D, C), float32: the layer's own array (setting W_ sets them)."""
        check_is_fitted(self, "net_")
        return self.net_.weight.data

    @W_.setter
    def W_(self, value) -> None:
        self._set(self.net_.weight, value, "W_")

    @property
    def b_(self) -> np.ndarray:
        """The biases (C,), float32: the layer's own array (setting b_ sets them)."""
        check_is_fitted(self, "net_")
        return self.net_.bias.data

    @b_.setter
    def b_(self, value) -> None:
        self._set(self.net_.bias, value, "b_")

    def _set(self, param, value, name: str) -> None:
        check_is_fitted(self, "net_")
        value = np.asarray(value, dtype=param.data.dtype)
        if value.shape != param.data.shape:
            raise ValueError(f"{name} must have shape {param.data.shape}, got {value.shape}")
        param.data[...] = value

    @property
    def loss_history_(self) -> np.ndarray:
        """The objective at every minibatch of the last fit, float32 (iterations,)."""
        check_is_fitted(self, "history_")
        return np.asarray(self.history_["loss"], dtype=np.float32)


_PARAMETERS = """
    Parameters
    ----------
    learning_rate : float > 0, or "auto"
        SGD step size; "auto": chosen from the training rows (see the module doc).
    reg : float >= 0
        L2 regularization strength: ``reg * sum(W ** 2)`` is added to the mean {loss}.
    epochs : int, or "auto"
        Passes over the training data; "auto": at least 20, enough for about 300
        updates, at most 50.
    batch_size : int
        Samples per minibatch (capped at N); the last, smaller minibatch of an epoch is
        dropped when it holds fewer than half a batch.
    lr_schedule : None, "constant", "exponential", "step", "cosine", "warmup" or "onecycle"
        How the learning rate changes, stepped after every epoch and sized for the whole
        run (`chainrule.optim.make_schedule`); "exponential" decays it to 1% of its
        starting value by the end.
    random_state : None, int or numpy.random.Generator
        Seeds the initial weights and the shuffling: the same seed gives the same model.
    verbose : int or bool, default 0
        Nonzero: show a progress bar (tqdm) with the loss and accuracies when writing to
        a terminal (the command line does); 0 never shows it.

    Attributes (after ``fit``)
    --------------------------
    W_ : (D, C) float32; b_ : (C,) float32; classes_ : (C,) labels, int64 or strings;
    loss_history_ : (iterations,) float32, the objective at every minibatch; history_,
    net_ (the `nn.Linear`), fitted_params_: see `chainrule.models.NetworkClassifier`.
"""


class LinearSVM(_LinearClassifier):
    __doc__ = (
        """Multiclass linear SVM (hinge loss with margin 1) trained by minibatch SGD.
    """
        + _PARAMETERS.format(loss="hinge loss")
        + """
    ``predict_proba`` is the softmax of the SVM's scores: a monotone map of the scores
    that sums to 1, not a calibrated probability (the hinge loss does not estimate
    probabilities). ``decision_function`` gives the raw scores.
    """
    )

    def __init__(
        self,
        learning_rate=AUTO,
        reg=1e-2,
        epochs=AUTO,
        batch_size=200,
        lr_schedule="exponential",
        random_state=None,
        verbose=0,
    ):
        self.learning_rate = learning_rate
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_schedule = lr_schedule
        self.random_state = random_state
        self.verbose = verbose

    _loss = "svm"


class SoftmaxClassifier(_LinearClassifier):
    __doc__ = (
        """Softmax (multinomial logistic regression) classifier trained by minibatch SGD.
    """
        + _PARAMETERS.format(loss="cross-entropy")
        + """
    ``predict_proba`` gives the model's class probabilities.
    """
    )

    def __init__(
        self,
        learning_rate=AUTO,
        reg=1e-4,
        epochs=AUTO,
        batch_size=200,
        lr_schedule="exponential",
        random_state=None,
        verbose=0,
    ):
        self.learning_rate = learning_rate
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_schedule = lr_schedule
        self.random_state = random_state
        self.verbose = verbose
