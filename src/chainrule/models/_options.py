"""The training options of the estimators trained by gradient descent, checked in one place.

Every such estimator (`chainrule.models.NetworkClassifier`) trains with the same options;
a family takes some of them as hyperparameters and keeps the others at fixed values
(the linear classifiers train by plain SGD, with no dropout or augmentation).
`TRAINING_OPTIONS` lists each option with the value it has where a family does not
take it; `check_options` validates a complete set, and the factories below turn one into
the optimizer, the learning-rate schedule and the augmentation the `Solver` runs.

An option may be ``"auto"`` where the family says so: `fit` then gives it the value the
family's recipe for the training data gives (the same recipe the command line uses).
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

from chainrule.data.layout import image_shape as checked_image_shape

__all__ = [
    "AUTO",
    "TRAINING_OPTIONS",
    "check_options",
    "is_auto",
    "is_int",
    "is_real",
    "make_optimizer",
    "schedule_factory",
]

AUTO = "auto"

# Each training option with its value for a family that does not take it.
TRAINING_OPTIONS: dict = {
    "learning_rate": 1e-3,
    "batch_size": 200,
    "epochs": 10,
    "optimizer": "sgd",
    "momentum": 0.9,
    "lr_schedule": None,
    "schedule_per": "iteration",
    "reg": 0.0,
    "weight_decay": 0.0,
    "label_smoothing": 0.0,
    "augment": False,
    "aug_padding": 0,
    "image_shape": None,
    "test_time_flip": None,
    "early_stopping_patience": None,
    "lookahead": 0,
    "random_state": None,
    "verbose": 0,
}


def is_auto(value) -> bool:
    return isinstance(value, str) and value == AUTO


def is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and bool(np.isfinite(v))


def _number(p: dict, name: str, low: float, *, above: bool = False, below: float | None = None):
    v = p[name]
    bound = f"> {low:g}" if above else f">= {low:g}"
    if below is not None:
        bound = f"in [{low:g}, {below:g})"
    if not is_real(v) or v < low or (above and v == low) or (below is not None and v >= below):
        raise ValueError(f"{name} must be a finite number {bound}, got {v!r}")


def _choice(p: dict, name: str, choices) -> None:
    if p[name] not in choices:
        shown = ", ".join(str(c) for c in choices)
        raise ValueError(f"{name} must be one of {shown}; got {p[name]!r}")


def _flag(p: dict, name: str, none: bool = False) -> None:
    v = p[name]
    if not (isinstance(v, (bool, np.bool_)) or (none and v is None)):
        what = "True, False or None" if none else "True or False"
        raise TypeError(f"{name} must be {what}, got {v!r}")


def check_options(p: dict, auto: frozenset = frozenset()) -> None:
    """Refuse a bad training option of ``p`` (all of `TRAINING_OPTIONS`) with a
    ValueError or TypeError naming it; ``"auto"`` is accepted for the names in ``auto``."""
    from chainrule import optim

    for name, value in p.items():
        if is_auto(value) and name not in auto and name in TRAINING_OPTIONS:
            raise ValueError(f"{name} cannot be 'auto' here: give a value")
    given = {k: v for k, v in p.items() if not is_auto(v)}

    def has(name):
        return name in given

    if has("learning_rate"):
        _number(given, "learning_rate", 0.0, above=True)
    for name in ("batch_size", "epochs"):
        if has(name) and (not is_int(given[name]) or given[name] <= 0):
            raise ValueError(f"{name} must be a positive integer, got {given[name]!r}")
    for name in ("reg", "weight_decay"):
        if has(name):
            _number(given, name, 0.0)
    if has("label_smoothing"):
        _number(given, "label_smoothing", 0.0, below=1.0)
    if has("momentum"):
        _number(given, "momentum", 0.0, below=1.0)
    if has("optimizer"):
        _choice(given, "optimizer", optim.OPTIMIZERS)
    if has("lr_schedule"):
        _choice(given, "lr_schedule", optim.SCHEDULES)
    if has("schedule_per"):
        _choice(given, "schedule_per", ("iteration", "epoch"))
    if has("augment"):
        _flag(given, "augment")
    if has("test_time_flip"):
        _flag(given, "test_time_flip", none=True)
    if has("aug_padding") and (not is_int(given["aug_padding"]) or given["aug_padding"] < 0):
        raise ValueError(
            f"aug_padding must be a non-negative int or 'auto', got {p['aug_padding']!r}"
        )
    patience = given.get("early_stopping_patience")
    if patience is not None and (not is_int(patience) or patience <= 0):
        raise ValueError(
            f"early_stopping_patience must be a positive int or None, got {patience!r}"
        )
    if has("lookahead") and (not is_int(given["lookahead"]) or given["lookahead"] < 0):
        raise ValueError(f"lookahead must be a non-negative int (0: off), got {p['lookahead']!r}")
    if given.get("image_shape") is not None:
        checked_image_shape(given["image_shape"])


def make_optimizer(net, p: dict):
    """The optimizer of ``p`` over ``net``'s parameters: weight decay on the matrices and
    filters only (`chainrule.optim.weight_decay_groups`), wrapped in
    `chainrule.optim.Lookahead` (alpha 0.5) when ``p["lookahead"]`` is k > 0."""
    from chainrule import optim

    wd = float(p["weight_decay"])
    groups = optim.weight_decay_groups(net, wd)
    opt = optim.make_optimizer(
        p["optimizer"], groups, float(p["learning_rate"]), momentum=p["momentum"], weight_decay=wd
    )
    if p["lookahead"]:
        opt = optim.Lookahead(opt, k=int(p["lookahead"]), alpha=0.5)
    return opt


def schedule_factory(p: dict):
    """``(optimizer, total_steps) -> schedule`` of ``p["lr_schedule"]`` for the Solver,
    which sizes it for the whole run (see `chainrule.optim.make_schedule`)."""
    from chainrule import optim

    kwargs = {}
    # SGD and RMSProp have no momentum to cycle; Muon's is its own per parameter group
    # (the orthogonalised filters' differs from the rest's).
    if p["lr_schedule"] == "onecycle" and p["optimizer"] in ("sgd", "rmsprop", "muon"):
        kwargs["cycle_momentum"] = False
    return functools.partial(optim.make_schedule, p["lr_schedule"], **kwargs)
