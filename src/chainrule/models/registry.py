"""Names of the model families, as used by model files and the command line.

A registry entry is one line, name -> where its estimator class and its spec live
(``"module:attribute"`` each): the class fits and predicts, the spec
(``models/spec.py``) tells the experiment layer and the command line how to run it.
Each class and each spec is imported the first time its name is looked up, so that
importing the registry stays cheap and a model module that fails to import does not hide
the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from chainrule.models.spec import ModelSpec

__all__ = [
    "MODEL_REGISTRY",
    "get_model_class",
    "get_model_spec",
    "model_name",
    "register_model",
]

# name -> (estimator class, spec), each as "module:attribute"
_FAMILIES: dict[str, tuple[str, str]] = {
    "knn": ("chainrule.models.knn:KNearestNeighbors", "chainrule.models.knn_spec:KNN_SPEC"),
    "svm": ("chainrule.models.linear:LinearSVM", "chainrule.models.linear_spec:SVM_SPEC"),
    "softmax": (
        "chainrule.models.linear:SoftmaxClassifier",
        "chainrule.models.linear_spec:SOFTMAX_SPEC",
    ),
    "twolayer": ("chainrule.models.mlp:TwoLayerNet", "chainrule.models.mlp_spec:TWOLAYER_SPEC"),
    "mlp": ("chainrule.models.mlp:FullyConnectedNet", "chainrule.models.mlp_spec:MLP_SPEC"),
    "cnn": ("chainrule.models.convnet:ConvNet", "chainrule.models.convnet_spec:CNN_SPEC"),
}
# name -> (module, class name) of the estimator
_LOCATIONS: dict[str, tuple[str, str]] = {
    name: tuple(cls.split(":")) for name, (cls, _) in _FAMILIES.items()
}
_SPECS: dict = {}


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


def register_model(name: str, cls: type, spec=None) -> None:
    """Register ``cls`` under ``name`` (a new, unused name), with its ``spec``.

    Model files of it then load, and ``chainrule train``/``compare`` run it. ``spec`` is a
    ``ModelSpec`` named ``name``; without one the class runs with its own defaults.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("a model name must be a non-empty string")
    if name in _LOCATIONS and _LOCATIONS[name] != (cls.__module__, cls.__qualname__):
        raise ValueError(f"model name {name!r} is already taken by {_LOCATIONS[name]}")
    if spec is not None and getattr(spec, "name", None) != name:
        raise ValueError(f"the spec of model {name!r} is named {getattr(spec, 'name', None)!r}")
    _LOCATIONS[name] = (cls.__module__, cls.__qualname__)
    MODEL_REGISTRY._classes[name] = cls
    if spec is not None:
        spec.bind(lambda: get_model_class(name))
        _SPECS[name] = spec


def get_model_spec(name: str):
    """The ``ModelSpec`` of model ``name``; ``ValueError`` naming the choices otherwise.

    Imports the spec's module, not the estimator's.
    """
    _check_known(name)
    if name in _SPECS:
        return _SPECS[name]
    spec = ModelSpec(name)
    if name in _FAMILIES:
        module_name, attr = _FAMILIES[name][1].split(":")
        try:
            spec = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"the spec of model {name!r} is not available: {e}") from None
        if spec.name != name:
            raise ValueError(f"the spec of model {name!r} is named {spec.name!r}")
    spec.bind(lambda: get_model_class(name))
    _SPECS[name] = spec
    return spec


def _check_known(name: str) -> None:
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_REGISTRY)}")


def get_model_class(name: str) -> type:
    """The class registered as ``name``; ``ValueError`` naming the choices otherwise."""
    _check_known(name)
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
