"""The specs of the fully connected networks (``twolayer``, ``mlp``; see ``models/spec.py``).

`recipe` is the one place of their defaults for a data size: ``chainrule train`` starts
from it, and ``TwoLayerNet()`` and ``FullyConnectedNet()`` take their ``"auto"`` values
from it in ``fit``.
"""

from __future__ import annotations

import math

from chainrule.models._options import is_auto
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
    network_members,
    round1,
)

__all__ = ["MLP_SPEC", "TWOLAYER_SPEC", "MLPSpec", "TwoLayerSpec", "recipe"]

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


def recipe(data, deep: bool = False) -> dict:
    """The training settings for ``data`` (a `DataSummary`): Adam (the estimators'
    default) with a larger step on small data sets, and enough epochs for about
    `MIN_UPDATES` updates within `MIN_EPOCHS`..`MAX_EPOCHS`. ``deep``: also the widths of
    the hidden layers of `FullyConnectedNet`, wider on large data."""
    small = data.n_samples < SMALL_DATA
    batch = 200 if small else 256
    per_epoch = max(1, -(-data.n_samples // batch))
    settings = {
        "learning_rate": 3e-3 if small else 1e-3,
        "epochs": min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_UPDATES / per_epoch))),
        "batch_size": batch,
    }
    if deep:
        settings["hidden_dims"] = (256, 256) if small else (1024, 1024)
    return settings


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
        """The `recipe` for the data, and the image shape of its rows, which random crops
        and flips (``--augment``) need."""
        return {**recipe(data), "image_shape": tuple(data.image_shape)}

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
        minibatch's activations do (SGD, one hidden layer of 512 to 4,096). ``"auto"``
        hyperparameters count as the `recipe` for the data."""
        own = recipe(data, deep=True)
        p = model._params()
        p.update({k: own[k] for k, v in p.items() if is_auto(v) and k in own})
        dims, _, _ = model._architecture(p)
        sizes = [data.n_features, *dims, data.n_classes]
        params = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
        largest = max(a * b for a, b in zip(sizes, sizes[1:]))
        slots = OPTIMIZER_SLOTS.get(str(p["optimizer"]).lower(), 2)
        batch = min(int(p["batch_size"]), data.n_samples)
        training = 4 * params * (2 + slots) + 4 * batch * sum(dims)
        initialising = 4 * params + 8 * largest
        return max(training, initialising)

    def stored(self, model):
        """The parameters of the network ``_build_network`` makes, by their names in its
        ``Sequential`` (Linear, [BatchNorm1d], ReLU, [Dropout] per hidden layer, then the
        output Linear), and what every network stores (`network_members`)."""
        dims, p, bn = model._architecture()
        members = network_members()
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
        """Those of the two-layer network, wider on large data sets (the estimator's own
        defaults add batch norm and dropout 0.1)."""
        return {**recipe(data, deep=True), "image_shape": tuple(data.image_shape)}


TWOLAYER_SPEC = TwoLayerSpec("twolayer")
MLP_SPEC = MLPSpec("mlp")
