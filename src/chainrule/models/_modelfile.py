"""Reading a model file without believing it: the checks of ``models/io.py``, in order.

1. The header (``__chainrule__``): format, version, and (from version 2) the list of
   every other member, which must be exactly the members in the zip directory.
2. The model class, its hyperparameters (at most `PARAMS_LIMIT` bytes of JSON) and the
   class names.
3. The family's declaration of its arrays (``ModelSpec.stored``) for those
   hyperparameters, made within the number of arrays the file holds (`members_at_most`),
   so that hyperparameters calling for millions of layers stop after a few.
4. The members' headers against the declaration, their total size against the limit,
   then the arrays themselves (scalars first).
5. The family's memory bound for one image (``ModelSpec.memory``) against the limit,
   before the model is built from the arrays.

`read_model` returns the parts of a ``LoadedModel``; every problem is a ``ValueError``
that names the file. A file of format 1 is read, from its hyperparameters on, as a file of
the current format (``models/_compat.py``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from chainrule._npz import NpzArchive
from chainrule.models._compat import upgrade
from chainrule.models._layout import PREPROCESSING, any_members, check_layout, check_values
from chainrule.models.registry import MODEL_REGISTRY, get_model_class, get_model_spec
from chainrule.models.spec import DataSummary, MemberBudgetExceeded, members_at_most

__all__ = ["FORMAT", "FORMAT_VERSION", "MARKER", "read_header", "read_model"]

FORMAT = "chainrule-model"
FORMAT_VERSION = 2
# Version 1 files (before the header listed the members) are read too.
READS = (1, 2)
MARKER = "__chainrule__"
HEADER_MEMBERS = (MARKER, "model_class", "params_json", "classes_json", "extra_json")
# Longest JSON member read (bytes of its text array): class names, extras.
JSON_LIMIT = 64 << 20
# Hyperparameters are a few hundred characters of JSON (4 bytes each in the file); this
# bound (16,384 characters, a thousand layers) keeps checking them to milliseconds.
PARAMS_LIMIT = 64 << 10
# The header lists every member: a few hundred thousand names at most.
HEADER_LIMIT = 16 << 20
# Members a family may declare beyond those a file holds (optional ones, such as k-NN's
# training rows or images, only one of which a file holds).
OPTIONAL_MEMBERS = 64


def read_json(
    archive: NpzArchive, key: str, where: str, limit: int = JSON_LIMIT, what: str = ""
) -> Any:
    """The JSON in member ``key`` (``what`` names it in messages), at most ``limit`` bytes
    of text array."""
    if key not in archive.names:
        raise ValueError(f"{where} is damaged: it has no {key!r}")
    header = archive.header(key)
    if header.shape != () or header.dtype.kind != "U":
        raise ValueError(f"{where} is damaged: {key!r} is not a string")
    if header.nbytes > limit:
        raise ValueError(
            f"{where} is damaged: {what or repr(key)} {'are' if what else 'is'} "
            f"{header.nbytes:,} bytes long (at most {limit:,})"
        )
    try:
        return json.loads(str(archive.read(key)))
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{where} is damaged: {key!r} is not valid JSON ({e})") from None


def _describe(value: Any) -> str:
    if value is None:
        return "missing"
    kinds = {str: "the string", float: "the float", bool: "the boolean"}
    return f"{kinds.get(type(value), 'the ' + type(value).__name__)} {value!r}"


def read_header(archive: NpzArchive, where: str) -> dict:
    """The header, checked: a chainrule model file of a version this chainrule reads,
    whose members (from version 2) are exactly those it lists."""
    if MARKER not in archive.names:
        raise ValueError(f"{where} is not a chainrule model file")
    header = read_json(archive, MARKER, where, HEADER_LIMIT)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{where} is not a chainrule model file")
    version = header.get("version")
    if type(version) is not int:  # noqa: E721 -- True and 1.0 are not version 1
        raise ValueError(
            f"{where} is damaged: its format version is {_describe(version)}, not an "
            f"integer; this chainrule reads version {FORMAT_VERSION}"
        )
    if version not in READS:
        raise ValueError(
            f"{where} has format version {version}; this chainrule reads versions "
            f"{READS[0]} to {READS[-1]}"
        )
    if version >= 2:
        _check_listed(archive, header.get("members"), where)
    return header


def _quoted(names: list[str], most: int = 4) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _check_listed(archive: NpzArchive, listed, where: str) -> None:
    """The members in the zip directory must be exactly those the header lists."""
    if (
        not isinstance(listed, list)
        or not all(isinstance(m, str) for m in listed)
        or len(set(listed)) != len(listed)
    ):
        raise ValueError(f"{where} is damaged: its header's list of members is not a list of names")
    present = set(archive.names)
    missing = [m for m in listed if m not in present]
    if missing:
        raise ValueError(
            f"{where} is damaged: it lacks {_quoted(missing)}, which its header declares "
            f"({len(missing)} of {len(listed)} members missing)"
        )
    unlisted = [m for m in archive.names if m != MARKER and m not in set(listed)]
    if unlisted:
        raise ValueError(
            f"{where} has an unknown member {unlisted[0]!r} (its header does not declare it)"
        )


def v1_without_preprocessing(path, where: str) -> ValueError:
    return ValueError(
        f"{where} has format version 1, which does not list its members, and holds no "
        "preprocessing: it cannot be told from a file whose preprocessing was lost. If it "
        "was saved without preprocessing, convert it once with "
        f"`from chainrule.models.io import upgrade_model_file; upgrade_model_file({str(path)!r})`"
    )


def read_model_class(archive: NpzArchive, where: str) -> str:
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


def member_names(archive: NpzArchive, where: str) -> dict[str, list[str]]:
    """``{"model/": [key, ...], "prep/": [...]}`` from the zip directory alone; any other
    member is refused."""
    if archive.others:
        raise ValueError(f"{where} has an unknown member {archive.others[0]!r}")
    parts: dict[str, list[str]] = {"model/": [], "prep/": []}
    for key in archive.names:
        if key in HEADER_MEMBERS:
            continue
        prefix = key[: key.find("/") + 1]
        if prefix not in parts:
            raise ValueError(f"{where} has an unknown member {key!r}")
        parts[prefix].append(key[len(prefix) :])
    return parts


def declare(name: str, params: dict, names: dict[str, list[str]], where: str):
    """The unfitted model of ``params`` and the declaration of its arrays, made within
    the number of arrays the file holds (plus `OPTIONAL_MEMBERS`)."""
    cls, spec = get_model_class(name), get_model_spec(name)
    held = len(names["model/"])
    try:
        model = cls(**params)  # hyperparameters only: nothing is allocated yet
        spec.check(model)
        with members_at_most(held + OPTIONAL_MEMBERS):
            stored = spec.stored(model)
    except MemberBudgetExceeded:
        raise ValueError(
            f"{where} is damaged: its hyperparameters call for more arrays than the {held} "
            f"arrays of its {name} model"
        ) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"{where}: its hyperparameters do not fit {cls.__name__} ({e})") from None
    return model, {"model/": stored, "prep/": PREPROCESSING if names["prep/"] else {}}


def check_names(names: dict[str, list[str]], declared: dict, where: str) -> None:
    """Refuse a member that a declaration (None: no declaration) does not name."""
    for prefix, keys in names.items():
        if declared[prefix] is None:
            continue
        unknown = [k for k in keys if k not in declared[prefix]]
        if unknown:
            raise ValueError(f"{where} has an unknown member {prefix + unknown[0]!r}")


def read_states(archive, where, headers, declared, limit) -> dict[str, dict]:
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


def _image_shape(states: dict, n_features: int) -> tuple[int, int, int]:
    for shape in (states["model/"].get("image_shape_"), states["prep/"].get("image_shape")):
        if shape is not None and np.shape(shape) == (3,):
            h, w, c = (int(s) for s in shape)
            if min(h, w, c) >= 1 and h * w * c == n_features:
                return h, w, c
    return 1, 1, n_features


def check_memory(name: str, model, states: dict, n_classes: int, where: str, limit: int) -> None:
    """Refuse a model whose family's memory bound for one image (``ModelSpec.memory``)
    exceeds ``limit``, before anything is built."""
    n = states["model/"].get("n_features_in_")
    if n is None or np.ndim(n) != 0:
        return
    n_features = int(n)
    if n_features < 1:
        raise ValueError(f"{where} is damaged: n_features_in_ is {n_features}")
    image = DataSummary(1, n_features, max(n_classes, 1), _image_shape(states, n_features), 0.0)
    try:
        needed = get_model_spec(name).memory(model, image)
    except (TypeError, ValueError, OverflowError, ArithmeticError) as e:
        raise ValueError(f"{where}: its hyperparameters do not fit the model ({e})") from None
    if needed is not None and needed > limit:
        raise ValueError(
            f"{where}: its {name} model needs at least {needed:,} bytes of memory for one "
            f"image, more than the limit of {limit:,} bytes"
        )


def _check_image_shape(states: dict, where: str) -> None:
    """A model that records the image shape it reads reads what its preprocessing makes."""
    model, prep = states["model/"].get("image_shape_"), states["prep/"].get("image_shape")
    if model is not None and prep is not None and model.tolist() != prep.tolist():
        raise ValueError(
            f"{where} is damaged: its model reads images of shape {tuple(model.tolist())} "
            f"but its preprocessing makes {tuple(prep.tolist())}"
        )


def check_class_names(model, classes: list, where: str) -> None:
    """Every label the model predicts must name a class."""
    labels = np.asarray(getattr(model, "classes_", []))
    if labels.size and labels.dtype.kind in "iu":
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= len(classes):
            raise ValueError(
                f"{where} is damaged: it names {len(classes)} classes but the model predicts "
                f"{labels.size} (labels {low}..{high})"
            )


def read_model(archive: NpzArchive, path, where: str, limit: int, *, trust_v1=False) -> dict:
    """The parts of a ``LoadedModel`` read from ``archive`` (see the module doc).

    ``trust_v1``: take a version 1 file without preprocessing for one saved without it.
    """
    header = read_header(archive, where)
    names = member_names(archive, where)
    if header["version"] == 1 and not names["prep/"] and not trust_v1:
        raise v1_without_preprocessing(path, where)
    name = read_model_class(archive, where)
    params = read_json(archive, "params_json", where, PARAMS_LIMIT, "its hyperparameters")
    classes = read_json(archive, "classes_json", where)
    extra = read_json(archive, "extra_json", where) if "extra_json" in archive.names else {}
    if not isinstance(params, dict) or not isinstance(classes, list):
        raise ValueError(f"{where} is damaged: bad params or class names")
    if not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{where} is damaged: its class names are not all strings")
    if header["version"] < FORMAT_VERSION:  # read as the current format from here on
        extra = extra if isinstance(extra, dict) else {}
        archive, params, extra = upgrade(archive, header["version"], name, params, extra)
        names = member_names(archive, where)
    model, declared = declare(name, params, names, where)
    check_names(names, declared, where)  # before any member's header is read
    headers = {p: {k: archive.header(p + k) for k in keys} for p, keys in names.items()}
    if declared["model/"] is None:
        declared["model/"] = any_members(headers["model/"])
    states = read_states(archive, where, headers, declared, limit)
    _check_image_shape(states, where)
    labels = states["model/"].get("classes_")
    n_classes = math.prod(np.shape(labels)) if labels is not None else len(classes)
    check_memory(name, model, states, n_classes, where, limit)
    preprocessor = _preprocessor(states["prep/"], where)
    try:
        if hasattr(model, "_load_state_dict_with"):
            model._load_state_dict_with(states["model/"], preprocessor)
        else:
            model._load_state_dict(states["model/"])
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise ValueError(f"{where} is damaged: the {name} model state is invalid ({e})") from None
    check_class_names(model, classes, where)
    return {
        "model": model,
        "preprocessor": preprocessor,
        "classes": classes,
        "name": name,
        "params": params,
        "extra": extra if isinstance(extra, dict) else {},
        "archive": archive,
    }


def _preprocessor(state: dict, where: str):
    if not state:
        return None
    from chainrule.data import Preprocessor

    try:
        return Preprocessor.from_state_dict(state)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{where} is damaged: bad preprocessing state ({e})") from None
