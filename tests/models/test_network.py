"""NetworkClassifier, the one base of the estimators trained by gradient descent: the
families are siblings on it, a new family is one hook, "auto" hyperparameters take the
command line's recipe for the data, and model files store what was chosen."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule import nn
from chainrule.models import (
    ConvNet,
    FullyConnectedNet,
    LinearSVM,
    NetworkClassifier,
    SoftmaxClassifier,
    TwoLayerNet,
    get_model_spec,
    load_model,
    save_model,
)
from chainrule.models.spec import DataSummary


def blobs(n=120, d=4, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    X = rng.normal(0, 4, (c, d))[y] + rng.normal(0, 0.5, (n, d))
    return X.astype(np.float32), y


class Logistic(NetworkClassifier):
    """The module docstring's example: a new family is its hyperparameters and a hook."""

    _fixed = {"optimizer": "sgd"}

    def __init__(self, learning_rate=0.1, batch_size=32, epochs=20, random_state=None):
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.random_state = random_state

    def _build_network(self, input_shape, n_classes, rng, dtype=np.float32):
        (d,) = input_shape
        return nn.Linear(d, n_classes, random_state=rng, dtype=dtype)


def test_a_new_family_is_one_hook():
    X, y = blobs()
    model = Logistic(random_state=0).fit(X, y)
    assert model.score(X, y) > 0.95
    assert model.predict_proba(X).shape == (120, 3) and len(model.history_["epoch_loss"]) == 20
    # its options not taken are the fixed ones: plain SGD, no schedule
    assert model._params()["optimizer"] == "sgd" and model._params()["lr_schedule"] is None
    # images are accepted and flattened for a network that reads rows
    images = X.reshape(120, 2, 2, 1)
    on_images = Logistic(random_state=0).fit(images, y)
    assert on_images.image_shape_ == (2, 2, 1)
    np.testing.assert_array_equal(on_images.predict_proba(images), model.predict_proba(X))


def test_the_families_are_siblings_on_one_base():
    families = [LinearSVM, SoftmaxClassifier, TwoLayerNet, FullyConnectedNet, ConvNet]
    for cls in families:
        assert issubclass(cls, NetworkClassifier)
        assert not any(issubclass(cls, other) for other in families if other is not cls), cls
    assert not isinstance(ConvNet(), FullyConnectedNet)
    assert "batchnorm" not in TwoLayerNet().get_params()


@pytest.mark.parametrize(
    "cls, name",
    [(ConvNet, "cnn"), (FullyConnectedNet, "mlp"), (TwoLayerNet, "twolayer"), (LinearSVM, "svm")],
)
def test_auto_takes_the_command_lines_recipe_for_the_data(cls, name):
    X, y = blobs(n=90)
    model = cls(random_state=0, epochs=1).fit(X, y)
    summary = DataSummary.of(X, 3, (1, 1, 4))
    recipe = get_model_spec(name).defaults(summary)
    auto = [k for k, v in model.get_params().items() if v == "auto" and k in recipe]
    assert auto, "the defaults of every family are chosen from the data"
    for k in auto:
        assert model.fitted_params_[k] == recipe[k], k
    assert model.fitted_params_["epochs"] == 1  # a value given is a value kept


def test_the_convnet_recipes_are_the_one_place_of_its_defaults():
    from chainrule.models.convnet_spec import LARGE_DATA, SMALL_DATA_RECIPE

    params = ConvNet().get_params()
    for recipe in (LARGE_DATA, SMALL_DATA_RECIPE):
        assert all(params[k] == "auto" for k in recipe)
    small = DataSummary(1150, 64, 10, (8, 8, 1), 1.0)
    large = DataSummary(40000, 3072, 10, (32, 32, 3), 1.0)
    spec = get_model_spec("cnn")
    assert spec.defaults(small) == SMALL_DATA_RECIPE or spec.defaults(small)["stem"] == "conv"
    assert spec.defaults(large) == LARGE_DATA


def test_model_files_store_the_values_chosen_for_auto(tmp_path):
    X, y = blobs()
    model = TwoLayerNet(hidden_size=8, random_state=0).fit(X, y)
    loaded = load_model(save_model(tmp_path / "m.npz", model))
    assert loaded.params["learning_rate"] == model.fitted_params_["learning_rate"] == 3e-3
    assert loaded.params["epochs"] == model.fitted_params_["epochs"]
    assert loaded.model.learning_rate == 3e-3
    np.testing.assert_array_equal(loaded.model.predict_proba(X), model.predict_proba(X))


def test_a_failed_fit_leaves_no_fitted_model():
    X, y = blobs()
    model = TwoLayerNet(hidden_size=8, epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="diverged"):
        model.set_params(learning_rate=1e30, optimizer="sgd", epochs=3).fit(X * 1e20, y)
    assert not hasattr(model, "net_") and not hasattr(model, "fitted_params_")


def test_augmentation_and_flips_need_an_image_shape():
    X, y = blobs()
    with pytest.raises(ValueError, match=r"augment=True needs images \(N, H, W, C\)"):
        TwoLayerNet(augment=True, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"test_time_flip needs images"):
        TwoLayerNet(test_time_flip=True, epochs=1).fit(X, y)
    model = TwoLayerNet(augment=True, epochs=1, random_state=0).fit(X.reshape(-1, 2, 2, 1), y)
    assert model.fitted_params_["aug_padding"] == 1  # 1 pixel per 16 of side, at least 1
    with pytest.raises(ValueError, match="fitted on rows of no image shape"):
        TwoLayerNet(epochs=1).fit(X, y).predict(X.reshape(-1, 2, 2, 1))


def test_bad_options_are_named_before_any_data_is_seen():
    for params, message in [
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
        ({"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\)"),
        ({"schedule_per": "batch"}, "schedule_per must be one of"),
        ({"learning_rate": "fast"}, "learning_rate must be a finite number"),
        ({"aug_padding": -1}, "aug_padding must be a non-negative int or 'auto'"),
        ({"test_time_flip": "yes"}, "test_time_flip must be True, False or None"),
    ]:
        with pytest.raises((ValueError, TypeError), match=message):
            TwoLayerNet(**params)._check_hyperparameters()
    with pytest.raises(ValueError, match="reg cannot be 'auto' here"):
        TwoLayerNet(reg="auto")._check_hyperparameters()
