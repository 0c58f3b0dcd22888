"""Model files of an earlier format, read as files of the current one.

Format 1 (chainrule before the estimators trained by gradient descent shared one base,
`NetworkClassifier`) differs from format 2 in two families' hyperparameters and in how
the linear classifiers store their layer:

- ``svm``, ``softmax``: the learning rate was multiplied by ``lr_decay`` after every
  epoch; it follows ``lr_schedule`` now (``"exponential"``: decayed to 1% by the end of
  the run). The layer was ``W_`` (D, C) and ``b_`` (C,), stored with the training
  histories; it is ``net.weight`` and ``net.bias`` with ``n_features_in_`` now, as
  every network stores its layers. The weights are the same numbers.
- ``twolayer``, ``mlp``: ``aug_padding=None`` meant "1 pixel per 16 of image side"; the
  value is stored now.

`upgrade` turns an open format-1 archive into a view of it in format 2 (members
renamed, dropped or made from the headers, the hyperparameters rewritten; nothing is
read that the current format would not read), so the one reader
(``models/_modelfile.py``), with all its checks, reads it, and ``upgrade_model_file``
writes the current format.
The hyperparameter a file had that the current format has no place for is kept in the
loaded model's ``extra["upgraded"]``.
"""

from __future__ import annotations

import json

import numpy as np

from chainrule._npz import Header

__all__ = ["upgrade"]

_LINEAR = ("svm", "softmax")
_LINEAR_HISTORIES = ("loss_history_", "epoch_loss", "train_acc", "val_acc")


class UpgradedArchive:
    """An archive's members seen under the current format's names.

    ``renamed`` : current name -> the archive's name; ``made`` : current name -> an
    array made in memory (it replaces a member of that name); ``dropped`` : the
    archive's members the current format does not have.
    """

    def __init__(self, archive, renamed: dict, made: dict, dropped: set):
        self._archive = archive
        self._renamed = renamed
        self._made = {k: np.asarray(v) for k, v in made.items()}
        gone = set(dropped) | set(renamed.values()) | set(self._made)
        self.names = [n for n in archive.names if n not in gone] + [*renamed, *self._made]
        self.others = archive.others

    def header(self, name: str) -> Header:
        if name in self._made:
            arr = self._made[name]
            return Header(tuple(arr.shape), arr.dtype)
        return self._archive.header(self._renamed.get(name, name))

    def read(self, name: str) -> np.ndarray:
        if name in self._made:
            return self._made[name]
        return self._archive.read(self._renamed.get(name, name))


def _linear(archive, params: dict, extra: dict):
    renamed = {"model/net.weight": "model/W_", "model/net.bias": "model/b_"}
    made = {}
    if "model/W_" in archive.names:
        made["model/n_features_in_"] = np.array(archive.header("model/W_").shape[0], np.int64)
    if "lr_decay" in params:
        extra.setdefault("upgraded", {})["lr_decay"] = params.pop("lr_decay")
        params["lr_schedule"] = "exponential"
    dropped = {f"model/{k}" for k in _LINEAR_HISTORIES}
    return renamed, made, dropped


def _fully_connected(params: dict) -> None:
    if "aug_padding" in params and params["aug_padding"] is None:
        shape = params.get("image_shape")
        try:
            side = min(int(shape[0]), int(shape[1]))
        except (TypeError, ValueError, IndexError):  # no image shape: no augmentation
            side = 0
        params["aug_padding"] = max(1, side // 16)


def upgrade(archive, version: int, name: str, params: dict, extra: dict):
    """``(archive, params, extra)`` of a file of format ``version`` (1) of model family
    ``name``, as the current format has them."""
    if version != 1:
        raise ValueError(f"no upgrade from model file format {version}")
    params, extra = dict(params), dict(extra)
    renamed, made, dropped = {}, {}, set()
    if name in _LINEAR:
        renamed, made, dropped = _linear(archive, params, extra)
    elif name in ("twolayer", "mlp"):
        _fully_connected(params)
    if "upgraded" in extra or renamed:
        extra.setdefault("upgraded", {})["from_format"] = version
    made["params_json"] = np.array(json.dumps(params))
    made["extra_json"] = np.array(json.dumps(extra))
    return UpgradedArchive(archive, renamed, made, dropped), params, extra
