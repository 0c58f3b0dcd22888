"""NeighborSearch, the machinery under KNearestNeighbors: shards and their merge."""

from __future__ import annotations

import numpy as np
import pytest
from knn_reference import brute_force, image_like

from chainrule.models.knn import NeighborSearch, _search, merge_neighbors


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
@pytest.mark.parametrize("filters", [False, True])
def test_shards_merge_to_the_whole(metric, filters, monkeypatch):
    # A training set cut into three shards of unequal sizes: each shard's exact top k
    # (local indices plus the shard's offset), merged, is the top k of the whole, with
    # ties across shards (duplicated rows) to the smallest global index.
    if filters:
        monkeypatch.setattr(_search, "FILTER_MIN_TRAIN", 300)
        monkeypatch.setattr(_search, "FILTER_MIN_FEATURES", 32)
    rng = np.random.default_rng(30)
    X = image_like(rng, 1400)
    X[900:930] = X[10:40]  # duplicates in another shard
    X[1300:1310] = X[20:30]
    Q = np.concatenate([image_like(rng, 60), X[10:20]])
    bounds = [0, 450, 1000, 1400]
    for k in (1, 5):
        whole_v, whole_i = NeighborSearch(X, metric).kneighbors(Q, k)
        lists = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            v, i = NeighborSearch(X[a:b], metric).kneighbors(Q, k)
            lists.append((v, i + a))
        v, i = merge_neighbors(lists, k)
        np.testing.assert_array_equal(i, whole_i)
        np.testing.assert_array_equal(v, whole_v)
        np.testing.assert_array_equal(i, brute_force(X, Q, metric)[1][:, :k])


def test_merge_neighbors_orders_by_value_then_index():
    a = (np.array([[1.0, 3.0]]), np.array([[7, 2]]))
    b = (np.array([[1.0, 2.0, 3.0]]), np.array([[4, 9, 1]]))
    vals, idx = merge_neighbors([a, b], 4)
    np.testing.assert_array_equal(idx, [[4, 7, 9, 1]])
    np.testing.assert_array_equal(vals, [[1.0, 1.0, 2.0, 3.0]])
