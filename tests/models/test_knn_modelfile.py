"""k-NN model files store the training images (uint8) with their preprocessing and load
back to exactly the same model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from knn_reference import smooth_images

from chainrule.data import Preprocessor
from chainrule.models import KNearestNeighbors, load_model, save_model
from chainrule.models.knn._modelfile import images_of_rows


def uint8_images(rng, n):
    return smooth_images(rng, n).astype(np.uint8).reshape(n, 8, 8, 3)


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
@pytest.mark.parametrize(
    "prep_args",
    [{}, {"standardize": True}, {"center": False}, {"bias": True}],
)
def test_images_are_stored_and_give_the_same_predictions(tmp_path, metric, prep_args):
    rng = np.random.default_rng(40)
    images = uint8_images(rng, 700)
    images[300:310] = images[0:10]  # duplicates: ties that must break the same way
    queries = uint8_images(rng, 60)
    y = rng.integers(0, 5, 700)
    prep = Preprocessor(**prep_args).fit(images)
    model = KNearestNeighbors(k=5, metric=metric).fit(prep.transform(images), y)
    path = save_model(tmp_path / "knn.npz", model, prep)
    with np.load(path, allow_pickle=False) as z:
        assert "model/fit_X" not in z.files
        np.testing.assert_array_equal(z["model/fit_images"], images)
        assert z["model/fit_images"].dtype == np.uint8
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.model.fit_X_, model.fit_X_)  # bit for bit
    assert loaded.model.fit_X_.dtype == np.float32
    np.testing.assert_array_equal(loaded.predict(queries), model.predict(prep.transform(queries)))
    d0, i0 = model.kneighbors(prep.transform(queries))
    d1, i1 = loaded.model.kneighbors(loaded.features(queries))
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_array_equal(d1, d0)


def test_file_is_about_the_size_of_the_images(tmp_path):
    rng = np.random.default_rng(41)
    images = uint8_images(rng, 2000)
    prep = Preprocessor().fit(images)
    model = KNearestNeighbors().fit(prep.transform(images), rng.integers(0, 3, 2000))
    path = save_model(tmp_path / "knn.npz", model, prep)
    size = path.stat().st_size
    assert images.nbytes < size < images.nbytes + 40_000  # (float32 rows: 4x the images)
    rows_path = save_model(tmp_path / "rows.npz", model)  # no preprocessing: the rows
    assert rows_path.stat().st_size > 4 * images.nbytes


def test_rows_that_the_preprocessing_does_not_give_are_stored_as_rows(tmp_path):
    rng = np.random.default_rng(42)
    images = uint8_images(rng, 300)
    prep = Preprocessor().fit(images)
    X = prep.transform(images)
    X[5, 7] += np.float32(1e-3)  # no image gives this row exactly
    other = Preprocessor().fit(uint8_images(rng, 300))  # nor another image mean
    for rows, p in ((X, prep), (prep.transform(images), other)):
        model = KNearestNeighbors(k=3, metric="l1").fit(rows, rng.integers(0, 3, 300))
        assert images_of_rows(model.fit_X_, p) is None
        path = save_model(tmp_path / "knn.npz", model, p)
        with np.load(path, allow_pickle=False) as z:
            assert "model/fit_images" not in z.files
            assert z["model/fit_X"].dtype == np.float32
        loaded = load_model(path)
        np.testing.assert_array_equal(loaded.model.fit_X_, rows)
        q = prep.transform(uint8_images(rng, 20))
        np.testing.assert_array_equal(loaded.model.predict(q), model.predict(q))


def test_stored_images_without_preprocessing_are_refused(tmp_path):
    rng = np.random.default_rng(43)
    images = uint8_images(rng, 100)
    prep = Preprocessor().fit(images)
    model = KNearestNeighbors().fit(prep.transform(images), np.arange(100) % 2)
    path = save_model(tmp_path / "knn.npz", model, prep)
    with np.load(path, allow_pickle=False) as z:
        kept = {k: z[k] for k in z.files if not k.startswith("prep/")}
    np.savez(tmp_path / "noprep.npz", **kept)
    with pytest.raises(ValueError, match="lacks 'prep/"):  # the header lists them
        load_model(tmp_path / "noprep.npz")
    # A header that agrees (a file written without preprocessing): k-NN's own check.
    header = json.loads(str(kept["__chainrule__"]))
    header["members"] = [m for m in header["members"] if not m.startswith("prep/")]
    kept["__chainrule__"] = np.array(json.dumps(header))
    np.savez(tmp_path / "noprep.npz", **kept)
    with pytest.raises(ValueError, match="no preprocessing"):
        load_model(tmp_path / "noprep.npz")
