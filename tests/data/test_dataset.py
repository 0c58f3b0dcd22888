"""The Dataset container: validation and conversion on creation."""

import numpy as np
import pytest

from chainrule.data import Dataset


def test_dataset_validates_and_converts():
    ds = Dataset(np.zeros((3, 2, 2, 1), np.uint8), np.array([0, 1, 1], np.int32), ["a", "b"])
    assert ds.labels.dtype == np.int64 and len(ds) == 3
    assert ds.image_shape == (2, 2, 1) and ds.num_classes == 2
    assert ds.class_counts().tolist() == [1, 2]
    assert "n=3" in repr(ds)
    sub = ds.subset(np.array([2, 0]), split="val")
    assert sub.labels.tolist() == [1, 0] and sub.split == "val"


@pytest.mark.parametrize(
    "images, labels, classes, error, message",
    [
        (np.zeros((3, 2, 2, 1), np.float32), [0, 0, 0], ["a"], TypeError, "uint8"),
        (np.zeros((3, 2, 2), np.uint8), [0, 0, 0], ["a"], ValueError, r"\(N, H, W, C\)"),
        (np.zeros((3, 2, 2, 1), np.uint8), [0, 0], ["a"], ValueError, "3 images but 2 labels"),
        (np.zeros((3, 2, 2, 1), np.uint8), [0.0, 0, 0], ["a"], TypeError, "integers"),
        (np.zeros((3, 2, 2, 1), np.uint8), [0, 2, 0], ["a", "b"], ValueError, r"0\.\.1"),
        (np.zeros((3, 2, 2, 1), np.uint8), [0, -1, 0], ["a"], ValueError, "-1"),
        (np.zeros((0, 2, 2, 1), np.uint8), [], ["a"], ValueError, "no images"),
        (np.zeros((1, 2, 2, 1), np.uint8), [0], ["a", "a"], ValueError, "unique"),
        (np.zeros((1, 2, 2, 1), np.uint8), [0], "ab", TypeError, "list of class names"),
        ([[[[0]]]], [0], ["a"], TypeError, "numpy array"),
    ],
)
def test_dataset_rejects_bad_input(images, labels, classes, error, message):
    with pytest.raises(error, match=message):
        Dataset(images, np.asarray(labels), classes, name="t")
