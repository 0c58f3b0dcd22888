"""What a pickle of NumPy data may call, and the checks of what it passes.

A pickled array or scalar names NumPy's own helpers (``numpy.dtype``,
``multiarray._reconstruct``, ``multiarray.scalar``, ``numeric._frombuffer``), which trust
their arguments. `NumpyStandIns` takes their place for `safe_pickle.RestrictedUnpickler`:
it makes only dtypes of plain kinds, checks every shape, length and dtype state against
the others before NumPy sees them, and refuses unicode data that is not Unicode.
"""

from __future__ import annotations

import math
import pickle
import re

import numpy as np

__all__ = [
    "NumpyStandIns",
    "UnsafePickleError",
    "check_shape",
    "check_text",
    "dtype_state",
    "raw_bytes",
]


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle refers to something other than plain data and NumPy arrays, or would
    build more than ``safe_pickle.Limits`` allows (``chainrule.data.safe_pickle``'s).

    Also a ``ValueError``, like every other "this data is not what it should be" error of
    :mod:`chainrule.data`.
    """


#: NumPy dtype kinds an array may have: bool, signed and unsigned integers, floats, complex
#: numbers, byte strings, unicode strings. Not "O" (Python objects: raw bytes would be read
#: as pointers), "V" (records, sub-arrays), "M"/"m" (datetimes).
_DTYPE_KINDS = "biufcSU"
_DTYPE_NAME = re.compile(r"^[biufcSU][0-9]{1,10}$")
_TYPECODES = (b"b", "b")  # what ndarray.__reduce__ passes to _reconstruct
_MAX_NDIM = 32


class NumpyStandIns:
    """Stand-ins for the NumPy callables that pickles of arrays name (see the module doc)."""

    def __init__(self, unpickler):
        self.u = unpickler  # its _pending objects and _final_dtype check

    def dtype(self, name, align=False, copy=False):
        if not isinstance(name, str) or not _DTYPE_NAME.match(name):
            raise UnsafePickleError(
                f"refusing NumPy dtype {name!r} in a pickle: only bool, integer, float, "
                "complex and fixed-width string dtypes are allowed (no Python objects)"
            )
        try:
            # copy=True always: the state that BUILD sets must never reach NumPy's shared
            # built-in dtype objects.
            dt = np.dtype(name, align=bool(align), copy=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise UnsafePickleError(f"bad NumPy dtype {name!r} in a pickle: {exc}") from None
        if dt.kind not in _DTYPE_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise UnsafePickleError(f"refusing NumPy dtype {name!r} in a pickle")
        self.u._pending[id(dt)] = dt
        return dt

    def reconstruct(self, subtype, shape, typecode):
        # ndarray.__reduce__ always asks for an empty int8 array, which BUILD then fills.
        if subtype is not np.ndarray or shape != (0,) or typecode not in _TYPECODES:
            raise UnsafePickleError("refusing an unusual NumPy array reconstruction in a pickle")
        arr = np.empty((0,), dtype=np.int8)
        self.u._pending[id(arr)] = arr
        return arr

    def scalar(self, dtype, raw=None):
        dt = self.u._final_dtype(dtype)
        raw = raw_bytes(raw, dt.itemsize, "a NumPy scalar")
        check_text(raw, dt, "a NumPy scalar")
        return np.frombuffer(raw, dtype=dt, count=1)[0]

    def frombuffer(self, buf, dtype, shape, order, axis_order=None):
        dt = self.u._final_dtype(dtype)
        shape = check_shape(shape)
        if isinstance(buf, memoryview):
            buf = buf.tobytes()
        buf = raw_bytes(buf, math.prod(shape) * dt.itemsize, "a NumPy array")
        check_text(buf, dt, "a NumPy array")
        arr = np.frombuffer(buf, dtype=dt)
        if order in ("C", "F") and axis_order is None:
            return arr.reshape(shape, order=order)
        if order == "K" and isinstance(axis_order, tuple | list):
            if sorted(axis_order) != list(range(len(shape))):
                raise UnsafePickleError("bad axis order for a NumPy array in a pickle")
            return arr.reshape(shape, order="C").transpose(axis_order)
        raise UnsafePickleError(f"bad memory order {order!r} for a NumPy array in a pickle")


def check_shape(shape) -> tuple[int, ...]:
    if (
        not isinstance(shape, tuple)
        or len(shape) > _MAX_NDIM
        or not all(type(s) is int and s >= 0 for s in shape)
    ):
        raise UnsafePickleError(f"bad NumPy array shape in a pickle: {shape!r}")
    return shape


def raw_bytes(raw, nbytes: int, what: str) -> bytes | bytearray:
    if isinstance(raw, str):
        # Python 2 pickles (read with encoding="latin1") hold the raw data as text.
        try:
            raw = raw.encode("latin1")
        except UnicodeEncodeError:
            raise UnsafePickleError(f"the data of {what} in a pickle is not bytes") from None
    if not isinstance(raw, bytes | bytearray):
        raise UnsafePickleError(
            f"the data of {what} in a pickle must be raw bytes, got {type(raw).__name__}"
        )
    if len(raw) != nbytes:
        raise UnsafePickleError(
            f"the data of {what} in a pickle has {len(raw)} bytes; its shape and dtype "
            f"need {nbytes}"
        )
    return raw


def check_text(raw, dt: np.dtype, what: str) -> None:
    """Refuse unicode data (UCS-4, in ``dt``'s byte order) holding a number that is not a
    code point: NumPy would build from it a ``str`` that breaks CPython's invariants
    (``SystemError`` later, or invalid UTF-8)."""
    if dt.kind != "U" or not len(raw):
        return
    codes = np.frombuffer(raw, dtype=np.dtype("u4").newbyteorder(dt.byteorder))
    bad = codes > 0x10FFFF
    if bad.any():
        value = int(codes[bad.argmax()])
        raise UnsafePickleError(
            f"the text of {what} in a pickle holds {value:#x}, which is not a Unicode code "
            "point (at most 0x10ffff)"
        )


def dtype_state(dt: np.dtype, state) -> tuple:
    """``state`` if it is exactly what a genuine dtype of ``dt``'s kind has, else refuse.

    Only the byte order and, for strings, the width may differ from ``dt``: nothing that
    could change the dtype's flags, fields or memory layout."""
    bad = UnsafePickleError(f"refusing a pickle that sets an unusual state on dtype {dt}")
    if not isinstance(state, tuple) or len(state) != 8 or state[0] != 3:
        raise bad
    order, elsize = state[1], state[5]
    if order not in ("<", ">", "|", "=") or type(elsize) is not int:
        raise bad
    try:
        if dt.kind in "SU":
            width, rest = divmod(elsize, dt.alignment)
            if rest or width < 1:
                raise bad
            genuine = np.dtype(f"{'' if order == '|' else order}{dt.kind}{width}")
        else:
            genuine = dt if order == "|" else dt.newbyteorder(order)
    except (TypeError, ValueError, OverflowError):  # a width NumPy cannot make
        raise bad from None
    if genuine.__reduce__()[2] != state:
        raise bad
    return state
