"""What a run's numbers were measured with: versions, BLAS, machine, command, time."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys

__all__ = ["blas_info", "environment", "now"]


def now() -> str:
    """The time in UTC, ISO 8601 to the second (``2026-01-01T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def blas_info() -> list[dict] | None:
    """The BLAS libraries NumPy uses: name, version, threads (threadpoolctl's view of the
    loaded libraries), else what NumPy was built with; None when neither tells."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        keys = ("internal_api", "version", "num_threads", "threading_layer", "architecture")
        found = [
            {k: lib.get(k) for k in keys}
            for lib in threadpool_info()
            if lib.get("user_api") == "blas"
        ]
        if found:
            return found
    import numpy as np

    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
    except (TypeError, KeyError, AttributeError):  # NumPy < 1.26 prints only
        return None
    return [{"internal_api": blas.get("name"), "version": blas.get("version")}]


def environment(command_line: list[str] | str | None = None) -> dict:
    """The record of the software and machine a run used, for ``metrics.json``.

    command_line : the command that started the run (list of arguments or text)
    """
    import numpy as np

    from chainrule import __version__

    if isinstance(command_line, list | tuple):
        command_line = shlex.join(str(a) for a in command_line)
    return {
        "chainrule": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_info(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "command_line": command_line,
        "executable": sys.executable,
        "started": now(),
    }
