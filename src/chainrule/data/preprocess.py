"""Image preprocessing as a fitted object that travels with a model."""

from __future__ import annotations

import numpy as np

from .layout import as_images, image_shape

__all__ = ["Preprocessor"]

_FORMAT_VERSION = 1


class Preprocessor:
    """Scale to [0, 1], subtract the per-channel training mean, flatten, optional bias column.

    ``transform`` maps images (N, H, W, C) on the 0..255 pixel scale to float32 rows
    (N, H*W*C), in HWC order (row ``i`` is ``images[i].ravel()`` after the pixel-wise
    operations), plus a trailing column of ones when ``bias=True`` (the bias trick: the last
    row of a weight matrix acts as the bias). With ``flatten=False`` it keeps the images
    as images, channels-last as they came: float32 (N, H, W, C), the layout the
    convolutional networks read (see `chainrule.data.layout`).

    Parameters
    ----------
    center : bool
        Subtract the per-channel mean of the training images (on the [0, 1] scale).
    standardize : bool
        Also divide by the per-channel standard deviation (a channel that is constant in the
        training images is left unscaled).
    bias : bool
        Append a column of ones (rows only).
    flatten : bool
        Rows (N, H*W*C) when True; images (N, H, W, C) when False.

    Attributes (after ``fit``)
    --------------------------
    image_shape_ : tuple (H, W, C)
    mean_ : ndarray (C,), float32, on the [0, 1] scale (zeros when ``center=False``)
    std_ : ndarray (C,), float32 (ones when ``standardize=False``)
    n_features_out_ : int, H*W*C (+1 with the bias column)

    The state (:meth:`state_dict`) is a dict of arrays only, so it can be stored in an
    ``.npz`` file written without pickle.
    """

    def __init__(
        self,
        center: bool = True,
        standardize: bool = False,
        bias: bool = False,
        flatten: bool = True,
    ):
        if bias and not flatten:
            raise ValueError("a bias column needs flattened rows (flatten=True)")
        self.center = bool(center)
        self.standardize = bool(standardize)
        self.bias = bool(bias)
        self.flatten = bool(flatten)
        self.image_shape_: tuple[int, int, int] | None = None
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    # -- fitting -----------------------------------------------------------------------

    def fit(self, images) -> Preprocessor:
        """Learn the per-channel statistics of ``images`` (N, H, W, C), 0..255 scale."""
        x = _as_images(images, "fit")
        n, h, w, c = x.shape
        channels = x.reshape(-1, c)
        if self.center or self.standardize:
            # Summing in float64 keeps the mean exact for any number of uint8 pixels.
            mean = channels.sum(axis=0, dtype=np.float64) / (channels.shape[0] * 255.0)
        else:
            mean = np.zeros(c)
        if self.standardize:
            var = np.zeros(c)
            step = max(1, (1 << 22) // c)
            for lo in range(0, channels.shape[0], step):
                block = channels[lo : lo + step].astype(np.float64) / 255.0 - mean
                var += np.einsum("ij,ij->j", block, block)
            std = np.sqrt(var / channels.shape[0])
            std[std < 1e-8] = 1.0
        else:
            std = np.ones(c)
        self.image_shape_ = (h, w, c)
        self.mean_ = (mean if self.center else np.zeros(c)).astype(np.float32)
        self.std_ = std.astype(np.float32)
        return self

    def fit_transform(self, images) -> np.ndarray:
        return self.fit(images).transform(images)

    # -- applying ----------------------------------------------------------------------

    @property
    def n_features_out_(self) -> int:
        h, w, c = self._fitted_shape()
        return h * w * c + int(self.bias)

    def _fitted_shape(self) -> tuple[int, int, int]:
        if self.image_shape_ is None:
            raise RuntimeError("this Preprocessor is not fitted yet; call fit(images) first")
        return self.image_shape_

    def transform(self, images) -> np.ndarray:
        """Images (N, H, W, C) (uint8 or real, 0..255 scale) -> float32 rows (N, D).

        D is H*W*C, plus one with ``bias=True``; with ``flatten=False`` the result is the
        images, float32 (N, H, W, C), instead (the same numbers, not flattened). The image
        shape must be the one seen by ``fit``.
        """
        shape = self._fitted_shape()
        x = as_images(
            _as_images(images, "transform"), shape, name="images", owner="this preprocessor"
        )
        n = x.shape[0]
        d = shape[0] * shape[1] * shape[2]
        out = np.empty((n, d + int(self.bias)), dtype=np.float32)
        body = out[:, :d].reshape((n, *shape))
        # (x / 255 - mean) / std == x * scale - shift, one pass each, in place.
        scale = (1.0 / (255.0 * self.std_.astype(np.float64))).astype(np.float32)
        shift = (self.mean_.astype(np.float64) / self.std_).astype(np.float32)
        np.multiply(x, scale, out=body, casting="unsafe")
        if self.center:
            np.subtract(body, shift, out=body)
        if self.bias:
            out[:, d] = 1.0
        return out if self.flatten else body

    # -- state -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The fitted state as arrays (no Python objects), ready for ``np.savez``."""
        shape = self._fitted_shape()
        return {
            "version": np.array(_FORMAT_VERSION, dtype=np.int64),
            "image_shape": np.array(shape, dtype=np.int64),
            "mean": self.mean_.copy(),
            "std": self.std_.copy(),
            "center": np.array(self.center),
            "standardize": np.array(self.standardize),
            "bias": np.array(self.bias),
            "flatten": np.array(self.flatten),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> Preprocessor:
        """Rebuild a fitted Preprocessor from :meth:`state_dict` output (or a loaded npz)."""
        required = ("version", "image_shape", "mean", "std", "center", "standardize", "bias")
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(f"preprocessor state is missing {', '.join(missing)}")
        version = int(np.asarray(state["version"]))
        if version != _FORMAT_VERSION:
            raise ValueError(
                f"preprocessor state has format version {version}; this chainrule reads "
                f"version {_FORMAT_VERSION}"
            )
        shape = image_shape(state["image_shape"], name="preprocessor state: image_shape")
        c = shape[2]
        mean = np.asarray(state["mean"], dtype=np.float32)
        std = np.asarray(state["std"], dtype=np.float32)
        if mean.shape != (c,) or std.shape != (c,):
            raise ValueError(
                f"preprocessor state: mean and std must have shape ({c},), got "
                f"{mean.shape} and {std.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("preprocessor state: mean and std must be finite, std positive")
        pre = cls(
            center=bool(np.asarray(state["center"])),
            standardize=bool(np.asarray(state["standardize"])),
            bias=bool(np.asarray(state["bias"])),
            # states written before images could keep their shape are rows
            flatten=bool(np.asarray(state.get("flatten", True))),
        )
        pre.image_shape_ = shape  # type: ignore[assignment]
        pre.mean_ = mean.copy()
        pre.std_ = std.copy()
        return pre

    def __repr__(self) -> str:
        fitted = f", image_shape={self.image_shape_}" if self.image_shape_ else ""
        return (
            f"Preprocessor(center={self.center}, standardize={self.standardize}, "
            f"bias={self.bias}, flatten={self.flatten}{fitted})"
        )


def _as_images(images, what: str) -> np.ndarray:
    x = getattr(images, "images", images)  # a Dataset is accepted too
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{what}: images must have shape (N, H, W, C), got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{what}: no images (N = 0)")
    if x.dtype == np.bool_ or not (
        np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    ):
        raise TypeError(f"{what}: images must be uint8 or real numbers, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise ValueError(f"{what}: images contain NaN or infinity")
    return x
