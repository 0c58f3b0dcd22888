"""Model files: one ``.npz`` holding a fitted model, its preprocessing and its class names.

Layout of the archive (every member a plain array; nothing is pickled):

==================  ===========================================================
``__chainrule__``   JSON string: ``{"format": "chainrule-model", "version": 2,
                    "members": [...], ...}``: the names of all other members
``model_class``     registered name of the model (``"knn"``, ``"mlp"``, ...)
``params_json``     JSON string of the model's hyperparameters as trained (`model_params`)
``classes_json``    JSON list of class names (``classes[label]`` names a label)
``extra_json``      JSON object of anything else worth keeping (metrics, data source)
``model/<key>``     arrays from ``model._state_dict()`` (see ``_model_state``)
``prep/<key>``      arrays from ``preprocessor.state_dict()`` (absent without one)
==================  ===========================================================

Files are read with ``allow_pickle=False``, and nothing a file claims is believed before it
is checked (``models/_modelfile.py``, in order): the members are listed from the zip
directory and must be exactly those the file's header lists (a file that lost one, its
preprocessing say, is damaged, not a model without preprocessing); only those the model's
family declares (``ModelSpec.stored``: names, dtypes, sizes named ``D``, ``C``... that must
agree with each other and with the hyperparameters) and those of the preprocessing are
admitted, and hyperparameters that call for more arrays than the file holds are refused
as the declaration is made; each member's ``.npy`` header must describe exactly the bytes
it holds; the arrays together must fit in memory (``max_bytes``) before one of them is
read, and the family's memory bound for one image before the model is built; float
weights must be finite; every label the model predicts must have a name. Files of format
version 1 list no members: they load when they hold preprocessing (which is all or
nothing; the family declares the rest), and are refused otherwise, with the way to
convert them (`upgrade_model_file`); they are read as files of the current format
(``models/_compat.py`` says how the formats differ). Anything that is not such an archive, or is
truncated, damaged or inconsistent, is refused with a ``ValueError`` that names the file
and the problem. ``save_model`` checks a state against the same declaration, so that what
is written can be read.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from chainrule._files import atomic_write, open_file
from chainrule._memory import physical_memory
from chainrule._npz import DamagedArchive, NotAnArchive, NpzArchive
from chainrule.models._layout import check_layout, check_values, declared_members
from chainrule.models._modelfile import FORMAT, FORMAT_VERSION, MARKER, read_model
from chainrule.models.registry import get_model_spec, model_name

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "LoadedModel",
    "find_model_file",
    "load_model",
    "model_params",
    "save_model",
    "upgrade_model_file",
]

# The model file of a training run folder (a comparison names each after its model).
MODEL_FILE = "model.npz"


@dataclass
class LoadedModel:
    """A model read from a file, with what is needed to apply it to raw images.

    Attributes
    ----------
    model : the fitted estimator
    preprocessor : ``chainrule.data.Preprocessor`` or None
    classes : list of str, ``classes[label]`` is the name of label ``label``
    name : registered model name (``"knn"``, ``"svm"``, ...)
    params : dict of hyperparameters the model was built with
    extra : dict of whatever was stored alongside (metrics, data source, ...)
    path : the file it came from
    """

    model: Any
    preprocessor: Any
    classes: list[str]
    name: str
    params: dict
    extra: dict = field(default_factory=dict)
    path: Path | None = None

    def features(self, images: np.ndarray) -> np.ndarray:
        """Raw images (N, H, W, C), 0..255 -> the model's input rows (N, D), float32."""
        if self.preprocessor is None:
            x = np.asarray(images)
            return x.reshape(x.shape[0], -1).astype(np.float32)
        return self.preprocessor.transform(images)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted labels (N,) for raw images (N, H, W, C)."""
        return np.asarray(self.model.predict(self.features(images)))

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, len(model.classes_)) for raw images (N, H, W, C)."""
        return np.asarray(self.model.predict_proba(self.features(images)))


def _jsonable(value: Any) -> Any:
    """Hyperparameter values as JSON: tuples become lists, NumPy scalars Python numbers.

    A ``numpy.random.Generator`` cannot be stored; it is recorded as ``None`` (unseeded).
    """
    if isinstance(value, np.random.Generator):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store a value of type {type(value).__name__} in a model file")


def _json_array(value: Any) -> np.ndarray:
    return np.array(json.dumps(value))


def _check_arrays(arrays: dict[str, Any], what: str) -> dict[str, np.ndarray]:
    out = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{what} keys must be non-empty strings, got {key!r}")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(f"{what}[{key!r}] holds Python objects; only plain arrays are stored")
        out[key] = arr
    return out


def _names_by_label(names: list[str], labels: np.ndarray) -> list[str]:
    """Class names indexed by label, from names per label or per entry of ``labels``."""
    if labels.dtype.kind not in "iu" or labels.size == 0:
        return names
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"the model's labels must be non-negative to be named, got {low}")
    if len(names) > high:
        return names
    if len(names) == labels.size:  # one name per entry of classes_
        by_label = [str(i) for i in range(high + 1)]
        for label, name in zip(labels.tolist(), names):
            by_label[label] = name
        return by_label
    raise ValueError(
        f"{len(names)} class names given for a model with labels up to {high}: give one "
        f"name per label 0..{high}, or one per entry of classes_ ({labels.size})"
    )


def model_params(model) -> dict:
    """The hyperparameters a model file records of ``model``: ``get_params()``, with each
    ``"auto"`` replaced by the value fit chose for it (``fitted_params_``)."""
    params = model.get_params() if hasattr(model, "get_params") else {}
    fitted = getattr(model, "fitted_params_", None)
    if isinstance(fitted, dict):
        auto = [k for k, v in params.items() if isinstance(v, str) and v == "auto"]
        params.update({k: fitted[k] for k in auto if k in fitted})
    return params


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed ``.npz`` atomically (temporary file, then rename)."""
    with atomic_write(path) as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, arr in arrays.items():
                with zf.open(key + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)


def save_model(path, model, preprocessor=None, classes=None, extra=None) -> Path:
    """Write a fitted ``model`` (and its preprocessing and class names) to ``path``.

    Parameters
    ----------
    path : str or Path, written exactly as given (no suffix is added)
    model : a fitted estimator of a registered class (see ``MODEL_REGISTRY``)
    preprocessor : a fitted ``Preprocessor`` (anything with ``state_dict()``) or None
    classes : class names, one per label ``0 .. max(classes_)`` (``classes[label]``), or
        one per entry of the model's ``classes_``; default: the labels as strings.
        The file keeps one name per label (a label the model never saw is named by its
        number).
    extra : JSON-able dict stored as is (training metrics, data source, ...)

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    name = model_name(model)
    if not hasattr(model, "_state_dict"):
        raise TypeError(f"{type(model).__name__} has no _state_dict(); it cannot be saved")
    state = _check_arrays(_model_state(model, preprocessor), "model state")
    _check_state(name, get_model_spec(name), model, state)
    labels = np.asarray(getattr(model, "classes_", state.get("classes_", [])))
    if classes is None:
        if "classes_" not in state and not hasattr(model, "classes_"):
            raise ValueError("classes not given and the model has no classes_ (is it fitted?)")
        classes = [str(c) for c in labels]
    classes = _names_by_label([str(c) for c in classes], labels)
    params = _jsonable(model_params(model))
    from chainrule import __version__

    arrays: dict[str, np.ndarray] = {
        "model_class": np.array(name),
        "params_json": _json_array(params),
        "classes_json": _json_array(classes),
        "extra_json": _json_array(_jsonable(extra or {})),
    }
    for key, arr in state.items():
        arrays[f"model/{key}"] = arr
    if preprocessor is not None:
        for key, arr in _check_arrays(preprocessor.state_dict(), "preprocessor state").items():
            arrays[f"prep/{key}"] = arr
    _write_npz(path, _with_header(arrays, __version__))
    return path


def _with_header(arrays: dict[str, np.ndarray], version: str) -> dict[str, np.ndarray]:
    """``arrays`` after the header member that names them all."""
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "chainrule": version,
        "members": list(arrays),
    }
    return {MARKER: _json_array(header), **arrays}


# -- which file ----------------------------------------------------------------------------


def find_model_file(run: str | os.PathLike, name: str | None = None) -> Path:
    """The model file of a run: ``run`` itself if it is a file, else the folder's model.

    In a folder, ``name`` picks ``<name>.npz`` (a model of a comparison run); without it the
    folder's ``model.npz`` is used, or its only model file. Raises ``FileNotFoundError``
    or ``ValueError`` with a message that lists the choices.
    """
    run = Path(run)
    if not run.exists():
        raise FileNotFoundError(f"no run folder or model file {str(run)!r}")
    if not run.is_dir():
        if name is not None:
            raise ValueError(f"{run} is a model file; a model name applies to run folders only")
        return run
    candidates = sorted(
        p.name
        for p in run.glob("*.npz")
        if p.is_file() and not p.name.startswith((".", "checkpoint"))
    )
    if name is not None:
        wanted = name if name.endswith(".npz") else f"{name}.npz"
        if wanted in candidates:
            return run / wanted
        raise FileNotFoundError(
            f"run folder {run} has no model {wanted!r}"
            + (f"; it has {', '.join(candidates)}" if candidates else "")
        )
    if MODEL_FILE in candidates:
        return run / MODEL_FILE
    if len(candidates) == 1:
        return run / candidates[0]
    if not candidates:
        raise FileNotFoundError(f"run folder {run} has no model file (*.npz)")
    names = ", ".join(c[: -len(".npz")] for c in candidates)
    raise ValueError(
        f"run folder {run} holds several models ({names}); pick one with --model NAME "
        "(model=NAME in Python)"
    )


def _model_state(model, preprocessor) -> dict:
    """The arrays stored for ``model``: its ``_state_dict()``, or, for a model that
    defines ``_state_dict_with(preprocessor)`` (and ``_load_state_dict_with(state,
    preprocessor)`` to read them back), what it stores knowing the preprocessing (k-NN:
    the training images in their own dtype instead of the preprocessed rows)."""
    if hasattr(model, "_state_dict_with"):
        return model._state_dict_with(preprocessor)
    return model._state_dict()


def _check_state(name: str, spec, model, state: dict[str, np.ndarray]) -> None:
    """Refuse to write a state that breaks its family's declaration (it could not be read)."""
    declared = declared_members(spec, model, state)
    undeclared = [k for k in state if k not in declared]
    if undeclared:
        raise ValueError(
            f"the spec of {name} does not declare the member {undeclared[0]!r} of its state"
        )
    try:
        sizes = check_layout(state, declared, "")
        for key, arr in state.items():
            check_values(key, arr, declared[key], sizes)
    except ValueError as e:
        raise ValueError(
            f"the state of {name} does not match its spec's declaration: {e}"
        ) from None


# -- reading ---------------------------------------------------------------------------------


def _open_file(path: Path) -> IO[bytes]:
    """The model file, for reading: a plain file (a link to one is followed; a FIFO or a
    device is refused rather than waited on)."""
    return open_file(path)


def load_model(path, model: str | None = None, *, max_bytes: int | None = None) -> LoadedModel:
    """Read a model file written by :func:`save_model`.

    Parameters
    ----------
    path : a model file, or a run folder (its ``model.npz``, or its only model file)
    model : in a run folder of several models (a comparison), which one (``"svm"``)
    max_bytes : refuse a file whose arrays, or whose model built for one image, take
        more memory than this (default: the machine's physical memory)

    Notes
    -----
    The file is checked before its arrays are read: exactly the members its header
    lists, only those its model family declares (see ``ModelSpec.stored``), with sizes
    that agree with each other and with the hyperparameters, each holding exactly the
    bytes its header describes, in all no more than ``max_bytes``; then, before the model
    is built, the family's memory bound (``ModelSpec.memory``) for one image; float
    weights must be finite. A file of format version 1 without preprocessing is refused
    with the way to convert it (`upgrade_model_file`).

    Raises ``FileNotFoundError`` if there is no such file, ``PermissionError`` if it
    cannot be read, and ``ValueError`` (naming the file and the problem) if it is not a
    chainrule model file, is truncated or damaged, or was written by an incompatible
    version.
    """
    path = find_model_file(path, model)
    return LoadedModel(**_load(path, max_bytes), path=path)


def _load(path: Path, max_bytes: int | None, *, trust_v1: bool = False, keep=None) -> dict:
    """The parts of the `LoadedModel` in ``path`` (and with ``keep``, a dict, every
    member's array in it, for `upgrade_model_file`)."""
    where = f"model file {str(path)!r}"
    limit = physical_memory() if max_bytes is None else int(max_bytes)
    try:
        f = _open_file(path)
    except PermissionError:
        raise PermissionError(f"{where} cannot be read: permission denied") from None
    except OSError as e:
        raise OSError(f"{where} cannot be read: {e}") from None
    with f:
        try:
            archive = NpzArchive(f)
        except NotAnArchive:
            if MARKER.encode() in _head(f):
                raise ValueError(f"{where} is truncated or damaged (no zip directory)") from None
            raise ValueError(
                f"{where} is not a chainrule model file (not an .npz archive)"
            ) from None
        except DamagedArchive as e:
            raise ValueError(f"{where} is truncated or damaged ({e})") from None
        with archive:
            try:
                parts = read_model(archive, path, where, limit, trust_v1=trust_v1)
                read = parts.pop("archive")  # as the current format (an earlier one upgraded)
                if keep is not None:
                    keep.update((k, read.read(k)) for k in read.names)
                return parts
            except DamagedArchive as e:
                raise ValueError(f"{where} is truncated or damaged ({e})") from None


def upgrade_model_file(path, out=None, *, max_bytes: int | None = None) -> Path:
    """Rewrite a model file of format version 1 in the current format (to ``out``, by
    default over ``path`` itself, atomically); returns the path written.

    A version 1 file does not list its members, so one without preprocessing cannot be
    told from one whose preprocessing was lost, and `load_model` refuses it: convert it
    once, if it was saved without preprocessing. The arrays are copied as the current
    format has them (``models/_compat.py``), after every check `load_model` makes; the
    header then lists them.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    _load(path, max_bytes, trust_v1=True, keep=arrays)
    header = json.loads(str(arrays.pop(MARKER)))
    out = path if out is None else Path(out)
    _write_npz(out, _with_header(arrays, header.get("chainrule", "")))
    return out


def _head(f: IO[bytes], size: int = 4096) -> bytes:
    try:
        f.seek(0)
        return f.read(size)
    except OSError:
        return b""
