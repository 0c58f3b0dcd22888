"""The registry: names -> (estimator class, spec), looked up lazily, with clear errors."""

from __future__ import annotations

import pytest

from chainrule.models import registry
from chainrule.models._base import BaseEstimator, ClassifierMixin
from chainrule.models.spec import ModelSpec


class Constant(ClassifierMixin, BaseEstimator):
    """Predicts the most frequent training label."""

    def __init__(self, bias=0):
        self.bias = bias


@pytest.fixture
def clean_registry():
    """Whatever a test registers is gone after it."""
    saved = (dict(registry._LOCATIONS), dict(registry.MODEL_REGISTRY._classes))
    specs = dict(registry._SPECS)
    yield
    for d, old in ((registry._LOCATIONS, saved[0]), (registry.MODEL_REGISTRY._classes, saved[1])):
        d.clear()
        d.update(old)
    registry._SPECS.clear()
    registry._SPECS.update(specs)


def test_names_in_order_and_unknown_names():
    assert list(registry.MODEL_REGISTRY) == ["knn", "svm", "softmax", "twolayer", "mlp", "cnn"]
    for lookup in (registry.get_model_class, registry.get_model_spec):
        with pytest.raises(ValueError, match="unknown model 'forest'; choose one of knn, svm"):
            lookup("forest")


@pytest.mark.parametrize("name", list(registry.MODEL_REGISTRY))
def test_every_entry_has_a_spec_bound_to_its_class(name):
    spec = registry.get_model_spec(name)
    assert isinstance(spec, ModelSpec) and spec.name == name
    assert spec.estimator is registry.get_model_class(name)
    assert registry.get_model_spec(name) is spec  # looked up once


def test_register_a_model_with_and_without_a_spec(clean_registry):
    spec = ModelSpec("constant")
    registry.register_model("constant", Constant, spec)
    assert registry.get_model_spec("constant") is spec
    assert spec.estimator is Constant
    assert registry.model_name(Constant(bias=1)) == "constant"
    assert "constant" in registry.MODEL_REGISTRY
    # a class registered without a spec runs with a plain one
    registry._SPECS.pop("constant")
    plain = registry.get_model_spec("constant")
    assert type(plain) is ModelSpec and plain.estimator is Constant and plain.options == ()


def test_register_refuses_a_taken_name_and_a_misnamed_spec(clean_registry):
    with pytest.raises(ValueError, match="'svm' is already taken"):
        registry.register_model("svm", Constant)
    with pytest.raises(ValueError, match="the spec of model 'constant' is named 'other'"):
        registry.register_model("constant", Constant, ModelSpec("other"))
    assert "constant" not in registry.MODEL_REGISTRY
    with pytest.raises(TypeError, match="non-empty string"):
        registry.register_model("", Constant)


def test_unbound_spec_says_so():
    with pytest.raises(LookupError, match="not bound to a registered model"):
        ModelSpec("loose").estimator()


def test_a_model_whose_module_fails_to_import(clean_registry):
    registry._LOCATIONS["ghost"] = ("chainrule.models.no_such_module", "Ghost")
    assert "ghost" in registry.MODEL_REGISTRY
    with pytest.raises(ValueError, match="model 'ghost' .* is not available"):
        registry.get_model_class("ghost")
    # the others are unaffected
    assert registry.get_model_class("svm").__name__ == "LinearSVM"
