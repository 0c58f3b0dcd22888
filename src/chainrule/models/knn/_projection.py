"""The l2 projection filter: every row reduced to ``p + 1`` numbers whose distances bound
the true ones from below, so that one small matrix product and a full measurement of
``2k + 32`` candidates settle nearly every query (about 98% of CIFAR-10 queries at
``k = 1``).

``P`` (D, p) is an orthonormal basis of the training data's main directions, from a
randomized range finder (two power iterations, fixed seed) on evenly spaced training rows.
A centred row ``x`` becomes ``z = (P^T x, |x - P P^T x|)``: then
``||q - x||^2 = ||P^T (q - x)||^2 + ||R (q - x)||^2 >= ||z_q - z_x||^2`` (R the projection on
the rest, and the reverse triangle inequality). Any basis keeps the bound valid; a good one
makes it tight. ``z`` is computed in float64 and rounded; ``eps`` bounds what that
rounding (and what is left of ``P``'s orthonormality) changes, relative to ``||x||``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chainrule.models.knn._metrics import L2, Prepared, gamma, row_steps
from chainrule.models.knn._parallel import in_threads
from chainrule.models.knn._select import sort_rows

__all__ = ["Projection", "candidate_values", "fit_projection", "orthonormal"]

# Least share of the (centred) variance the projection must hold (CIFAR-10: 0.97 with 256
# of 3,072 directions; isotropic noise: about 0.1).
MIN_CAPTURED = 0.8
# The basis is estimated from at most this many evenly spaced training rows.
SAMPLE = 2048
# Prepared (by ``fit``) for k up to this: with more neighbours the filter needs too many
# candidates to pay off.
MAX_K = 16
# Budget of the gathered rows of one step of candidate evaluation (see candidate_values).
GATHER_BYTES = 4 * 2**20


@dataclass
class Projection:
    """A fitted projection filter.

    P : (D, p) float64, orthonormal columns.
    eps : float, relative error of the reduced rows (``|z_computed - z| <= eps ||x||``).
    metric : the l2 metric of the reduced space (p + 1 features).
    train : the reduced training rows, prepared for ``metric`` (not centred again).
    """

    P: np.ndarray
    eps: float
    metric: L2
    train: Prepared

    def project(self, query: Prepared) -> Prepared:
        """The reduced form of a query chunk prepared by the full-space l2 metric."""
        P, dtype = self.P, self.metric.dtype
        r, p = len(query), P.shape[1]
        z = np.empty((r, p + 1), dtype=dtype)
        for s, e in row_steps(r, P.shape[0]):
            y = (query.data[s:e] @ P) * -0.5  # float64; data = -2 q exactly
            z[s:e, :p] = y
            ysq = np.einsum("ij,ij->i", y, y)
            z[s:e, p] = np.sqrt(np.maximum(query.base[s:e] - ysq, 0.0))
        zsq = np.einsum("ij,ij->i", z, z, dtype=np.float64)
        z *= dtype.type(-2)
        return Prepared(data=z, norm=np.sqrt(zsq), base=zsq)

    def usable(self, k: int, n_train: int) -> bool:
        """Whether the filter can help for k neighbours among n_train rows."""
        return k <= MAX_K and 8 * (2 * k + 32) <= n_train

    def search_chunk(self, search, Qo, query: Prepared, k: int, ordered, values, ws):
        """Exact neighbours for most queries of a chunk at a fraction of the cost.

        The reduced rows give a cheap lower bound of every distance (less the rounding of
        the reduction and of the product). The ``2k + 32`` points with the smallest bounds
        are measured in full (float32, with the usual error bound); a query is settled
        when, by the usual certificate (or the exact pass), its k nearest among those are
        nearer than the lower bound of every point left out. On image data that holds for
        nearly every query; the rest go to brute force.

        ``search`` is the ``NeighborSearch`` of the full rows, ``query`` the chunk ``Qo``
        (r, D) prepared by its l2 metric. Returns ``(done (r,) bool, exact or None,
        idx)``; rows not done are undefined.
        """
        metric, train, X = search.metric, search.train, search.X
        c = 2 * k + 32
        pquery = self.project(query)
        pvals, pcols = search.block_pass(self.metric, pquery, self.train, c + 1, ws)
        # Lower bound of the true squared distance of every point outside the candidates:
        # ||z_q - z_x|| less the rounding of the filter's product and of the z's, less the
        # rounding of the centring.
        low = pvals[:, c].astype(np.float64) + pquery.base
        low -= self.metric.error(pquery.norm, self.train.norm_max)
        low = np.sqrt(np.maximum(low, 0.0))
        low -= (self.eps + 2.0 * metric.u) * (query.norm + train.norm_max)
        floor = np.maximum(low, 0.0) ** 2
        cand = pcols[:, :c]
        approx = candidate_values(train, query, cand, ws.n_jobs)
        vals, cols = sort_rows(approx, cand, c)
        ok = search.certified(vals, cols, query, k, ordered, floor - query.base)
        idx = cols[:, :k].copy()
        exact = np.empty((len(idx), k)) if values else None
        rows = np.flatnonzero(ok)
        if values and rows.size:
            exact[rows] = metric.exact(Qo, X, rows, idx[rows], train, query, ws.n_jobs)
        rows = np.flatnonzero(~ok)
        if rows.size:
            ex = metric.exact(Qo, X, rows, cols[rows], train, query, ws.n_jobs)
            ex, ix = sort_rows(ex, cols[rows], k)
            settled = ex[:, k - 1] < floor[rows]
            ok[rows[settled]] = True
            idx[rows] = ix
            if values:
                exact[rows] = ex
        return ok, exact, idx


def candidate_values(train: Prepared, query: Prepared, cand, n_jobs: int):
    """Approximate l2 values (compute dtype), as the block pass would give them, of the
    training rows ``cand`` (r, c) for each query of a chunk."""
    Xc, sq, m2q = train.data, train.extra, query.data
    r, c = cand.shape
    out = np.empty((r, c), dtype=Xc.dtype)
    step = max(1, GATHER_BYTES // (Xc.itemsize * c * Xc.shape[1]))

    def work(start: int, stop: int) -> None:
        for a in range(start, stop, step):
            b = min(stop, a + step)
            # (einsum: NumPy's stacked matmul can miss BLAS for these shapes.)
            out[a:b] = np.einsum("rcd,rd->rc", Xc[cand[a:b]], m2q[a:b])
            out[a:b] += sq[cand[a:b]]

    in_threads(work, r, step, r * c * Xc.shape[1], n_jobs)
    return out


def orthonormal(Y: np.ndarray) -> np.ndarray:
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


def fit_projection(metric: L2, train: Prepared) -> Projection | None:
    """The filter for centred training rows ``train`` prepared by the l2 ``metric``.

    ``p ~ D / 12`` directions (a multiple of 32, at least 32). Returns None when the basis
    holds less than ``MIN_CAPTURED`` of the sample's variance about the mean: then the
    bound is too loose to settle queries (noise) and the filter would not pay off.
    """
    Xc = train.data
    n, d = Xc.shape
    p = min(d - 1, max(32, -(-d // 12 // 32) * 32))
    sample = Xc[np.linspace(0, n, min(n, SAMPLE), endpoint=False).astype(np.int64)]
    S = sample.astype(np.float64)
    Y = S.T @ np.random.default_rng(0).standard_normal((len(S), p))
    for _ in range(2):
        Y = S.T @ (S @ orthonormal(Y))
    P = orthonormal(Y)
    p = P.shape[1]
    SP = S @ P
    if np.einsum("ij,ij->", SP, SP) < MIN_CAPTURED * np.einsum("ij,ij->", S, S):
        return None
    # What is left of orthonormality after rounding, as a relative error of z.
    ortho = float(np.abs(P.T @ P - np.eye(p)).sum(axis=1).max())
    Z = np.empty((n, p + 1), dtype=metric.dtype)
    zsq = np.empty(n, dtype=np.float64)
    sq = train.norm**2
    for s, e in row_steps(n, d):
        y = Xc[s:e] @ P
        Z[s:e, :p] = y
        Z[s:e, p] = np.sqrt(np.maximum(sq[s:e] - np.einsum("ij,ij->i", y, y), 0.0))
        zsq[s:e] = np.einsum("ij,ij->i", Z[s:e], Z[s:e], dtype=np.float64)
    # |z_computed - z| <= eps ||x||: rounding to the compute dtype, float64 sums (the
    # residual through a square root), P orthonormal to float64 accuracy; doubled.
    g64 = gamma(d + p + 2, float(np.finfo(np.float64).eps) / 2)
    eps = 2.0 * (metric.u + np.sqrt(4.0 * (g64 + ortho)) + 4.0 * (g64 + ortho) * np.sqrt(p))
    reduced = Prepared(data=Z, norm=np.sqrt(zsq), extra=zsq.astype(metric.dtype))
    return Projection(P=P, eps=float(eps), metric=L2(metric.dtype, p + 1), train=reduced)
