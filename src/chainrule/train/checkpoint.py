"""Checkpoint files: the whole state of a training run in one ``.npz``, without pickle.

A checkpoint holds the model's arrays, the best model's arrays, the optimizer's and the
schedule's nested states, the state of every random generator involved, the histories,
the counters, and the run's *settings*: a small JSON dict the caller passes
(hyperparameters, data shape, seed...) that says which run the checkpoint belongs to.
A resume compares those settings with its own (`check_settings`) and refuses a
checkpoint of another run instead of continuing it under the wrong settings.

Layout of the ``.npz``: arrays are members (``model/<name>``, ``best/<name>``,
``history/<key>``, ``train_subset``, and ``optim/#i`` / ``sched/#i`` for arrays inside
nested states); everything else is JSON in two string members, ``meta_json`` (the
skeleton of the nested states with references to array members, generator states,
counters, settings) and ``__checkpoint__`` (format name and version).

The file is written atomically (`chainrule._files.atomic_write`): a crash leaves the
previous checkpoint intact, and temporary files left by a killed writer are removed at
the next save. It is read as model files are (`chainrule._npz.NpzArchive`): only a plain
file, each member's header checked against its size and all of them together against
the machine's memory before any is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from chainrule._files import atomic_write, open_file, remove_stale_temps
from chainrule._memory import physical_memory
from chainrule._npz import DamagedArchive, NotAnArchive, NpzArchive

__all__ = [
    "CHECKPOINT_NAME",
    "check_settings",
    "load_checkpoint",
    "normalize_settings",
    "save_checkpoint",
]

CHECKPOINT_NAME = "checkpoint.npz"
_FORMAT = "chainrule-checkpoint"
_FORMAT_VERSION = 1
COUNTERS = ("epoch", "iteration", "best_val_acc", "best_epoch", "bad_epochs")


def _pack(obj, prefix: str, arrays: dict[str, np.ndarray]):
    """A JSON-able skeleton of a nested state; arrays go to `arrays` under `prefix#i`."""
    if isinstance(obj, np.ndarray):
        key = f"{prefix}#{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise TypeError(f"state keys must be strings to be saved, got {k!r}")
        return {"__dict__": {k: _pack(v, prefix, arrays) for k, v in obj.items()}}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_pack(v, prefix, arrays) for v in obj]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save a value of type {type(obj).__name__} in a checkpoint")


def _unpack(skel, arrays):
    """The nested state `_pack` described, with its arrays read back from `arrays`."""
    if isinstance(skel, dict):
        if "__array__" in skel:
            key = skel["__array__"]
            if key not in arrays:
                raise ValueError(f"damaged checkpoint: member {key!r} is missing")
            return np.array(arrays[key])
        if "__dict__" in skel:
            return {k: _unpack(v, arrays) for k, v in skel["__dict__"].items()}
        if "__list__" in skel:
            return [_unpack(v, arrays) for v in skel["__list__"]]
        raise ValueError("damaged checkpoint: unknown entry in a saved state")
    return skel


def normalize_settings(settings) -> dict | None:
    """`settings` as it reads back from a checkpoint (JSON round trip: tuples become
    lists), or None. Raises TypeError for values JSON cannot hold."""
    if settings is None:
        return None
    if not isinstance(settings, dict):
        raise TypeError(f"checkpoint settings must be a dict, got {type(settings).__name__}")
    try:
        return json.loads(json.dumps(settings, allow_nan=True))
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint settings must be plain JSON values ({e})") from None


def _differences(recorded: dict, expected: dict, prefix: str = "") -> list[str]:
    """One line per differing key; nested dicts on both sides are compared key by key
    and named with dotted paths (``params.learning_rate``)."""
    out = []
    for key in sorted(set(recorded) | set(expected)):
        a, b = recorded.get(key, "(absent)"), expected.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} in the checkpoint, {b!r} now")
    return out


def check_settings(recorded, expected, where="the checkpoint") -> None:
    """Raise ValueError naming every setting that differs between a checkpoint's recorded
    settings and the run's own (both dicts or None; nested dicts are compared key by key,
    named with dotted paths)."""
    recorded, expected = normalize_settings(recorded), normalize_settings(expected)
    if recorded == expected:
        return
    if recorded is None or expected is None:
        which = "records no settings" if recorded is None else f"records settings {recorded}"
        other = f"this run's are {expected}" if expected is not None else "this run has none"
        raise ValueError(
            f"{where} {which} but {other}: it belongs to another run; start a new run "
            "instead of resuming"
        )
    diffs = "; ".join(_differences(recorded, expected))
    raise ValueError(
        f"{where} belongs to another run (settings differ: {diffs}); resume with "
        "the same settings, or start a new run"
    )


def save_checkpoint(path, state: dict) -> Path:
    """Write a training state to `path` (an ``.npz``) atomically; returns the path.

    `state` has the keys `load_checkpoint` returns: ``model`` and ``best_model`` (dicts
    of arrays; ``best_model`` may be None), ``optimizer`` and ``schedule`` (nested
    states of dicts, lists, arrays and scalars; ``schedule`` may be None),
    ``generators`` (list of bit-generator states), ``history`` (dict of lists of
    numbers), ``train_subset`` (int array), the counters ``epoch``, ``iteration``,
    ``best_val_acc``, ``best_epoch``, ``bad_epochs``, and ``settings`` (dict of JSON
    values, or None).
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for k, v in state["model"].items():
        arrays[f"model/{k}"] = v
    for k, v in (state.get("best_model") or {}).items():
        arrays[f"best/{k}"] = v
    for k, v in state["history"].items():
        arrays[f"history/{k}"] = np.asarray(v, dtype=np.float64)
    arrays["train_subset"] = np.asarray(state["train_subset"])
    schedule = state.get("schedule")
    meta = {
        "optimizer": _pack(state["optimizer"], "optim/", arrays),
        "schedule": None if schedule is None else _pack(schedule, "sched/", arrays),
        "generators": list(state["generators"]),
        "settings": normalize_settings(state.get("settings")),
        **{k: state[k] for k in COUNTERS},
    }
    arrays["meta_json"] = np.array(json.dumps(meta))
    arrays["__checkpoint__"] = np.array(json.dumps({"format": _FORMAT, "version": _FORMAT_VERSION}))
    path.parent.mkdir(parents=True, exist_ok=True)
    # One writer per run folder: what matches the temporary-file pattern was left by a
    # writer that was killed.
    remove_stale_temps(path.parent, path.name)
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return path


def _read_arrays(path: Path, limit: int | None = None) -> dict[str, np.ndarray]:
    """Every array of the checkpoint file ``path``, read once their headers are checked
    against their sizes and their total against ``limit`` (the machine's memory)."""
    limit = physical_memory() if limit is None else limit
    try:
        with open_file(path) as f, NpzArchive(f) as archive:
            if archive.others:
                raise DamagedArchive(f"member {archive.others[0]!r} is not an array")
            total = sum(archive.header(k).nbytes for k in archive.names)
            if total > limit:
                raise ValueError(
                    f"{path} needs {total:,} bytes of memory, more than the limit of "
                    f"{limit:,} bytes; it is not a checkpoint this machine can resume"
                )
            return {k: archive.read(k) for k in archive.names}
    except (NotAnArchive, DamagedArchive, OSError) as e:
        raise ValueError(f"{path} is not a readable checkpoint ({e})") from None


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by `save_checkpoint` (a run folder or the .npz itself).

    Returns a dict with ``model``, ``best_model`` (dicts of arrays; ``best_model`` is
    empty when no best model was recorded), ``optimizer``, ``schedule`` (nested states
    or None), ``generators`` (list of bit-generator states), ``history`` (dict of lists),
    ``train_subset``, the counters (``epoch``, ``iteration``, ``best_val_acc``,
    ``best_epoch``, ``bad_epochs``) and ``settings`` (dict, or None when none were
    recorded). Raises FileNotFoundError when there is no file, ValueError when the file
    is not a checkpoint or is damaged.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = _read_arrays(path)
    if "__checkpoint__" not in data or "meta_json" not in data:
        raise ValueError(f"{path} is not a chainrule checkpoint")
    try:
        head = json.loads(str(data["__checkpoint__"]))
        meta = json.loads(str(data["meta_json"]))
    except (ValueError, RecursionError):
        raise ValueError(f"{path} is a damaged checkpoint (its header is not JSON)") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is a damaged checkpoint (its header is not an object)")
    if not isinstance(head, dict) or (head.get("format"), head.get("version")) != (
        _FORMAT,
        _FORMAT_VERSION,
    ):
        raise ValueError(
            f"{path}: unsupported checkpoint format {head}; this chainrule reads "
            f"{_FORMAT} version {_FORMAT_VERSION}"
        )
    missing = [k for k in ("optimizer", "schedule", "generators", *COUNTERS) if k not in meta]
    if missing or "train_subset" not in data:
        raise ValueError(f"{path} is a damaged checkpoint (missing {missing or 'train_subset'})")

    def members(prefix):
        return {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}

    return {
        "model": members("model/"),
        "best_model": members("best/"),
        "optimizer": _unpack(meta["optimizer"], data),
        "schedule": _unpack(meta["schedule"], data),
        "generators": meta["generators"],
        "history": {k: v.tolist() for k, v in members("history/").items()},
        "train_subset": data["train_subset"],
        "settings": meta.get("settings"),
        **{k: meta[k] for k in COUNTERS},
    }
