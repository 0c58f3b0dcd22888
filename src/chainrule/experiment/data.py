"""The data of a trial: the splits, one preprocessing fitted on the training images, and
each model input layout computed once."""

from __future__ import annotations

import numpy as np

from chainrule.data import Preprocessor
from chainrule.models.spec import LAYOUTS

__all__ = ["SPLITS", "TrialData"]

SPLITS = ("train", "val", "test")


class TrialData:
    """Training images (and validation and test images) ready for any model.

    Parameters
    ----------
    train, val, test : datasets with ``images`` (N, H, W, C) on the 0..255 scale and
        ``labels`` (N,) int; ``train`` also with ``classes`` (names, ``classes[label]``).
        ``val`` and ``test`` may be None.
    source : where the data came from, kept in model files and metrics
        (``{"name": "digits", "val_fraction": 0.2, "seed": 0}``)

    Notes
    -----
    The preprocessing (scale to [0, 1], subtract the training images' channel means) is
    fitted once on the training images; :meth:`inputs` gives each split in the layout a
    model wants (``"rows"`` (N, H*W*C) or ``"images"`` (N, H, W, C), float32), computed on
    first use and kept, so several models share it.
    """

    def __init__(self, train, val=None, test=None, *, source: dict | None = None):
        self._splits = {"train": train, "val": val, "test": test}
        self.classes = [str(c) for c in train.classes]
        self.image_shape = tuple(int(s) for s in np.shape(train.images)[1:])
        self.source = dict(source or {})
        self._preps = {"rows": Preprocessor().fit(train.images)}
        self._inputs: dict[tuple[str, str], np.ndarray] = {}

    def has(self, split: str) -> bool:
        return self._splits[split] is not None

    def size(self, split: str) -> int:
        """Images in the split (0 without it)."""
        return 0 if not self.has(split) else len(self._splits[split].labels)

    def labels(self, split: str) -> np.ndarray | None:
        """Labels (N,) of the split, None without it."""
        return None if not self.has(split) else np.asarray(self._splits[split].labels)

    def images(self, split: str) -> np.ndarray | None:
        """The split's images as loaded (N, H, W, C) uint8, None without the split."""
        return None if not self.has(split) else self._splits[split].images

    def files(self, split: str) -> list[str] | None:
        """The split's file names (images read from a folder), else None."""
        return None if not self.has(split) else getattr(self._splits[split], "files", None)

    def preprocessor(self, layout: str) -> Preprocessor:
        """The fitted preprocessing that makes ``layout`` (kept in model files)."""
        if layout not in LAYOUTS:
            raise ValueError(f"unknown input layout {layout!r}; choose one of {LAYOUTS}")
        if layout not in self._preps:
            state = {**self._preps["rows"].state_dict(), "flatten": np.array(layout == "rows")}
            self._preps[layout] = Preprocessor.from_state_dict(state)
        return self._preps[layout]

    def inputs(self, layout: str, split: str) -> np.ndarray | None:
        """The split as model input in ``layout``, float32; None without the split."""
        if not self.has(split):
            return None
        key = (layout, split)
        if key not in self._inputs:
            images = self._splits[split].images
            self._inputs[key] = self.preprocessor(layout).transform(images)
        return self._inputs[key]

    def describe(self) -> dict:
        """The data as recorded in ``metrics.json``."""
        return {
            "name": self.source.get("name"),
            "image_shape": list(self.image_shape),
            "classes": self.classes,
            "n_train": self.size("train"),
            "n_val": self.size("val"),
            "val_fraction": self.source.get("val_fraction"),
            "seed": self.source.get("seed"),
        }
