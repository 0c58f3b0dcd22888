"""Matrix products of the fully connected layers, split over threads by hand.

With more than one thread, a product large enough to share is cut into as many column
blocks (or row blocks) of its output as there are threads, and each block is one
single-threaded BLAS product on its own thread (`_parallel.map_chunks`). The cut runs
through the larger operand, so each thread packs only its part of it and the smaller
operand is the one both read: for ``x @ W`` in a layer of 1024 units on a batch of 256
that is W, cut by columns.

Why not leave the threads to BLAS: OpenBLAS's threads wait for each other at every
step of a product, spinning, and on a machine shared with other work, where one of the
two threads is often descheduled, its two-thread products ran at a fraction of their
one-thread speed (`benchmarks/bench_mlp.py` shows it), while blocks handed out by one
queue keep both threads busy whenever they run; on an idle machine the two ways cost
the same.
"""

from __future__ import annotations

import numpy as np

from chainrule.nn.functional._parallel import map_chunks, num_threads

__all__ = ["matmul"]

# Multiply-adds below which a product stays one BLAS call.
_SPLIT_WORK = 1 << 22


def matmul(a, b, out=None):
    """``a @ b`` of 2-D float arrays (m, k) and (k, n) -> (m, n): a new C-contiguous
    array, or `out` (m, n) written.

    Split over `num_threads` threads when there are several and the product has at
    least `_SPLIT_WORK` multiply-adds; otherwise one ``np.matmul``. Anything but two
    arrays (Tensors of a gradient being recorded) goes to ``a @ b`` as it is."""
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return a @ b
    m, k = a.shape
    n = b.shape[1]
    threads = num_threads()
    if threads < 2 or m * k * n < _SPLIT_WORK:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    if b.size >= a.size:  # cut b (and the output) by columns

        def work(s, e, _slot):
            np.matmul(a, b[:, s:e], out=out[:, s:e])

        map_chunks(work, n, -(-n // threads))
    else:  # cut a (and the output) by rows

        def work(s, e, _slot):
            np.matmul(a[s:e], b, out=out[s:e])

        map_chunks(work, m, -(-m // threads))
    return out
