"""Candidate lists: the smallest values of each row, and merging lists.

A *candidate list* is a pair ``(vals, idx)`` of (r, m) arrays: for each of r queries, m
values with the training indices they belong to, ordered by (value, index). Everything
here keeps that order, so equal values always resolve towards the smaller index, whichever
block, chunk or shard a candidate came from.
"""

from __future__ import annotations

import numpy as np

__all__ = ["merge_neighbors", "pair_groups", "smallest", "sort_rows", "top_k_of_pairs"]


def sort_rows(vals: np.ndarray, idx: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` smallest of each row of ``vals`` (r, c) with their ``idx`` (r, c), ordered
    by (value, index). Returns two (r, min(m, c)) arrays."""
    order = np.lexsort((idx, vals), axis=-1)[:, :m]
    return np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1)


def merge_neighbors(
    lists: list[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge candidate lists of the same queries into the ``k`` smallest by (value, index).

    ``lists``: ``(vals, idx)`` pairs, each (r, m_i), with indices in one common numbering
    (for shards of a training set: each shard's local indices plus the shard's offset).
    If every list holds its part's exact top ``min(k, m_i)`` by (value, index), the result
    is the exact top ``k`` of the union, ties to the smallest index: the merge that turns
    the neighbours of each shard into the neighbours of the whole training set.
    """
    vals = np.concatenate([v for v, _ in lists], axis=1)
    idx = np.concatenate([i for _, i in lists], axis=1)
    return sort_rows(vals, idx, k)


def top_k_of_pairs(rows, cols, vals, n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest (value, column) of each row from a flat list of entries.

    rows, cols, vals (p,): entry ``i`` gives query ``rows[i]`` the value ``vals[i]`` for
    training row ``cols[i]``; every row in ``range(n_rows)`` must have at least ``k``
    entries, with distinct columns. Returns ``(vals, cols)``, both (n_rows, k).
    """
    order = np.lexsort((cols, vals, rows))
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    pick = order[starts[:, None] + np.arange(k)]
    return vals[pick], cols[pick]


def pair_groups(keep: np.ndarray, budget: int):
    """The True entries of ``keep`` (r, n) as ``(rows, cols)`` pairs, a few rows at a time
    (about ``budget`` pairs per group, at least one row), so that pair lists stay small."""
    counts = keep.sum(axis=1)
    cum = np.cumsum(counts)
    a, r = 0, keep.shape[0]
    while a < r:
        b = max(a + 1, int(np.searchsorted(cum, cum[a] - counts[a] + budget, "right")))
        rows, cols = np.nonzero(keep[a:b])
        yield a + rows, cols
        a = b


def smallest(A: np.ndarray, m: int, mask_buf: np.ndarray | None = None):
    """Values and column indices of the ``m`` smallest entries of each row of ``A`` (r, n).

    Returns ``(vals, cols)``, both (r, m), each row ordered by (value, column). ``A`` must be
    C-contiguous and free of NaN; ``mask_buf`` is an optional bool scratch of >= r * n.

    Rather than partitioning every row (slow: ~100 us for 50,000 entries), each row is cut
    into at least ``4 m`` groups; the ``m``-th smallest group minimum ``tau`` is an upper
    bound of the ``m``-th smallest entry (``m`` groups each hold an entry <= tau), so the
    entries ``<= tau`` are few and hold the answer. A few fast passes instead of a sort.
    """
    r, n = A.shape
    if m >= n:
        cols = np.broadcast_to(np.arange(n), (r, n))
        return sort_rows(A, cols, n)
    halvings = int(np.log2(n / (4 * m))) if n >= 64 * m else 0
    if halvings >= 4:
        found = _below_group_threshold(A, m, halvings, mask_buf)
        if found is not None:
            return found
    cols = np.empty((r, m), dtype=np.int64)
    for i in range(r):
        cols[i] = np.argpartition(A[i], m - 1)[:m]
    return sort_rows(np.take_along_axis(A, cols, 1), cols, m)


def _below_group_threshold(A: np.ndarray, m: int, halvings: int, mask_buf):
    """``smallest`` through the group-minimum threshold, or None when too many entries
    share the threshold value (duplicated training rows) for it to help."""
    r, n = A.shape
    # Groups of entries g, g + G, g + 2G, ... (interleaved, so that training rows stored
    # in class order do not make one group all far away), their minima by repeated halving:
    # a few passes of elementwise minima over shrinking prefixes of A.
    n_groups = n >> halvings
    half = n_groups << (halvings - 1)
    gmin = np.minimum(A[:, :half], A[:, half : 2 * half])
    while half > n_groups:
        half //= 2
        np.minimum(gmin[:, :half], gmin[:, half : 2 * half], out=gmin[:, :half])
    tau = np.partition(gmin[:, :n_groups], m - 1, axis=1)[:, m - 1]
    if mask_buf is None:
        mask = A <= tau[:, None]
    else:
        mask = np.less_equal(A, tau[:, None], out=mask_buf[: r * n].reshape(r, n))
    flat = np.flatnonzero(mask)
    if flat.size > r * max(64, 16 * m):
        return None
    rows = flat // n  # ascending, and columns ascending within a row
    cols = flat - rows * n
    vals = A.reshape(-1)[flat]
    counts = np.bincount(rows, minlength=r)
    starts = np.cumsum(counts) - counts
    width = int(counts.max())
    if width > 16 * m + 64:
        pick = np.lexsort((cols, vals, rows))[starts[:, None] + np.arange(m)]
        return vals[pick], cols[pick]
    # Candidates into a small padded (r, width) table, sorted row by row (a stable sort
    # keeps equal values in column order); far faster than lexsort.
    table = np.full((r, width), np.inf, dtype=A.dtype)
    where = (rows, np.arange(flat.size) - starts[rows])
    table[where] = vals
    table_cols = np.zeros((r, width), dtype=np.int64)
    table_cols[where] = cols
    order = np.argsort(table, axis=1, kind="stable")[:, :m]
    return np.take_along_axis(table, order, 1), np.take_along_axis(table_cols, order, 1)
