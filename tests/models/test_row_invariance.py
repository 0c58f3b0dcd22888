"""A sample's prediction never depends on the other samples of the batch or on where it
sits in it: every registered model, permuted and subset batches of several sizes (odd
ones, one sample, more than a prediction pass holds), one and two BLAS threads, float32
and float64 input, bit for bit.

float32 matrix products round each output by where its row falls in the BLAS kernel's
tiles and in the threads' split of the batch (a row alone is even a matrix-vector
product); through a few layers that moved scores by thousands of float32 ulps. The
estimators run their networks in float64 and round the scores to float32, which makes
them the same bits wherever the sample sits.
"""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.models import ConvNet, get_model_class

threadpoolctl = pytest.importorskip("threadpoolctl")

# Small, quick instances of every family; the ConvNet on 1x1 images (rows) and on
# colour images 7 high and 10 wide.
FAMILIES = {
    "knn": {"k": 3},
    "svm": {"epochs": 2},
    "softmax": {"epochs": 2},
    "twolayer": {"hidden_size": 16, "epochs": 2},
    "mlp": {"hidden_dims": (16, 16), "batchnorm": True, "dropout": 0.1, "epochs": 2},
    "cnn": {"channels": (8,), "convs_per_stage": 1, "batch_size": 50, "epochs": 2},
}
SIZES = (1, 2, 7, 33, 97, 250)


def data(n=250, d=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (3, d))
    y = np.arange(n) % 3
    return (centers[y] + rng.normal(0, 1.0, (n, d))).astype(np.float32), y


def methods(model):
    names = ("decision_function", "predict_proba", "predict")
    return [getattr(model, m) for m in names if hasattr(model, m)]


def assert_row_invariant(model, X):
    """Each method on X and on permuted subsets of X gives the same bits per sample."""
    for method in methods(model):
        whole = method(X)
        for size in SIZES:
            rng = np.random.default_rng(size)
            idx = rng.permutation(len(X))[:size]
            np.testing.assert_array_equal(method(X[idx]), whole[idx], err_msg=method.__name__)
        # each sample alone
        alone = np.concatenate([method(X[i : i + 1]) for i in range(0, len(X), 41)])
        np.testing.assert_array_equal(alone, whole[::41], err_msg=method.__name__)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_predictions_of_a_row_do_not_depend_on_the_batch(name, threads):
    X, y = data()
    model = get_model_class(name)(**FAMILIES[name])
    if "random_state" in model.get_params():
        model.set_params(random_state=0)
    model.fit(X, y)
    with threadpoolctl.threadpool_limits(threads, user_api="blas"):
        assert_row_invariant(model, X)
        assert_row_invariant(model, X.astype(np.float64))


@pytest.mark.parametrize("threads", [1, 2])
def test_convnet_on_colour_images(threads):
    rng = np.random.default_rng(1)
    y = np.arange(120) % 2
    X = rng.normal(0, 1, (120, 7, 10, 3)).astype(np.float32)
    X[y == 1, :, :, 0] += 0.5
    model = ConvNet(
        channels=(8, 16), convs_per_stage=1, batch_size=32, epochs=2, random_state=0
    ).fit(X, y)
    with threadpoolctl.threadpool_limits(threads, user_api="blas"):
        assert_row_invariant(model, X)


def test_predictions_are_float32_values_in_the_input_dtype():
    X, y = data(60)
    model = get_model_class("mlp")(**FAMILIES["mlp"], random_state=0).fit(X, y)
    assert model.decision_function(X).dtype == np.float32
    scores64 = model.decision_function(X.astype(np.float64))
    assert scores64.dtype == np.float64
    # the network's precision is float32's: float64 input gets the same values
    np.testing.assert_array_equal(scores64, model.decision_function(X))
