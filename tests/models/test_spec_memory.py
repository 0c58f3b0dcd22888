"""The networks' memory bound (``ModelSpec.memory``), which decides whether settings are
refused before training, against what training really allocates (tracemalloc)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from chainrule.models import FullyConnectedNet
from chainrule.models.mlp_spec import MLP_SPEC
from chainrule.models.spec import DataSummary


@pytest.mark.parametrize(
    "hidden, optimizer, batchnorm",
    [((1024, 1024), "adam", False), ((2048,), "sgd", False), ((768, 768), "momentum", True)],
)
def test_the_bound_is_below_what_training_takes_and_not_far_below(hidden, optimizer, batchnorm):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 64)).astype(np.float32)
    y = np.arange(400) % 10
    model = FullyConnectedNet(
        hidden_dims=hidden, optimizer=optimizer, batchnorm=batchnorm, epochs=1,
        batch_size=200, verbose=False, random_state=0,
    )  # fmt: skip
    bound = MLP_SPEC.memory(model, DataSummary.of(X, 10, (8, 8, 1)))
    tracemalloc.start()
    try:
        model.fit(X, y, X[:100], y[:100])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert bound <= peak <= 3 * bound, (bound, peak)


def test_a_huge_hidden_layer_is_bounded_without_allocating():
    model = FullyConnectedNet(hidden_dims=(100_000_000,))
    data = DataSummary(1150, 64, 10, (8, 8, 1), 16.0)
    # 7.4e9 parameters, each with weights, gradients and two Adam moments
    assert MLP_SPEC.memory(model, data) > 4 * 4 * 7.4e9
