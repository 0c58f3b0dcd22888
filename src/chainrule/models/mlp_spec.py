"""The specs of the fully connected networks (``twolayer``, ``mlp``; see ``models/spec.py``)."""

from __future__ import annotations

import math

from chainrule.models.spec import (
    AUGMENT,
    BATCH_SIZE,
    BATCHNORM,
    DROPOUT,
    EPOCHS,
    LABEL_SMOOTHING,
    LEARNING_RATE,
    OPTIMIZER,
    REG,
    SCHEDULE,
    WEIGHT_DECAY,
    FitSummary,
    Member,
    ModelSpec,
    Option,
    Plot,
    layer_sizes,
    round1,
)

__all__ = ["MLP_SPEC", "TWOLAYER_SPEC", "MLPSpec", "TwoLayerSpec"]

# Below this many training images a data set counts as small: fewer updates per epoch,
# so a larger step and more epochs; a narrower network without the need for width.
SMALL_DATA = 20000
# Arrays an optimizer keeps per parameter (Adam: two moments); an unknown name counts two.
OPTIMIZER_SLOTS = {
    "sgd": 0, "momentum": 1, "nesterov": 1, "rmsprop": 1, "adam": 2, "adamw": 2, "muon": 1,
}  # fmt: skip
# Epochs for about this many updates, within these bounds.
MIN_UPDATES = 600
MIN_EPOCHS, MAX_EPOCHS = 10, 30


def one_layer_size(text) -> int:
    """``"100"`` -> 100: the hidden layer size of the two-layer network."""
    sizes = layer_sizes(text)
    if len(sizes) != 1:
        raise ValueError(f"twolayer has one hidden layer; {text} lists more")
    return sizes[0]


TRAINING = (
    LEARNING_RATE, REG, EPOCHS, BATCH_SIZE, DROPOUT, OPTIMIZER, SCHEDULE, AUGMENT,
    LABEL_SMOOTHING, WEIGHT_DECAY,
)  # fmt: skip


class TwoLayerSpec(ModelSpec):
    options = (
        Option("--hidden", "hidden_size", "hidden layer size, e.g. 100", one_layer_size),
        *TRAINING,
    )
    shown = ("hidden_size", "learning_rate", "reg", "epochs")
    searched = ("learning_rate", "reg")
    fit_validation = True
    checkpoints = True

    def defaults(self, data):
        """Adam with a larger step and more epochs on small data sets (few updates per
        epoch); the image shape, which random crops and flips (``--augment``) need."""
        small = data.n_samples < SMALL_DATA
        batch = 200 if small else 256
        per_epoch = max(1, -(-data.n_samples // batch))
        return {
            "learning_rate": 3e-3 if small else 1e-3,
            "epochs": min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_UPDATES / per_epoch))),
            "batch_size": batch,
            "image_shape": tuple(data.image_shape),
        }

    def grid(self, params):
        lr = params.get("learning_rate", 1e-3)
        return {"learning_rate": [round1(lr * f) for f in (0.3, 1.0, 3.0)], "reg": [1e-5, 1e-3]}

    def check(self, model):
        model._check_hyperparameters()

    def memory(self, model, data):
        """A lower bound on the bytes training takes: what must exist together at an
        optimizer step, float32 weights and gradients plus the optimizer's arrays per
        parameter, and a minibatch's hidden activations; before that, the largest weight
        matrix drawn in float64 beside the float32 weights. Measured with tracemalloc on
        400 rows of 64 features, fitting takes 1.2 times this bound where the weights
        dominate (Adam, hidden sizes 1,024 to 3,000) and up to 2.3 times where a
        minibatch's activations do (SGD, one hidden layer of 512 to 4,096)."""
        dims, _, _ = model._architecture()
        sizes = [data.n_features, *dims, data.n_classes]
        params = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
        largest = max(a * b for a, b in zip(sizes, sizes[1:]))
        slots = OPTIMIZER_SLOTS.get(str(model.optimizer).lower(), 2)
        batch = min(int(model.batch_size), data.n_samples)
        training = 4 * params * (2 + slots) + 4 * batch * sum(dims)
        initialising = 4 * params + 8 * largest
        return max(training, initialising)

    def stored(self, model):
        """The parameters of the network ``_build_network`` makes, by their names in its
        ``Sequential`` (Linear, [BatchNorm1d], ReLU, [Dropout] per hidden layer, then the
        output Linear), the labels and the feature count."""
        dims, p, bn = model._architecture()
        members = {"classes_": Member(("C",), "iuU"), "n_features_in_": Member((), "iu", value="D")}
        index, d_in = 0, "D"
        for d in dims:
            members[f"net.{index}.weight"] = Member((d_in, d))
            if not bn:  # the bias before batch norm would be cancelled by it
                members[f"net.{index}.bias"] = Member((d,))
            index += 1
            if bn:
                for key in ("weight", "bias", "running_mean", "running_var"):
                    members[f"net.{index}.{key}"] = Member((d,))
                index += 1
            index += 2 if p > 0 else 1  # ReLU and Dropout hold nothing
            d_in = d
        members[f"net.{index}.weight"] = Member((d_in, "C"))
        members[f"net.{index}.bias"] = Member(("C",))
        return members

    def plots(self, model, fitted: FitSummary):
        """The first layer's weights as one image per hidden unit."""
        from chainrule import nn

        first = next(m for m in model.net_.modules() if isinstance(m, nn.Linear))
        return [
            Plot(
                "plot_first_layer_weights",
                "first_layer.png",
                (first.weight.data, fitted.image_shape),
            )
        ]


class MLPSpec(TwoLayerSpec):
    options = (
        Option("--hidden", "hidden_dims", "hidden layer sizes, e.g. 1024,1024", layer_sizes),
        *TRAINING,
        BATCHNORM,
    )
    shown = ("hidden_dims", "dropout", "batchnorm", "learning_rate", "epochs")
    compared_by_default = False

    def defaults(self, data):
        """Those of the two-layer network, wider on large data sets, with batch norm and
        dropout."""
        small = data.n_samples < SMALL_DATA
        return {
            **super().defaults(data),
            "hidden_dims": (256, 256) if small else (1024, 1024),
            "batchnorm": True,
            "dropout": 0.1,
        }


TWOLAYER_SPEC = TwoLayerSpec("twolayer")
MLP_SPEC = MLPSpec("mlp")
