"""The `Dataset` container: images, integer labels and class names, validated on creation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Dataset"]


class Dataset:
    """A labelled set of images.

    Attributes
    ----------
    images : ndarray, shape (N, H, W, C), dtype uint8
        Pixel values 0..255, channels last (C is 1 for grayscale, 3 for RGB).
    labels : ndarray, shape (N,), dtype int64
        Class indices in ``0 .. len(classes) - 1``.
    classes : list of str
        Class names; ``classes[labels[i]]`` names image ``i``.
    name : str
        Where the images came from (``"digits"``, ``"cifar10"``, a folder path, ...).
    split : str or None
        Which part of the source this is (``"train"``, ``"val"``, ``"test"``, ``"all"``).
    files : list of str or None
        Where each image came from, for images read from files (an image folder: the
        path relative to the folder, ``"train/cat/0001.png"``); None otherwise.

    Integer labels of another integer dtype are converted to int64; anything else that does
    not fit the description above is refused with a ``TypeError`` or ``ValueError``.
    """

    __slots__ = ("images", "labels", "classes", "name", "split", "files")

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        classes: Sequence[str],
        name: str = "",
        split: str | None = None,
        files: Sequence[str] | None = None,
    ) -> None:
        self.name = str(name)
        self.split = split
        self.images = _check_images(images, self._what())
        self.labels = _check_labels(labels, self._what())
        self.classes = _check_classes(classes, self._what())
        n_img, n_lab = self.images.shape[0], self.labels.shape[0]
        if n_img != n_lab:
            raise ValueError(f"{self._what()}: {n_img} images but {n_lab} labels")
        if n_img == 0:
            raise ValueError(f"{self._what()} has no images")
        self.files = None if files is None else [str(f) for f in files]
        if self.files is not None and len(self.files) != n_img:
            raise ValueError(f"{self._what()}: {n_img} images but {len(self.files)} file names")
        lo, hi = int(self.labels.min()), int(self.labels.max())
        if lo < 0 or hi >= len(self.classes):
            raise ValueError(
                f"{self._what()}: labels must lie in 0..{len(self.classes) - 1} "
                f"(one per class), found values from {lo} to {hi}"
            )

    def _what(self) -> str:
        label = self.name or "dataset"
        return f"dataset {label!r}" + (f" (split {self.split!r})" if self.split else "")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every image."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        """Number of images of each class, shape (len(classes),), int64."""
        return np.bincount(self.labels, minlength=len(self.classes)).astype(np.int64)

    def subset(self, indices: np.ndarray, split: str | None = None) -> Dataset:
        """The images at ``indices`` (an integer array), as a new Dataset with the same classes."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise TypeError("indices must be a one-dimensional integer array")
        return Dataset(
            self.images[indices],
            self.labels[indices],
            self.classes,
            name=self.name,
            split=self.split if split is None else split,
            files=None if self.files is None else [self.files[i] for i in indices],
        )

    def __repr__(self) -> str:
        h, w, c = self.image_shape
        split = f", split={self.split!r}" if self.split else ""
        return (
            f"Dataset(name={self.name!r}{split}, n={len(self)}, image_shape=({h}, {w}, {c}), "
            f"classes={len(self.classes)})"
        )


def _check_images(images: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{what}: images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TypeError(
            f"{what}: images must have dtype uint8 (pixel values 0..255), got {images.dtype}"
        )
    if images.ndim != 4:
        raise ValueError(
            f"{what}: images must have shape (N, H, W, C), got an array of shape {images.shape}"
        )
    if images.shape[3] not in (1, 3, 4):
        raise ValueError(
            f"{what}: images must be channels-last with 1, 3 or 4 channels, got shape "
            f"{images.shape}"
        )
    return images


def _check_labels(labels: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{what}: labels must have shape (N,), got {labels.shape}")
    if labels.size and (labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer)):
        raise TypeError(f"{what}: labels must be integers, got dtype {labels.dtype}")
    return labels.astype(np.int64, copy=False)


def _check_classes(classes: Sequence[str], what: str) -> list[str]:
    if isinstance(classes, str) or not isinstance(classes, Sequence | np.ndarray):
        raise TypeError(f"{what}: classes must be a list of class names")
    out = [str(c) if isinstance(c, np.str_) else c for c in classes]
    if not out:
        raise ValueError(f"{what}: classes is empty")
    for c in out:
        if not isinstance(c, str):
            raise TypeError(f"{what}: class names must be strings, got {c!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: class names must be unique, got {out}")
    return out
