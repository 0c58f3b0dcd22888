"""The spec of the convolutional network (``cnn``; see ``models/spec.py``).

The model reads images (``input_layout = "images"``): the preprocessing keeps them as
images, (N, H, W, C), and the model file records their shape (the preprocessing's and
the model's ``image_shape_``), so ``chainrule eval`` and ``predict`` feed the network
what training fed it.

`LARGE_DATA` and `SMALL_DATA_RECIPE` are the one place of the ConvNet's recipes:
``chainrule train cnn`` starts from the one for the data's size (`recipe`), and
``ConvNet()`` takes every ``"auto"`` hyperparameter from it in ``fit``.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.models._options import is_auto
from chainrule.models.mlp_spec import OPTIMIZER_SLOTS, SMALL_DATA, TRAINING
from chainrule.models.spec import (
    FitSummary,
    Member,
    ModelSpec,
    Option,
    Plot,
    layer_sizes,
    network_members,
    round1,
)

__all__ = ["CNN_SPEC", "LARGE_DATA", "SMALL_DATA_RECIPE", "ConvNetSpec", "recipe"]

# The recipe for large data sets (CIFAR-10: 40,000 training images of 32x32x3): a
# whitening stem and three stages of two 3x3 convolutions, Nesterov SGD on a one-cycle
# schedule, weight decay of the convolution and Linear weights, label smoothing, random
# 2-pixel translations and flips, test-time flips (they follow `augment`), class scores
# scaled by 1/9. Chosen on the CIFAR-10 validation split; the runs that chose it are on
# the docs' numbers page (docs/numbers.md).
LARGE_DATA = {
    "channels": (32, 64, 128),
    "stem": "whiten",
    "optimizer": "nesterov",
    "learning_rate": 0.375,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_schedule": "onecycle",
    "label_smoothing": 0.2,
    "batch_size": 256,
    "epochs": 18,
    "augment": True,
    "aug_padding": 2,
    "lookahead": 0,
    "logit_scale": 0.111,
}
# The recipe for small data sets (the bundled 8x8 digits, 1,150 training images; a
# robot's few hundred photos): the same widths with a 3x3 stem (whose filters show what
# it learned), smaller batches and steps, and no augmentation (digits are not
# mirror-symmetric: no flips, as for the fully connected networks). Its epochs are at
# least 10, and enough for SMALL_DATA_UPDATES optimizer steps (`recipe`). Its
# measurements on the digits and on photos are on the numbers page (docs/numbers.md).
SMALL_DATA_RECIPE = {
    "channels": (32, 64, 128),
    "stem": "conv",
    "optimizer": "nesterov",
    "learning_rate": 0.2,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_schedule": "onecycle",
    "label_smoothing": 0.1,
    "batch_size": 64,
    "epochs": 10,
    "augment": False,
    "aug_padding": 1,
    "lookahead": 0,
    "logit_scale": 1.0,
}


def recipe(data) -> dict:
    """The recipe for ``data`` (a `DataSummary`): `LARGE_DATA` from `SMALL_DATA`
    training images on, `SMALL_DATA_RECIPE` below, with its epochs raised to give about
    `SMALL_DATA_UPDATES` optimizer steps (a few hundred photos are 5 minibatches an
    epoch), up to `SMALL_DATA_EPOCHS`."""
    from chainrule.train.solver import batches_per_epoch

    if data.n_samples >= SMALL_DATA:
        return dict(LARGE_DATA)
    settings = dict(SMALL_DATA_RECIPE)
    steps = batches_per_epoch(data.n_samples, settings["batch_size"])
    enough = math.ceil(SMALL_DATA_UPDATES / steps)
    settings["epochs"] = min(SMALL_DATA_EPOCHS, max(settings["epochs"], enough))
    return settings


def resolved(model, data) -> dict:
    """The hyperparameters of ``model`` that are ``"auto"``, with their values for
    ``data``."""
    own = recipe(data)
    return {k: own[k] for k, v in model.get_params().items() if is_auto(v) and k in own}


SMALL_DATA_UPDATES = 180
# More passes over a few dozen images would only memorise them.
SMALL_DATA_EPOCHS = 50


def channel_widths(text) -> tuple[int, ...]:
    """``"32,64,128"`` -> ``(32, 64, 128)``: the channels of each stage."""
    try:
        return layer_sizes(text)
    except ValueError:
        raise ValueError(
            f"expected channel widths (positive integers) separated by commas, like "
            f"32,64,128; got {text!r}"
        ) from None


def non_negative_int(text) -> int:
    """``"5"`` -> 5; ``ValueError`` for anything that is not an integer >= 0."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = -1
    if value < 0 or str(value) != str(text).strip():
        raise ValueError(f"expected a non-negative integer, got {text!r}")
    return value


CHANNELS = Option(
    "--channels", "channels", "channels of each stage, e.g. 32,64,128", parse=channel_widths
)
STEM = Option(
    "--stem", "stem", "first layer: whiten (frozen patch whitening) or conv (3x3)",
    choices=("whiten", "conv"),
)  # fmt: skip
LOOKAHEAD = Option(
    "--lookahead", "lookahead", "Lookahead every K optimizer steps (0: off)",
    parse=non_negative_int,
)  # fmt: skip
LOOKAHEAD_ALPHA = Option(
    "--lookahead-alpha", "lookahead_alpha",
    "with --lookahead: the pull toward the fast weights at each sync, in (0, 1]", parse=float,
)  # fmt: skip
LOOKAHEAD_RAMP = Option(
    "--lookahead-ramp", "lookahead_ramp",
    "with --lookahead: the fraction of the run over which the pull falls from 1 to "
    "--lookahead-alpha (0: none)", parse=float,
)  # fmt: skip
LOGIT_SCALE = Option(
    "--logit-scale", "logit_scale", "fixed factor on the class scores (1: none)",
    parse=float,
)  # fmt: skip
INIT = Option(
    "--init", "init", "3x3 filters: kaiming, or dirac (identity filters first)",
    choices=("kaiming", "dirac"),
)  # fmt: skip
BIAS_LR_FACTOR = Option(
    "--bias-lr-factor", "bias_lr_factor",
    "learning rate of biases and batch-norm shifts, times --lr", parse=float,
)  # fmt: skip
FLIPS = Option(
    "--flips", "flips", "flips of --augment: random, or alternate (every other epoch)",
    choices=("random", "alternate"),
)  # fmt: skip
MUON_LR = Option(
    "--muon-lr", "muon_lr", "with --optimizer muon: the convolution filters' rate", parse=float
)
MUON_MOMENTUM = Option(
    "--muon-momentum", "muon_momentum", "with --optimizer muon: the filters' momentum",
    parse=float,
)  # fmt: skip
TEST_TIME_SHIFT = Option(
    "--test-time-shift", "test_time_shift",
    "also predict from views shifted by this many pixels (0: off)", parse=non_negative_int,
)  # fmt: skip


def _activations(model, image_shape, p) -> tuple[int, int]:
    """(floats of one image's activations that backward keeps, the largest of them).

    Each trained convolution's output and its batch norm + ReLU output (the next
    layer's input), at the resolution where they live; the first convolution of a
    stage also its pooled output; the stem's output."""
    widths, stem, k, _, _ = model._architecture(p)
    h, w, c = image_shape
    side = min(h, w)
    if stem == "whiten":
        side -= 1
        sizes = [2 * (8 * c) * side * side]  # the frozen convolution and its ReLU
    else:
        sw = max(8, widths[0] // 2)
        sizes = [2 * sw * side * side]
    for width in widths:
        pooled = side // 2 if side >= 2 else side
        sizes.append(width * side * side + 2 * width * pooled * pooled)
        sizes += [2 * width * pooled * pooled] * (k - 1)
        side = pooled
    return sum(sizes), max(sizes)


class ConvNetSpec(ModelSpec):
    options = (
        CHANNELS, STEM, *TRAINING, LOOKAHEAD, LOOKAHEAD_ALPHA, LOOKAHEAD_RAMP, LOGIT_SCALE,
        INIT, BIAS_LR_FACTOR, FLIPS, TEST_TIME_SHIFT, MUON_LR, MUON_MOMENTUM,
    )  # fmt: skip
    shown = ("channels", "stem", "learning_rate", "epochs")
    searched = ("learning_rate", "weight_decay")
    input_layout = "images"
    fit_validation = True
    checkpoints = True
    compared_by_default = False

    def defaults(self, data):
        """The `recipe` for the data."""
        return recipe(data)

    def grid(self, params):
        lr = params.get("learning_rate", 1e-3)
        wd = params.get("weight_decay") or 5e-4
        return {
            "learning_rate": [round1(lr * f) for f in (0.3, 1.0, 3.0)],
            "weight_decay": [round1(wd * f) for f in (0.2, 1.0)],
        }

    def check(self, model):
        model._check_hyperparameters()

    def memory(self, model, data):
        """A lower bound on the bytes training takes besides the images themselves.

        At a training step: the float32 weights, their gradients and the optimizer's
        arrays (Lookahead's slow weights too); a minibatch's activations that backward
        keeps (each convolution's output and its batch norm + ReLU output, counted once,
        plus the gradient of the largest of them). Before that, the whitening stem's
        float64 statistics of a chunk of images and their 2x2 patches. The images are
        read where the preprocessing left them (channels-last, no copy). Parameters and
        in-flight temporaries of the convolutions (im2col buffers) are left out, so
        training takes more. ``"auto"`` hyperparameters count as the `recipe` for data.
        """
        p = {**model._params(), **resolved(model, data)}
        widths, stem, k, _, _ = model._architecture(p)
        h, w, c = data.image_shape
        stem_out = 8 * c if stem == "whiten" else max(8, widths[0] // 2)
        params, c_in = (0 if stem == "whiten" else 9 * c * stem_out), stem_out
        for width in widths:
            params += 9 * width * (c_in + (k - 1) * width) + 2 * width * k
            c_in = width
        params += (c_in + 1) * data.n_classes
        slots = OPTIMIZER_SLOTS.get(str(p["optimizer"]).lower(), 2) + (p["lookahead"] > 0)
        per_image, largest = _activations(model, (h, w, c), p)
        batch = min(int(p["batch_size"]), data.n_samples)
        training = 4 * (params * (2 + slots) + batch * (per_image + largest))
        initialising = 0
        if stem == "whiten":
            from chainrule.models.convnet_arch import WHITENING_CHUNK

            n = min(data.n_samples, WHITENING_CHUNK)
            initialising = 8 * n * (h * w * c + (h - 1) * (w - 1) * 4 * c)
        return max(training, initialising)

    def stored(self, model):
        """The parameters and buffers of the network ``build_convnet`` makes, by their
        names in its ``Sequential`` (the layers depend on the hyperparameters alone), the
        frozen whitening filters included; the labels, the feature count and the image
        shape."""
        widths, stem, k, p, _ = model._architecture()
        members = network_members(images=True)

        def batch_norm(i, width):
            for key in ("bias", "running_mean", "running_var"):  # no learned scale
                members[f"net.{i}.{key}"] = Member((width,))

        # net.0 views the images (N, H, W, C) as (N, C, H, W) and holds nothing.
        if stem == "whiten":
            members["net.1.weight"] = Member(("F", "channels", 2, 2))
            c_in, i = "F", 3  # then a ReLU
        else:
            sw = max(8, widths[0] // 2)
            members["net.1.weight"] = Member((sw, "channels", 3, 3))
            batch_norm(2, sw)
            c_in, i = sw, 4  # then a ReLU
        for width in widths:
            members[f"net.{i}.weight"] = Member((width, c_in, 3, 3))
            batch_norm(i + 2, width)  # after the pooling (or the Identity in its place)
            i += 4  # convolution, pooling, batch norm, ReLU
            for _ in range(k - 1):
                members[f"net.{i}.weight"] = Member((width, width, 3, 3))
                batch_norm(i + 1, width)
                i += 3
            c_in = width
        i += 2 if p > 0 else 1  # the global pooling and the dropout hold nothing
        members[f"net.{i}.weight"] = Member((c_in, "C"))
        members[f"net.{i}.bias"] = Member(("C",))
        return members

    def plots(self, model, fitted: FitSummary):
        """The first layer's filters as small images: the trained 3x3 filters of a conv
        stem, or the frozen whitening filters of a whitening stem (the first trained
        convolution sees the whitened patches through a ReLU, so its filters are not
        templates in pixel space)."""
        weight = model.net_[1].weight  # a buffer (whitening) or a Parameter (conv)
        filters = weight if isinstance(weight, np.ndarray) else weight.data
        if filters.shape[1] not in (1, 3):
            return []  # not images that can be shown in gray or colour
        if model._architecture()[1] == "whiten":
            title = (
                f"whitening stem: {filters.shape[0]} fixed 2x2 filters from the training "
                "images' patch covariance (not trained)"
            )
        else:
            title = f"first convolution: {filters.shape[0]} trained 3x3 filters"
        return [Plot("plot_conv_filters", "filters.png", (filters,), {"title": title})]


CNN_SPEC = ConvNetSpec("cnn")
