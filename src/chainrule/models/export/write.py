"""Checking and writing an ONNX model: one file, or a file and its external data.

Before anything is written under the real name, the model goes through
``onnx.checker.check_model(..., full_check=True)``, which also runs strict shape inference
(every node's types and shapes must agree with its inputs and with the declared outputs).
Files appear atomically: the model is written to a hidden temporary file (with its data
file in a hidden temporary folder) and renamed into place once complete and checked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import onnx

from chainrule._files import atomic_write, read_file, temp_dir

__all__ = ["EXTERNAL_DATA_BYTES", "data_file", "initializer_bytes", "save_checked", "side_file_of"]

# Weights beyond this size go to a side file ``<name>.data``: protobuf cannot serialize
# one message over 2 GiB, and a runtime can memory-map a side file instead of parsing it.
EXTERNAL_DATA_BYTES = 1 << 30
# An earlier model file is read (to see whether it owns a side file) up to protobuf's limit.
_MAX_MODEL_BYTES = 1 << 31


def data_file(path: Path) -> Path:
    """Where the weights of ``path`` go when they are stored as external data."""
    return path.with_name(path.name + ".data")


def initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def side_file_of(path: Path) -> bool:
    """Whether ``<path>.data`` is the external data of the ONNX model now at ``path``
    (an earlier export to ``path``): only then may writing ``path`` replace or remove it.
    A side file that is a link, or beside a file that is not such a model, belongs to
    someone else."""
    data = data_file(path)
    if not data.is_file() or data.is_symlink():
        return False
    try:
        raw = read_file(path, _MAX_MODEL_BYTES)
        old = onnx.load_model_from_string(raw)
    except Exception:  # missing, a link, too large, or not an ONNX model
        return False
    for t in old.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            if any(e.key == "location" and e.value == data.name for e in t.external_data):
                return True
    return False


def _check_destination(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"cannot write {path}: its folder is not writable")


def save_checked(model: onnx.ModelProto, path, external_data: bool | None = None) -> Path:
    """Check ``model`` and write it to ``path``; returns the path.

    external_data: True stores the weights in ``<path>.data`` next to the model, False
    in the model file, None (default) in the side file when they exceed 1 GiB. A model
    written as one file removes the ``<path>.data`` of an earlier export to ``path``.
    """
    if external_data is False and initializer_bytes(model) >= 2**31 - 2**24:
        raise ValueError(
            "the model's weights are too large for one ONNX file (protobuf's 2 GiB limit); "
            "write them as external data"
        )
    path = Path(path)
    _check_destination(path)
    if external_data is None:
        external_data = initializer_bytes(model) > EXTERNAL_DATA_BYTES
    try:
        if external_data:
            _save_external(model, path)
        else:
            onnx.checker.check_model(model, full_check=True)
            stale = side_file_of(path)
            with atomic_write(path) as f:
                f.write(model.SerializeToString())
            # The side file of the model just replaced: nothing reads it any more.
            if stale:
                data_file(path).unlink(missing_ok=True)
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _save_external(model: onnx.ModelProto, path: Path) -> None:
    """Model and data written in a temporary folder beside ``path``, checked there (the
    checker reads the data file), then both renamed into place, data first.

    ``model`` itself is changed: its initializers now point to the data file.
    """
    data = data_file(path)
    if os.path.lexists(data) and not side_file_of(path):
        raise FileExistsError(
            f"{data} is in the way of the model's weights and is not the side file of an "
            f"ONNX model at {path}; move it, or export under another name"
        )
    work = temp_dir(path.parent, path.name)
    try:
        staged = work / path.name
        onnx.save_model(
            model,
            staged,
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )
        onnx.checker.check_model(staged, full_check=True)
        os.replace(work / data.name, data)
        os.replace(staged, path)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
