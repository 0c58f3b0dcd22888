"""Stratified train/validation splits (chainrule/data/splits.py)."""

import numpy as np
import pytest

from chainrule.data import Dataset, stratified_split_indices, train_val_split
from chainrule.data.splits import carve


def test_stratified_split_sizes_and_determinism():
    y = np.repeat(np.arange(4), [10, 20, 30, 41])
    tr, va = stratified_split_indices(y, 0.2, random_state=3)
    assert len(va) == round(0.2 * len(y)) and len(tr) + len(va) == len(y)
    assert np.intersect1d(tr, va).size == 0
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    counts = np.bincount(y[va], minlength=4)
    assert np.all(np.abs(counts - 0.2 * np.array([10, 20, 30, 41])) < 1)
    tr2, va2 = stratified_split_indices(y, 0.2, random_state=3)
    np.testing.assert_array_equal(va, va2)
    _, va3 = stratified_split_indices(y, 0.2, random_state=4)
    assert not np.array_equal(va, va3)
    tr0, va0 = stratified_split_indices(y, 0.0)
    assert va0.size == 0 and tr0.size == len(y)


def test_train_val_split_arrays():
    X = np.arange(50).reshape(25, 2)
    y = np.arange(25) % 5
    X_tr, X_va, y_tr, y_va = train_val_split(X, y, val_fraction=0.4, random_state=0)
    assert X_tr.shape == (15, 2) and X_va.shape == (10, 2)
    np.testing.assert_array_equal(X_va[:, 0] // 2 % 5, y_va)  # rows keep their labels
    assert np.bincount(y_va).tolist() == [2] * 5
    with pytest.raises(ValueError, match="same number of samples"):
        train_val_split(X, y[:-1])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        train_val_split(X, y, val_fraction=1.0)


def test_every_class_keeps_a_training_sample():
    # A class of one sample: before, the largest-remainder rule could send its only
    # sample to validation and the model trained without the class.
    y = np.array([0] * 5 + [1, 2, 3])
    for seed in range(5):
        tr, va = stratified_split_indices(y, 0.2, random_state=seed)
        assert {5, 6, 7} <= set(tr.tolist())
        assert len(va) == 2 and set(y[va]) == {0}


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.9, 0.99])
def test_large_fractions_keep_every_class_in_training(fraction):
    y = np.repeat(np.arange(5), [1, 2, 3, 10, 40])
    tr, va = stratified_split_indices(y, fraction, random_state=0)
    assert np.bincount(y[tr], minlength=5).min() >= 1
    assert len(tr) + len(va) == len(y) and np.intersect1d(tr, va).size == 0
    # The validation part still gets what it asked for where the classes have room.
    assert len(va) == min(round(fraction * len(y)), len(y) - 5)


def test_a_split_that_leaves_no_validation_sample_is_refused():
    y = np.arange(3)  # three classes of one sample each
    with pytest.raises(ValueError, match="no validation samples.*at least one for training"):
        stratified_split_indices(y, 0.5)
    tr, va = stratified_split_indices(y, 0.0)
    assert tr.tolist() == [0, 1, 2] and va.size == 0


def test_carve_gives_disjoint_parts_of_a_dataset():
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1)
    ds = Dataset(images, np.arange(20) % 2, ["a", "b"], "t", "train")
    train = carve(ds, "train", 0.25, 0)
    val = carve(ds, "val", 0.25, 0)
    assert (len(train), len(val)) == (15, 5) and (train.split, val.split) == ("train", "val")
    assert sorted(np.concatenate([train.images, val.images]).ravel()) == list(range(20))
    assert carve(ds, "test", 0.25, 0) is ds
    assert len(carve(ds, "train", 0, 0)) == 20
    with pytest.raises(ValueError, match="no validation split"):
        carve(ds, "val", 0, 0)
