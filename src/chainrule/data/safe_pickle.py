"""Reading pickled NumPy data without running code, crashing, or running out of memory.

A pickle is a small program: it can name any importable callable and call it while
loading (``os.system`` is the classic example), and even callables that look harmless can
be turned against the reader. NumPy's own unpickling helpers trust the bytes they are
given: a dtype for Python objects whose flags are reset through ``__setstate__``, followed
by 8 raw bytes, makes NumPy dereference those bytes as a pointer. And a few hundred bytes
can ask for terabytes (``bytes(10**13)``, lists that share lists that share lists).

:class:`RestrictedUnpickler` therefore runs its own small pickle machine (the standard
library's pure-Python unpickler with the dangerous opcodes replaced) that builds only

- plain containers (list, tuple, dict, set, frozenset, ``OrderedDict``), ``None``, bools,
  ints, floats, strings, bytes and bytearrays;
- NumPy arrays, scalars and dtypes of a fixed set of kinds: bool, integers, floats,
  complex numbers, and fixed-width byte and unicode strings (no Python objects, no
  records, no sub-arrays, no datetimes). A dtype's pickled state is accepted only when it
  is exactly the state a genuine dtype of that kind has, and an array's shape, dtype and
  data length are checked against each other before NumPy sees them;

and refuses everything else with :class:`UnsafePickleError` before anything is called. It
also bounds what the pickle may build (:class:`Limits`): the size of every container as if
each shared reference were a copy (elements and bytes), its nesting depth, and the file's
size; and the unpickler's own memory by the same element limit: the items waiting on its
stack (marks included) and the entries of its memo (one MEMOIZE opcode, one byte, adds an
entry). Recursive containers and containers changed after being placed in another one are
refused too, which keeps those bounds exact. Text is checked as well: a NumPy unicode
array or scalar whose code points are not Unicode's (beyond U+10FFFF, in either byte
order) would make strings that break Python's own invariants, and is refused.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import math
import os
import pickle
import struct
from dataclasses import dataclass

import numpy as np

from ._pickle_numpy import (
    NumpyStandIns,
    UnsafePickleError,
    check_shape,
    check_text,
    dtype_state,
    raw_bytes,
)

__all__ = ["Limits", "RestrictedUnpickler", "UnsafePickleError", "load_pickle", "loads_pickle"]


@dataclass(frozen=True)
class Limits:
    """What one pickle may build.

    max_elements : the most items any container may hold, counting the items of nested
        containers and counting a container referenced twice twice (what a copy of the
        data, ``str()`` or ``np.asarray`` would have to visit); also the most items on
        the unpickler's stack and the most entries in its memo.
    max_bytes : the most bytes of string, bytes and array data, counted the same way; also
        the largest file accepted.
    max_depth : the deepest nesting of containers.
    """

    max_elements: int = 10_000_000
    max_bytes: int = 1 << 30
    max_depth: int = 100


DEFAULT_LIMITS = Limits()

_CONTAINERS = (list, tuple, dict, set, frozenset)
_CODECS = ("latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii")


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles use to store ``bytes``."""
    if not isinstance(obj, str) or encoding not in _CODECS or errors != "strict":
        raise UnsafePickleError("_codecs.encode may only turn a string into bytes in a pickle")
    return obj.encode(encoding)


def _text_or_bytes_arg(kind):
    def make(*args):
        if not args:
            return kind()
        if len(args) == 1 and isinstance(args[0], bytes | bytearray):
            return kind(args[0])
        if len(args) == 2 and isinstance(args[0], str) and args[1] in _CODECS:
            return kind(args[0], args[1])
        raise UnsafePickleError(
            f"{kind.__name__}() in a pickle may only copy bytes or encode a string"
        )

    return make


def _from_items(kind):
    def make(*args):
        if not args:
            return kind()
        if len(args) == 1 and isinstance(args[0], list | tuple | set | frozenset):
            return kind(args[0])
        raise UnsafePickleError(f"{kind.__name__}() in a pickle may only take a list of items")

    return make


class RestrictedUnpickler(pickle._Unpickler):
    """An Unpickler that builds only plain data and NumPy arrays, within ``limits`` (see
    the module doc). ``file`` must be an in-memory binary file (``io.BytesIO``)."""

    dispatch = dict(pickle._Unpickler.dispatch)  # completed below the class

    def __init__(self, file, *, encoding="latin1", limits: Limits = DEFAULT_LIMITS):
        super().__init__(file, encoding=encoding)
        self.limits = limits
        self._np = NumpyStandIns(self)
        # Weights of the containers built so far: id -> (elements, bytes, depth). Every
        # weighed object is kept alive in _keep so that its id is never reused.
        self._weights: dict[int, tuple[int, int, int]] = {}
        self._keep: list = []
        self._placed: set[int] = set()  # objects already inside a container
        self._pending: dict[int, object] = {}  # dtypes and arrays waiting for BUILD
        self._final: set[int] = set()  # dtypes whose state BUILD validated
        self._callables = self._table()
        self._callable_ids = {id(f) for f in self._callables.values()}

    def load(self):
        self._held = 0  # items of the stacks put aside by MARK
        obj = super().load()
        if self._pending:
            raise UnsafePickleError("a NumPy array or dtype in the pickle lacks its state")
        return obj

    def _check_size(self) -> None:
        """After each opcode: the stack (with what MARK put aside) and the memo hold at
        most ``max_elements`` items each."""
        most = self.limits.max_elements
        if len(self.stack) + self._held > most:
            raise UnsafePickleError(
                f"refusing a pickle that puts more than {most:,} items on its stack"
            )
        if len(self.memo) > most:
            raise UnsafePickleError(
                f"refusing a pickle that builds a memo of more than {most:,} entries"
            )

    # -- names -------------------------------------------------------------------------

    def _table(self) -> dict[tuple[str, str], object]:
        table: dict[tuple[str, str], object] = {
            ("numpy", "dtype"): self._np.dtype,
            ("_codecs", "encode"): _codecs_encode,
            ("builtins", "bytes"): _text_or_bytes_arg(bytes),
            ("builtins", "bytearray"): _text_or_bytes_arg(bytearray),
            ("builtins", "set"): _from_items(set),
            ("builtins", "frozenset"): _from_items(frozenset),
            ("collections", "OrderedDict"): _from_items(collections.OrderedDict),
        }
        for core in ("numpy.core", "numpy._core"):
            table[(f"{core}.multiarray", "_reconstruct")] = self._np.reconstruct
            table[(f"{core}.multiarray", "scalar")] = self._np.scalar
            table[(f"{core}.numeric", "_frombuffer")] = self._np.frombuffer
        return table

    def find_class(self, module: str, name: str):
        if not isinstance(module, str) or not isinstance(name, str):
            raise UnsafePickleError("refusing a pickle that names a global by a non-string")
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray  # only ever an argument of _reconstruct, never called
        key = (module, name)
        if key not in self._callables:
            # Python 2 names (``__builtin__``, ``copy_reg``, ...) as the default find_class
            # translates them.
            key = _compat_pickle.NAME_MAPPING.get(
                key, (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
            )
        try:
            return self._callables[key]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name} from a pickle: only plain containers, "
                "numbers, strings and NumPy arrays are allowed"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing a pickle with persistent references")

    # -- bounds ------------------------------------------------------------------------

    def _weight(self, obj) -> tuple[int, int, int]:
        w = self._weights.get(id(obj))
        if w is not None:
            return w
        if isinstance(obj, str | bytes | bytearray):
            return 1, len(obj), 0
        if isinstance(obj, np.ndarray | np.generic):
            return 1, obj.nbytes, 0
        if isinstance(obj, int):
            return 1, (obj.bit_length() + 7) // 8, 0
        if isinstance(obj, _CONTAINERS):  # made by a stand-in: set(...), OrderedDict()
            return self._register(obj, _children(obj))
        return 1, 8, 0

    def _register(self, container, children, base=(1, 0, 0)) -> tuple[int, int, int]:
        """Record ``container``'s weight with ``children`` added to ``base``; refuse it
        when a limit is passed."""
        elements, nbytes, depth = base
        for child in children:
            if child is container:
                raise UnsafePickleError("refusing a pickle with a container that holds itself")
            e, b, d = self._weight(child)
            elements += e
            nbytes += b
            depth = max(depth, d + 1)
            if isinstance(child, _CONTAINERS) or id(child) in self._pending:
                self._placed.add(id(child))
        lim = self.limits
        if elements > lim.max_elements:
            raise UnsafePickleError(
                f"refusing a pickle that builds a container of more than {lim.max_elements:,} "
                "elements (counting shared references as copies)"
            )
        if nbytes > lim.max_bytes:
            raise UnsafePickleError(
                f"refusing a pickle that builds more than {lim.max_bytes:,} bytes of data "
                "(counting shared references as copies)"
            )
        if depth > lim.max_depth:
            raise UnsafePickleError(
                f"refusing a pickle nested more than {lim.max_depth} containers deep"
            )
        if id(container) not in self._weights:
            self._keep.append(container)
        self._weights[id(container)] = (elements, nbytes, depth)
        return elements, nbytes, depth

    def _grow(self, container, kind, children) -> None:
        """Weigh ``children`` into a container built earlier (APPEND, SETITEM, ADDITEMS).
        Changing a container that is already inside another one would make that one's
        weight stale (and is how recursive structures are made): refused."""
        if not isinstance(container, kind):
            raise UnsafePickleError(
                f"refusing a pickle that adds items to a {type(container).__name__}"
            )
        if id(container) in self._placed:
            raise UnsafePickleError(
                "refusing a pickle that changes a container after placing it in another one"
            )
        self._register(container, children, base=self._weight(container))

    def _final_dtype(self, dtype) -> np.dtype:
        if not isinstance(dtype, np.dtype) or id(dtype) not in self._final:
            raise UnsafePickleError("a NumPy array or scalar in a pickle lacks a complete dtype")
        return dtype

    # -- opcodes -----------------------------------------------------------------------

    def load_mark(self):
        if len(self.metastack) >= self.limits.max_depth:
            raise UnsafePickleError(
                f"refusing a pickle nested more than {self.limits.max_depth} containers deep"
            )
        self._held += len(self.stack)
        super().load_mark()

    def pop_mark(self):
        items = super().pop_mark()
        self._held -= len(self.stack)
        return items

    def load_append(self):
        value = self.stack.pop()
        target = self.stack[-1]
        self._grow(target, list, (value,))
        target.append(value)

    def load_appends(self):
        items = self.pop_mark()
        target = self.stack[-1]
        self._grow(target, list, items)
        target.extend(items)

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        target = self.stack[-1]
        self._grow(target, dict, (key, value))
        target[key] = value

    def load_setitems(self):
        items = self.pop_mark()
        if len(items) % 2:
            raise UnsafePickleError("refusing a pickle with an odd SETITEMS")
        target = self.stack[-1]
        self._grow(target, dict, items)
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_additems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        self._grow(target, set, items)
        target.update(items)

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in self._callable_ids or not isinstance(args, tuple):
            raise UnsafePickleError(f"refusing a pickle that calls {type(func).__name__}")
        self.stack[-1] = func(*args)

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if self._pending.pop(id(inst), None) is not inst or id(inst) in self._placed:
            raise UnsafePickleError(
                f"refusing a pickle that sets the state of a {type(inst).__name__}"
            )
        if isinstance(inst, np.dtype):
            inst.__setstate__(dtype_state(inst, state))
            self._final.add(id(inst))
            self._keep.append(inst)
        else:
            inst.__setstate__(self._array_state(state))

    def _array_state(self, state) -> tuple:
        if isinstance(state, tuple) and len(state) == 4:
            state = (1, *state)
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise UnsafePickleError("bad NumPy array state in a pickle")
        _, shape, dtype, fortran, raw = state
        shape = check_shape(shape)
        dtype = self._final_dtype(dtype)
        raw = raw_bytes(raw, math.prod(shape) * dtype.itemsize, "a NumPy array")
        check_text(raw, dtype, "a NumPy array")
        return 1, shape, dtype, bool(fortran), bytes(raw)

    def load_bytearray8(self):
        # The standard version allocates the claimed size before reading.
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self.limits.max_bytes:
            raise UnsafePickleError(f"refusing a {n:,}-byte bytearray in a pickle")
        data = self.read(n)  # from memory: never longer than what is left of the file
        if len(data) != n:
            raise pickle.UnpicklingError("pickle data was truncated")
        self.append(bytearray(data))


def _weigh_after(op):
    """The standard opcode ``op``, then weighing the container it left on the stack."""

    def run(self):
        op(self)
        container = self.stack[-1]
        self._register(container, _children(container))

    return run


def _bounded(op):
    """The opcode ``op``, then the check of the stack's and the memo's sizes."""

    def run(self):
        op(self)
        self._check_size()

    return run


def _refuse(what):
    def run(self):
        raise UnsafePickleError(f"refusing a pickle that uses {what}")

    return run


def _complete_dispatch(table: dict) -> None:
    for code in (
        pickle.EMPTY_LIST, pickle.EMPTY_TUPLE, pickle.EMPTY_DICT, pickle.EMPTY_SET, pickle.LIST,
        pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.DICT, pickle.FROZENSET,
    ):  # fmt: skip
        table[code[0]] = _weigh_after(pickle._Unpickler.dispatch[code[0]])
    u = RestrictedUnpickler
    for code, method in (
        (pickle.MARK, u.load_mark), (pickle.APPEND, u.load_append),
        (pickle.APPENDS, u.load_appends), (pickle.SETITEM, u.load_setitem),
        (pickle.SETITEMS, u.load_setitems), (pickle.ADDITEMS, u.load_additems),
        (pickle.REDUCE, u.load_reduce), (pickle.BUILD, u.load_build),
        (pickle.BYTEARRAY8, u.load_bytearray8),
    ):  # fmt: skip
        table[code[0]] = method
    for code, what in (
        (pickle.NEWOBJ, "NEWOBJ (creating instances of classes)"),
        (pickle.NEWOBJ_EX, "NEWOBJ_EX (creating instances of classes)"),
        (pickle.INST, "INST (creating instances of classes)"),
        (pickle.OBJ, "OBJ (creating instances of classes)"),
        (pickle.EXT1, "the extension registry"),
        (pickle.EXT2, "the extension registry"),
        (pickle.EXT4, "the extension registry"),
        (pickle.DUP, "DUP"),
        (pickle.NEXT_BUFFER, "out-of-band buffers"),
    ):
        table[code[0]] = _refuse(what)
    for code, op in list(table.items()):
        table[code] = _bounded(op)


_complete_dispatch(RestrictedUnpickler.dispatch)


def _children(container):
    if isinstance(container, dict):
        for k, v in container.items():
            yield k
            yield v
    else:
        yield from container


def loads_pickle(data: bytes, encoding: str = "latin1", limits: Limits = DEFAULT_LIMITS):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    ``encoding="latin1"`` reads NumPy arrays pickled by Python 2 correctly.
    """
    if len(data) > limits.max_bytes:
        raise UnsafePickleError(f"refusing a pickle of {len(data):,} bytes")
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding, limits=limits).load()


def load_pickle(
    path: str | os.PathLike,
    encoding: str = "latin1",
    limits: Limits = DEFAULT_LIMITS,
    data: bytes | None = None,
):
    """Unpickle the file at ``path`` with :class:`RestrictedUnpickler`.

    ``data``, when given, is the file's content already read (``path`` then only names it in
    errors). Raises :class:`UnsafePickleError` (naming the file) for a pickle that refers
    to anything but plain data and NumPy arrays or passes ``limits``, and ``ValueError``
    for a corrupt or truncated file.
    """
    if data is None:
        size = os.path.getsize(path)
        if size > limits.max_bytes:
            raise UnsafePickleError(f"{path}: refusing a pickle of {size:,} bytes")
        with open(path, "rb") as f:
            data = f.read()
    try:
        return loads_pickle(data, encoding=encoding, limits=limits)
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        LookupError,
        AttributeError,
        struct.error,
    ) as exc:
        raise ValueError(f"{path} is not a readable pickle of arrays: {exc}") from exc
