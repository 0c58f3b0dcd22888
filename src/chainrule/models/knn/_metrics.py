"""The three distances, each in a fast form with a proven error bound and an exact form.

A metric works on a *comparison value* ``v`` that orders neighbours like the distance:
``d**2`` for l2, ``d`` for l1, ``1 - cos`` for cosine.

- ``approx`` then ``finish``: a block of fast values ``a`` in the compute dtype with
  ``a + base[q]`` approximating ``v`` (``base`` is the part that is the same along a
  query's row, so ranking a row does not need it);
- ``error``: a rigorous bound ``e`` of ``|a + base - v|`` from the sizes of the operands
  (standard floating-point error analysis, with a factor 2 to spare);
- ``exact``: ``v`` in float64 from the original data.

The approximations:

- ``l2``: one matrix product per block on mean-centred data, ``||x||^2 - 2 q.x``.
  Centring on the training mean removes any common offset (raw 0..255 pixels, or data
  shifted by 1e4), which is what keeps float32 cancellation small.
- ``l1``: ``sum|q - x| = sum q + sum x - 2 sum min(q, x)``, the minimum taken over small
  cache-sized tiles of (queries x training rows x features) and summed right away (two
  passes over each tile instead of subtract/abs/sum).
- ``cosine``: one matrix product of unit-normalised rows. Rows are scaled by a power of
  two before anything is squared (``scaled``), so that rows of 1e160 or 1e-160 have the
  neighbours their directions give them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from chainrule.models.knn._parallel import in_threads

__all__ = [
    "METRICS",
    "Prepared",
    "compute_dtype",
    "gamma",
    "make_metric",
    "row_steps",
    "scaled",
]

METRICS = ("l2", "l1", "cosine")

# Budget of the gathered rows of one step of the exact float64 pass: small enough that the
# gathered rows stay in cache through conversion, subtraction and summation.
GATHER_BYTES = 4 * 2**20
# Elements of one L1 tile (min(q, x) for a few queries x a few training rows x features):
# about 4 MB in float32, so that the tile is still in cache when it is summed.
L1_TILE_ELEMENTS = 1 << 20


@dataclass
class Prepared:
    """Rows (training rows or a chunk of queries) in the form a metric computes with.

    data : (n, D) compute dtype. The rows the block products read: centred rows
        (l2 training, l1), ``-2 x`` centred queries (l2), unit rows (cosine training),
        negated unit rows (cosine queries).
    norm : (n,) float64, each row's size in the error bound (l2: Euclidean norm, l1: sum
        of absolute values, cosine: 1).
    base : (n,) float64 or None. For queries: the part of the comparison value shared by
        a whole row (l2: ``||q||^2``, l1: 0, cosine: 1).
    extra : (n,) compute dtype or None. The per-row term that ``finish`` adds (l2
        training: ``||x||^2``; l1: the row sums).
    raw_norm : (n,) float64 or None. Cosine: Euclidean norms of the original rows, each
        scaled by the power of two of ``scaled`` (0 for a zero row).
    center : (D,) compute dtype or None. Training rows: the mean that was subtracted.
    """

    data: np.ndarray
    norm: np.ndarray
    base: np.ndarray | None = None
    extra: np.ndarray | None = None
    raw_norm: np.ndarray | None = None
    center: np.ndarray | None = None

    _ROW_FIELDS = ("data", "norm", "base", "extra", "raw_norm")

    def __len__(self) -> int:
        return len(self.norm)

    @property
    def norm_max(self) -> float:
        """The largest row size (0 without rows)."""
        if "_norm_max" not in self.__dict__:
            self.__dict__["_norm_max"] = float(self.norm.max()) if len(self.norm) else 0.0
        return self.__dict__["_norm_max"]

    def rows(self, s, e=None) -> Prepared:
        """The same rows restricted to ``s:e`` (or to the index array ``s``)."""
        key = s if e is None else slice(s, e)
        return dataclasses.replace(
            self,
            **{f: getattr(self, f)[key] for f in self._ROW_FIELDS if getattr(self, f) is not None},
        )


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32 unless float32 would round the input (float64, 32/64-bit integers)."""
    if dtype.kind == "f" and dtype.itemsize >= 8:
        return np.dtype(np.float64)
    if dtype.kind in "iu" and dtype.itemsize >= 4:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def gamma(n: int, u: float) -> float:
    """Higham's gamma_n = n u / (1 - n u): relative error bound of a sum of n terms."""
    nu = n * u
    return nu / (1.0 - nu) if nu < 0.5 else np.inf


def row_steps(n: int, d: int, budget: int = 8 * 2**20) -> list[tuple[int, int]]:
    """Ranges of rows of an (n, d) array whose float64 copy fits ``budget`` bytes, so that
    preparing rows needs little memory beyond its result."""
    step = max(1, budget // (8 * d))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


class Metric:
    """One distance: ``prepare_train``/``prepare_query`` -> ``approx`` + ``finish`` ->
    ``error``; ``exact`` from the original rows. See the module docstring."""

    name = ""

    def __init__(self, dtype: np.dtype, n_features: int):
        self.dtype = np.dtype(dtype)
        self.u = float(np.finfo(self.dtype).eps) / 2
        self.tiny = float(np.finfo(self.dtype).tiny)
        self.gamma = gamma(n_features + 2, self.u)
        self.n_features = n_features

    def _center(self, X):
        """The centre: the training mean, rounded to the compute dtype (float64 copy too)."""
        center = X.mean(axis=0, dtype=np.float64).astype(self.dtype)
        return center, center.astype(np.float64)

    def _centered(self, A, center):
        """``fl(A - center)`` in the compute dtype with a single rounding per value.

        ``center`` is representable in the compute dtype, so when ``A`` converts exactly
        (float32 or narrower into float32) the subtraction can run in the compute dtype.
        """
        if np.can_cast(A.dtype, self.dtype, "safe"):
            out = A.astype(self.dtype)
            out -= center
            return out
        return (A.astype(np.float64) - center.astype(np.float64)).astype(self.dtype)

    def safe(self, size: float) -> bool:
        """Whether operands of this size (``error``'s ``q_size + x_size``) cannot overflow."""
        return True

    def finish(self, out, query: Prepared, train: Prepared, j0: int, j1: int) -> None:
        """Complete ``approx``'s block in place (elementwise; may run on a part of the rows,
        with ``query`` restricted to the same rows)."""

    def exact(self, Q, X, qrow, cols, train: Prepared, query: Prepared, n_jobs: int = 1):
        """Float64 comparison values between ``Q[qrow[i]]`` and ``X[cols[i, j]]``.

        Q (nq, D), X (n, D) in their original dtypes; qrow (p,), cols (p, c) -> (p, c).
        Rows are shared among up to ``n_jobs`` threads when there are many.
        """
        p, c = cols.shape
        out = np.empty((p, c), dtype=np.float64)
        step = max(1, GATHER_BYTES // (8 * max(1, c) * X.shape[1]))

        def work(start: int, stop: int) -> None:
            for s in range(start, stop, step):
                e = min(stop, s + step)
                q = Q[qrow[s:e]].astype(np.float64)
                x = X[cols[s:e]].astype(np.float64)
                out[s:e] = self._exact_rows(q, x, qrow[s:e], cols[s:e], train, query)

        in_threads(work, p, step, p * c * X.shape[1], n_jobs)
        return out

    def _exact_rows(self, q, x, qrow, cols, train, query):
        raise NotImplementedError

    @staticmethod
    def to_distance(v):
        """Comparison values -> distances."""
        return v


class L2(Metric):
    name = "l2"

    def prepare_train(self, X) -> Prepared:
        n, d = X.shape
        center, _ = self._center(X)
        Xc = np.empty((n, d), dtype=self.dtype)
        sq = np.empty(n, dtype=np.float64)
        for s, e in row_steps(n, d):
            Xc[s:e] = self._centered(X[s:e], center)
            # Norms of the rounded rows actually used by the matrix product (float64
            # products of float32 values are exact; einsum casts in small buffers).
            sq[s:e] = np.einsum("ij,ij->i", Xc[s:e], Xc[s:e], dtype=np.float64)
        return Prepared(data=Xc, norm=np.sqrt(sq), extra=sq.astype(self.dtype), center=center)

    def prepare_query(self, Q, train: Prepared) -> Prepared:
        qc = self._centered(Q, train.center)
        sq = np.einsum("ij,ij->i", qc, qc, dtype=np.float64)
        qc *= self.dtype.type(-2)  # exact
        return Prepared(data=qc, norm=np.sqrt(sq), base=sq)

    def approx(self, query, train, j0, j1, out, n_jobs):
        return np.matmul(query.data, train.data[j0:j1].T, out=out)

    def finish(self, out, query, train, j0, j1):
        out += train.extra[j0:j1]

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

    # -- the projection filter's view (see _projection): rows already in l2 form ------

    def as_l2_rows(self, train: Prepared) -> Prepared:
        return train

    def as_l2_query(self, query: Prepared) -> Prepared:
        return query

    @staticmethod
    def from_squared_l2(v):
        return v

    @staticmethod
    def to_squared_l2(v):
        return v

    def candidate_values(self, train: Prepared, query: Prepared, cand, n_jobs: int):
        """Approximate values (compute dtype), as the block pass would give them, of the
        training rows ``cand`` (r, c) for each query of a chunk."""
        return gathered_products(train.data, query.data, cand, train.extra, n_jobs)


class L1(Metric):
    name = "l1"

    def prepare_train(self, X) -> Prepared:
        n, d = X.shape
        center, _ = self._center(X)
        Xc = np.empty((n, d), dtype=self.dtype)
        s1 = np.empty(n, dtype=np.float64)
        a1 = np.empty(n, dtype=np.float64)
        for s, e in row_steps(n, d):
            Xc[s:e] = self._centered(X[s:e], center)
            xr = Xc[s:e].astype(np.float64)
            s1[s:e] = xr.sum(axis=1)
            a1[s:e] = np.abs(xr).sum(axis=1)
        return Prepared(data=Xc, norm=a1, extra=s1.astype(self.dtype), center=center)

    def prepare_query(self, Q, train: Prepared) -> Prepared:
        qc = self._centered(Q, train.center)
        return Prepared(
            data=qc,
            norm=np.sum(np.abs(qc), axis=1, dtype=np.float64),
            base=np.zeros(len(qc)),
            extra=np.sum(qc, axis=1, dtype=np.float64).astype(self.dtype),
        )

    def approx(self, query, train, j0, j1, out, n_jobs):
        sum_of_minima(query.data, train.data[j0:j1], out, n_jobs)
        return out

    def finish(self, out, query, train, j0, j1):
        out *= self.dtype.type(-2)
        out += train.extra[j0:j1]
        out += query.extra[:, None]

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


class Cosine(Metric):
    name = "cosine"

    @staticmethod
    def unit(X64):
        """Rows of X64 (n, D) float64 scaled to unit length, and their norms after
        ``scaled`` (n,); zero rows stay zero (norm 0)."""
        Xs = scaled(X64)
        norm = np.sqrt(np.einsum("ij,ij->i", Xs, Xs))
        safe = np.where(norm > 0, norm, 1.0)
        return Xs / safe[:, None], norm

    def prepare_train(self, X) -> Prepared:
        n, d = X.shape
        Xu = np.empty((n, d), dtype=self.dtype)
        norm = np.empty(n, dtype=np.float64)
        for s, e in row_steps(n, d):
            Xu[s:e], norm[s:e] = self.unit(X[s:e].astype(np.float64))
        return Prepared(data=Xu, norm=np.ones(n), raw_norm=norm)

    def prepare_query(self, Q, train: Prepared) -> Prepared:
        r, d = Q.shape
        mq = np.empty((r, d), dtype=self.dtype)
        norm = np.empty(r, dtype=np.float64)
        for s, e in row_steps(r, d):
            qu, norm[s:e] = self.unit(Q[s:e].astype(np.float64))
            mq[s:e] = -qu
        return Prepared(data=mq, norm=np.ones(r), base=np.ones(r), raw_norm=norm)

    def approx(self, query, train, j0, j1, out, n_jobs):
        return np.matmul(query.data, train.data[j0:j1].T, out=out)

    def error(self, q_size, x_size):
        return 2 * (self.gamma + 4 * self.u) + 4 * (self.n_features + 2) * self.tiny

    # -- the projection filter's view (see _projection) -------------------------------
    # Unit rows u, v: ||u - v||^2 = 2 (1 - cos), so the l2 projection filter of the unit
    # rows bounds cosine distances (half its squared bound). A zero row is at cosine
    # distance 1 and at half squared distance 1/2 or 0: still a lower bound.

    def as_l2_rows(self, train: Prepared) -> Prepared:
        """The unit rows (not centred) as l2 rows, with their norms as rounded."""
        norm = np.empty(len(train))
        for s, e in row_steps(*train.data.shape):
            norm[s:e] = np.sqrt(
                np.einsum("ij,ij->i", train.data[s:e], train.data[s:e], dtype=np.float64)
            )
        return Prepared(data=train.data, norm=norm)

    def as_l2_query(self, query: Prepared) -> Prepared:
        """Queries in the l2 form ``-2 u`` (exact: data is ``-u``)."""
        sq = np.einsum("ij,ij->i", query.data, query.data, dtype=np.float64)
        return Prepared(data=query.data * self.dtype.type(2), norm=np.sqrt(sq), base=sq)

    @staticmethod
    def from_squared_l2(v):
        return v / 2

    @staticmethod
    def to_squared_l2(v):
        return v * 2

    def candidate_values(self, train: Prepared, query: Prepared, cand, n_jobs: int):
        """Approximate values (``-cos``, compute dtype), as the block pass gives them, of
        the training rows ``cand`` (r, c) for each query of a chunk."""
        return gathered_products(train.data, query.data, cand, None, n_jobs)

    def _exact_rows(self, q, x, qrow, cols, train, query):
        # The raw products could overflow (1e160 * 1e160); raw_norm are norms of the
        # scaled rows.
        dots = np.einsum("ijk,ik->ij", scaled(x), scaled(q))
        denom = train.raw_norm[cols] * query.raw_norm[qrow][:, None]
        cos = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        return np.clip(1.0 - cos, 0.0, 2.0)


def scaled(A: np.ndarray) -> np.ndarray:
    """``A`` (..., D) float64 with each row multiplied by the power of two that brings its
    largest absolute entry into [0.5, 1).

    Normalising before squaring: sums of squares of the scaled rows neither overflow
    (rows of 1e160) nor lose digits to underflow (rows of 1e-160). Scaling by a power of
    two is exact, so ratios such as ``q.x / (|q| |x|)`` come out bit for bit as they would
    from the raw rows whenever those do not overflow or underflow.
    """
    if A.shape[-1] == 0:
        return A
    _, exponent = np.frexp(np.max(np.abs(A), axis=-1, keepdims=True))  # 0 -> exponent 0
    return np.ldexp(A, -exponent)


_METRIC_CLASSES = {"l2": L2, "l1": L1, "cosine": Cosine}


def gathered_products(data, qdata, cand, extra, n_jobs: int) -> np.ndarray:
    """``out[i, j] = data[cand[i, j]] . qdata[i] (+ extra[cand[i, j]])`` in data's dtype.

    data (n, D), qdata (r, D), cand (r, c) int, extra (n,) or None -> (r, c). Rows are
    gathered a few at a time (they stay in cache) and shared among ``n_jobs`` threads.
    """
    r, c = cand.shape
    out = np.empty((r, c), dtype=data.dtype)
    step = max(1, GATHER_BYTES // (data.itemsize * c * data.shape[1]))

    def work(start: int, stop: int) -> None:
        for a in range(start, stop, step):
            b = min(stop, a + step)
            # (einsum: NumPy's stacked matmul can miss BLAS for these shapes.)
            out[a:b] = np.einsum("rcd,rd->rc", data[cand[a:b]], qdata[a:b])
            if extra is not None:
                out[a:b] += extra[cand[a:b]]

    in_threads(work, r, step, r * c * data.shape[1], n_jobs)
    return out


def make_metric(name: str, dtype: np.dtype, n_features: int) -> Metric:
    """The metric ``name`` ("l2", "l1" or "cosine") computing in ``dtype``."""
    return _METRIC_CLASSES[name](dtype, n_features)


def sum_of_minima(Qc: np.ndarray, Xc: np.ndarray, out: np.ndarray, n_jobs: int) -> None:
    """``out[i, j] = sum_d min(Qc[i, d], Xc[j, d])`` for Qc (r, D), Xc (n, D), out (r, n).

    Tiles of a few queries x a few training rows keep the ``(tq, tx, D)`` temporary in
    cache between the minimum and the sum over features. Query rows are shared among up to
    ``n_jobs`` threads (NumPy releases the GIL in these loops); small blocks stay on one
    thread, where handing work over would cost more than it saves.
    """
    r, d = Qc.shape
    n = Xc.shape[0]
    tq = max(1, min(r, 8, L1_TILE_ELEMENTS // d))
    tx = max(1, min(n, L1_TILE_ELEMENTS // (tq * d)))

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

    in_threads(work, r, tq, r * n * d, n_jobs)
