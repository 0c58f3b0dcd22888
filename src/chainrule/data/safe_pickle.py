"""Reading pickled NumPy data without running arbitrary code.

A pickle can name any importable callable and call it while loading (``os.system`` is the
classic example). :class:`RestrictedUnpickler` resolves only the few names needed to rebuild
plain containers, numbers, strings, bytes and NumPy arrays/scalars/dtypes, and refuses every
other name with :class:`UnsafePickleError` before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import io
import os
import pickle

import numpy as np

__all__ = ["RestrictedUnpickler", "UnsafePickleError", "load_pickle", "loads_pickle"]


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle refers to something other than plain data and NumPy arrays.

    Also a ``ValueError``, like every other "this data is not what it should be" error of
    :mod:`chainrule.data`.
    """


def _numpy_core():
    # NumPy 2 moved numpy.core to numpy._core; pickles written by either name the module
    # they were written with, so both names map to the same functions.
    return getattr(np, "_core", None) or np.core


def _allowed() -> dict[tuple[str, str], object]:
    core = _numpy_core()
    multiarray = core.multiarray
    table: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs_encode,
    }
    for prefix in ("numpy.core", "numpy._core"):
        table[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        frombuffer = getattr(core.numeric, "_frombuffer", None)
        if frombuffer is not None:
            table[(f"{prefix}.numeric", "_frombuffer")] = frombuffer
    for name in "list dict tuple set frozenset bytes bytearray int float complex bool str".split():
        table[("builtins", name)] = getattr(builtins, name)
    table[("collections", "OrderedDict")] = collections.OrderedDict
    return table


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles use to store ``bytes``."""
    if not isinstance(obj, str):
        raise UnsafePickleError("_codecs.encode may only be applied to a string in a pickle")
    return obj.encode(encoding, errors)


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that admits only plain data and NumPy arrays (see the module doc)."""

    _table: dict[tuple[str, str], object] | None = None

    def find_class(self, module: str, name: str):
        table = RestrictedUnpickler._table
        if table is None:
            table = RestrictedUnpickler._table = _allowed()
        key = (module, name)
        if key not in table:
            # Python 2 names (``__builtin__``, ``copy_reg``, ...) as the default find_class
            # translates them.
            key = _compat_pickle.NAME_MAPPING.get(
                key, (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
            )
        try:
            return table[key]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name} from a pickle: only plain containers, "
                "numbers, strings and NumPy arrays are allowed"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing a pickle with persistent references")


def loads_pickle(data: bytes, encoding: str = "latin1"):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    ``encoding="latin1"`` reads NumPy arrays pickled by Python 2 correctly.
    """
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


def load_pickle(path: str | os.PathLike, encoding: str = "latin1"):
    """Unpickle the file at ``path`` with :class:`RestrictedUnpickler`.

    Raises :class:`UnsafePickleError` (naming the file) for a pickle that refers to anything
    but plain data and NumPy arrays, and ``ValueError`` for a corrupt or truncated file.
    """
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, encoding=encoding).load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}: {exc}") from None
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            LookupError,
            AttributeError,
        ) as exc:
            raise ValueError(f"{path} is not a readable pickle of arrays: {exc}") from exc
