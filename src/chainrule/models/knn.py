"""k-nearest neighbours: brute force, chunked, exact.

Distances are computed block by block (a chunk of queries against a block of training
rows), so memory stays bounded for any number of queries and training points; no
``(n_queries, n_train, n_features)`` array is ever formed.

How the neighbours are found (every metric)
-------------------------------------------
1. *Approximate pass*, fast, in the compute dtype (float32 for float32 or 8/16-bit input,
   float64 otherwise):

   - ``l2``: one matrix product per block on mean-centred data,
     ``||x||^2 - 2 q.x`` (``||q||^2`` is the same along a query's row, so ranking does not
     need it). Centring on the training mean removes any common offset (raw 0..255
     pixels, or data shifted by 1e4), which is what keeps float32 cancellation small.
   - ``l1``: ``sum|q - x| = sum q + sum x - 2 sum min(q, x)``, the minimum taken over small
     cache-sized tiles of (queries x training rows x features) and summed right away (two
     passes over each tile instead of subtract/abs/sum).
   - ``cosine``: one matrix product of unit-normalised rows.

   Each block keeps only its ``m + 1`` smallest values per query
   (``m = k + max(8, k // 4)``) by a threshold filter (``_smallest``).
2. *Certificate*: a rigorous bound ``e`` of the rounding error of the approximate pass
   (``_Metric.error``, from the operands' norms) puts every exact value within ``e`` of its
   approximate value. Where the intervals show that the approximate top k is the exact
   top k (a clear gap after the k-th; for sorted output, also between them), that is the
   answer: the usual case, and all ``predict`` needs.
3. *Exact pass* for the other queries: the ``m`` candidates are re-measured in float64
   from the original data (``sum (q - x)**2``, ``sum |q - x|``, ``1 - cos``) and sorted by
   (value, index). That stands if the k-th exact value is below the lower bound of every
   point left out; otherwise (rare: many near ties, duplicates) every point whose lower
   bound does not exceed the k-th exact value is measured exactly.

For ``l2`` with many training rows and features (images) and ``k <= 16``, a *projection
filter* comes first (``_filter_chunk``): every row reduced to ``p + 1 ~ D / 12`` numbers
(prepared by ``fit`` when the model's ``k`` qualifies) whose distances bound the true ones
from below, so that one small matrix product and a full measurement of ``2k + 32``
candidates settle nearly every query (about 98% of CIFAR-10 queries at ``k = 1``); the
others go through the steps above. On data without a dominant subspace the filter
switches itself off after one chunk.

So the neighbours, and therefore predictions, are those of a float64 brute-force
computation: the same indices, ties between equal distances resolved towards the smaller
training index, and the vote tie towards the smaller label. Distances returned by
``kneighbors`` are always the float64 ones.
"""

from __future__ import annotations

import numbers
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from chainrule._random import as_generator
from chainrule.models._base import (
    BaseEstimator,
    ClassifierMixin,
    check_is_fitted,
    check_labels,
    check_X,
    check_X_y,
)

__all__ = ["KNearestNeighbors", "knn_best_k", "knn_cross_validate"]

METRICS = ("l2", "l1", "cosine")

# Memory budget of one block of approximate distances (queries x training rows): large
# enough for an efficient multithreaded matrix product (2,048 x 8,192 in float32), small
# enough to cost few page faults and to keep the passes after it short.
_BLOCK_BYTES = 64 * 2**20
# Queries per block when the training set is large (training rows per block follow).
_MIN_QUERY_ROWS = 2048
# Least block size (elements) whose candidate selection is shared among threads.
_THREADED_BLOCK = 1 << 20
# Budget of the gathered rows of one step of the exact float64 pass: small enough that the
# gathered rows stay in cache through conversion, subtraction and summation.
_GATHER_BYTES = 4 * 2**20
# Elements of one L1 tile (min(q, x) for a few queries x a few training rows x features):
# about 4 MB in float32, so that the tile is still in cache when it is summed.
_L1_TILE_ELEMENTS = 1 << 20
# Least work (array elements) worth a thread of its own.
_JOB_ELEMENTS = 1 << 24
# The l2 projection filter (see ``_filter_chunk``): prepared by ``fit`` from this many
# training rows and features on, for k up to _FILTER_MAX_K (with more neighbours it needs
# too many candidates to pay off), with about one twelfth of the features as projected
# dimensions, the basis estimated from at most _FILTER_SAMPLE evenly spaced training rows.
_FILTER_MIN_TRAIN = 8192
_FILTER_MIN_FEATURES = 256
_FILTER_MAX_K = 16
# Least share of the (centred) variance the projection must hold (CIFAR-10: 0.97 with 256
# of 3,072 directions; isotropic noise: about 0.1).
_FILTER_MIN_CAPTURED = 0.8
_FILTER_SAMPLE = 2048
# A chunk where the filter settles fewer than this share of the queries switches it off.
_FILTER_MIN_RESOLVED = 0.5


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32 unless float32 would round the input (float64, 32/64-bit integers)."""
    if dtype.kind == "f" and dtype.itemsize >= 8:
        return np.dtype(np.float64)
    if dtype.kind in "iu" and dtype.itemsize >= 4:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _pool_size(k: int, n_train: int) -> int:
    return min(n_train, k + max(8, k // 4))


def _default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# --- selection of the smallest values per row ------------------------------------------


def _sort_rows(vals: np.ndarray, idx: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` smallest of each row, ordered by (value, index)."""
    order = np.lexsort((idx, vals), axis=-1)[:, :m]
    return np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1)


def _smallest(A: np.ndarray, m: int, mask_buf: np.ndarray | None = None):
    """Values and column indices of the ``m`` smallest entries of each row of ``A`` (r, n).

    Returns ``(vals, cols)``, both (r, m), each row ordered by (value, column). ``A`` must be
    C-contiguous and free of NaN.

    Rather than partitioning every row (slow: ~100 us for 50,000 entries), each row is cut
    into at least ``4 m`` groups; the ``m``-th smallest group minimum ``tau`` is an upper
    bound of the ``m``-th smallest entry (``m`` groups each hold an entry <= tau), so the
    entries ``<= tau`` are few and hold the answer. A few fast passes instead of a sort.
    """
    r, n = A.shape
    if m >= n:
        cols = np.broadcast_to(np.arange(n), (r, n))
        return _sort_rows(A, cols, n)
    # Groups of entries g, g + G, g + 2G, ... (interleaved, so that training rows stored
    # in class order do not make one group all far away), their minima by repeated halving:
    # a few passes of elementwise minima over shrinking prefixes of A.
    halvings = int(np.log2(n / (4 * m))) if n >= 64 * m else 0
    if halvings >= 4:
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
        # Many equal values (duplicated training rows) can make the filter useless.
        if flat.size <= r * max(64, 16 * m):
            rows = flat // n  # ascending, and columns ascending within a row
            cols = flat - rows * n
            vals = A.reshape(-1)[flat]
            counts = np.bincount(rows, minlength=r)
            starts = np.cumsum(counts) - counts
            width = int(counts.max())
            if width <= 16 * m + 64:
                # Candidates into a small padded (r, width) table, sorted row by row (a
                # stable sort keeps equal values in column order); far faster than lexsort.
                table = np.full((r, width), np.inf, dtype=A.dtype)
                where = (rows, np.arange(flat.size) - starts[rows])
                table[where] = vals
                table_cols = np.zeros((r, width), dtype=np.int64)
                table_cols[where] = cols
                order = np.argsort(table, axis=1, kind="stable")[:, :m]
                return np.take_along_axis(table, order, 1), np.take_along_axis(table_cols, order, 1)
            order = np.lexsort((cols, vals, rows))
            pick = order[starts[:, None] + np.arange(m)]
            return vals[pick], cols[pick]
    cols = np.empty((r, m), dtype=np.int64)
    for i in range(r):
        cols[i] = np.argpartition(A[i], m - 1)[:m]
    return _sort_rows(np.take_along_axis(A, cols, 1), cols, m)


def _merge(vals_a, idx_a, vals_b, idx_b, m: int):
    """Merge two candidate lists (r, *) into the ``m`` smallest by (value, index)."""
    return _sort_rows(np.concatenate([vals_a, vals_b], 1), np.concatenate([idx_a, idx_b], 1), m)


def _rows(query: dict, s, e=None) -> dict:
    """The per-query arrays of a prepared chunk, restricted to rows ``s:e`` (or to the
    index array ``s``)."""
    if e is None:
        return {key: value[s] for key, value in query.items()}
    return {key: value[s:e] for key, value in query.items()}


def _map_row_ranges(pool, func, n: int, jobs: int) -> list:
    """``[func(s, e) for each of up to `jobs` contiguous ranges of range(n)]``, in threads."""
    if pool is None or jobs <= 1 or n < 2 * jobs:
        return [func(0, n)]
    per = -(-n // jobs)
    bounds = [(s, min(n, s + per)) for s in range(0, n, per)]
    return [f.result() for f in [pool.submit(func, a, b) for a, b in bounds]]


def _orthonormal(Y: np.ndarray) -> np.ndarray:
    """Orthonormal columns (float64) spanning the independent directions of ``Y`` (D, p).

    Block Gram-Schmidt, each step done twice (BLAS-3 products between blocks of 16
    columns, plain vector operations inside a block); LAPACK's QR and eigensolvers can
    take seconds for these small sizes when their threads compete with other processes.
    Columns that are (numerically) combinations of earlier ones are dropped.
    """
    Y = np.asarray(Y, dtype=np.float64)
    basis = np.empty((Y.shape[0], 0))
    for b in range(0, Y.shape[1], 16):
        block = Y[:, b : b + 16].copy()
        sizes = np.sqrt(np.einsum("ij,ij->j", block, block))
        for _ in range(2):
            block -= basis @ (basis.T @ block)
        kept = []
        for j in range(block.shape[1]):
            v = block[:, j]
            for _ in range(2):
                for u in kept:
                    v -= (u @ v) * u
            size = np.sqrt(v @ v)
            if size > 1e-9 * sizes[j]:
                kept.append(v / size)
        if kept:
            basis = np.hstack([basis, np.stack(kept, axis=1)])
    return basis


# --- metrics ----------------------------------------------------------------------------


def _gamma(n: int, u: float) -> float:
    """Higham's gamma_n = n u / (1 - n u): relative error bound of a sum of n terms."""
    nu = n * u
    return nu / (1.0 - nu) if nu < 0.5 else np.inf


class _Metric:
    """One distance, in three forms.

    - ``approx`` then ``finish``: a block of fast values ``a`` (compute dtype) with
      ``a + base[q]`` approximating a monotone *comparison value* ``v`` (``d**2`` for l2,
      ``d`` for l1, ``1 - cos`` for cosine);
    - ``error``: a rigorous bound ``e`` on ``|a + base - v|`` from the sizes of the
      operands (standard floating-point error analysis, with a factor 2 to spare);
    - ``exact``: ``v`` in float64 from the original data.

    State lives in the estimator (``_train``) and per query chunk (dicts of arrays).
    """

    name = ""

    def __init__(self, dtype: np.dtype, n_features: int):
        self.dtype = dtype
        self.u = float(np.finfo(dtype).eps) / 2
        self.tiny = float(np.finfo(dtype).tiny)
        self.gamma = _gamma(n_features + 2, self.u)
        self.n_features = n_features

    # Rows of X (N, D) in float64 in steps, so that preparation needs little extra memory.
    @staticmethod
    def _row_steps(n: int, d: int):
        step = max(1, (8 * 2**20) // (8 * d))
        return [(s, min(n, s + step)) for s in range(0, n, step)]

    def _center(self, X):
        """The centre: the training mean, rounded to the compute dtype (float64 copy too)."""
        center = X.mean(axis=0, dtype=np.float64).astype(self.dtype)
        return center, center.astype(np.float64)

    def _centered(self, A, center, center64):
        """``fl(A - center)`` in the compute dtype with a single rounding per value.

        ``center`` is representable in the compute dtype, so when ``A`` converts exactly
        (float32 or narrower into float32) the subtraction can run in the compute dtype.
        """
        if np.can_cast(A.dtype, self.dtype, "safe"):
            out = A.astype(self.dtype)
            out -= center
            return out
        return (A.astype(np.float64) - center64).astype(self.dtype)

    def safe(self, size: float) -> bool:
        """Whether operands of this size (``error``'s ``q_size + x_size``) cannot overflow."""
        return True

    def finish(self, out, query, train, j0, j1) -> None:
        """Complete ``approx``'s block in place (elementwise; may run on a part of the rows,
        with ``query`` restricted to the same rows)."""

    def exact(self, Q, X, qrow, cols, train, query, n_jobs: int = 1):
        """Float64 comparison values between ``Q[qrow[i]]`` and ``X[cols[i, j]]``.

        Q (nq, D), X (n, D) in their original dtypes; qrow (p,), cols (p, c) -> (p, c).
        Rows are shared among up to ``n_jobs`` threads when there are many.
        """
        p, c = cols.shape
        out = np.empty((p, c), dtype=np.float64)
        step = max(1, _GATHER_BYTES // (8 * max(1, c) * X.shape[1]))

        def work(start: int, stop: int) -> None:
            for s in range(start, stop, step):
                e = min(stop, s + step)
                q = Q[qrow[s:e]].astype(np.float64)
                x = X[cols[s:e]].astype(np.float64)
                out[s:e] = self._exact_rows(q, x, qrow[s:e], cols[s:e], train, query)

        _in_threads(work, p, step, p * c * X.shape[1], n_jobs)
        return out


class _L2(_Metric):
    name = "l2"

    def prepare_train(self, X):
        n, d = X.shape
        center, center64 = self._center(X)
        Xc = np.empty((n, d), dtype=self.dtype)
        sq = np.empty(n, dtype=np.float64)
        for s, e in self._row_steps(n, d):
            Xc[s:e] = self._centered(X[s:e], center, center64)
            # Norms of the rounded rows actually used by the matrix product (float64
            # products of float32 values are exact; einsum casts in small buffers).
            sq[s:e] = np.einsum("ij,ij->i", Xc[s:e], Xc[s:e], dtype=np.float64)
        train = {
            "center": center,
            "center64": center64,
            "Xc": Xc,
            "sq": sq.astype(self.dtype),
            "norm": np.sqrt(sq),
            "norm_max": float(np.sqrt(sq.max())),
        }
        return train

    def _projection(self, train) -> dict | None:
        """Training rows reduced to ``p + 1`` numbers that bound their distances from below.

        ``P`` (D, p) is an orthonormal basis of the training data's main directions, from
        a randomized range finder (two power iterations, fixed seed) on evenly spaced
        training rows. A centred row ``x`` becomes ``z = (P^T x, |x - P P^T x|)``: then
        ``||q - x||^2 = ||P^T (q - x)||^2 + ||R (q - x)||^2 >= ||z_q - z_x||^2`` (R the
        projection on the rest, and the reverse triangle inequality). Any basis keeps the
        bound valid; a good one makes it tight. ``z`` is computed in float64 and rounded.
        Returns None when the basis holds less than ``_FILTER_MIN_CAPTURED`` of the sample's
        variance about the mean: then the filter would not pay off.
        """
        Xc = train["Xc"]
        n, d = Xc.shape
        p = min(d - 1, max(32, -(-d // 12 // 32) * 32))
        sample = Xc[np.linspace(0, n, min(n, _FILTER_SAMPLE), endpoint=False).astype(np.int64)]
        S = sample.astype(np.float64)
        Y = S.T @ np.random.default_rng(0).standard_normal((len(S), p))
        for _ in range(2):
            Y = S.T @ (S @ _orthonormal(Y))
        P = _orthonormal(Y)
        p = P.shape[1]
        # Without a dominant subspace (noise) the bound is too loose to settle queries.
        SP = S @ P
        if np.einsum("ij,ij->", SP, SP) < _FILTER_MIN_CAPTURED * np.einsum("ij,ij->", S, S):
            return None
        # What is left of orthonormality after rounding, as a relative error of z.
        ortho = float(np.abs(P.T @ P - np.eye(p)).sum(axis=1).max())
        Z = np.empty((n, p + 1), dtype=self.dtype)
        zsq = np.empty(n, dtype=np.float64)
        sq = train["norm"] ** 2
        for s, e in self._row_steps(n, d):
            y = Xc[s:e] @ P
            Z[s:e, :p] = y
            Z[s:e, p] = np.sqrt(np.maximum(sq[s:e] - np.einsum("ij,ij->i", y, y), 0.0))
            zsq[s:e] = np.einsum("ij,ij->i", Z[s:e], Z[s:e], dtype=np.float64)
        # |z_computed - z| <= eps ||x||: rounding to the compute dtype, float64 sums (the
        # residual through a square root), P orthonormal to float64 accuracy; doubled.
        g64 = _gamma(d + p + 2, float(np.finfo(np.float64).eps) / 2)
        eps = 2.0 * (self.u + np.sqrt(4.0 * (g64 + ortho)) + 4.0 * (g64 + ortho) * np.sqrt(p))
        return {
            "P": P,
            "eps": float(eps),
            "metric": _L2(self.dtype, p + 1),
            "train": {
                "Xc": Z,
                "sq": zsq.astype(self.dtype),
                "norm": np.sqrt(zsq),
                "norm_max": float(np.sqrt(zsq.max())),
            },
        }

    def project(self, query, proj) -> dict:
        """The filter's form (see ``_projection``) of a prepared query chunk."""
        P = proj["P"]
        r, p = len(query["base"]), P.shape[1]
        z = np.empty((r, p + 1), dtype=self.dtype)
        for s, e in self._row_steps(r, P.shape[0]):
            y = (query["m2q"][s:e] @ P) * -0.5  # float64; m2q = -2 q exactly
            z[s:e, :p] = y
            ysq = np.einsum("ij,ij->i", y, y)
            z[s:e, p] = np.sqrt(np.maximum(query["base"][s:e] - ysq, 0.0))
        zsq = np.einsum("ij,ij->i", z, z, dtype=np.float64)
        z *= self.dtype.type(-2)
        return {"m2q": z, "base": zsq, "norm": np.sqrt(zsq)}

    def prepare_query(self, Q, train):
        qc = self._centered(Q, train["center"], train["center64"])
        sq = np.einsum("ij,ij->i", qc, qc, dtype=np.float64)
        qc *= self.dtype.type(-2)  # exact
        return {"m2q": qc, "base": sq, "norm": np.sqrt(sq)}

    def approx(self, query, train, j0, j1, out, n_jobs):
        return np.matmul(query["m2q"], train["Xc"][j0:j1].T, out=out)

    def finish(self, out, query, train, j0, j1):
        out += train["sq"][j0:j1]

    def safe(self, size):
        # |a| <= size**2; keep a margin below the largest finite value.
        return size < np.sqrt(float(np.finfo(self.dtype).max)) / 8

    def error(self, q_size, x_size):
        n = q_size + x_size
        return n * n * (self.gamma + 8 * self.u) + 4 * (self.n_features + 2) * self.tiny

    def _exact_rows(self, q, x, qrow, cols, train, query):
        x -= q[:, None, :]
        return np.einsum("ijk,ijk->ij", x, x)

    @staticmethod
    def to_distance(v):
        return np.sqrt(np.maximum(v, 0.0))


class _L1(_Metric):
    name = "l1"

    def prepare_train(self, X):
        n, d = X.shape
        center, center64 = self._center(X)
        Xc = np.empty((n, d), dtype=self.dtype)
        s1 = np.empty(n, dtype=np.float64)
        a1 = np.empty(n, dtype=np.float64)
        for s, e in self._row_steps(n, d):
            Xc[s:e] = self._centered(X[s:e], center, center64)
            xr = Xc[s:e].astype(np.float64)
            s1[s:e] = xr.sum(axis=1)
            a1[s:e] = np.abs(xr).sum(axis=1)
        return {
            "center": center,
            "center64": center64,
            "Xc": Xc,
            "sum": s1.astype(self.dtype),
            "norm": a1,
            "norm_max": float(a1.max()),
        }

    def prepare_query(self, Q, train):
        qc = self._centered(Q, train["center"], train["center64"])
        return {
            "qc": qc,
            "sum": np.sum(qc, axis=1, dtype=np.float64).astype(self.dtype),
            "base": np.zeros(len(qc)),
            "norm": np.sum(np.abs(qc), axis=1, dtype=np.float64),
        }

    def approx(self, query, train, j0, j1, out, n_jobs):
        _sum_of_minima(query["qc"], train["Xc"][j0:j1], out, n_jobs)
        return out

    def finish(self, out, query, train, j0, j1):
        out *= self.dtype.type(-2)
        out += train["sum"][j0:j1]
        out += query["sum"][:, None]

    def safe(self, size):
        return size < float(np.finfo(self.dtype).max) / 16

    def error(self, q_size, x_size):
        return (q_size + x_size) * (4 * self.gamma + 18 * self.u) + 4 * (
            self.n_features + 2
        ) * self.tiny

    def _exact_rows(self, q, x, qrow, cols, train, query):
        x -= q[:, None, :]
        np.abs(x, out=x)
        return x.sum(axis=2)

    @staticmethod
    def to_distance(v):
        return v


class _Cosine(_Metric):
    name = "cosine"

    @staticmethod
    def _unit(X64):
        norm = np.sqrt(np.einsum("ij,ij->i", X64, X64))
        safe = np.where(norm > 0, norm, 1.0)
        return X64 / safe[:, None], norm

    def prepare_train(self, X):
        n, d = X.shape
        Xu = np.empty((n, d), dtype=self.dtype)
        norm = np.empty(n, dtype=np.float64)
        for s, e in self._row_steps(n, d):
            Xu[s:e], norm[s:e] = self._unit(X[s:e].astype(np.float64))
        return {"Xu": Xu, "norm0": norm, "norm": np.ones(n), "norm_max": 1.0}

    def prepare_query(self, Q, train):
        r, d = Q.shape
        mq = np.empty((r, d), dtype=self.dtype)
        norm = np.empty(r, dtype=np.float64)
        for s, e in self._row_steps(r, d):
            qu, norm[s:e] = self._unit(Q[s:e].astype(np.float64))
            mq[s:e] = -qu
        return {"mq": mq, "base": np.ones(r), "norm": np.ones(r), "norm0": norm}

    def approx(self, query, train, j0, j1, out, n_jobs):
        return np.matmul(query["mq"], train["Xu"][j0:j1].T, out=out)

    def error(self, q_size, x_size):
        return 2 * (self.gamma + 4 * self.u) + 4 * (self.n_features + 2) * self.tiny

    def _exact_rows(self, q, x, qrow, cols, train, query):
        dots = np.einsum("ijk,ik->ij", x, q)
        denom = train["norm0"][cols] * query["norm0"][qrow][:, None]
        cos = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        return np.clip(1.0 - cos, 0.0, 2.0)

    @staticmethod
    def to_distance(v):
        return v


_METRIC_CLASSES = {"l2": _L2, "l1": _L1, "cosine": _Cosine}


def _sum_of_minima(Qc: np.ndarray, Xc: np.ndarray, out: np.ndarray, n_jobs: int) -> None:
    """``out[i, j] = sum_d min(Qc[i, d], Xc[j, d])`` for Qc (r, D), Xc (n, D), out (r, n).

    Tiles of a few queries x a few training rows keep the ``(tq, tx, D)`` temporary in
    cache between the minimum and the sum over features. Query rows are shared among up to
    ``n_jobs`` threads (NumPy releases the GIL in these loops); small blocks stay on one
    thread, where handing work over would cost more than it saves.
    """
    r, d = Qc.shape
    n = Xc.shape[0]
    tq = max(1, min(r, 8, _L1_TILE_ELEMENTS // d))
    tx = max(1, min(n, _L1_TILE_ELEMENTS // (tq * d)))

    def work(i_start: int, i_stop: int) -> None:
        buf = np.empty(tq * tx * d, dtype=Qc.dtype)
        for i in range(i_start, i_stop, tq):
            ii = min(tq, i_stop - i)
            for j in range(0, n, tx):
                jj = min(tx, n - j)
                t = buf[: ii * jj * d].reshape(ii, jj, d)
                np.minimum(Qc[i : i + ii, None, :], Xc[None, j : j + jj, :], out=t)
                # einsum's reduction is faster than ndarray.sum over the last axis and,
                # unlike a BLAS matrix-vector product, starts no threads of its own.
                np.einsum("ijk->ij", t, out=out[i : i + ii, j : j + jj])

    _in_threads(work, r, tq, r * n * d, n_jobs)


def _in_threads(work, n: int, grain: int, elements: int, n_jobs: int) -> None:
    """Run ``work(start, stop)`` over ``range(n)`` in up to ``n_jobs`` threads.

    The shares are contiguous and multiples of ``grain``; small jobs (few ``elements`` of
    work) stay on the calling thread, where handing work over would cost more than it saves.
    """
    n_steps = -(-n // grain)
    jobs = max(1, min(n_jobs, n_steps, elements // _JOB_ELEMENTS))
    if jobs == 1:
        work(0, n)
        return
    per = -(-n_steps // jobs) * grain
    bounds = [(s, min(n, s + per)) for s in range(0, n, per)]
    with ThreadPoolExecutor(max_workers=len(bounds)) as ex:
        for f in [ex.submit(work, a, b) for a, b in bounds]:
            f.result()


# --- the estimator ----------------------------------------------------------------------


def _check_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {k!r}")
    if k < 1:
        raise ValueError(f"{name} must be at least 1, got {k}")
    return int(k)


def _check_chunk_size(chunk_size):
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


class KNearestNeighbors(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbour classifier (exact, memory-bounded).

    Parameters
    ----------
    k : int >= 1, number of neighbours that vote.
    metric : ``"l2"`` (Euclidean), ``"l1"`` (Manhattan) or ``"cosine"`` (``1 - cos``; a
        zero vector is at distance 1 from everything).
    chunk_size : None, int or (int, int). Queries per distance block, optionally with
        training rows per block. ``None`` sizes blocks from a 64 MB budget (2,048 queries
        x about 8,192 training rows in float32). Results never depend on it.
    n_jobs : None or int. Threads for the work outside matrix products: the ``l1``
        distance loops, candidate selection, re-measuring (``None``: every CPU this process
        may use). Matrix products use the BLAS threads (set them with threadpoolctl or
        ``OPENBLAS_NUM_THREADS``).

    Attributes (after ``fit``)
    --------------------------
    classes_ : (C,) int64, the sorted distinct training labels.
    n_features_in_ : int, number of features D.

    The vote: each of the k nearest training points (ties in distance resolved towards
    the smaller training index) votes for its label; the label with most votes wins, and a
    tie between labels goes to the smallest label. ``predict_proba`` gives the vote
    fractions in the order of ``classes_``.

    Precision: float32 input (and 8/16-bit integers) is computed in float32, anything else
    in float64; either way the neighbours are certified equal to a float64 brute-force
    computation (see the module docstring), so float32 costs no accuracy.

    ``fit`` keeps a reference to ``X`` (as scikit-learn does) plus a centred copy in the
    compute dtype (and, for ``l2`` on large data, rows reduced to ~D/12 numbers); do not
    modify ``X`` in place after fitting.
    """

    def __init__(self, k=1, metric="l2", chunk_size=None, n_jobs=None):
        self.k = k
        self.metric = metric
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs

    # -- fitting ---------------------------------------------------------------------

    def _check_params(self) -> None:
        _check_k(self.k)
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {self.metric!r}")
        _check_chunk_size(self.chunk_size)
        if self.n_jobs is not None and (
            isinstance(self.n_jobs, bool)
            or not isinstance(self.n_jobs, numbers.Integral)
            or self.n_jobs < 1
        ):
            raise ValueError(f"n_jobs must be None or a positive int, got {self.n_jobs!r}")

    def fit(self, X, y):
        """Remember the training data.

        X : (N, D) array of numbers, no NaN or infinity. y : (N,) integer labels (any
        values; float labels must be whole numbers). Returns ``self``.
        """
        self._check_params()
        X, y = check_X_y(X, y)
        if self.k > X.shape[0]:
            raise ValueError(
                f"k={self.k} is larger than the number of training samples ({X.shape[0]})"
            )
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self._set_training_data(X, y_index.astype(np.int64))
        return self

    def _set_training_data(self, X: np.ndarray, y_index: np.ndarray) -> None:
        n, d = X.shape
        metric = _METRIC_CLASSES[self.metric](_compute_dtype(X.dtype), d)
        if metric.dtype == np.float32 and X.dtype.kind == "f":
            # Values so large that float32 squares or sums could overflow: float64 throughout.
            largest = max(float(X.max()), -float(X.min()))
            if not metric.safe(4 * largest * (np.sqrt(d) if metric.name == "l2" else d)):
                metric = _METRIC_CLASSES[self.metric](np.dtype(np.float64), d)
        self._metric = metric
        self._train = metric.prepare_train(X)
        if (
            self.metric == "l2"
            and self.k <= _FILTER_MAX_K
            and X.shape[0] >= _FILTER_MIN_TRAIN
            and X.shape[1] >= _FILTER_MIN_FEATURES
        ):
            proj = metric._projection(self._train)
            if proj is not None:
                self._train["proj"] = proj
        self._fit_X = X
        self._y_index = y_index
        self.n_features_in_ = X.shape[1]

    # -- model files (chainrule.models.io) -------------------------------------------

    def _state_dict(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "_fit_X")
        return {"classes_": self.classes_, "fit_X": self._fit_X, "y_index": self._y_index}

    def _load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._check_params()
        X = check_X(np.asarray(state["fit_X"]), name="fit_X")
        classes = check_labels(np.asarray(state["classes_"]), name="classes_")
        y_index = check_labels(np.asarray(state["y_index"]), name="y_index")
        if len(y_index) != len(X) or (
            len(y_index) and (y_index.min() < 0 or y_index.max() >= len(classes))
        ):
            raise ValueError("y_index does not match fit_X and classes_")
        if self.k > len(X):
            raise ValueError(f"k={self.k} is larger than the number of training samples")
        self.classes_ = classes
        self._set_training_data(X, y_index)

    # -- neighbours --------------------------------------------------------------------

    def _blocks(self, n_query: int) -> tuple[int, int]:
        """(queries per block, training rows per block)."""
        n_train = self._fit_X.shape[0]
        budget = max(1, _BLOCK_BYTES // self._metric.dtype.itemsize)
        cs = _check_chunk_size(self.chunk_size)
        if cs is None:
            tb = min(n_train, max(1, budget // _MIN_QUERY_ROWS))
            tb = -(-n_train // -(-n_train // tb))  # equal blocks, none left nearly empty
            qc = max(1, budget // tb)
        elif len(cs) == 1:
            qc = cs[0]
            tb = min(n_train, max(1, budget // qc))
        else:
            qc, tb = cs[0], min(n_train, cs[1])
        return max(1, min(qc, n_query)), tb

    def _jobs(self) -> int:
        return self.n_jobs or _default_jobs()

    def _check_query(self, X) -> np.ndarray:
        check_is_fitted(self, "_fit_X")
        return check_X(X, n_features=self.n_features_in_, estimator=self, allow_empty=True)

    def _check_magnitude(self, query: dict) -> None:
        largest = float(query["norm"].max()) if query["norm"].size else 0.0
        if not self._metric.safe(largest + self._train["norm_max"]):
            raise ValueError(
                f"X has values too large for distance computations in {self._metric.dtype} "
                f"(row norm {largest:.3g}); fit and predict with float64 data"
            )

    def _neighbors(self, Q: np.ndarray, k: int, ordered: bool = True, values: bool = True):
        """The k nearest training rows of each query.

        Returns ``(vals, idx)``, both (nq, k): ``idx`` int64 ordered by (exact value,
        index) when ``ordered``, else the right set in an unspecified order; ``vals`` the
        float64 comparison values in the same order, or None unless ``values``.
        """
        metric, train = self._metric, self._train
        n_query, n_train = Q.shape[0], self._fit_X.shape[0]
        qc, tb = self._blocks(n_query)
        jobs = self._jobs() if qc * tb >= _THREADED_BLOCK else 1
        ctx = {
            "tb": tb,
            "buf": np.empty(qc * tb, dtype=metric.dtype),
            "mask": np.empty(qc * tb, dtype=bool),
            "pool": ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else None,
            "jobs": jobs,
        }
        out_v = np.empty((n_query, k)) if values else None
        out_i = np.empty((n_query, k), dtype=np.int64)
        use_filter = "proj" in train and k <= _FILTER_MAX_K and 8 * (2 * k + 32) <= n_train
        left = []  # queries the filter did not settle, for brute force at the end
        try:
            for i0 in range(0, n_query, qc):
                Qo = Q[i0 : i0 + qc]
                if not use_filter:
                    left.append(np.arange(i0, i0 + Qo.shape[0]))
                    continue
                query = metric.prepare_query(Qo, train)
                self._check_magnitude(query)
                done, ex, ix = self._filter_chunk(Qo, query, k, ordered, values, ctx)
                rows = np.flatnonzero(done)
                out_i[i0 + rows] = ix[rows]
                if values:
                    out_v[i0 + rows] = ex[rows]
                left.append(i0 + np.flatnonzero(~done))
                # Data without a dominant subspace (e.g. noise): brute force from now on.
                use_filter = rows.size >= _FILTER_MIN_RESOLVED * len(done)
            # Leftovers together, so that the matrix products stay large.
            left = np.concatenate(left) if left else np.zeros(0, dtype=np.int64)
            for s in range(0, left.size, qc):
                rows = left[s : s + qc]
                contiguous = rows[-1] - rows[0] == rows.size - 1
                Qo = Q[rows[0] : rows[-1] + 1] if contiguous else Q[rows]
                query = metric.prepare_query(Qo, train)
                self._check_magnitude(query)
                ex, ix = self._search_chunk(Qo, query, k, ordered, values, ctx)
                out_i[rows] = ix
                if values:
                    out_v[rows] = ex
        finally:
            if ctx["pool"] is not None:
                ctx["pool"].shutdown()
        return out_v, out_i

    def _block_pass(self, metric, query, train, keep: int, ctx):
        """Approximate values of a chunk against every training block; the ``keep``
        smallest per query, ``(vals, cols)`` (r, keep), ascending by (value, index)."""
        n_train = len(train["norm"])
        r = len(query["base"])
        tb, buf, mask, pool, jobs = ctx["tb"], ctx["buf"], ctx["mask"], ctx["pool"], ctx["jobs"]
        vals = cols = None
        for j0 in range(0, n_train, tb):
            j1 = min(n_train, j0 + tb)
            nb = j1 - j0
            A = metric.approx(query, train, j0, j1, buf[: r * nb].reshape(r, nb), self._jobs())

            def select(s, e, A=A, j0=j0, j1=j1, nb=nb):
                metric.finish(A[s:e], _rows(query, s, e), train, j0, j1)
                return _smallest(A[s:e], min(keep, nb), mask[s * nb : e * nb])

            parts = _map_row_ranges(pool, select, r, jobs)
            v = np.concatenate([p[0] for p in parts])
            c = np.concatenate([p[1] for p in parts]) + j0
            vals, cols = (v, c) if vals is None else _merge(vals, cols, v, c, keep)
        return vals, cols

    def _search_chunk(self, Qo, query, k: int, ordered: bool, values: bool, ctx):
        """One chunk of queries by brute force: approximate pass over all blocks,
        certificate, exact pass where needed. Returns ``(exact or None, idx)``, (r, k)."""
        metric, train, X = self._metric, self._train, self._fit_X
        n_train = X.shape[0]
        m = _pool_size(k, n_train)
        keep = min(n_train, m + 1)
        vals, cols = self._block_pass(metric, query, train, keep, ctx)
        beyond = None
        if keep < n_train:
            # Every point outside the kept ones has an approximate value >= the last kept.
            beyond = vals[:, -1].astype(np.float64) - metric.error(query["norm"], train["norm_max"])
        ok = self._certified(vals, cols, query, k, ordered, beyond)
        rows = np.flatnonzero(ok)
        idx = cols[:, :k].copy()
        exact = np.empty((len(idx), k)) if values else None
        if values and rows.size:
            exact[rows] = metric.exact(Qo, X, rows, idx[rows], train, query, self._jobs())
        rows = np.flatnonzero(~ok)
        if rows.size:
            ex, ix = self._pool(Qo, query, vals, cols, rows, k, m)
            idx[rows] = ix
            if values:
                exact[rows] = ex
        return exact, idx

    def _filter_chunk(self, Qo, query, k: int, ordered: bool, values: bool, ctx):
        """Exact neighbours for most queries of a chunk at a fraction of the cost (l2).

        The training rows reduced to ``p + 1`` numbers (``p ~ D / 12``, see
        ``_L2._projection``) give a cheap lower bound of every distance (less the rounding
        of the reduction and of the product). The ``2k + 32`` points with the smallest
        bounds are measured in full (float32, with the usual error bound);
        a query is settled when, by the usual certificate (or the exact pass), its k
        nearest among those are nearer than the lower bound of every point left out.
        On image data that holds for nearly every query; the rest go to brute force.

        Returns ``(done (r,) bool, exact or None, idx)``; rows not done are undefined.
        """
        metric, train, X = self._metric, self._train, self._fit_X
        proj = train["proj"]
        pmetric, ptrain = proj["metric"], proj["train"]
        c = 2 * k + 32
        pquery = metric.project(query, proj)
        pvals, pcols = self._block_pass(pmetric, pquery, ptrain, c + 1, ctx)
        # Lower bound of the true squared distance of every point outside the candidates:
        # ||z_q - z_x|| less the rounding of the filter's product and of the z's, less the
        # rounding of the centring.
        low = pvals[:, c].astype(np.float64) + pquery["base"]
        low -= pmetric.error(pquery["norm"], ptrain["norm_max"])
        low = np.sqrt(np.maximum(low, 0.0))
        low -= (proj["eps"] + 2.0 * metric.u) * (query["norm"] + train["norm_max"])
        floor = np.maximum(low, 0.0) ** 2
        cand = pcols[:, :c]
        approx = self._candidate_values(query, cand)
        vals, cols = _sort_rows(approx, cand, c)
        ok = self._certified(vals, cols, query, k, ordered, floor - query["base"])
        idx = cols[:, :k].copy()
        exact = np.empty((len(idx), k)) if values else None
        rows = np.flatnonzero(ok)
        if values and rows.size:
            exact[rows] = metric.exact(Qo, X, rows, idx[rows], train, query, self._jobs())
        rows = np.flatnonzero(~ok)
        if rows.size:
            ex = metric.exact(Qo, X, rows, cols[rows], train, query, self._jobs())
            ex, ix = _sort_rows(ex, cols[rows], k)
            settled = ex[:, k - 1] < floor[rows]
            ok[rows[settled]] = True
            idx[rows] = ix
            if values:
                exact[rows] = ex
        return ok, exact, idx

    def _candidate_values(self, query, cand):
        """Approximate values (float32 or the compute dtype), as the block pass would give
        them, of the training rows ``cand`` (r, c) for each query of a chunk."""
        train = self._train
        Xc, sq, m2q = train["Xc"], train["sq"], query["m2q"]
        r, c = cand.shape
        out = np.empty((r, c), dtype=Xc.dtype)
        step = max(1, _GATHER_BYTES // (Xc.itemsize * c * Xc.shape[1]))

        def work(start: int, stop: int) -> None:
            for a in range(start, stop, step):
                b = min(stop, a + step)
                # (einsum: NumPy's stacked matmul can miss BLAS for these shapes.)
                out[a:b] = np.einsum("rcd,rd->rc", Xc[cand[a:b]], m2q[a:b])
                out[a:b] += sq[cand[a:b]]

        _in_threads(work, r, step, r * c * Xc.shape[1], self._jobs())
        return out

    def _certified(self, vals, cols, query, k: int, ordered: bool, beyond) -> np.ndarray:
        """Queries (r,) bool whose approximate top k is the exact top k without re-measuring.

        ``vals``/``cols`` (r, c): each query's candidates with their approximate values,
        ascending; ``beyond`` (r,) a lower bound, in the same units, of the values of all
        other training points, or None if there are none. A point's exact value lies within
        its error bound ``e`` of its approximate value, so the top-k *set* is certain when
        the largest ``v + e`` among the first k is below the smallest ``v - e`` of the rest;
        with ``ordered``, consecutive intervals ``[v - e, v + e]`` of the first k must not
        overlap either.
        """
        metric, train = self._metric, self._train
        r, keep = vals.shape
        if keep <= k and beyond is None and not ordered:  # all points are the k nearest
            return np.ones(r, dtype=bool)
        v = vals.astype(np.float64)
        e = np.broadcast_to(metric.error(query["norm"][:, None], train["norm"][cols]), v.shape)
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

    def _pool(self, Qo, query, vals, cols, rows, k: int, m: int):
        """Exact top k (values, indices) for the queries ``rows`` of a chunk.

        The ``m`` best approximate candidates are measured exactly in float64; that result
        stands if the k-th exact value is below a lower bound of every point left out, and
        otherwise ``_redo`` widens the search.
        """
        metric, train = self._metric, self._train
        cand = cols[rows, :m]
        exact = metric.exact(Qo, self._fit_X, rows, cand, train, query, self._jobs())
        exact, cand = _sort_rows(exact, cand, k)
        if vals.shape[1] > m:
            # Lower bound of the true value of every point outside the candidates.
            floor = (
                vals[rows, m].astype(np.float64)
                + query["base"][rows]
                - metric.error(query["norm"][rows], train["norm_max"])
            )
            redo = np.flatnonzero(~(exact[:, k - 1] < floor))
            if redo.size:
                exact[redo], cand[redo] = self._redo(Qo[rows[redo]], exact[redo, k - 1], k)
        return exact, cand

    def _redo(self, Qo: np.ndarray, bound: np.ndarray, k: int):
        """Exact k nearest for queries whose candidates were not certified.

        Every training point whose approximate value minus its error bound does not exceed
        ``bound`` (the k-th exact value found so far, an upper bound of the true k-th) is
        measured exactly. Qo (r, D), bound (r,) -> (values, indices), both (r, k).
        """
        metric, train, X = self._metric, self._train, self._fit_X
        n_train = X.shape[0]
        r = Qo.shape[0]
        qc, tb = self._blocks(r)
        qc = max(1, qc // 2)  # the float64 lower bounds take twice a float32 block
        n_jobs = self._jobs()
        out_v = np.empty((r, k))
        out_i = np.empty((r, k), dtype=np.int64)
        for i0 in range(0, r, qc):
            Qs = Qo[i0 : i0 + qc]
            rs = Qs.shape[0]
            query = metric.prepare_query(Qs, train)
            pair_rows, pair_cols, pair_vals = [], [], []
            for j0 in range(0, n_train, tb):
                j1 = min(n_train, j0 + tb)
                A = np.empty((rs, j1 - j0), dtype=metric.dtype)
                A = metric.approx(query, train, j0, j1, A, n_jobs)
                metric.finish(A, query, train, j0, j1)
                low = A + query["base"][:, None]
                low -= metric.error(query["norm"][:, None], train["norm"][None, j0:j1])
                rows, c = np.nonzero(~(low > bound[i0 : i0 + rs, None]))  # keeps NaN too
                c = c + j0
                pair_rows.append(rows)
                pair_cols.append(c)
                pair_vals.append(metric.exact(Qs, X, rows, c[:, None], train, query, n_jobs)[:, 0])
            rows = np.concatenate(pair_rows)
            cols = np.concatenate(pair_cols)
            vals = np.concatenate(pair_vals)
            order = np.lexsort((cols, vals, rows))
            counts = np.bincount(rows, minlength=rs)
            starts = np.cumsum(counts) - counts
            pick = order[starts[:, None] + np.arange(k)]
            out_v[i0 : i0 + rs] = vals[pick]
            out_i[i0 : i0 + rs] = cols[pick]
        return out_v, out_i

    def kneighbors(self, X, k=None, return_distance: bool = True):
        """The k nearest training points of each row of X.

        X : (N, D). k : int, default ``self.k``.

        Returns ``(distances, indices)``, both (N, k): distances float64 (true distances:
        Euclidean for l2, Manhattan for l1, ``1 - cos`` for cosine) ascending along each
        row, indices int64 into the training set (equal distances: smaller index first).
        With ``return_distance=False`` only ``indices`` (the same), which can be cheaper.
        """
        Q = self._check_query(X)
        k = self.k if k is None else _check_k(k)
        if k > self._fit_X.shape[0]:
            raise ValueError(
                f"k={k} is larger than the number of training samples ({self._fit_X.shape[0]})"
            )
        v, idx = self._neighbors(Q, k, ordered=True, values=return_distance)
        return (self._metric.to_distance(v), idx) if return_distance else idx

    def _votes(self, X) -> np.ndarray:
        """Vote counts (N, C) int64 of the k nearest neighbours."""
        Q = self._check_query(X)
        k = _check_k(self.k)
        if k > self._fit_X.shape[0]:
            raise ValueError(
                f"k={k} is larger than the number of training samples ({self._fit_X.shape[0]})"
            )
        # The vote needs the set of the k nearest, not their order or distances.
        _, idx = self._neighbors(Q, k, ordered=False, values=False)
        return _count_votes(self._y_index[idx], len(self.classes_))

    def predict(self, X) -> np.ndarray:
        """Predicted labels (N,) int64, values from ``classes_``."""
        votes = self._votes(X)
        # argmax takes the first maximum: ties go to the smallest label.
        return self.classes_[votes.argmax(axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        """Vote fractions (N, C) float64, columns in the order of ``classes_``."""
        votes = self._votes(X)
        return votes / float(self.k)


def _count_votes(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """labels (N, k) class indices -> counts (N, n_classes) int64."""
    n = labels.shape[0]
    flat = (np.arange(n)[:, None] * n_classes + labels).ravel()
    return np.bincount(flat, minlength=n * n_classes).reshape(n, n_classes)


# --- cross-validation -------------------------------------------------------------------

DEFAULT_KS = (1, 3, 5, 8, 10, 12, 15, 20, 50, 100)


def _stratified_folds(y: np.ndarray, folds: int, random_state) -> np.ndarray:
    """Fold number (N,) for each sample: each class dealt round-robin over the folds.

    Without ``random_state`` samples are taken in their given order (deterministic); with
    one, each class is shuffled first.
    """
    fold = np.empty(len(y), dtype=np.int64)
    rng = None if random_state is None else as_generator(random_state)
    offset = 0
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        if rng is not None:
            members = rng.permutation(members)
        # The offset keeps fold sizes balanced when classes are small.
        fold[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return fold


def knn_cross_validate(
    X,
    y,
    ks=DEFAULT_KS,
    folds: int = 5,
    metric: str = "l2",
    random_state=None,
    chunk_size=None,
    n_jobs=None,
    progress: bool = False,
) -> dict[int, np.ndarray]:
    """Fold accuracies of k-NN for every k in ``ks``.

    X : (N, D), y : (N,) integer labels. The data are split into ``folds`` stratified
    folds (see ``_stratified_folds``; ``random_state`` shuffles within each class). For each
    fold the distances are computed once: the ``max(ks)`` nearest neighbours of the held-out
    rows, sorted, from which every k votes.

    Returns ``{k: accuracies}`` with ``accuracies`` a float64 array of shape (folds,).
    """
    X, y = check_X_y(X, y)
    if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 2:
        raise ValueError(f"folds must be an int >= 2, got {folds!r}")
    if folds > len(y):
        raise ValueError(f"folds={folds} is more than the number of samples ({len(y)})")
    ks = [_check_k(k, "every k in ks") for k in np.atleast_1d(ks).tolist()]
    if not ks:
        raise ValueError("ks is empty")
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks has repeated values: {ks}")
    fold = _stratified_folds(y, folds, random_state)
    smallest_train = len(y) - np.bincount(fold, minlength=folds).max()
    k_max = max(ks)
    if k_max > smallest_train:
        raise ValueError(
            f"k={k_max} is larger than the smallest training part of the folds "
            f"({smallest_train} samples)"
        )
    results = {k: np.empty(folds) for k in ks}
    model = KNearestNeighbors(k=k_max, metric=metric, chunk_size=chunk_size, n_jobs=n_jobs)
    steps = range(folds)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"k-NN {metric} cross-validation", unit="fold")
    for f in steps:
        held = fold == f
        model.fit(X[~held], y[~held])
        idx = model.kneighbors(X[held], k_max, return_distance=False)
        labels = model._y_index[idx]
        truth = np.searchsorted(model.classes_, y[held])
        known = np.isin(y[held], model.classes_)
        for k in ks:
            pred = _count_votes(labels[:, :k], len(model.classes_)).argmax(axis=1)
            results[k][f] = np.mean((pred == truth) & known)
    return results


def knn_best_k(results: dict[int, np.ndarray]) -> int:
    """The k with the highest mean accuracy in ``results`` (smallest k on ties)."""
    if not results:
        raise ValueError("results is empty")
    means = {int(k): float(np.mean(v)) for k, v in results.items()}
    best = max(means.values())
    # Means of equal fold accuracies can differ in the last bit from summation order.
    return min(k for k, v in means.items() if v >= best - 1e-12)
