"""Per-thread scratch arrays for the temporaries of chunked Functions.

A chunk's temporaries (a padded copy of a few images, an im2col matrix, Winograd
transforms) are megabytes, allocated and freed hundreds of times per training step.
Fresh allocations of that size come back from the C allocator as untouched pages, and
the first write to each page is a page fault: measured here, that made some chunked
passes up to three times slower. `scratch` hands out arrays from buffers that each
thread keeps and reuses, by name; a buffer grows to the largest size asked for and
stays (a few megabytes per thread).
"""

from __future__ import annotations

import math
import threading

import numpy as np

__all__ = ["padded", "scratch"]

_local = threading.local()


def _buffers() -> dict:
    b = getattr(_local, "buffers", None)
    if b is None:
        b = _local.buffers = {}
    return b


def scratch(name: str, shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape` and `dtype` in this thread's buffer
    `name`, reused by the next call with the same name on the same thread: only for
    temporaries that do not outlive the chunk, one name per array alive at a time."""
    buffers = _buffers()
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[name] = np.empty(max(nbytes, 64), dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def padded(name: str, x, pads) -> np.ndarray:
    """x placed inside a zero-padded scratch array: pads is (before, after) per axis.

    The padded array is kept per shape and padding, and only its interior is written:
    the zero margins stay from the first use (callers read the result, never write it).
    """
    key = (name, x.shape, x.dtype.str, tuple(pads))
    buffers = _buffers()
    p = buffers.get(key)
    if p is None:
        shape = tuple(n + a + b for n, (a, b) in zip(x.shape, pads))
        p = buffers[key] = np.zeros(shape, dtype=x.dtype)
    p[tuple(slice(a, a + n) for n, (a, _) in zip(x.shape, pads))] = x
    return p
