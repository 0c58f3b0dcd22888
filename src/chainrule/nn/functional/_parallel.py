"""Work on a minibatch of images split into chunks and spread over threads.

The convolution, pooling and batch-norm Functions cut their batch into chunks of a few
images, small enough that a chunk's intermediate arrays (an im2col matrix, a normalised
block) stay in the processor's cache, and hand the chunks to threads. NumPy releases
the GIL inside its loops and BLAS calls, so the threads run truly in parallel: memory
bound work (copies, batch norm, pooling) gains as much from two cores as the matrix
products do, which is not the case when only BLAS is threaded.

How many threads: as many as NumPy's BLAS is allowed to use, read on every call, so
``threadpoolctl.threadpool_limits(1)`` makes these Functions single-threaded too. While
the chunks run, BLAS is held to one thread (each chunk's matrix product runs on the
thread that owns the chunk; two levels of threads would fight over the cores) and
restored afterwards. Small inputs stay on the calling thread, where handing work over
would cost more than it saves.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["OrderedSum", "chunk_size", "map_chunks", "num_threads"]

# Below this many elements of work a call stays on one thread.
_SMALL = 1 << 15

_state = {"blas": None, "pool": None, "size": 0}
_lock = threading.Lock()


def _blas_controllers():
    """threadpoolctl's controllers of the BLAS libraries NumPy loaded ([] if none)."""
    if _state["blas"] is None:
        try:
            from threadpoolctl import ThreadpoolController

            _state["blas"] = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # threadpoolctl missing or unable to read the libraries
            _state["blas"] = []
    return _state["blas"]


def num_threads() -> int:
    """Threads the chunked Functions use: NumPy's BLAS thread count (at least 1)."""
    libs = _blas_controllers()
    if libs:
        return max(1, max(lib.get_num_threads() for lib in libs))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _pool(n: int) -> ThreadPoolExecutor:
    with _lock:
        if _state["pool"] is None or _state["size"] < n:
            if _state["pool"] is not None:
                _state["pool"].shutdown(wait=True)
            _state["pool"] = ThreadPoolExecutor(n, thread_name_prefix="chainrule-nn")
            _state["size"] = n
        return _state["pool"]


def chunk_size(n: int, per_item: int, target: int = 1 << 21) -> int:
    """Items per chunk: about `target` bytes of work (`per_item` bytes each), at least 1."""
    return max(1, min(n, target // max(1, per_item)))


def map_chunks(work, n: int, chunk: int, elements: int | None = None) -> list:
    """``[work(start, stop, slot) for each chunk of range(n)]`` in order, in threads.

    work : callable (start, stop, slot) -> any; `slot` (0 .. threads - 1) names the
        thread, for per-thread accumulators. Chunks are handed out one at a time, so a
        thread slowed by other processes takes fewer of them.
    n, chunk : items (images) and items per chunk.
    elements : size of the whole job; below a threshold everything runs on this thread.

    Returns the results in chunk order; the first exception of any chunk is raised.
    """
    bounds = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]
    nt = min(num_threads(), len(bounds))
    if elements is not None and elements < _SMALL:
        nt = 1
    if nt <= 1:
        return [work(a, b, 0) for a, b in bounds]
    results = [None] * len(bounds)
    order = iter(range(len(bounds)))
    take = threading.Lock()

    def run(slot):
        while True:
            with take:
                i = next(order, None)
            if i is None:
                return
            results[i] = work(*bounds[i], slot)

    libs = _blas_controllers()
    saved = [lib.get_num_threads() for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        futures = [_pool(nt - 1).submit(run, s) for s in range(1, nt)]
        try:
            run(0)
        finally:
            errors = [f.exception() for f in futures]
        for e in errors:
            if e is not None:
                raise e
    finally:
        for lib, k in zip(libs, saved):
            lib.set_num_threads(k)
    return results


class OrderedSum:
    """A sum of per-chunk arrays added in chunk order, whatever order the threads finish
    the chunks in, so that the result does not depend on the number of threads; at most
    the chunks that finished ahead of an unfinished one wait, not one array per chunk.

    ``add(i, a)`` from any thread; `total` after all chunks 0 .. n - 1 were added."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiting = {}
        self._next = 0
        self.total = None

    def add(self, index: int, array) -> None:
        with self._lock:
            self._waiting[index] = array
            while self._next in self._waiting:
                a = self._waiting.pop(self._next)
                self.total = a if self.total is None else np.add(self.total, a, out=self.total)
                self._next += 1
