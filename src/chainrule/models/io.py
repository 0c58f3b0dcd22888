"""Model files: one ``.npz`` holding a fitted model, its preprocessing and its class names.

Layout of the archive (every member a plain array; nothing is pickled):

==================  ===========================================================
``__chainrule__``   JSON string: ``{"format": "chainrule-model", "version": 1, ...}``
``model_class``     registered name of the model (``"knn"``, ``"mlp"``, ...)
``params_json``     JSON string of the model's hyperparameters (``get_params()``)
``classes_json``    JSON list of class names (``classes[label]`` names a label)
``extra_json``      JSON object of anything else worth keeping (metrics, data source)
``model/<key>``     arrays from ``model._state_dict()``
``prep/<key>``      arrays from ``preprocessor.state_dict()`` (absent without one)
==================  ===========================================================

Files are read with ``allow_pickle=False``; anything that is not such an archive, or is
truncated or damaged, is refused with a ``ValueError`` that names the file.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chainrule._files import atomic_write
from chainrule.models.registry import MODEL_REGISTRY, get_model_class, model_name

__all__ = ["FORMAT", "FORMAT_VERSION", "LoadedModel", "load_model", "save_model"]

FORMAT = "chainrule-model"
FORMAT_VERSION = 1

_MARKER = "__chainrule__"


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
    classes : list of class names; default: the model's ``classes_`` as strings
    extra : JSON-able dict stored as is (training metrics, data source, ...)

    Returns the path written.
    """
    path = Path(path)
    name = model_name(model)
    if not hasattr(model, "_state_dict"):
        raise TypeError(f"{type(model).__name__} has no _state_dict(); it cannot be saved")
    state = _check_arrays(model._state_dict(), "model state")
    if classes is None:
        if "classes_" not in state and not hasattr(model, "classes_"):
            raise ValueError("classes not given and the model has no classes_ (is it fitted?)")
        classes = [str(c) for c in np.asarray(getattr(model, "classes_", state.get("classes_")))]
    classes = [str(c) for c in classes]
    params = _jsonable(model.get_params()) if hasattr(model, "get_params") else {}
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


def _read_json(arrays: dict[str, np.ndarray], key: str, where: str) -> Any:
    if key not in arrays:
        raise ValueError(f"{where} is damaged: it has no {key!r}")
    arr = arrays[key]
    if arr.shape != () or arr.dtype.kind != "U":
        raise ValueError(f"{where} is damaged: {key!r} is not a string")
    try:
        return json.loads(str(arr))
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is damaged: {key!r} is not valid JSON ({e})") from None


def load_model(path) -> LoadedModel:
    """Read a model file written by :func:`save_model`.

    Raises ``FileNotFoundError`` if there is no such file and ``ValueError`` (naming the
    file) if it is not a chainrule model file, is truncated or damaged, or was written by
    an incompatible version.
    """
    path = Path(path)
    where = f"model file {str(path)!r}"
    if not path.exists():
        raise FileNotFoundError(f"{where} does not exist")
    if path.is_dir():
        raise ValueError(f"{where} is a directory, not a model file")
    try:
        npz = np.load(path, allow_pickle=False)
        if hasattr(npz, "files"):
            with npz:
                # Reading every member here (not lazily later) surfaces truncation and CRC
                # errors at load time.
                arrays = {key: npz[key] for key in npz.files}
        else:  # a single .npy array, not an archive
            arrays = {}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        if _MARKER.encode() in _head(path):
            raise ValueError(f"{where} is truncated or damaged ({e})") from None
        raise ValueError(f"{where} is not a chainrule model file (not an .npz archive)") from None
    if _MARKER not in arrays:
        raise ValueError(f"{where} is not a chainrule model file")
    header = _read_json(arrays, _MARKER, where)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{where} is not a chainrule model file")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{where} has format version {version}; this chainrule reads version {FORMAT_VERSION}"
        )
    if "model_class" not in arrays or arrays["model_class"].dtype.kind != "U":
        raise ValueError(f"{where} is damaged: no model class")
    name = str(arrays["model_class"])
    if name not in MODEL_REGISTRY:
        raise ValueError(
            f"{where} holds a model of unknown class {name!r} (known: {', '.join(MODEL_REGISTRY)})"
        )
    cls = get_model_class(name)
    params = _read_json(arrays, "params_json", where)
    classes = _read_json(arrays, "classes_json", where)
    extra = _read_json(arrays, "extra_json", where) if "extra_json" in arrays else {}
    if not isinstance(params, dict) or not isinstance(classes, list):
        raise ValueError(f"{where} is damaged: bad params or class names")
    model_state = {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
    prep_state = {k[len("prep/") :]: v for k, v in arrays.items() if k.startswith("prep/")}
    try:
        model = cls(**params)
    except TypeError as e:
        raise ValueError(f"{where}: its parameters do not fit {cls.__name__} ({e})") from None
    try:
        model._load_state_dict(model_state)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise ValueError(f"{where} is damaged: the {name} model state is invalid ({e})") from None
    preprocessor = None
    if prep_state:
        from chainrule.data import Preprocessor

        try:
            preprocessor = Preprocessor.from_state_dict(prep_state)
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{where} is damaged: bad preprocessing state ({e})") from None
    return LoadedModel(
        model=model,
        preprocessor=preprocessor,
        classes=[str(c) for c in classes],
        name=name,
        params=params,
        extra=extra if isinstance(extra, dict) else {},
        path=path,
    )


def _head(path: Path, size: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""
