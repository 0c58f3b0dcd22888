"""The l2 (and cosine) projection filter: every row reduced to ``p + 1`` numbers whose
distances bound the true ones from below, so that one small matrix product and a full
measurement of ``2k + 32`` candidates settle nearly every query (about 98% of CIFAR-10
queries at ``k = 1``); the others are finished by measuring every row whose bound does
not exclude it (``Projection._widen``).

Cosine: unit rows ``u``, ``v`` have ``||u - v||^2 = 2 (1 - cos)``, so the filter of the
(uncentred) unit rows bounds cosine distances, at half its squared bound.

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
from chainrule.models.knn._select import pair_groups, sort_rows, top_k_of_pairs

__all__ = ["Projection", "fit_projection", "orthonormal"]

# Least share of the (centred) variance the projection must hold (CIFAR-10: 0.97 with 256
# of 3,072 directions; isotropic noise: about 0.1).
MIN_CAPTURED = 0.8
# The basis is estimated from at most this many evenly spaced training rows.
SAMPLE = 2048
# Prepared (by ``fit``) for k up to this: with more neighbours the filter needs too many
# candidates to pay off (measured against brute force on CIFAR-10: docs/numbers.md).
MAX_K = 32
# Queries the candidates do not settle: reduced values of a few of them against every
# training row at once (memory, float32), surviving pairs measured at once, and the share
# of the rows beyond which brute force is cheaper.
WIDEN_BYTES = 64 * 2**20
_U64 = float(np.finfo(np.float64).eps) / 2
PAIR_BUDGET = 1 << 20
MAX_SURVIVORS = 0.5


@dataclass
class Projection:
    """A fitted projection filter.

    P : (D, p) float64, orthonormal columns.
    eps : float, relative error of the reduced rows (``|z_computed - z| <= eps ||x||``).
    metric : the l2 metric of the reduced space (p + 1 features).
    train : the reduced training rows, prepared for ``metric`` (not centred again).
    norm_max : the largest norm of the full rows that were reduced.
    """

    P: np.ndarray
    eps: float
    metric: L2
    train: Prepared
    norm_max: float

    def project(self, query: Prepared) -> Prepared:
        """The reduced form of a query chunk prepared by the full-space l2 metric (or in
        that form: ``as_l2_query``)."""
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
        nearly every query; for the rest, ``_widen`` measures every row that the bound does
        not exclude, and a query that would leave too many goes to brute force.

        ``search`` is the ``NeighborSearch`` of the full rows, ``query`` the chunk ``Qo``
        (r, D) prepared by its metric (l2 or cosine). Returns ``(done (r,) bool, exact or None,
        idx)``; rows not done are undefined.
        """
        metric, train, X = search.metric, search.train, search.X
        c = 2 * k + 32
        full = metric.as_l2_query(query)
        pquery = self.project(full)
        pvals, pcols = search.block_pass(self.metric, pquery, self.train, c + 1, ws)
        # Lower bound of the true squared distance of every point outside the candidates:
        # ||z_q - z_x|| less the rounding of the filter's product and of the z's, less the
        # rounding of the centring.
        low = pvals[:, c].astype(np.float64) + pquery.base
        low -= self.metric.error(pquery.norm, self.train.norm_max)
        low = np.sqrt(np.maximum(low, 0.0))
        low -= (self.eps + 2.0 * metric.u) * (full.norm + self.norm_max)
        floor = metric.from_squared_l2(np.maximum(low, 0.0) ** 2)
        cand = pcols[:, :c]
        approx = metric.candidate_values(train, query, cand, ws.n_jobs)
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
            rows = rows[~settled]
        if rows.size:
            done, ex, ix = self._widen(search, Qo, query, full, pquery, rows, cols[rows], k, ws)
            ok[rows[done]] = True
            idx[rows[done]] = ix[done]
            if values:
                exact[rows[done]] = ex[done]
        return ok, exact, idx

    def _widen(self, search, Qo, query, full, pquery, rows, cand, k: int, ws):
        """Exact top k for the queries ``rows`` of a chunk whose candidates ``cand`` (r, c)
        did not settle them: every training row whose reduced bound does not exceed the
        k-th exact value among the candidates is measured too.

        ``full``/``pquery``: the chunk in l2 form, and reduced. Returns ``(done (r,),
        values (r, k), indices (r, k))``, ordered; a query with more than
        ``MAX_SURVIVORS`` of the rows left is not done (brute force is cheaper then)."""
        metric, n = search.metric, search.n_train
        cand_vals = metric.exact(Qo, search.X, rows, cand, search.train, query, ws.n_jobs)
        # (the k-th exact value, with the relative error of float64 values to spare)
        limit = np.sort(cand_vals, axis=1)[:, k - 1] * (
            1.0 + 4.0 * gamma(metric.n_features + 2, _U64)
        )
        # Excluded when sqrt(reduced value + base - error) - rounding of z > sqrt(limit):
        # a threshold on the reduced value, one comparison per pair.
        dist = np.sqrt(metric.to_squared_l2(limit))
        dist += (self.eps + 2.0 * metric.u) * (full.norm[rows] + self.norm_max)
        high = (
            dist**2 - pquery.base[rows] + self.metric.error(pquery.norm[rows], self.train.norm_max)
        )
        done = np.zeros(len(rows), dtype=bool)
        pieces = [(np.repeat(np.arange(len(rows)), cand.shape[1]), cand.ravel(), cand_vals.ravel())]
        per = max(1, WIDEN_BYTES // (4 * n))
        for a in range(0, len(rows), per):
            b = min(len(rows), a + per)
            pq = pquery.rows(rows[a:b])
            A = self.metric.approx(
                pq, self.train, 0, n, np.empty((b - a, n), self.metric.dtype), ws.n_jobs
            )
            self.metric.finish(A, pq, self.train, 0, n)
            np.put_along_axis(A, cand[a:b], np.inf, axis=1)  # measured already
            keep = A <= high[a:b, None]
            done[a:b] = keep.sum(axis=1) <= MAX_SURVIVORS * n
            keep[~done[a:b]] = False
            for pr, pc in pair_groups(keep, PAIR_BUDGET):
                vals = metric.exact(
                    Qo, search.X, rows[a + pr], pc[:, None], search.train, query, ws.n_jobs
                )
                pieces.append((a + pr, pc, vals[:, 0]))
        r, c, v = (np.concatenate(p) for p in zip(*pieces, strict=True))
        values, idx = top_k_of_pairs(r, c, v, len(rows), k)
        return done, values, idx


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


def fit_projection(metric, train: Prepared) -> Projection | None:
    """The filter for training rows ``train`` prepared by ``metric`` (l2: centred rows;
    cosine: unit rows, whose squared l2 distances are twice the cosine distances).

    ``p ~ D / 12`` directions (a multiple of 32, at least 32). Returns None when the basis
    holds less than ``MIN_CAPTURED`` of the sample's variance (l2: about the mean): then
    the bound is too loose to settle queries (noise) and the filter would not pay off.
    """
    train = metric.as_l2_rows(train)
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
    return Projection(
        P=P,
        eps=float(eps),
        metric=L2(metric.dtype, p + 1),
        train=reduced,
        norm_max=train.norm_max,
    )
