"""``chainrule.data.load``: the digits splits, argument errors, a light import."""

import subprocess
import sys

import numpy as np
import pytest

import chainrule.data as data


def rows(images):
    """Images as a sorted list of byte strings (a multiset that ignores order)."""
    return sorted(r.tobytes() for r in images)


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


def test_available_splits(tmp_path):
    assert data.available_splits("digits") == data.SPLITS
    (tmp_path / "a").mkdir()
    assert data.available_splits(tmp_path) == ("train", "val", "all")
    with pytest.raises(FileNotFoundError, match="no such dataset name or folder"):
        data.available_splits(tmp_path / "missing")


def test_the_data_package_has_no_import_cycle():
    # data.folder and data.loading used to import each other; each must import on its own.
    for module in ("chainrule.data.folder", "chainrule.data.loading", "chainrule.data.splits"):
        code = f"import {module}"
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
