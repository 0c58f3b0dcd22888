"""Preprocessing that keeps the image shape (channels first) for convolutional models."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.data import Preprocessor


def test_images_layout_holds_the_values_of_the_rows_channels_first():
    images = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3, 2), dtype=np.uint8)
    rows = Preprocessor().fit(images).transform(images)
    chw = Preprocessor(flatten=False).fit(images).transform(images)
    assert chw.shape == (5, 2, 4, 3) and chw.dtype == np.float32 and chw.flags.c_contiguous
    np.testing.assert_array_equal(chw.transpose(0, 2, 3, 1).reshape(5, -1), rows)
    # channel c of image i is that channel's pixels, scaled and centred
    mean = images[..., 1].mean() / 255.0
    np.testing.assert_allclose(chw[2, 1], images[2, :, :, 1] / 255.0 - mean, atol=1e-6)


def test_the_layout_travels_with_the_state():
    images = np.random.default_rng(1).integers(0, 256, size=(4, 3, 3, 3), dtype=np.uint8)
    pre = Preprocessor(flatten=False).fit(images)
    back = Preprocessor.from_state_dict(pre.state_dict())
    assert back.flatten is False
    np.testing.assert_array_equal(back.transform(images), pre.transform(images))
    # a state written before the option existed has no "flatten": rows
    state = Preprocessor().fit(images).state_dict()
    del state["flatten"]
    assert Preprocessor.from_state_dict(state).transform(images).shape == (4, 27)


def test_a_bias_column_needs_rows():
    with pytest.raises(ValueError, match="bias column needs flattened rows"):
        Preprocessor(bias=True, flatten=False)
