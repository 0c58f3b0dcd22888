"""The ``metadata_props`` of an exported file, read without believing them.

An ``.onnx`` file is data from anywhere: its metadata strings are checked before
anything uses them. Each field chainrule reads is parsed as JSON within a bound on its
length (no recursion error escapes, whatever the nesting) and must have its exact shape:

- ``classes``: a list of strings, ``classes[label]`` naming label ``label``;
- ``labels``: a list of distinct non-negative integers (no booleans), one per column of
  ``probabilities`` where the graph fixes their number, each naming a class;
- ``params``: an object (the model's settings), or absent;
- ``preprocessing``: ``null``, or an object whose ``image_shape`` is three positive
  integers and whose ``mean`` and ``std`` are lists of one finite number per channel;
- ``test_time_flip``: ``true``, ``false`` or ``null``;
- ``resize``: ``null`` (the graph reads images of one size), or an object whose
  ``height`` and ``width`` are positive integers (the size the graph resizes images of
  any size to), or absent (files written before graphs resized);
- ``model``, ``chainrule_version``, ``probabilities``: strings.

Anything else is a ``ValueError`` that names the file and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Metadata", "read_metadata"]

# Longest metadata value read: class names of a large data set take a few MB.
MAX_CHARS = 64 << 20


@dataclass(frozen=True)
class Metadata:
    """The checked metadata of an exported file (see the module doc)."""

    classes: list[str]
    labels: np.ndarray
    params: dict | None
    preprocessing: dict | None
    test_time_flip: bool | None
    model: str | None
    resize: dict | None = None


def _json(meta: dict, key: str, where: str, required: bool = False) -> Any:
    text = meta.get(key)
    if text is None:
        if required:
            raise ValueError(f"{where} has no {key!r} in its metadata (not a chainrule export?)")
        return None
    if len(text) > MAX_CHARS:
        raise ValueError(f"{where}: its metadata {key!r} is {len(text):,} characters long")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{where}: its metadata {key!r} is nested too deeply") from None
    except ValueError:
        raise ValueError(f"{where}: its metadata {key!r} is not valid JSON") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _classes(meta: dict, where: str) -> list[str]:
    classes = _json(meta, "classes", where, required=True)
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{where}: its metadata 'classes' is not a list of class names")
    return classes


def _labels(meta: dict, where: str, classes: list[str], columns: int | None) -> np.ndarray:
    labels = _json(meta, "labels", where, required=True)
    if not isinstance(labels, list) or not labels or not all(_is_int(v) for v in labels):
        raise ValueError(f"{where}: its metadata 'labels' is not a list of integer labels")
    if min(labels) < 0 or len(set(labels)) != len(labels):
        raise ValueError(f"{where}: its metadata 'labels' are not distinct non-negative labels")
    if columns is not None and len(labels) != columns:
        raise ValueError(
            f"{where}: its metadata 'labels' names {len(labels)} labels but the graph's "
            f"probabilities have {columns} columns"
        )
    if max(labels) >= len(classes):
        raise ValueError(
            f"{where}: its metadata names {len(classes)} class names but 'labels' go up to "
            f"{max(labels)} (class names are indexed by label)"
        )
    return np.asarray(labels, dtype=np.int64)


def _numbers(values, n: int) -> bool:
    return (
        isinstance(values, list)
        and len(values) == n
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        and all(math.isfinite(v) for v in values)
    )


def _preprocessing(meta: dict, where: str) -> dict | None:
    prep = _json(meta, "preprocessing", where)
    if prep is None:
        return None
    bad = ValueError(f"{where}: its metadata 'preprocessing' is not chainrule's preprocessing")
    if not isinstance(prep, dict):
        raise bad
    shape = prep.get("image_shape")
    if not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(s) for s in shape):
        raise bad
    if min(shape) < 1 or not _numbers(prep.get("mean"), shape[2]):
        raise bad
    if not _numbers(prep.get("std"), shape[2]):
        raise bad
    for key in ("center", "standardize", "bias", "flatten"):
        if key in prep and not isinstance(prep[key], bool):
            raise bad
    return prep


def read_metadata(meta: dict[str, str], where: str, columns: int | None = None) -> Metadata:
    """Check ``meta`` (a file's ``metadata_props``); ``columns``: the number of columns
    of the graph's ``probabilities`` where it is fixed."""
    classes = _classes(meta, where)
    labels = _labels(meta, where, classes, columns)
    params = _json(meta, "params", where)
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"{where}: its metadata 'params' is not an object of settings")
    flip = _json(meta, "test_time_flip", where)
    if flip is not None and not isinstance(flip, bool):
        raise ValueError(f"{where}: its metadata 'test_time_flip' is not true or false")
    model = meta.get("model")
    prep = _preprocessing(meta, where)
    return Metadata(classes, labels, params, prep, flip, model, _resize(meta, where))


def _resize(meta: dict, where: str) -> dict | None:
    resize = _json(meta, "resize", where)
    if resize is None:
        return None
    size = [resize.get(k) for k in ("height", "width")] if isinstance(resize, dict) else []
    if len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
        raise ValueError(f"{where}: its metadata 'resize' is not a height and width to resize to")
    return resize
