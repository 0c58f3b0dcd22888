import subprocess
import sys

import numpy as np
import pytest

import chainrule.data as data
from chainrule.data import Dataset, stratified_split_indices, train_val_split


def rows(images):
    """Images as a sorted list of byte strings (a multiset that ignores order)."""
    return sorted(r.tobytes() for r in images)


# -- Dataset ---------------------------------------------------------------------------


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


# -- splits ----------------------------------------------------------------------------


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


# -- digits ----------------------------------------------------------------------------


def test_digits_splits_partition_the_bundled_file():
    parts = {s: data.load("digits", s, progress=False) for s in data.SPLITS}
    whole = parts["all"]
    assert len(whole) == 1797 and whole.image_shape == (8, 8, 1)
    assert whole.images.dtype == np.uint8 and whole.images.max() == 255
    assert set(np.unique(whole.images)) <= {(v * 255 + 8) // 16 for v in range(17)}
    assert whole.classes == [str(d) for d in range(10)]
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (1150, 288, 359)
    union = np.concatenate([parts[s].images for s in ("train", "val", "test")])
    assert rows(union) == rows(whole.images)
    counts = whole.class_counts()
    for s, share in (("test", 0.2), ("val", 0.16)):
        assert np.all(np.abs(parts[s].class_counts() - share * counts) <= 1.5)
    # Deterministic; the test images never depend on random_state or val_fraction.
    again = data.load("digits", "val", progress=False)
    np.testing.assert_array_equal(again.images, parts["val"].images)
    test2 = data.load("digits", "test", random_state=5, val_fraction=0.5, progress=False)
    np.testing.assert_array_equal(test2.images, parts["test"].images)
    val2 = data.load("digits", "val", random_state=5, progress=False)
    assert rows(val2.images) != rows(parts["val"].images)
    full_train = data.load("digits", "train", val_fraction=0, progress=False)
    assert len(full_train) == 1438


def test_load_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        data.load("digits", "validation")
    with pytest.raises(TypeError, match="same int"):
        data.load("digits", "val", random_state=np.random.default_rng(0))
    with pytest.raises(ValueError, match="archive= applies only"):
        data.load("digits", archive=tmp_path / "x.tar.gz")
    with pytest.raises(ValueError, match="no validation split"):
        data.load("digits", "val", val_fraction=0)


def test_import_stays_light():
    code = (
        "import sys, chainrule.data; "
        "heavy = [m for m in ('PIL', 'tqdm', 'urllib.request', 'tarfile', 'http.client') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
