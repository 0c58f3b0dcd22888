"""Names of the model classes, as used by model files and the command line.

Each class is imported the first time its name is looked up, so that importing the
registry stays cheap and a model module that fails to import does not hide the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

__all__ = ["MODEL_REGISTRY", "get_model_class", "model_name", "register_model"]

# name -> (module, class name)
_LOCATIONS: dict[str, tuple[str, str]] = {
    "knn": ("chainrule.models.knn", "KNearestNeighbors"),
    "svm": ("chainrule.models.linear", "LinearSVM"),
    "softmax": ("chainrule.models.linear", "SoftmaxClassifier"),
    "twolayer": ("chainrule.models.mlp", "TwoLayerNet"),
    "mlp": ("chainrule.models.mlp", "FullyConnectedNet"),
}


class _Registry(Mapping):
    """Read-only mapping name -> model class; classes are imported on first access."""

    def __init__(self, locations: dict[str, tuple[str, str]]):
        self._locations = locations
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        if name in self._classes:
            return self._classes[name]
        if name not in self._locations:
            raise KeyError(name)
        module_name, class_name = self._locations[name]
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as e:
            raise LookupError(
                f"model {name!r} ({module_name}.{class_name}) is not available: {e}"
            ) from e
        self._classes[name] = cls
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._locations)

    def __len__(self) -> int:
        return len(self._locations)

    def __contains__(self, name: object) -> bool:
        return name in self._locations

    def __repr__(self) -> str:
        return f"MODEL_REGISTRY({', '.join(self._locations)})"


MODEL_REGISTRY = _Registry(_LOCATIONS)


def register_model(name: str, cls: type) -> None:
    """Make ``cls`` loadable from model files under ``name`` (a new, unused name)."""
    if not isinstance(name, str) or not name:
        raise TypeError("a model name must be a non-empty string")
    if name in _LOCATIONS and _LOCATIONS[name] != (cls.__module__, cls.__qualname__):
        raise ValueError(f"model name {name!r} is already taken by {_LOCATIONS[name]}")
    _LOCATIONS[name] = (cls.__module__, cls.__qualname__)
    MODEL_REGISTRY._classes[name] = cls


def get_model_class(name: str) -> type:
    """The class registered as ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_REGISTRY)}")
    try:
        return MODEL_REGISTRY[name]
    except LookupError as e:
        raise ValueError(str(e)) from None


def model_name(model_or_class) -> str:
    """The registered name of a model instance or class; ``ValueError`` if it has none."""
    cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
    where = (cls.__module__, cls.__qualname__)
    for name, loc in _LOCATIONS.items():
        if loc == where:
            return name
    # A class re-exported under another module path still matches by identity.
    for name, known in MODEL_REGISTRY._classes.items():
        if known is cls:
            return name
    raise ValueError(
        f"{cls.__qualname__} is not a registered chainrule model "
        f"(registered: {', '.join(_LOCATIONS)})"
    )
