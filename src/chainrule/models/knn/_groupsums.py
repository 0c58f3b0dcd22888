"""The l1 group-sum filter: lower bounds from sums over groups of features, coarse to fine.

The bound. For any partition of the D features into groups B, the triangle inequality
``|sum_{d in B} (q_d - x_d)| <= sum_{d in B} |q_d - x_d|`` summed over the groups gives

    ||S q - S x||_1 <= ||q - x||_1,      (S x)_B = sum_{d in B} x_d,

an L1 distance between G numbers per row (a downsampled image, when the groups are
patches of pixels) that bounds the true one from below. It is tight where ``q - x`` keeps
one sign inside each group, that is where the features of a group move together. Each
partition into finer groups (each coarse group split in parts) gives a bound at least as
large, up to the full distance with one feature per group.

The groups. Features are paired greedily by correlation (on up to 2,048 evenly spaced
training rows), the pairs paired again, and so on: a hierarchy of groups of 2, 4, 8, ...
features found from the data, so that any layout (HWC or CHW images, grey levels, other
signals) gets groups of features that move together. On CIFAR-10 the learned groups are
as tight as square patches of one colour channel (median bound/distance 0.81 with groups
of 64 features, 0.89 with 16, 0.96 with 4).

The search, for each query:

1. the coarse bound (G = D/64 numbers, 48 for CIFAR-10) to every training row, with the
   l1 metric's kernel and error bound;
2. the ``2k + 16`` rows with the smallest coarse bounds measured exactly: the k-th of
   those values, ``U``, is at least the true k-th nearest distance;
3. every row whose coarse bound (less its rounding) exceeds ``U`` cannot be among the k
   nearest; the others are checked with the finer bounds (D/16 and D/4 numbers, gathered
   for those rows only), and the ones no bound excludes are measured exactly;
4. the k smallest exact values of all measured rows, ties to the smaller index.

Nothing is left to chance: a row is excluded only by a bound proven below its float64
distance, so the answer is the brute-force one. On CIFAR-10 (40,000 training images,
k = 1) about 3% of the rows pass the coarse bound, 0.4% the middle one and a few rows per
query the fine one. A query whose coarse bound leaves more than half of the rows
goes to brute force; a chunk where that happens to most queries (data whose features do
not move together, such as noise) switches the filter off.

Rounding. The group sums are taken in float64 from the original rows, less the group
sums of the training mean, and rounded to float32; ``err`` bounds, per row, how far the
rounded sums are from the exact ones (in L1), and is subtracted together with the error
bound of the float32 distance computation before anything is excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chainrule.models.knn._metrics import L1, Prepared, gamma, row_steps, sum_of_minima
from chainrule.models.knn._parallel import in_threads
from chainrule.models.knn._select import pair_groups, smallest, top_k_of_pairs

__all__ = ["GroupSumFilter", "fit_group_sums", "pair_by_correlation"]

# Rows sampled to learn the groups (and to decide whether the filter pays off).
SAMPLE = 2048
# Features are first put into consecutive runs so that at most this many groups are paired
# by correlation (the correlation matrix is G x G).
MAX_PAIRED = 4096
# Coarse level: about D / 64 groups (48 for 3,072 features); finer levels 4 and 16 times
# as many (the fastest of the level schemes measured on CIFAR-10: docs/numbers.md).
COARSE_SHARE = 64
FINE_STEPS = 2
# A query whose coarse bound leaves more than this share of the training rows goes to
# brute force.
MAX_SURVIVORS = 0.5
# The filter is prepared only when, on the sample, the coarse bound leaves at most this
# share of the rows for 1-NN (CIFAR-10: 0.08; Gaussian noise: 1.0).
PREPARE_MAX_SURVIVORS = 0.25
# Memory of one chunk's coarse bounds (queries x training rows, float32), and surviving
# pairs handled at once (about 24 bytes each).
CHUNK_BYTES = 64 * 2**20
PAIR_BUDGET = 1 << 20

_U32 = float(np.finfo(np.float32).eps) / 2
_U64 = float(np.finfo(np.float64).eps) / 2
_TINY32 = float(np.finfo(np.float32).tiny)
# Largest L1 size of a row of group sums computed with in float32 (with room for the
# sums of sizes and the kernel's passes).
_SAFE = float(np.finfo(np.float32).max) / 64


def candidates_for(k: int) -> int:
    """Rows measured exactly to find ``U``."""
    return 2 * k + 16


def pair_by_correlation(C: np.ndarray) -> list[list[int]]:
    """Groups of one or two of the G items of the correlation matrix ``C`` (G, G).

    Greedy: the most correlated pair first, among each item's 8 most correlated partners;
    items left over (their partners all taken) are paired among themselves the same way.
    Returns a list of groups (lists of item indices), each pair in ascending order.
    """
    C = np.array(C, dtype=np.float64)
    np.fill_diagonal(C, -np.inf)
    groups: list[list[int]] = []
    left = np.arange(C.shape[0])
    while len(left) >= 2:
        used = _greedy_pairs(C[np.ix_(left, left)], groups, left)
        left = left[~used]
    return groups + [[int(i)] for i in left]


def _greedy_pairs(C: np.ndarray, groups: list, names: np.ndarray) -> np.ndarray:
    """One greedy round on ``C`` (G, G) (diagonal -inf): appends the pairs, as
    ``names``, to ``groups``; returns which items were paired (at least the best pair)."""
    G = C.shape[0]
    t = min(G - 1, 8)
    partners = np.argpartition(-C, t - 1, axis=1)[:, :t]
    a = np.repeat(np.arange(G), t)
    b = partners.ravel()
    edges = np.unique(np.minimum(a, b) * G + np.maximum(a, b))
    a, b = edges // G, edges % G
    order = np.argsort(-C[a, b], kind="stable")
    used = np.zeros(G, dtype=bool)
    for i, j in zip(a[order].tolist(), b[order].tolist(), strict=True):
        if not used[i] and not used[j]:
            used[i] = used[j] = True
            groups.append([int(names[i]), int(names[j])])
    return used


def _hierarchy(sample: np.ndarray, n_levels: int) -> list[list[list[int]]]:
    """Nested groups of features learned from ``sample`` (m, D) float64 (centred rows).

    Level 0 holds runs of consecutive features (single features when D <= MAX_PAIRED);
    each later level pairs the previous level's groups by the correlation of their sums.
    Returns ``n_levels`` levels, each a list of groups (lists of feature indices); a group
    is the concatenation of the two it was made of, so that the concatenation of the last
    level's groups orders the features with every group of every level contiguous.
    """
    m, d = sample.shape
    run = -(-d // MAX_PAIRED)
    groups = [list(range(s, min(d, s + run))) for s in range(0, d, run)]
    S = np.add.reduceat(sample, np.arange(0, d, run), axis=1)
    peak = float(np.abs(S).max())
    S = (S / (peak if peak > 0 else 1.0)).astype(np.float32)  # no overflow in the products
    cov = (S.T @ S).astype(np.float64)
    levels = [groups]
    for _ in range(n_levels - 1):
        sd = np.sqrt(np.maximum(np.diag(cov), 1e-300))
        pairs = pair_by_correlation(np.nan_to_num(cov / np.outer(sd, sd)))
        groups = [sum((groups[i] for i in p), []) for p in pairs]
        levels.append(groups)
        # Covariance of the new group sums: sums of rows, then of columns, of the old.
        order = np.array(sum(pairs, []))
        first = np.cumsum([0] + [len(p) for p in pairs[:-1]])
        cov = np.add.reduceat(np.add.reduceat(cov[np.ix_(order, order)], first, 0), first, 1)
    return levels


@dataclass
class Level:
    """One level of groups, with the training rows' group sums.

    index : (G * width,) int64 feature indices, group after group, each group padded to
        ``width`` entries (``pad``: the flat positions of the padding, None if no group
        needs it); ``np.take(x, index, axis=1).reshape(-1, G, width).sum(-1)`` gives the
        group sums once the padding is zeroed.
    Z : (N, G) float32 group sums less those of the training mean (``center``, (G,)
    float64). norm : (N,) float64, ``sum |Z|``. err : (N,) float64, a bound of
    ``sum |Z - exact sums|``.
    """

    index: np.ndarray
    width: int
    pad: np.ndarray | None
    center: np.ndarray
    Z: np.ndarray | None = None
    norm: np.ndarray | None = None
    err: np.ndarray | None = None

    @property
    def n_groups(self) -> int:
        return len(self.index) // self.width

    def sums(self, A: np.ndarray, gathered: dict) -> np.ndarray:
        """Group sums (r, G) float64 of rows A (r, D); ``gathered`` caches the gathered
        rows between levels that share an index."""
        key = id(self.index)
        if key not in gathered:
            gathered[key] = np.take(A, self.index, axis=1)
            if self.pad is not None:
                gathered[key][:, self.pad] = 0
        return _sum_last(gathered[key].reshape(len(A), self.n_groups, self.width))


def _sum_last(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=2)`` in float64 for a (r, G, w); short groups by strided adds (NumPy's
    reduction over a short last axis is several times slower)."""
    if a.shape[2] > 16:
        return a.sum(axis=2, dtype=np.float64)
    out = a[:, :, 0].astype(np.float64)
    for j in range(1, a.shape[2]):
        out += a[:, :, j]
    return out


def _layout(groups: list[list[int]], perm: np.ndarray, center: np.ndarray) -> Level:
    """The ``Level`` of ``groups`` (contiguous runs of ``perm``), groups in ``perm`` order."""
    where = np.empty(len(perm), dtype=np.int64)
    where[perm] = np.arange(len(perm))
    groups = sorted(groups, key=lambda g: where[g[0]])
    width = max(len(g) for g in groups)
    if all(len(g) == width for g in groups):
        level = Level(index=perm, width=width, pad=None, center=np.zeros(0))
    else:
        index = np.concatenate([g + [g[0]] * (width - len(g)) for g in groups])
        pad = np.concatenate(
            [np.arange(i * width + len(g), (i + 1) * width) for i, g in enumerate(groups)]
        )
        level = Level(index=index, width=width, pad=pad.astype(np.int64), center=np.zeros(0))
    level.center = level.sums(center[None, :], {})[0]
    return level


def _reduce_rows(A: np.ndarray, levels: list[Level]) -> list[tuple]:
    """Group sums of rows A (r, D) at each level: ``(Z (r, G) float32, norm, err)``, the
    sums less the level's ``center``, with ``sum |Z|`` and the rounding bound ``err``."""
    d = A.shape[1]
    size = np.abs(A).sum(axis=1, dtype=np.float64)
    gathered: dict = {}
    outs = []
    finer = None
    for level in levels[::-1]:  # finest first: coarser sums from finer ones when nested
        if finer is not None and level.pad is None and finer[0].index is level.index:
            z64 = _sum_last(finer[1].reshape(len(A), level.n_groups, -1))
        else:
            z64 = level.sums(A, gathered)
        finer = (level, z64.copy())
        z64 -= level.center
        Z = z64.astype(np.float32)
        zsize = np.abs(z64).sum(axis=1)
        # Rounding to float32; float64 sums of the row and of the centre; doubled.
        err = 2.0 * (
            _U32 * zsize + gamma(d + 2, _U64) * (size + np.abs(level.center).sum() + zsize)
        )
        outs.append((Z, np.abs(Z).sum(axis=1, dtype=np.float64), err))
    return outs[::-1]


class GroupSumFilter:
    """Exact l1 neighbours through group-sum lower bounds (see the module docstring)."""

    def __init__(self, levels: list[Level], n_features: int):
        self.levels = levels
        self.n_features = n_features
        coarse = levels[0]
        self.metric = L1(np.dtype(np.float32), coarse.n_groups)
        self.train = self.metric.prepare_train(coarse.Z)
        self.err_max = float(coarse.err.max()) if len(coarse.err) else 0.0
        # Relative error of a float64 exact distance (what the bounds are compared with).
        self.rel64 = 4.0 * gamma(n_features + 2, _U64)

    def usable(self, k: int, n_train: int) -> bool:
        return 8 * candidates_for(k) <= n_train

    def reduce(self, Q) -> list[tuple]:
        """Group sums of queries Q (r, D) at every level: ``(Z, norm, err)`` each."""
        return _reduce_rows(Q, self.levels)

    def coarse_bounds(self, zq, out: np.ndarray, n_jobs: int) -> tuple[np.ndarray, np.ndarray]:
        """Lower bounds (approximate, float32) to every training row, and how much to add
        to them per query for a rigorous test (``bound <= threshold + slack``).

        zq : the coarse ``(Z, norm, err)`` of r queries. out : (r, N) float32 scratch.
        """
        Z, _, err = zq
        query = self.metric.prepare_query(Z, self.train)
        sum_of_minima(query.data, self.train.data, out, n_jobs)
        self.metric.finish(out, query, self.train, 0, len(self.train))
        slack = self.metric.error(query.norm, self.train.norm_max) + err + self.err_max
        return out, slack

    def refine(self, level: Level, zq, rows, cols, n_jobs: int) -> np.ndarray:
        """Lower bounds (float64, rigorous) of the pairs (query ``rows``, training ``cols``)
        at ``level`` (queries given by their ``(Z, norm, err)`` at that level)."""
        Zq, nq, eq = zq
        G = Zq.shape[1]
        out = np.empty(len(rows))
        step = max(1, (1 << 18) // G)

        def work(start: int, stop: int) -> None:
            for s in range(start, stop, step):
                e = min(stop, s + step)
                t = level.Z[cols[s:e]]
                t -= Zq[rows[s:e]]
                np.abs(t, out=t)
                out[s:e] = t.sum(axis=1)

        in_threads(work, len(rows), step, len(rows) * G * 4, n_jobs)
        # float32 differences and sums of G terms, then the rounding of both rows' sums.
        out -= 2.0 * gamma(G + 2, _U32) * (nq[rows] + level.norm[cols]) + 4 * G * _TINY32
        out -= eq[rows] + level.err[cols]
        return out

    def search_chunk(self, search, Qo, query: Prepared, k: int, ordered, values, ws):
        """Exact k nearest of the queries Qo (r, D) (prepared for the l1 metric of the
        ``NeighborSearch`` ``search`` as ``query``).

        Returns ``(done (r,) bool, exact (r, k), idx (r, k))``, always ordered by (value,
        index) (``ordered`` and ``values`` cost nothing extra here); rows not done are
        left for brute force."""
        n_train = search.n_train
        r = len(Qo)
        per = max(1, CHUNK_BYTES // (4 * n_train))
        done = np.zeros(r, dtype=bool)
        exact = np.empty((r, k))
        idx = np.empty((r, k), dtype=np.int64)
        buf = np.empty((min(per, r), n_train), dtype=np.float32)
        for s in range(0, r, per):
            e = min(r, s + per)
            d, v, i = self._settle(search, Qo[s:e], query.rows(s, e), k, buf[: e - s], ws)
            done[s:e], exact[s:e], idx[s:e] = d, v, i
        return done, exact, idx

    def _settle(self, search, Qo, query, k, buf, ws):
        """``search_chunk`` for as many queries as ``buf`` (r, N) has rows."""
        r, n_train = buf.shape
        c = candidates_for(k)
        zq = self.reduce(Qo)
        if not all(np.isfinite(z[1]).all() and z[1].max() < _SAFE for z in zq):
            # Sums too large for float32 (float64 queries of huge values): brute force.
            return np.zeros(r, dtype=bool), np.empty((r, k)), np.empty((r, k), np.int64)
        low, slack = self.coarse_bounds(zq[0], buf, ws.n_jobs)
        _, cand = smallest(low, c)
        cand_vals = search.metric.exact(
            Qo, search.X, np.arange(r), cand, search.train, query, ws.n_jobs
        )
        cand_vals_sorted = np.sort(cand_vals, axis=1)
        # U: the k-th smallest measured value, an upper bound of the true k-th (with the
        # relative error of float64 exact values to spare).
        limit = cand_vals_sorted[:, k - 1] * (1.0 + self.rel64)
        np.put_along_axis(low, cand, np.inf, axis=1)  # measured already
        keep = low <= (limit + slack)[:, None]
        counts = keep.sum(axis=1)
        done = counts <= MAX_SURVIVORS * n_train
        keep[~done] = False
        pieces = [(np.repeat(np.arange(r), c), cand.ravel(), cand_vals.ravel())]
        for rows, cols in pair_groups(keep, PAIR_BUDGET):
            pieces.append(self._measure_survivors(search, Qo, query, zq, rows, cols, limit, ws))
        rows, cols, vals = (np.concatenate(p) for p in zip(*pieces, strict=True))
        exact, idx = top_k_of_pairs(rows, cols, vals, r, k)
        return done, exact, idx

    def _measure_survivors(self, search, Qo, query, zq, rows, cols, limit, ws):
        """The pairs (query ``rows``, training ``cols``) that the finer levels cannot
        exclude (bound above ``limit``), measured exactly: ``(rows, cols, values)``."""
        for level, z in zip(self.levels[1:], zq[1:], strict=True):
            ok = self.refine(level, z, rows, cols, ws.n_jobs) <= limit[rows]
            rows, cols = rows[ok], cols[ok]
        vals = search.metric.exact(
            Qo, search.X, rows, cols[:, None], search.train, query, ws.n_jobs
        )[:, 0]
        return rows, cols, vals


def fit_group_sums(X: np.ndarray, center: np.ndarray) -> GroupSumFilter | None:
    """The filter for training rows X (N, D) (``center`` (D,): the l1 metric's training
    mean), or None when, on a sample, its coarse bound would leave more than
    ``PREPARE_MAX_SURVIVORS`` of the rows (features that do not move together, such as
    noise), or when X's values are too large for float32 sums."""
    n, d = X.shape
    if not max(float(X.max()), -float(X.min())) * d * 4.0 < _SAFE:  # too large for float32
        return None
    pick = np.linspace(0, n, min(n, SAMPLE), endpoint=False).astype(np.int64)
    center64 = np.asarray(center, dtype=np.float64)
    sample = X[pick].astype(np.float64) - center64
    coarse_g = max(1, d // COARSE_SHARE)
    n_levels = 1
    while (-(-d // -(-d // MAX_PAIRED))) >> (n_levels - 1) > coarse_g:
        n_levels += 1
    hierarchy = _hierarchy(sample, n_levels)
    perm = np.array(sum(hierarchy[-1], []), dtype=np.int64)
    # The coarse level, then every second finer one with at most D / 4 groups.
    chosen = [len(hierarchy) - 1] + [
        h for h in range(len(hierarchy) - 3, -1, -2)[:FINE_STEPS] if len(hierarchy[h]) * 4 <= d
    ]
    levels = [_layout(hierarchy[h], perm, center64) for h in chosen]
    if not _pays_off(sample, levels[0]):
        return None
    for level in levels:
        level.Z = np.empty((n, level.n_groups), np.float32)
        level.norm, level.err = np.empty(n), np.empty(n)
    for s, e in row_steps(n, d, budget=32 * 2**20):
        for level, (Z, norm, err) in zip(levels, _reduce_rows(X[s:e], levels), strict=True):
            level.Z[s:e], level.norm[s:e], level.err[s:e] = Z, norm, err
    return GroupSumFilter(levels, d)


def _pays_off(sample: np.ndarray, coarse: Level) -> bool:
    """Whether the coarse bound leaves at most ``PREPARE_MAX_SURVIVORS`` of the sample rows for
    the nearest neighbour of 16 sample rows among up to 1,024 others (float32 is close
    enough for this estimate)."""
    m = len(sample)
    if m < 64:
        return False
    queries = np.linspace(0, m, 16, endpoint=False).astype(np.int64)
    rest = np.setdiff1d(np.arange(m), queries)[:1024]
    rows = sample.astype(np.float32)
    Z = coarse.sums(rows, {}).astype(np.float32)
    share = []
    for q in queries:
        dist = np.abs(rows[rest] - rows[q]).sum(axis=1)
        low = np.abs(Z[rest] - Z[q]).sum(axis=1)
        share.append(np.mean(low <= dist.min()))
    return float(np.median(share)) <= PREPARE_MAX_SURVIVORS
