"""Threads for the loops outside matrix products (NumPy releases the GIL in them).

Matrix products use the BLAS threads; these helpers share the rest of the work (L1 tiles,
candidate selection, gathering rows for re-measuring) among up to ``n_jobs`` threads in
contiguous shares, so that the result never depends on the number of threads.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["default_jobs", "in_threads", "map_row_ranges"]

# Least work (array elements) worth a thread of its own.
JOB_ELEMENTS = 1 << 24


def default_jobs() -> int:
    """Every CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def in_threads(work, n: int, grain: int, elements: int, n_jobs: int) -> None:
    """Run ``work(start, stop)`` over ``range(n)`` in up to ``n_jobs`` threads.

    The shares are contiguous and multiples of ``grain``; small jobs (few ``elements`` of
    work) stay on the calling thread, where handing work over would cost more than it saves.
    """
    n_steps = -(-n // grain)
    jobs = max(1, min(n_jobs, n_steps, elements // JOB_ELEMENTS))
    if jobs == 1:
        work(0, n)
        return
    per = -(-n_steps // jobs) * grain
    bounds = [(s, min(n, s + per)) for s in range(0, n, per)]
    with ThreadPoolExecutor(max_workers=len(bounds)) as ex:
        for f in [ex.submit(work, a, b) for a, b in bounds]:
            f.result()


def map_row_ranges(pool, func, n: int, jobs: int) -> list:
    """``[func(s, e) for each of up to `jobs` contiguous ranges of range(n)]``, run on
    ``pool`` (a ThreadPoolExecutor, or None for the calling thread)."""
    if pool is None or jobs <= 1 or n < 2 * jobs:
        return [func(0, n)]
    per = -(-n // jobs)
    bounds = [(s, min(n, s + per)) for s in range(0, n, per)]
    return [f.result() for f in [pool.submit(func, a, b) for a, b in bounds]]
