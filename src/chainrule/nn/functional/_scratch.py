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

import threading

import numpy as np

__all__ = ["padded", "scratch"]

_local = threading.local()


def scratch(name: str, shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape` and `dtype` in this thread's buffer
    `name`, reused by the next call with the same name on the same thread: only for
    temporaries that do not outlive the chunk, one name per array alive at a time."""
    buffers = _local.__dict__.setdefault("buffers", {})
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[name] = np.empty(max(nbytes, 64), dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def padded(name: str, xc, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Images xc (n, H, W, C) placed at (top, left) in a zeroed (n, height, width, C)
    scratch array `name` (only the margins are written with zeros)."""
    n, h, w, c = xc.shape
    p = scratch(name, (n, height, width, c), xc.dtype)
    p[:, :top] = 0
    p[:, top + h :] = 0
    p[:, top : top + h, :left] = 0
    p[:, top : top + h, left + w :] = 0
    p[:, top : top + h, left : left + w] = xc
    return p
