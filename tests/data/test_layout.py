"""The one check of an image shape, and rows and images as views of each other."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.data.layout import as_images, image_shape


def test_an_image_shape_is_three_positive_ints():
    assert image_shape((8, 6, 3)) == (8, 6, 3)
    assert image_shape(np.array([8, 6, 3])) == (8, 6, 3)
    assert all(type(d) is int for d in image_shape(np.array([8, 6, 3], dtype=np.int64)))
    assert image_shape([4, 4, 1], n_features=16) == (4, 4, 1)
    for bad in [(8, 6), (8, 6, 0), (8, 6, 3.0), (8, 6, True), "863", 7, None]:
        with pytest.raises(ValueError, match=r"image_shape must be \(H, W, C\) of positive ints"):
            image_shape(bad)
    with pytest.raises(ValueError, match=r"shape_ \(4, 4, 2\) does not match rows of 16 features"):
        image_shape((4, 4, 2), 16, name="shape_")


def test_rows_and_images_are_views_of_each_other():
    images = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    rows = images.reshape(2, -1)
    viewed = as_images(rows, (3, 4, 2))
    np.testing.assert_array_equal(viewed, images)
    assert np.shares_memory(viewed, rows)
    assert as_images(images, (3, 4, 2)) is images
    assert as_images(images) is images
    with pytest.raises(ValueError, match=r"their image shape \(H, W, C\) is needed"):
        as_images(rows)
    with pytest.raises(ValueError, match="does not match rows of 24 features"):
        as_images(rows, (3, 4, 3))
    with pytest.raises(
        ValueError, match=r"X holds images \(H, W, C\) = \(3, 4, 2\), but the net was fitted on"
    ):
        as_images(images, (4, 3, 2), owner="the net")
    with pytest.raises(ValueError, match=r"images \(N, H, W, C\) or rows \(N, H\*W\*C\)"):
        as_images(images[0])
