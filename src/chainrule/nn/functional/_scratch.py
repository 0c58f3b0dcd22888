"""Memory that is reused instead of allocated afresh: scratch arrays and output arrays.

Fresh allocations of megabytes come back from the C allocator as untouched pages (above
32 MB always: glibc maps them anew), and the first write to each page is a page fault
in which the kernel zeroes the page -- an extra pass over memory, which on this
machine's memory bandwidth (about 20 GB/s, not more with two threads) is what limits
the memory-bound passes. Two remedies:

- `scratch`: a chunk's temporaries (a padded copy of a few images, an im2col matrix),
  allocated and freed hundreds of times per step, come from buffers that each thread
  keeps and reuses by name (a few megabytes per thread). Measured: some chunked passes
  were up to three times slower with fresh arrays.
- `empty`: the large outputs of the Functions (activations, gradients) come from a
  pool of buffers: when the array handed out is garbage-collected, its buffer goes back
  to the pool (``weakref.finalize``) for the next array of the same size -- the same
  sizes come round every training step. Idle buffers are capped at `POOL_BYTES`; past
  that, those of the sizes asked for least recently are freed. Measured on the
  bench_cnn network: training steps 13-15% faster, at one thread and at two.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict

import numpy as np

__all__ = ["empty", "padded", "scratch"]

# Arrays from 1 MB up come from the pool; at most this many bytes wait in it unused.
POOL_MIN_BYTES = 1 << 20
POOL_BYTES = 1 << 30

# idle buffers by size, the sizes in the order they were last asked for
_pool: OrderedDict[int, list[np.ndarray]] = OrderedDict()
_pool_lock = threading.Lock()
_pooled = [0]  # idle bytes


def _release(buf: np.ndarray) -> None:
    with _pool_lock:
        if buf.nbytes > POOL_BYTES:
            return
        while _pooled[0] + buf.nbytes > POOL_BYTES:
            size, stale = next(iter(_pool.items()))
            _pooled[0] -= size * len(stale)
            del _pool[size]
        _pool.setdefault(buf.nbytes, []).append(buf)
        _pooled[0] += buf.nbytes


def empty(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, from the pool of reused buffers when it is large."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < POOL_MIN_BYTES:
        return np.empty(shape, dtype)
    with _pool_lock:
        free = _pool.get(nbytes)
        buf = free.pop() if free else None
        if buf is not None:
            _pooled[0] -= nbytes
        if free is not None:
            _pool.move_to_end(nbytes)
    if buf is None:
        buf = np.empty(nbytes, dtype=np.uint8)
    # NumPy gives every view of a view the first array with foreign memory as its base:
    # here `head`, which lives as long as any view of the result does; when it goes,
    # the buffer goes back to the pool.
    head = np.frombuffer(memoryview(buf), dtype=dtype, count=math.prod(shape))
    weakref.finalize(head, _release, buf)
    return head.reshape(shape)


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
