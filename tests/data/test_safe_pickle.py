"""The restricted unpickler: plain data and NumPy arrays only, no code, no crash, no bomb."""

import collections
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import chainrule
from chainrule.data.safe_pickle import Limits, UnsafePickleError, load_pickle, loads_pickle


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def op_str(text: str) -> bytes:
    """BINUNICODE: a string on the pickle stack."""
    raw = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def int_op(n: int) -> bytes:
    """An int on the pickle stack (LONG1 beyond 32 bits)."""
    if -(2**31) <= n < 2**31:
        return pickle.BININT + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(raw)]) + raw


def dtype_with_state(name: str, order: str = "|", elsize=-1, align=-1, flags=0) -> bytes:
    """Opcodes that leave ``numpy.dtype(name)`` on the stack after a BUILD with the given
    state: the way a pickle can reset a dtype's flags."""
    return (
        b"cnumpy\ndtype\n"
        + op_str(name)
        + pickle.NEWFALSE
        + pickle.NEWTRUE
        + pickle.TUPLE3
        + pickle.REDUCE
        + pickle.MARK
        + pickle.BININT1
        + b"\x03"
        + op_str(order)
        + pickle.NONE * 3
        + int_op(elsize)
        + pickle.BININT
        + struct.pack("<i", align)
        + pickle.BININT1
        + bytes([flags])
        + pickle.TUPLE
        + pickle.BUILD
    )


POINTER = struct.pack("<Q", 0xDEADBEEF)  # 8 bytes of the file, to be read as a pointer


def scalar_attack(dtype: bytes) -> bytes:
    """``multiarray.scalar(dtype, 8 raw bytes)``."""
    return (
        pickle.PROTO
        + b"\x02cnumpy._core.multiarray\nscalar\n"
        + dtype
        + pickle.SHORT_BINBYTES
        + b"\x08"
        + POINTER
        + pickle.TUPLE2
        + pickle.REDUCE
        + pickle.STOP
    )


def reconstruct_attack(dtype: bytes) -> bytes:
    """``_reconstruct`` of an empty array, then a BUILD with one element of raw bytes."""
    return (
        pickle.PROTO
        + b"\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + b"K\x00\x85C\x01b\x87R"  # ((0,), b"b") and REDUCE
        + b"(K\x01K\x01\x85"  # MARK, version 1, shape (1,)
        + dtype
        + pickle.NEWFALSE
        + pickle.SHORT_BINBYTES
        + b"\x08"
        + POINTER
        + pickle.TUPLE
        + pickle.BUILD
        + pickle.STOP
    )


# -- code and crashes -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_restricted_unpickler_refuses_code(tmp_path, protocol):
    target = tmp_path / "pwned"
    blob = pickle.dumps({"data": np.zeros(3), "x": Evil(str(target))}, protocol=protocol)
    with pytest.raises(UnsafePickleError, match="system"):
        loads_pickle(blob)
    with pytest.raises(ValueError):  # callers that catch ValueError see it too
        loads_pickle(blob)
    assert not target.exists()
    for name in ("builtins eval", "builtins getattr", "numpy load", "subprocess Popen"):
        module, attr = name.split()
        payload = f"c{module}\n{attr}\n(S'1'\ntR.".encode()
        with pytest.raises(UnsafePickleError, match=f"{module}.{attr}"):
            loads_pickle(payload)


ATTACKS = {
    "scalar of an object dtype": scalar_attack(dtype_with_state("O8", flags=0)),
    "scalar of an object dtype, flags kept": scalar_attack(dtype_with_state("O8", flags=63)),
    "array of an object dtype": reconstruct_attack(dtype_with_state("O8", flags=0)),
    "uint64 given object flags (scalar)": scalar_attack(dtype_with_state("u8", "<", flags=63)),
    "uint64 given object flags (array)": reconstruct_attack(dtype_with_state("u8", "<", flags=63)),
}


def test_numpy_memory_attacks_are_refused_not_crashing(tmp_path):
    # Each of these made NumPy read 8 bytes of the file as a Python object pointer
    # (segmentation fault) or hit NumPy internal errors through names the unpickler admits.
    # They run in a child process, so that a crash fails this test instead of ending it.
    for i, payload in enumerate(ATTACKS.values()):
        (tmp_path / f"{i}.pkl").write_bytes(payload)
    script = (
        "import sys\n"
        "from chainrule.data.safe_pickle import UnsafePickleError, load_pickle\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        obj = load_pickle(path)\n"
        "        print('loaded', repr(obj))\n"
        "    except UnsafePickleError as exc:\n"
        "        print('refused', exc)\n"
    )
    src = str(Path(chainrule.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    paths = [str(tmp_path / f"{i}.pkl") for i in range(len(ATTACKS))]
    out = subprocess.run(
        [sys.executable, "-c", script, *paths], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, f"crashed ({out.returncode}): {out.stderr[-2000:]}"
    lines = out.stdout.splitlines()
    assert len(lines) == len(ATTACKS)
    for name, line in zip(ATTACKS, lines):
        assert line.startswith("refused"), f"{name}: {line}"
    assert "refusing NumPy dtype 'O8'" in lines[0] and "no Python objects" in lines[0]
    assert "unusual state on dtype uint64" in lines[3]


@pytest.mark.parametrize(
    "state, message",
    [
        (dict(order="<", elsize=8), "unusual state"),  # a numeric dtype given a size
        (dict(order="|"), "unusual state"),  # "not applicable" byte order on 8 bytes
        (dict(order="<", align=1), "unusual state"),
    ],
)
def test_dtype_state_must_be_the_genuine_one(state, message):
    payload = pickle.PROTO + b"\x02" + dtype_with_state("u8", **state) + pickle.STOP
    with pytest.raises(UnsafePickleError, match=message):
        loads_pickle(payload)
    good = pickle.PROTO + b"\x02" + dtype_with_state("u8", "<") + pickle.STOP
    assert loads_pickle(good) == np.dtype("<u8")


@pytest.mark.parametrize("name", ["V8", "M8", "O4", "u1,u1", "(2,)u1", "U", "x8"])
def test_only_plain_dtypes(name):
    payload = b"cnumpy\ndtype\n" + op_str(name) + b"\x89\x88\x87R."
    with pytest.raises(UnsafePickleError, match="refusing NumPy dtype"):
        loads_pickle(payload)


def test_calling_ndarray_or_reusing_a_built_array_is_refused():
    # numpy.ndarray((10**6, 10**6)) would ask for terabytes.
    payload = b"cnumpy\nndarray\n(J@B\x0f\x00J@B\x0f\x00\x86tR."
    with pytest.raises(UnsafePickleError, match="calls type"):
        loads_pickle(payload)
    # A second BUILD on an array (to give it another dtype or size) is refused.
    blob = pickle.dumps(np.arange(3, dtype=np.uint8), protocol=2)
    twice = blob[:-1] + blob[blob.index(b"(K\x01") : -1] + b"."
    assert twice.count(b"b") >= 2
    with pytest.raises(UnsafePickleError, match="sets the state"):
        loads_pickle(twice)


def test_array_data_must_match_its_shape():
    blob = pickle.dumps(np.arange(4, dtype=np.uint8), protocol=3)
    short = blob.replace(b"C\x04\x00\x01\x02\x03", b"C\x02\x00\x01")
    assert short != blob
    with pytest.raises(UnsafePickleError, match="has 2 bytes; its shape and dtype need 4"):
        loads_pickle(short)


# -- bombs ------------------------------------------------------------------------------


def shared_lists(levels=25, width=8) -> bytes:
    a = []
    for _ in range(levels):
        a = [a] * width  # 8**25 elements once the shared references are expanded
    return pickle.dumps(a, protocol=2)


BOMBS = {
    "nested shared lists": (shared_lists(), "more than 10,000,000 elements"),
    "bytes(10**13)": (b"c__builtin__\nbytes\n(L10000000000000L\ntR.", "bytes"),
    "bytearray(2**30)": (b"c__builtin__\nbytearray\n(L1073741824L\ntR.", "bytearray"),
    "BYTEARRAY8 claiming 2**40 bytes": (
        b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b".",
        "1,099,511,627,776-byte bytearray",
    ),
    "100,000 nested lists": (b"]" * 100_000 + b"a" * 99_999 + b".", "more than 100 containers"),
    "100,000 marks": (b"(" * 100_000 + b".", "more than 100 containers"),
    "a list holding itself": (b"]q\x00h\x00a.", "holds itself"),
    "a list changed after use": (b"]q\x00]q\x01h\x00ah\x00K\x01a.", "changes a container"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_pickle_bombs_are_refused(name):
    payload, message = BOMBS[name]
    assert len(payload) < 2_000 or name.startswith("100,000")
    with pytest.raises(UnsafePickleError, match=message):
        loads_pickle(payload)


def test_shared_references_count_as_copies_but_stay_readable():
    row = np.arange(1000, dtype=np.int64)
    blob = pickle.dumps({"rows": [row] * 100, "names": ["x" * 100] * 100})
    back = loads_pickle(blob)
    assert back["rows"][0] is back["rows"][99]  # still shared, not copied
    np.testing.assert_array_equal(back["rows"][5], row)
    with pytest.raises(UnsafePickleError, match="more than 500,000 bytes"):
        loads_pickle(blob, limits=Limits(max_bytes=500_000))
    with pytest.raises(UnsafePickleError, match="more than 150 elements"):
        loads_pickle(blob, limits=Limits(max_elements=150))
    nested = pickle.dumps([[[[1]]]])
    assert loads_pickle(nested, limits=Limits(max_depth=4)) == [[[[1]]]]
    with pytest.raises(UnsafePickleError, match="more than 3 containers deep"):
        loads_pickle(nested, limits=Limits(max_depth=3))


def test_large_files_are_refused_before_reading(tmp_path):
    path = tmp_path / "big.pkl"
    path.write_bytes(pickle.dumps(b"x" * 5000))
    with pytest.raises(UnsafePickleError, match=r"big\.pkl: refusing a pickle of 5,0\d\d bytes"):
        load_pickle(path, limits=Limits(max_bytes=4096))


def test_the_memo_is_bounded_like_a_container():
    """MEMOIZE opcodes (one byte each) grow the memo by one entry each: 10 MB of them cost
    651 MB. The memo holds at most ``max_elements`` entries."""
    limits = Limits(max_elements=1000)
    payload = pickle.PROTO + b"\x04" + pickle.NONE + pickle.MEMOIZE * 5000 + pickle.STOP
    with pytest.raises(UnsafePickleError, match="memo of more than 1,000 entries"):
        loads_pickle(payload, limits=limits)
    puts = b"N" + b"".join(b"r" + struct.pack("<I", i) for i in range(5000)) + b"."
    with pytest.raises(UnsafePickleError, match="memo of more than 1,000 entries"):
        loads_pickle(puts, limits=limits)
    assert (
        loads_pickle(pickle.PROTO + b"\x04N" + pickle.MEMOIZE * 999 + b".", limits=limits) is None
    )


def test_the_stack_is_bounded_like_a_container():
    """Each NONE opcode pushes one item (47 MB of them cost 333 MB): at most
    ``max_elements`` items wait on the stack, marks included."""
    limits = Limits(max_elements=1000)
    with pytest.raises(UnsafePickleError, match="more than 1,000 items on its stack"):
        loads_pickle(b"N" * 5000 + b".", limits=limits)
    with pytest.raises(UnsafePickleError, match="more than 1,000 items on its stack"):
        loads_pickle(b"(" + b"N" * 600 + b"(" + b"N" * 600 + b".", limits=limits)
    assert loads_pickle(b"(" + b"N" * 900 + b"t.", limits=limits) == (None,) * 900


@pytest.mark.parametrize("opcodes", [pickle.MEMOIZE, b"N"])
def test_a_flood_of_opcodes_is_refused_without_growing_memory(opcodes):
    payload = pickle.PROTO + b"\x04N" + opcodes * 3_000_000 + b"."
    tracemalloc.start()
    try:
        with pytest.raises(UnsafePickleError):
            loads_pickle(payload, limits=Limits(max_elements=100_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def unicode_scalar(order: str, raw: bytes, width: int) -> bytes:
    """``multiarray.scalar(dtype("U<width>") with byte order <order>, raw)``."""
    return (
        pickle.PROTO
        + b"\x02cnumpy._core.multiarray\nscalar\n"
        + dtype_with_state(f"U{width}", order, elsize=4 * width, align=4, flags=8)
        + pickle.BINBYTES
        + struct.pack("<I", len(raw))
        + raw
        + pickle.TUPLE2
        + pickle.REDUCE
        + pickle.STOP
    )


@pytest.mark.parametrize(
    "order, raw",
    [
        ("<", struct.pack("<2I", 0x110000, 65)),  # beyond U+10FFFF
        ("<", struct.pack("<2I", 0xFFFFFFFF, 65)),
        (">", struct.pack("<2I", 65, 66)),  # 'A' little-endian read as big-endian: 0x41000000
    ],
)
def test_invalid_code_points_are_refused(order, raw):
    with pytest.raises(UnsafePickleError, match="not a Unicode code point"):
        loads_pickle(unicode_scalar(order, raw, 2))
    array = pickle.dumps(np.array(["AB"], dtype=f"{order}U2"), protocol=3)
    good = np.array(["AB"], dtype=f"{order}U2").tobytes()
    assert good in array
    with pytest.raises(UnsafePickleError, match="not a Unicode code point"):
        loads_pickle(array.replace(good, raw))


def test_valid_big_endian_text_reads_as_the_same_text():
    text = loads_pickle(unicode_scalar(">", struct.pack(">2I", 65, 0x1F600), 2))
    assert text == "A\U0001f600" and text.upper() == "A\U0001f600"
    array = loads_pickle(pickle.dumps(np.array(["AB", "\u00e9"], dtype=">U2"), protocol=2))
    assert array.tolist() == ["AB", "\u00e9"]


def test_a_string_dtype_too_wide_for_numpy_is_refused_cleanly():
    payload = (
        pickle.PROTO + b"\x02" + dtype_with_state("S1", "|", elsize=2**31, align=1) + pickle.STOP
    )
    with pytest.raises(UnsafePickleError):
        loads_pickle(payload)


# -- what plain data still reads --------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_restricted_unpickler_reads_arrays(protocol):
    entry = {
        "data": np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3),
        "labels": np.array([3, 4]),
        "scalar": np.float32(2.5),
        "names": ["a", b"b", ("c", 1.5), None, True, 2**70, b""],
        "fortran": np.asfortranarray(np.ones((3, 2))),
        "transposed": np.arange(6, dtype=np.int16).reshape(2, 3).T,
        "big_endian": np.arange(5, dtype=">u4"),
        "strings": np.array(["mug", "cracker_box"]),
        "bytes": np.array([b"ab", b"c"]),
        "bools": np.array([True, False]),
        "complex": np.array([1 + 2j], dtype=np.complex64),
        "empty": np.zeros((0, 3), dtype=np.float64),
        "sets": (set([1, 2]), frozenset(["a"])),
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "bytearray": bytearray(b"xyz"),
        "unicode_scalar": np.str_("mug"),
    }
    blob = pickle.dumps(entry, protocol=protocol)
    back = loads_pickle(blob)
    reference = pickle.loads(blob)  # what NumPy itself rebuilds (native byte order)
    assert back.keys() == entry.keys()
    for key, value in entry.items():
        if isinstance(value, np.ndarray):
            assert back[key].dtype == reference[key].dtype, key
            assert back[key].shape == value.shape, key
            np.testing.assert_array_equal(back[key], value)
            assert back[key].flags.writeable == reference[key].flags.writeable, key
        else:
            assert back[key] == value and type(back[key]) is type(value), key
    assert back["ordered"] == entry["ordered"] and list(back["ordered"]) == ["b", "a"]
    # One array referenced twice comes back as one array, with its data.
    arr = np.arange(4)
    again = loads_pickle(pickle.dumps([arr, arr], protocol=protocol))
    assert again[0] is again[1]
    np.testing.assert_array_equal(again[1], arr)


def test_load_pickle_names_a_truncated_file(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"data": np.zeros(100)})[:50])
    with pytest.raises(ValueError, match="x.pkl is not a readable pickle"):
        load_pickle(path)
