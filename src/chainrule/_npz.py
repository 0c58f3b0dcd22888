"""An ``.npz`` archive read without trusting it.

``numpy.load`` reads whatever an archive holds and allocates whatever an array header
claims. `NpzArchive` lists the members from the zip directory, reads each member's
``.npy`` header alone (shape and dtype, a few hundred bytes), checks that the member holds
exactly the bytes its header describes, and reads an array only when asked, so that the
caller can refuse unknown members and impossible sizes before any of them is allocated.
Every zip or ``.npy`` format error (a damaged directory, an unsupported compression or
encryption, a failed CRC, a truncated member) becomes `DamagedArchive`.
"""

from __future__ import annotations

import contextlib
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

__all__ = ["DamagedArchive", "Header", "NpzArchive", "NotAnArchive"]

# What zipfile and numpy raise on a damaged archive or member. NotImplementedError is
# zipfile's answer to a directory entry that claims an unknown compression method, zip
# version or flag, RuntimeError its answer to an encrypted member.
_FORMAT_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
    ValueError,
    KeyError,
    OSError,  # a seek to an offset the directory made up
)
# The dtype kinds a member may have: numbers, booleans, text. No objects, no records.
_KINDS = "biufU"
# Largest .npy header read (numpy's own default bound).
_MAX_HEADER = 10000


class NotAnArchive(ValueError):
    """The file is not a zip archive at all."""


class DamagedArchive(ValueError):
    """The archive or one of its members is damaged or not what it claims to be."""


@dataclass(frozen=True)
class Header:
    """What a member's ``.npy`` header says: ``shape``, ``dtype`` (plain, native or not),
    ``nbytes`` of its data."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for s in self.shape:
            n *= s
        return n


@contextlib.contextmanager
def _format_errors(what: str) -> Iterator[None]:
    try:
        yield
    except DamagedArchive:
        raise
    except _FORMAT_ERRORS as e:
        raise DamagedArchive(f"{what}: {type(e).__name__}: {e}") from None


class NpzArchive:
    """The ``.npy`` members of an open zip file ``fileobj`` (binary, seekable).

    ``names`` : member names without ``.npy``, in the archive's order
    ``others`` : names of members that are not ``.npy`` files
    Raises `NotAnArchive` when ``fileobj`` is not a zip file and `DamagedArchive` when
    its directory is damaged (duplicate names, encrypted members).
    """

    def __init__(self, fileobj: IO[bytes]):
        try:
            self._zip = zipfile.ZipFile(fileobj)
        except zipfile.BadZipFile as e:
            raise NotAnArchive(str(e)) from None
        except _FORMAT_ERRORS as e:
            raise DamagedArchive(f"zip directory: {type(e).__name__}: {e}") from None
        self._infos: dict[str, zipfile.ZipInfo] = {}
        self.others: list[str] = []
        self._headers: dict[str, tuple[Header, int]] = {}
        for info in self._zip.infolist():
            if info.flag_bits & 0x1:
                raise DamagedArchive(f"member {info.filename!r} is encrypted")
            if not info.filename.endswith(".npy"):
                self.others.append(info.filename)
                continue
            name = info.filename[: -len(".npy")]
            if name in self._infos:
                raise DamagedArchive(f"member {name!r} appears twice")
            self._infos[name] = info

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    @property
    def names(self) -> list[str]:
        return list(self._infos)

    def header(self, name: str) -> Header:
        """The header of member ``name``, checked against the member's size in the zip
        directory (a member must hold exactly the data its header describes)."""
        if name in self._headers:
            return self._headers[name][0]
        info = self._infos[name]
        with _format_errors(f"member {name!r}"), self._zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, _MAX_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, _MAX_HEADER)
            else:
                raise DamagedArchive(f"member {name!r} has .npy version {version}")
            offset = f.tell()
        if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise DamagedArchive(f"member {name!r} has dtype {dtype}, not plain numbers or text")
        header = Header(tuple(int(s) for s in shape), dtype)
        if info.file_size != offset + header.nbytes:
            raise DamagedArchive(
                f"member {name!r} holds {max(info.file_size - offset, 0)} bytes of data but "
                f"its header describes {header.nbytes} (shape {header.shape}, {dtype})"
            )
        self._headers[name] = (header, offset)
        return header

    def read(self, name: str) -> np.ndarray:
        """The array of member ``name`` (its header is checked first)."""
        self.header(name)
        with _format_errors(f"member {name!r}"), self._zip.open(self._infos[name]) as f:
            arr = np.lib.format.read_array(f, allow_pickle=False, max_header_size=_MAX_HEADER)
            if f.read(1):  # reaching the end makes zipfile check the CRC
                raise DamagedArchive(f"member {name!r} has data after its array")
        return arr
