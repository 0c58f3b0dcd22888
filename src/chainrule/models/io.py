"""Model files: one ``.npz`` holding a fitted model, its preprocessing and its class names.

Layout of the archive (every member a plain array; nothing is pickled):

==================  ===========================================================
``__chainrule__``   JSON string: ``{"format": "chainrule-model", "version": 2, ...}``
``model_class``     registered name of the model (``"knn"``, ``"mlp"``, ...)
``params_json``     JSON string of the model's hyperparameters as trained (`model_params`)
``classes_json``    JSON list of class names (``classes[label]`` names a label)
``extra_json``      JSON object of anything else worth keeping (metrics, data source)
``model/<key>``     arrays from ``model._state_dict()`` (see ``_model_state``)
``prep/<key>``      arrays from ``preprocessor.state_dict()`` (absent without one)
==================  ===========================================================

Files are read with ``allow_pickle=False``, and nothing a file claims is believed before it
is checked: the members are listed from the zip directory and only those the model's
family declares (``ModelSpec.stored``: names, dtypes, sizes named ``D``, ``C``... that
must agree with each other and with the hyperparameters) and those of the preprocessing
are admitted; each member's ``.npy`` header must describe exactly the bytes it holds; the
arrays together must fit in memory (``max_bytes``) before one of them is read; float
weights must be finite; every label the model predicts must have a name. Anything that is
not such an archive, or is truncated, damaged or inconsistent, is refused with a
``ValueError`` that names the file and the problem. ``save_model`` checks a state against
the same declaration, so that what is written can be read.

Files of format 1 are read as files of format 2 (``models/_compat.py`` says how they
differ), with the same checks.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from chainrule._files import atomic_write
from chainrule._memory import physical_memory
from chainrule.models._compat import upgrade
from chainrule.models._layout import (
    PREPROCESSING,
    any_members,
    check_layout,
    check_values,
    declared_members,
)
from chainrule.models._npz import DamagedArchive, NotAnArchive, NpzArchive
from chainrule.models.registry import (
    MODEL_REGISTRY,
    get_model_class,
    get_model_spec,
    model_name,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "LoadedModel",
    "find_model_file",
    "load_model",
    "model_params",
    "save_model",
]

FORMAT = "chainrule-model"
FORMAT_VERSION = 2
# Earlier formats that are read as the current one (models/_compat.py).
UPGRADED_VERSIONS = (1,)
# The model file of a training run folder (a comparison names each after its model).
MODEL_FILE = "model.npz"

_MARKER = "__chainrule__"
_HEADER_MEMBERS = (_MARKER, "model_class", "params_json", "classes_json", "extra_json")
# Longest JSON member read (bytes of its text array): hyperparameters, class names, extras.
_JSON_LIMIT = 64 << 20


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

    Returns the path written.
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
        _MARKER: _json_array(
            {"format": FORMAT, "version": FORMAT_VERSION, "chainrule": __version__}
        ),
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
    _write_npz(path, arrays)
    return path


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
    return open(path, "rb")


def load_model(path, model: str | None = None, *, max_bytes: int | None = None) -> LoadedModel:
    """Read a model file written by :func:`save_model`.

    Parameters
    ----------
    path : a model file, or a run folder (its ``model.npz``, or its only model file)
    model : in a run folder of several models (a comparison), which one (``"svm"``)
    max_bytes : refuse a file whose arrays take more memory than this (default: the
        machine's physical memory)

    The file is checked before its arrays are read: only the members its model family
    declares (see ``ModelSpec.stored``), with sizes that agree with each other and with
    the hyperparameters, each holding exactly the bytes its header describes, in all no
    more than ``max_bytes``; float weights must be finite.

    Raises ``FileNotFoundError`` if there is no such file, ``PermissionError`` if it
    cannot be read, and ``ValueError`` (naming the file and the problem) if it is not a
    chainrule model file, is truncated or damaged, or was written by an incompatible
    version.
    """
    path = find_model_file(path, model)
    where = f"model file {str(path)!r}"
    limit = physical_memory() if max_bytes is None else int(max_bytes)
    try:
        f = _open_file(path)
    except PermissionError:
        raise PermissionError(f"{where} cannot be read: permission denied") from None
    with f:
        try:
            archive = NpzArchive(f)
        except NotAnArchive:
            if _MARKER.encode() in _head(f):
                raise ValueError(f"{where} is truncated or damaged (no zip directory)") from None
            raise ValueError(
                f"{where} is not a chainrule model file (not an .npz archive)"
            ) from None
        except DamagedArchive as e:
            raise ValueError(f"{where} is truncated or damaged ({e})") from None
        with archive:
            try:
                return _read_model(archive, path, where, limit)
            except DamagedArchive as e:
                raise ValueError(f"{where} is truncated or damaged ({e})") from None


def _read_json(archive: NpzArchive, key: str, where: str) -> Any:
    if key not in archive.names:
        raise ValueError(f"{where} is damaged: it has no {key!r}")
    header = archive.header(key)
    if header.shape != () or header.dtype.kind != "U":
        raise ValueError(f"{where} is damaged: {key!r} is not a string")
    if header.nbytes > _JSON_LIMIT:
        raise ValueError(f"{where} is damaged: {key!r} is {header.nbytes} bytes long")
    try:
        return json.loads(str(archive.read(key)))
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{where} is damaged: {key!r} is not valid JSON ({e})") from None


def _check_header(archive: NpzArchive, where: str) -> int:
    if _MARKER not in archive.names:
        raise ValueError(f"{where} is not a chainrule model file")
    header = _read_json(archive, _MARKER, where)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{where} is not a chainrule model file")
    version = header.get("version")
    if type(version) is not int:  # noqa: E721 -- True and 1.0 are not version 1
        raise ValueError(
            f"{where} is damaged: its format version is {_describe(version)}, not an "
            f"integer; this chainrule reads version {FORMAT_VERSION}"
        )
    if version != FORMAT_VERSION and version not in UPGRADED_VERSIONS:
        raise ValueError(
            f"{where} has format version {version}; this chainrule reads version {FORMAT_VERSION}"
            f" (and {', '.join(map(str, UPGRADED_VERSIONS))})"
        )
    return version


def _describe(value: Any) -> str:
    if value is None:
        return "missing"
    kinds = {str: "the string", float: "the float", bool: "the boolean"}
    return f"{kinds.get(type(value), 'the ' + type(value).__name__)} {value!r}"


def _read_model_class(archive: NpzArchive, where: str) -> str:
    if "model_class" not in archive.names:
        raise ValueError(f"{where} is damaged: no model class")
    header = archive.header("model_class")
    if header.shape != () or header.dtype.kind != "U" or header.nbytes > 4096:
        raise ValueError(f"{where} is damaged: no model class")
    name = str(archive.read("model_class"))
    if name not in MODEL_REGISTRY:
        known = ", ".join(MODEL_REGISTRY)
        raise ValueError(f"{where} holds a model of unknown class {name!r} (known: {known})")
    return name


def _member_names(archive: NpzArchive, where: str) -> dict[str, list[str]]:
    """``{"model/": [key, ...], "prep/": [...]}`` from the zip directory alone; any other
    member is refused."""
    if archive.others:
        raise ValueError(f"{where} has an unknown member {archive.others[0]!r}")
    parts: dict[str, list[str]] = {"model/": [], "prep/": []}
    for key in archive.names:
        if key in _HEADER_MEMBERS:
            continue
        prefix = key[: key.find("/") + 1]
        if prefix not in parts:
            raise ValueError(f"{where} has an unknown member {key!r}")
        parts[prefix].append(key[len(prefix) :])
    return parts


def _check_names(names: dict[str, list[str]], declared: dict, where: str) -> None:
    """Refuse a member that a declaration (None: no declaration) does not name."""
    for prefix, keys in names.items():
        if declared[prefix] is None:
            continue
        unknown = [k for k in keys if k not in declared[prefix]]
        if unknown:
            raise ValueError(f"{where} has an unknown member {prefix + unknown[0]!r}")


def _read_states(archive, where, headers, declared, limit) -> dict[str, dict]:
    """The arrays of the ``model/`` and ``prep/`` parts, each part's headers checked
    against its declaration before anything is read, and their total size against
    ``limit``."""
    try:
        sizes = {p: check_layout(headers[p], declared[p], p) for p in headers}
    except ValueError as e:
        raise ValueError(f"{where} is damaged: {e}") from None
    total = sum(archive.header(k).nbytes for k in archive.names)
    if total > limit:
        raise ValueError(
            f"{where} needs {total:,} bytes of memory, more than the limit of {limit:,} bytes"
        )
    states: dict[str, dict] = {}
    for prefix, part in headers.items():
        states[prefix] = {}
        # Scalars first: a size they contradict is found before any large array is read.
        for key in sorted(part, key=lambda k: part[k].nbytes):
            arr = archive.read(prefix + key)
            try:
                check_values(prefix + key, arr, declared[prefix][key], sizes[prefix])
            except ValueError as e:
                raise ValueError(f"{where} is damaged: {e}") from None
            states[prefix][key] = arr
    return states


def _check_class_names(model, classes: list, where: str) -> None:
    """Every label the model predicts must name a class."""
    labels = np.asarray(getattr(model, "classes_", []))
    if labels.size and labels.dtype.kind in "iu":
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= len(classes):
            raise ValueError(
                f"{where} is damaged: it names {len(classes)} classes but the model predicts "
                f"{labels.size} (labels {low}..{high})"
            )


def _read_model(archive: NpzArchive, path: Path, where: str, limit: int) -> LoadedModel:
    version = _check_header(archive, where)
    name = _read_model_class(archive, where)
    cls, spec = get_model_class(name), get_model_spec(name)
    params = _read_json(archive, "params_json", where)
    classes = _read_json(archive, "classes_json", where)
    extra = _read_json(archive, "extra_json", where) if "extra_json" in archive.names else {}
    if not isinstance(params, dict) or not isinstance(classes, list):
        raise ValueError(f"{where} is damaged: bad params or class names")
    if version != FORMAT_VERSION:
        extra = extra if isinstance(extra, dict) else {}
        archive, params, extra = upgrade(archive, version, name, params, extra)
    names = _member_names(archive, where)
    try:
        model = cls(**params)  # hyperparameters only: nothing is allocated yet
        spec.check(model)
        declared = {"model/": spec.stored(model), "prep/": PREPROCESSING if names["prep/"] else {}}
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: its hyperparameters do not fit {cls.__name__} ({e})") from None
    _check_names(names, declared, where)  # before any member's header is read
    headers = {p: {k: archive.header(p + k) for k in keys} for p, keys in names.items()}
    if declared["model/"] is None:
        declared["model/"] = any_members(headers["model/"])
    states = _read_states(archive, where, headers, declared, limit)
    preprocessor = None
    if states["prep/"]:
        from chainrule.data import Preprocessor

        try:
            preprocessor = Preprocessor.from_state_dict(states["prep/"])
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{where} is damaged: bad preprocessing state ({e})") from None
    try:
        if hasattr(model, "_load_state_dict_with"):
            model._load_state_dict_with(states["model/"], preprocessor)
        else:
            model._load_state_dict(states["model/"])
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise ValueError(f"{where} is damaged: the {name} model state is invalid ({e})") from None
    _check_class_names(model, classes, where)
    return LoadedModel(
        model=model,
        preprocessor=preprocessor,
        classes=[str(c) for c in classes],
        name=name,
        params=params,
        extra=extra if isinstance(extra, dict) else {},
        path=path,
    )


def _head(f: IO[bytes], size: int = 4096) -> bytes:
    try:
        f.seek(0)
        return f.read(size)
    except OSError:
        return b""
