"""Run folders: what a training or comparison run leaves behind.

A run folder holds the model file(s) (``model.npz`` for ``chainrule train``, ``<name>.npz``
per model for ``chainrule compare``, written by the experiment layer), ``metrics.json``
(accuracies, timings, hyperparameters, histories, the data used) and PNG plots. Files
are written atomically, so an interrupted run never leaves a half-written
``metrics.json`` or model behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from chainrule._files import atomic_write

__all__ = [
    "METRICS_FILE",
    "RunFolder",
    "default_run_dir",
    "to_jsonable",
]

METRICS_FILE = "metrics.json"


def to_jsonable(value: Any) -> Any:
    """``value`` with NumPy arrays and scalars, tuples, Paths made JSON-able.

    Non-finite floats become ``None`` (JSON has no NaN); dict keys become strings.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, np.random.Generator):
        return None
    return repr(value)


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def default_run_dir(kind: str, root: str | os.PathLike = "runs") -> Path:
    """``runs/<kind>-YYYYmmdd-HHMMSS`` (with ``-2``, ``-3``... if that folder exists)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{kind}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class RunFolder:
    """A folder that receives a run's model files, metrics and plots.

    Parameters
    ----------
    path : the folder; created (with parents) unless ``create=False``
    create : make the folder if it is missing

    Attributes
    ----------
    path : Path
    plots : list of str, file names of the plots written through :meth:`plot`
    plot_errors : dict file name -> message for plots that could not be drawn
    """

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"run folder {self.path} exists and is not a folder")
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise FileNotFoundError(f"run folder {self.path} does not exist")
        self.plots: list[str] = []
        self.plot_errors: dict[str, str] = {}

    def file(self, name: str) -> Path:
        """Path of ``name`` inside the folder."""
        return self.path / name

    def write_metrics(self, metrics: dict, name: str = METRICS_FILE) -> Path:
        """Write ``metrics`` as indented JSON (NumPy values converted), atomically."""
        path = self.file(name)
        _atomic_write_text(path, json.dumps(to_jsonable(metrics), indent=2) + "\n")
        return path

    def read_metrics(self, name: str = METRICS_FILE) -> dict:
        """The metrics written earlier; ``{}`` when there are none yet."""
        path = self.file(name)
        if not path.is_file():
            return {}
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def plot(self, function: Callable[..., Any], name: str, *args, **kwargs) -> Path | None:
        """Call ``function(*args, path=<folder>/<name>, **kwargs)``, a ``plot_xxx`` function.

        A plot that fails (bad values, a matplotlib problem) must not lose the run that
        produced it: the error is recorded in :attr:`plot_errors` and ``None`` returned.
        """
        path = self.file(name)
        try:
            function(*args, path=path, **kwargs)
        except Exception as e:  # any plotting failure is reported, not raised
            self.plot_errors[name] = f"{type(e).__name__}: {e}"
            return None
        self.plots.append(name)
        return path
