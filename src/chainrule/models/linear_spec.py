"""The specs of the linear classifiers (``svm``, ``softmax``; see ``models/spec.py``)."""

from __future__ import annotations

import math

from chainrule.models.spec import (
    BATCH_SIZE,
    EPOCHS,
    LEARNING_RATE,
    REG,
    FitSummary,
    Member,
    ModelSpec,
    Plot,
    round1,
)

__all__ = ["SOFTMAX_SPEC", "SVM_SPEC", "LinearSpec"]

# Mean squared norm of a CIFAR-10 row after the course preprocessing (pixels in [0, 1],
# channel means subtracted, 3,072 values), the data the linear classifiers' default
# learning rates were tuned on. Other data scale the step by this over their own norm.
REFERENCE_SQ_NORM = 225.0
# Enough epochs for about this many updates on a small data set, and at most this many.
MIN_UPDATES = 300
MAX_EPOCHS = 50


class LinearSpec(ModelSpec):
    options = (LEARNING_RATE, REG, EPOCHS, BATCH_SIZE)
    shown = ("learning_rate", "reg", "epochs")
    searched = ("learning_rate", "reg")
    fit_validation = True
    # fit's validation split only records accuracies in history_; the search's model is
    # the one a second fit would give
    reuse_search_fit = True

    def defaults(self, data):
        """The estimator's defaults (tuned on CIFAR-10), the step scaled inversely with
        the mean squared norm of a row (the step that keeps SGD stable shrinks as rows
        grow), and enough epochs for a few hundred updates on a small data set."""
        own = self.estimator_defaults()
        batch = int(own.get("batch_size", 200))
        per_epoch = max(1, -(-data.n_samples // batch))
        scale = REFERENCE_SQ_NORM / max(data.mean_sq_norm, 1e-12)
        epochs = min(MAX_EPOCHS, max(int(own["epochs"]), math.ceil(MIN_UPDATES / per_epoch)))
        return {"learning_rate": round1(float(own["learning_rate"]) * scale), "epochs": epochs}

    def grid(self, params):
        """3 x 3 around the step and the regularization strength."""
        lr = params["learning_rate"]
        reg = params["reg"] if params["reg"] > 0 else 1e-3
        return {
            "learning_rate": [round1(lr * f) for f in (0.3, 1.0, 3.0)],
            "reg": [round1(reg * f) for f in (0.1, 1.0, 10.0)],
        }

    def check(self, model):
        model._check_params()

    def stored(self, model):
        """Weights (D, C) and biases (C,) float32, labels (C,), the loss histories."""
        return {
            "W_": Member(("D", "C")),
            "b_": Member(("C",)),
            "classes_": Member(("C",), "iuU"),
            "loss_history_": Member((None,), finite=False),
            "epoch_loss": Member((None,), finite=False),
            "train_acc": Member((None,), finite=False),
            "val_acc": Member((None,), finite=False),
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
