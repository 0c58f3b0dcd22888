"""Exact k nearest neighbours of queries among the rows of one training array.

``NeighborSearch`` is the search machinery under ``KNearestNeighbors``, usable on its own
for one shard of a larger training set: its ``kneighbors`` returns the shard's exact top
k (float64 comparison values, indices, ties to the smallest index), and
``chainrule.models.knn.merge_neighbors`` merges such lists from several shards into the
exact top k of the whole.

How a chunk of queries is answered (every metric):

1. *Approximate pass* (``block_pass``), in the compute dtype, block by block of training
   rows; each block keeps only its ``m + 1`` smallest values per query
   (``m = k + max(8, k // 4)``), found by a threshold filter (``smallest``).
2. *Certificate* (``certified``): the metric's error bound ``e`` puts every exact value
   within ``e`` of its approximate value. Where the intervals show that the approximate
   top k is the exact top k (a clear gap after the k-th; for sorted output, also between
   them), that is the answer: the usual case, and all ``predict`` needs.
3. *Exact pass* for the other queries (``_pool``): the ``m`` candidates are re-measured in
   float64 from the original data and sorted by (value, index). That stands if the k-th
   exact value is below the lower bound of every point left out; otherwise (rare: many
   near ties, duplicates) every point whose lower bound does not exceed the k-th exact
   value is measured exactly (``_redo``).

A *filter* comes first when ``NeighborSearch`` prepared one (large data with many
features): for ``l2`` and ``cosine`` the projection filter (``_projection``, k up to 32),
for ``l1`` the group-sum filter (``_groupsums``, any k). Each bounds every distance from
below at a fraction of the cost and settles nearly every query of image-like data with a
few exact measurements; the queries it does not settle go through the steps above. On
data where a filter does not help (noise) it switches itself off after one chunk.
"""

from __future__ import annotations

import numbers
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from chainrule.models.knn import _groupsums, _projection
from chainrule.models.knn._metrics import Metric, Prepared, compute_dtype, make_metric
from chainrule.models.knn._parallel import default_jobs, map_row_ranges
from chainrule.models.knn._select import merge_neighbors, smallest, sort_rows, top_k_of_pairs

__all__ = ["NeighborSearch", "check_chunk_size"]

# Memory budget of one block of approximate distances (queries x training rows): large
# enough for an efficient multithreaded matrix product (2,048 x 8,192 in float32), small
# enough to cost few page faults and to keep the passes after it short.
BLOCK_BYTES = 64 * 2**20
# Queries per block when the training set is large (training rows per block follow).
MIN_QUERY_ROWS = 2048
# Least block size (elements) whose candidate selection is shared among threads.
THREADED_BLOCK = 1 << 20
# The filters (l2: projection, l1: group sums) are prepared from this many training rows
# and features on.
FILTER_MIN_TRAIN = 8192
FILTER_MIN_FEATURES = 256
# A chunk where a filter settles fewer than this share of the queries switches it off.
FILTER_MIN_RESOLVED = 0.5


def pool_size(k: int, n_train: int) -> int:
    """Candidates re-measured exactly per uncertified query."""
    return min(n_train, k + max(8, k // 4))


def check_chunk_size(chunk_size):
    """``chunk_size`` as a tuple of one or two positive ints, or None."""
    if chunk_size is None:
        return None
    values = chunk_size if isinstance(chunk_size, tuple | list) else (chunk_size,)
    if len(values) not in (1, 2) or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in values
    ):
        raise ValueError(
            "chunk_size must be None, a positive int (queries per block) or a pair of "
            f"positive ints (queries, training rows per block), got {chunk_size!r}"
        )
    return tuple(int(v) for v in values)


@dataclass
class Workspace:
    """Scratch shared by the chunks of one search.

    qc, tb : queries and training rows per block. buf, mask : (qc * tb) scratch for a
    block's approximate values and the selection's mask. pool, jobs : the thread pool
    (None when single-threaded) and its size, for candidate selection. n_jobs : threads
    for the other loops. chunk_size : as given to ``kneighbors``.
    """

    qc: int
    tb: int
    buf: np.ndarray
    mask: np.ndarray
    pool: ThreadPoolExecutor | None
    jobs: int
    n_jobs: int
    chunk_size: tuple | None


class NeighborSearch:
    """Exact nearest training rows of queries, for one training array.

    X : (N, D) training rows, any real dtype (kept by reference: do not modify it).
    metric : "l2", "l1" or "cosine".
    filter_k : the largest k the l2 projection filter is prepared for (it is prepared
        only when ``filter_k <= _projection.MAX_K`` and the data are large enough).

    Attributes: ``X``, ``metric`` (the ``Metric``, with its compute ``dtype``), ``train``
    (the prepared training rows), ``filter`` (None, the l2 ``Projection`` or the l1
    ``GroupSumFilter``).
    """

    def __init__(self, X: np.ndarray, metric: str = "l2", filter_k: int = 1):
        n, d = X.shape
        m = make_metric(metric, compute_dtype(X.dtype), d)
        if m.dtype == np.float32 and X.dtype.kind == "f" and n:
            # Values so large that float32 squares or sums could overflow: float64 throughout.
            largest = max(float(X.max()), -float(X.min()))
            if not m.safe(4 * largest * (np.sqrt(d) if metric == "l2" else d)):
                m = make_metric(metric, np.dtype(np.float64), d)
        self.X = X
        self.metric: Metric = m
        self.train = m.prepare_train(X)
        self.filter = None
        if n >= FILTER_MIN_TRAIN and d >= FILTER_MIN_FEATURES:
            if metric in ("l2", "cosine") and filter_k <= _projection.MAX_K:
                self.filter = _projection.fit_projection(m, self.train)
            elif metric == "l1":
                self.filter = _groupsums.fit_group_sums(X, self.train.center)

    @property
    def n_train(self) -> int:
        return self.X.shape[0]

    def blocks(self, n_query: int, chunk_size=None) -> tuple[int, int]:
        """(queries per block, training rows per block)."""
        n_train = self.n_train
        budget = max(1, BLOCK_BYTES // self.metric.dtype.itemsize)
        cs = check_chunk_size(chunk_size)
        if cs is None:
            tb = min(n_train, max(1, budget // MIN_QUERY_ROWS))
            tb = -(-n_train // -(-n_train // tb))  # equal blocks, none left nearly empty
            qc = max(1, budget // tb)
        elif len(cs) == 1:
            qc = cs[0]
            tb = min(n_train, max(1, budget // qc))
        else:
            qc, tb = cs[0], min(n_train, cs[1])
        return max(1, min(qc, n_query)), tb

    def check_magnitude(self, query: Prepared) -> None:
        """Refuse queries whose values are too large for the compute dtype."""
        largest = query.norm_max
        if not self.metric.safe(largest + self.train.norm_max):
            raise ValueError(
                f"X has values too large for distance computations in {self.metric.dtype} "
                f"(row norm {largest:.3g}); fit and predict with float64 data"
            )

    def kneighbors(self, Q, k: int, ordered=True, values=True, chunk_size=None, n_jobs=None):
        """The k nearest training rows of each query.

        Q : (nq, D) queries (validated: finite, D features). k <= N.
        Returns ``(vals, idx)``, both (nq, k): ``idx`` int64 ordered by (exact value,
        index) when ``ordered``, else the right set in an unspecified order; ``vals`` the
        float64 comparison values in the same order, or None unless ``values``.
        """
        n_jobs = n_jobs or default_jobs()
        n_query, n_train = Q.shape[0], self.n_train
        qc, tb = self.blocks(n_query, chunk_size)
        jobs = n_jobs if qc * tb >= THREADED_BLOCK else 1
        ws = Workspace(
            qc=qc,
            tb=tb,
            buf=np.empty(qc * tb, dtype=self.metric.dtype),
            mask=np.empty(qc * tb, dtype=bool),
            pool=ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else None,
            jobs=jobs,
            n_jobs=n_jobs,
            chunk_size=chunk_size,
        )
        out_v = np.empty((n_query, k)) if values else None
        out_i = np.empty((n_query, k), dtype=np.int64)
        use_filter = self.filter is not None and self.filter.usable(k, n_train)
        try:
            left = []  # queries the filter did not settle, for brute force at the end
            for i0 in range(0, n_query, qc):
                Qo = Q[i0 : i0 + qc]
                if not use_filter:
                    left.append(np.arange(i0, i0 + Qo.shape[0]))
                    continue
                query = self.metric.prepare_query(Qo, self.train)
                self.check_magnitude(query)
                done, ex, ix = self.filter.search_chunk(self, Qo, query, k, ordered, values, ws)
                rows = np.flatnonzero(done)
                out_i[i0 + rows] = ix[rows]
                if values:
                    out_v[i0 + rows] = ex[rows]
                left.append(i0 + np.flatnonzero(~done))
                # Data without a dominant subspace (e.g. noise): brute force from now on.
                use_filter = rows.size >= FILTER_MIN_RESOLVED * len(done)
            left = np.concatenate(left) if left else np.zeros(0, dtype=np.int64)
            self._brute_force(Q, left, k, ordered, values, ws, out_v, out_i)
        finally:
            if ws.pool is not None:
                ws.pool.shutdown()
        return out_v, out_i

    def _brute_force(self, Q, left, k, ordered, values, ws, out_v, out_i) -> None:
        """Answer the queries ``left`` (indices into Q) by the full block pass, in chunks
        as large as the workspace (so that the matrix products stay large)."""
        for s in range(0, left.size, ws.qc):
            rows = left[s : s + ws.qc]
            contiguous = rows[-1] - rows[0] == rows.size - 1
            Qo = Q[rows[0] : rows[-1] + 1] if contiguous else Q[rows]
            query = self.metric.prepare_query(Qo, self.train)
            self.check_magnitude(query)
            ex, ix = self._search_chunk(Qo, query, k, ordered, values, ws)
            out_i[rows] = ix
            if values:
                out_v[rows] = ex

    def block_pass(self, metric, query, train, keep: int, ws: Workspace):
        """Approximate values of a chunk against every training block; the ``keep``
        smallest per query, ``(vals, cols)`` (r, keep), ascending by (value, index)."""
        n_train = len(train)
        r = len(query)
        tb, buf, mask = ws.tb, ws.buf, ws.mask
        vals = cols = None
        for j0 in range(0, n_train, tb):
            j1 = min(n_train, j0 + tb)
            nb = j1 - j0
            A = metric.approx(query, train, j0, j1, buf[: r * nb].reshape(r, nb), ws.n_jobs)

            def select(s, e, A=A, j0=j0, j1=j1, nb=nb):
                metric.finish(A[s:e], query.rows(s, e), train, j0, j1)
                return smallest(A[s:e], min(keep, nb), mask[s * nb : e * nb])

            parts = map_row_ranges(ws.pool, select, r, ws.jobs)
            v = np.concatenate([p[0] for p in parts])
            c = np.concatenate([p[1] for p in parts]) + j0
            if vals is None:
                vals, cols = v, c
            else:
                vals, cols = merge_neighbors([(vals, cols), (v, c)], keep)
        return vals, cols

    def _search_chunk(self, Qo, query, k: int, ordered: bool, values: bool, ws: Workspace):
        """One chunk of queries by brute force: approximate pass over all blocks,
        certificate, exact pass where needed. Returns ``(exact or None, idx)``, (r, k)."""
        metric, train, X = self.metric, self.train, self.X
        n_train = X.shape[0]
        m = pool_size(k, n_train)
        keep = min(n_train, m + 1)
        vals, cols = self.block_pass(metric, query, train, keep, ws)
        beyond = None
        if keep < n_train:
            # Every point outside the kept ones has an approximate value >= the last kept.
            beyond = vals[:, -1].astype(np.float64) - metric.error(query.norm, train.norm_max)
        ok = self.certified(vals, cols, query, k, ordered, beyond)
        rows = np.flatnonzero(ok)
        idx = cols[:, :k].copy()
        exact = np.empty((len(idx), k)) if values else None
        if values and rows.size:
            exact[rows] = metric.exact(Qo, X, rows, idx[rows], train, query, ws.n_jobs)
        rows = np.flatnonzero(~ok)
        if rows.size:
            ex, ix = self._pool(Qo, query, vals, cols, rows, k, m, ws)
            idx[rows] = ix
            if values:
                exact[rows] = ex
        return exact, idx

    def certified(self, vals, cols, query, k: int, ordered: bool, beyond) -> np.ndarray:
        """Queries (r,) bool whose approximate top k is the exact top k without re-measuring.

        ``vals``/``cols`` (r, c): each query's candidates with their approximate values,
        ascending; ``beyond`` (r,) a lower bound, in the same units, of the values of all
        other training points, or None if there are none. A point's exact value lies within
        its error bound ``e`` of its approximate value, so the top-k *set* is certain when
        the largest ``v + e`` among the first k is below the smallest ``v - e`` of the rest;
        with ``ordered``, consecutive intervals ``[v - e, v + e]`` of the first k must not
        overlap either.
        """
        metric, train = self.metric, self.train
        r, keep = vals.shape
        if keep <= k and beyond is None and not ordered:  # all points are the k nearest
            return np.ones(r, dtype=bool)
        v = vals.astype(np.float64)
        e = np.broadcast_to(metric.error(query.norm[:, None], train.norm[cols]), v.shape)
        high = v[:, :k] + e[:, :k]
        ok = np.ones(r, dtype=bool)
        if keep > k or beyond is not None:
            rest = (v[:, k:] - e[:, k:]).min(axis=1) if keep > k else np.full(r, np.inf)
            if beyond is not None:
                rest = np.minimum(rest, beyond)
            ok &= high.max(axis=1) < rest
        if ordered and k > 1:
            ok &= (high[:, :-1] < v[:, 1:k] - e[:, 1:k]).all(axis=1)
        return ok

    def _pool(self, Qo, query, vals, cols, rows, k: int, m: int, ws: Workspace):
        """Exact top k (values, indices) for the queries ``rows`` of a chunk.

        The ``m`` best approximate candidates are measured exactly in float64; that result
        stands if the k-th exact value is below a lower bound of every point left out, and
        otherwise ``_redo`` widens the search.
        """
        metric, train = self.metric, self.train
        cand = cols[rows, :m]
        exact = metric.exact(Qo, self.X, rows, cand, train, query, ws.n_jobs)
        exact, cand = sort_rows(exact, cand, k)
        if vals.shape[1] > m:
            # Lower bound of the true value of every point outside the candidates.
            floor = (
                vals[rows, m].astype(np.float64)
                + query.base[rows]
                - metric.error(query.norm[rows], train.norm_max)
            )
            redo = np.flatnonzero(~(exact[:, k - 1] < floor))
            if redo.size:
                exact[redo], cand[redo] = self._redo(Qo[rows[redo]], exact[redo, k - 1], k, ws)
        return exact, cand

    def _redo(self, Qo: np.ndarray, bound: np.ndarray, k: int, ws: Workspace):
        """Exact k nearest for queries whose candidates were not certified.

        Every training point whose approximate value minus its error bound does not exceed
        ``bound`` (the k-th exact value found so far, an upper bound of the true k-th) is
        measured exactly. Qo (r, D), bound (r,) -> (values, indices), both (r, k).
        """
        metric, train, X = self.metric, self.train, self.X
        n_train = X.shape[0]
        r = Qo.shape[0]
        qc, tb = self.blocks(r, ws.chunk_size)
        qc = max(1, qc // 2)  # the float64 lower bounds take twice a float32 block
        out_v = np.empty((r, k))
        out_i = np.empty((r, k), dtype=np.int64)
        for i0 in range(0, r, qc):
            Qs = Qo[i0 : i0 + qc]
            query = metric.prepare_query(Qs, train)
            pair_rows, pair_cols, pair_vals = [], [], []
            for j0 in range(0, n_train, tb):
                j1 = min(n_train, j0 + tb)
                A = np.empty((len(Qs), j1 - j0), dtype=metric.dtype)
                A = metric.approx(query, train, j0, j1, A, ws.n_jobs)
                metric.finish(A, query, train, j0, j1)
                low = A + query.base[:, None]
                low -= metric.error(query.norm[:, None], train.norm[None, j0:j1])
                rows, c = np.nonzero(~(low > bound[i0 : i0 + len(Qs), None]))  # keeps NaN too
                c = c + j0
                pair_rows.append(rows)
                pair_cols.append(c)
                pair_vals.append(
                    metric.exact(Qs, X, rows, c[:, None], train, query, ws.n_jobs)[:, 0]
                )
            vals, cols = top_k_of_pairs(
                np.concatenate(pair_rows),
                np.concatenate(pair_cols),
                np.concatenate(pair_vals),
                len(Qs),
                k,
            )
            out_v[i0 : i0 + len(Qs)] = vals
            out_i[i0 : i0 + len(Qs)] = cols
        return out_v, out_i
