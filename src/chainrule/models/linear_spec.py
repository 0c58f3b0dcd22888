"""The specs of the linear classifiers (``svm``, ``softmax``; see ``models/spec.py``).

`recipe` is the one place of their defaults for a data set: ``chainrule train`` starts
from it, and ``LinearSVM()`` and ``SoftmaxClassifier()`` take their ``"auto"`` learning
rate and epochs from it in ``fit``.
"""

from __future__ import annotations

import math

from chainrule.models.spec import (
    BATCH_SIZE,
    EPOCHS,
    LEARNING_RATE,
    REG,
    SCHEDULE,
    FitSummary,
    Member,
    ModelSpec,
    Plot,
    network_members,
    round1,
)

__all__ = ["SOFTMAX_SPEC", "SVM_SPEC", "LinearSpec", "recipe"]

# Mean squared norm of a CIFAR-10 row after the course preprocessing (pixels in [0, 1],
# channel means subtracted, 3,072 values), the data the linear classifiers' default
# learning rates were tuned on. Other data scale the step by this over their own norm.
REFERENCE_SQ_NORM = 225.0
# The learning rates tuned on those rows (benchmarks/linear_cifar10.py), per data loss.
TUNED_RATE = {"svm": 3e-2, "softmax": 3e-1}
# At least this many epochs; more for about MIN_UPDATES updates on a small data set, but
# at most MAX_EPOCHS.
MIN_EPOCHS = 20
MIN_UPDATES = 300
MAX_EPOCHS = 50


def recipe(data, loss: str, batch_size: int = 200) -> dict:
    """The learning rate and epochs for ``data`` (a `DataSummary`) and the data loss
    ``"svm"`` or ``"softmax"``: the rate tuned on CIFAR-10 scaled inversely with the mean
    squared norm of a row (the step that keeps SGD stable shrinks as rows grow), and
    enough epochs for a few hundred updates of ``batch_size`` rows."""
    per_epoch = max(1, -(-data.n_samples // batch_size))
    scale = REFERENCE_SQ_NORM / max(data.mean_sq_norm, 1e-12)
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_UPDATES / per_epoch)))
    return {"learning_rate": round1(TUNED_RATE[loss] * scale), "epochs": epochs}


class LinearSpec(ModelSpec):
    options = (LEARNING_RATE, REG, EPOCHS, BATCH_SIZE, SCHEDULE)
    shown = ("learning_rate", "reg", "epochs")
    searched = ("learning_rate", "reg")
    fit_validation = True
    # fit's validation split only records accuracies in history_; the search's model is
    # the one a second fit would give
    reuse_search_fit = True

    def defaults(self, data):
        """The `recipe` for the data and the estimator's batch size."""
        return recipe(data, self.name, int(self.estimator_defaults()["batch_size"]))

    def grid(self, params):
        """3 x 3 around the step and the regularization strength."""
        lr = params["learning_rate"]
        reg = params["reg"] if params["reg"] > 0 else 1e-3
        return {
            "learning_rate": [round1(lr * f) for f in (0.3, 1.0, 3.0)],
            "reg": [round1(reg * f) for f in (0.1, 1.0, 10.0)],
        }

    def check(self, model):
        model._check_hyperparameters()

    def stored(self, model):
        """The weights (D, C) and biases (C,) of the layer, and what every network
        stores (`network_members`)."""
        return {
            "net.weight": Member(("D", "C")),
            "net.bias": Member(("C",)),
            **network_members(),
        }

    def plots(self, model, fitted: FitSummary):
        """The weights as one template image per class."""
        return [
            Plot(
                "plot_weight_templates",
                "weights.png",
                (model.W_, fitted.image_shape, fitted.classes),
            )
        ]


SVM_SPEC = LinearSpec("svm")
SOFTMAX_SPEC = LinearSpec("softmax")
