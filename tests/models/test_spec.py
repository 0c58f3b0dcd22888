"""Model specs: every registered spec is consistent with its estimator, options read the
command line's values, defaults follow the data, one-line descriptions."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.models.registry import MODEL_REGISTRY, get_model_spec
from chainrule.models.spec import (
    LAYOUTS,
    DataSummary,
    ModelSpec,
    Option,
    layer_sizes,
    positive_int,
    round1,
)

DIGITS_LIKE = DataSummary(
    n_samples=1150, n_features=64, n_classes=10, image_shape=(8, 8, 1), mean_sq_norm=16.0
)
CIFAR_LIKE = DataSummary(
    n_samples=40000, n_features=3072, n_classes=10, image_shape=(32, 32, 3), mean_sq_norm=225.0
)


@pytest.mark.parametrize("name", list(MODEL_REGISTRY))
def test_spec_names_only_hyperparameters_its_estimator_has(name):
    spec = get_model_spec(name)
    params = set(spec.param_names())
    assert spec.input_layout in LAYOUTS
    assert {o.param for o in spec.options} <= params
    assert set(spec.shown) <= params and set(spec.searched) <= params
    assert len({o.flag for o in spec.options}) == len(spec.options)
    for data in (DIGITS_LIKE, CIFAR_LIKE):
        defaults = spec.defaults(data)
        assert set(defaults) <= params
        spec.estimator(**defaults)  # builds
        grid = spec.grid(spec.estimator(**defaults).get_params())
        if grid is not None:
            assert set(grid) == set(spec.searched)
            assert all(len(v) >= 2 for v in grid.values())


def test_linear_defaults_scale_the_step_with_the_data():
    from chainrule.models.linear_spec import MIN_EPOCHS, TUNED_RATE

    svm = get_model_spec("svm")
    # on the reference scale the step tuned on CIFAR-10; 10x the squared norm, 1/10 of it
    assert svm.defaults(CIFAR_LIKE)["learning_rate"] == TUNED_RATE["svm"] == 0.03
    wide = DataSummary(40000, 3072, 10, (32, 32, 3), 2250.0)
    assert svm.defaults(wide)["learning_rate"] == pytest.approx(TUNED_RATE["svm"] / 10)
    # a few hundred updates on small data: 6 minibatches of 200 per epoch -> 50 epochs
    assert svm.defaults(DIGITS_LIKE)["epochs"] == 50
    assert svm.defaults(CIFAR_LIKE)["epochs"] == MIN_EPOCHS == 20
    # the estimator constructed with its defaults takes the same values in fit
    assert svm.estimator_defaults()["learning_rate"] == "auto"


def test_network_defaults_follow_the_data_size():
    mlp = get_model_spec("mlp")
    small, large = mlp.defaults(DIGITS_LIKE), mlp.defaults(CIFAR_LIKE)
    assert small["hidden_dims"] == (256, 256) and large["hidden_dims"] == (1024, 1024)
    assert small["learning_rate"] == 3e-3 and large["learning_rate"] == 1e-3
    assert small["epochs"] == 30 and large["epochs"] == 10
    assert small["image_shape"] == (8, 8, 1)
    assert "hidden_dims" not in get_model_spec("twolayer").defaults(DIGITS_LIKE)


def test_read_options_parses_text_and_keeps_parsed_values():
    mlp = get_model_spec("mlp")
    params, sources = mlp.read_options({"--hidden": "32,16", "--epochs": 3, "--lr": None})
    assert params == {"hidden_dims": (32, 16), "epochs": 3}
    assert sources == {"hidden_dims": "--hidden", "epochs": "--epochs"}
    two = get_model_spec("twolayer")
    assert two.read_options({"--hidden": "64"})[0] == {"hidden_size": 64}
    with pytest.raises(ValueError, match="argument --hidden: twolayer has one hidden layer"):
        two.read_options({"--hidden": "8,8"})
    with pytest.raises(ValueError, match="--k does not apply to model svm"):
        get_model_spec("svm").read_options({"--k": 3})
    with pytest.raises(ValueError, match="argument --hidden: .*got '10,x'"):
        mlp.read_options({"--hidden": "10,x"})


def test_describe_shows_the_chosen_hyperparameters_by_their_option_names():
    assert get_model_spec("knn").describe({"k": 3, "metric": "l2", "n_jobs": None}) == (
        "k=3 metric=l2"
    )
    params = {"hidden_dims": [256, 256], "dropout": 0.1, "batchnorm": True}
    params.update(learning_rate=0.003, epochs=30, reg=0.0)
    assert get_model_spec("mlp").describe(params) == (
        "hidden=256,256 dropout=0.1 batchnorm=True lr=0.003 epochs=30"
    )
    # a spec that names nothing shows every hyperparameter but the bookkeeping ones
    assert ModelSpec("toy").describe({"b": 1.5, "a": 2, "verbose": True}) == "a=2 b=1.5"


def test_value_parsers():
    assert positive_int("3") == 3
    for bad in ("0", "-1", "x", "2.5"):
        with pytest.raises(ValueError, match="expected a positive integer"):
            positive_int(bad)
    assert layer_sizes("1024, 512") == (1024, 512) and layer_sizes([3]) == (3,)
    with pytest.raises(ValueError, match="positive"):
        layer_sizes("10,0")
    assert round1(0.0734) == 0.07 and round1(26.6) == 30.0 and round1(0.0) == 0.0
    assert Option("--batch-size", "batch_size", "").dest == "batch_size"


def test_data_summary_of_rows_and_images():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 2, 4, 4)).astype(np.float32)
    s = DataSummary.of(X, 5, (4, 4, 2))
    assert (s.n_samples, s.n_features, s.n_classes, s.image_shape) == (3000, 32, 5, (4, 4, 2))
    rows = X[:2000].reshape(2000, -1).astype(np.float64)
    assert s.mean_sq_norm == pytest.approx(float(np.mean((rows**2).sum(1))))
    assert DataSummary.of(X.reshape(3000, -1), 5, (4, 4, 2)) == s
