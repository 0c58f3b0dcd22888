"""How images are held as arrays, and the one check of an image shape.

chainrule holds a batch of images channels-last, (N, H, W, C): the layout datasets
decode into, the preprocessing keeps (``Preprocessor(flatten=False)``), augmentation
works on and the convolutions read without a copy. A row (H*W*C,) is such an image
flattened (``image.ravel()``, HWC order), as the linear classifiers and fully connected
networks read it; viewing rows as images and back is a reshape, never a copy.

`image_shape` is the one place an image shape (H, W, C) given by a user, read from a
model file or implied by a number of features is checked; `as_images` views rows or
images as images of a checked shape.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["as_images", "image_shape"]


def image_shape(value, n_features: int | None = None, *, name: str = "image_shape"):
    """``value`` as an image shape (H, W, C) of positive Python ints.

    ``n_features``: when given, ``H * W * C`` must equal it (the values of a row).
    Raises ``ValueError`` naming ``name`` and the problem otherwise.
    """
    try:
        dims = tuple(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else tuple(value)
    except TypeError:
        dims = ()
    if len(dims) != 3 or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in dims
    ):
        raise ValueError(f"{name} must be (H, W, C) of positive ints, got {value!r}")
    shape = tuple(int(d) for d in dims)
    if n_features is not None and math.prod(shape) != n_features:
        raise ValueError(
            f"{name} {shape} does not match rows of {n_features} features "
            f"(H * W * C = {math.prod(shape)})"
        )
    return shape


def as_images(X: np.ndarray, shape=None, *, name: str = "X", owner: str = "the model"):
    """Images (N, H, W, C) of ``X``: the images themselves, or rows (N, H*W*C) viewed as
    images of ``shape`` (no copy for C-contiguous rows).

    ``shape``: the (H, W, C) the images must have (for images) or the rows were
    flattened from (for rows; required then). ``owner`` names who was fitted on that
    shape in the message. Raises ``ValueError`` for another number of dimensions or a
    shape that does not match.
    """
    X = np.asarray(X)
    if X.ndim == 4:
        got = tuple(int(s) for s in X.shape[1:])
        if shape is not None and image_shape(shape) != got:
            raise ValueError(
                f"{name} holds images (H, W, C) = {got}, but {owner} was fitted on images "
                f"(H, W, C) = {image_shape(shape)}"
            )
        return X
    if X.ndim == 2:
        if shape is None:
            raise ValueError(f"{name} holds rows; their image shape (H, W, C) is needed")
        h, w, c = image_shape(shape, X.shape[1])
        return X.reshape(X.shape[0], h, w, c)
    raise ValueError(f"{name} must be images (N, H, W, C) or rows (N, H*W*C), got shape {X.shape}")
