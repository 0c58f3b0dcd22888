"""Model files of the previous format (version 1) load, and give the answers they gave.

The files in tests/fixtures/model_files_v1 were written by chainrule at commit 6ccbe5e
(tests/fixtures/record_v1_model_files.py), one small model of each family, with raw test
images and the probabilities and labels that version's loaded models gave for them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chainrule.models import load_model, save_model

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "model_files_v1"
NAMES = ["knn", "svm", "softmax", "twolayer", "mlp", "cnn", "cnn_whiten"]


@pytest.fixture(scope="module")
def expected():
    with np.load(V1 / "expected.npz", allow_pickle=False) as f:
        return dict(f)


@pytest.mark.parametrize("name", NAMES)
def test_a_previous_format_file_loads_and_predicts_as_it_did(name, expected, tmp_path):
    loaded = load_model(V1 / f"{name}.npz")
    images = expected[f"images_{name}"]
    np.testing.assert_allclose(loaded.predict_proba(images), expected[f"proba_{name}"], atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(images), expected[f"label_{name}"])
    # written again, it is a file of the current format that gives the same answers
    again = load_model(save_model(tmp_path / "m.npz", loaded.model, loaded.preprocessor,
                                  loaded.classes, loaded.extra))  # fmt: skip
    np.testing.assert_array_equal(again.predict_proba(images), loaded.predict_proba(images))
    assert again.classes == loaded.classes


def test_what_the_previous_format_said_and_the_current_has_no_place_for_is_kept(tmp_path):
    loaded = load_model(V1 / "svm.npz")
    # lr_decay (0.9 per epoch) became the run-sized schedule; the old value is kept
    assert loaded.params["lr_schedule"] == "exponential" and "lr_decay" not in loaded.params
    assert loaded.extra["upgraded"] == {"lr_decay": 0.9, "from_format": 1}
    assert loaded.model.n_features_in_ == 64 and loaded.model.W_.shape == (64, 10)
    assert load_model(V1 / "mlp.npz").params["aug_padding"] == 1  # None: 1 per 16 pixels
    assert "upgraded" not in load_model(V1 / "cnn.npz").extra  # nothing to convert


def test_a_format_this_version_cannot_read_is_named(tmp_path):
    import json

    with np.load(V1 / "svm.npz", allow_pickle=False) as f:
        arrays = dict(f)
    head = json.loads(str(arrays["__chainrule__"]))
    arrays["__chainrule__"] = np.array(json.dumps({**head, "version": 3}))
    np.savez(tmp_path / "v3.npz", **arrays)
    with pytest.raises(ValueError, match=r"format version 3; this chainrule reads versions 1 to 2"):
        load_model(tmp_path / "v3.npz")
