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
