"""k-nearest neighbours as ONNX nodes: the training rows as an initializer, distances,
TopK and the vote.

The graph follows the estimator's two steps (see ``chainrule.models.knn``):

1. *Candidates*, in float32: the ``m = k + max(16, k // 4)`` training rows with the
   smallest approximate distance (``l2``: ``||x||^2 - 2 q.x``, one matrix product;
   ``cosine``: ``-q.x / ||x||``, one matrix product; ``l1``: ``sum |q - x|`` for one query
   at a time in a ``Loop``, over blocks of training rows, so memory stays bounded).
2. *Exact values*, in float64 from the rows themselves, for the candidates only
   (``sum (q - x)**2``, ``sum |q - x|``, ``1 - q.x / (||q|| ||x||)`` with a zero vector at
   distance 1 from everything), ordered by (value, training index): candidates are
   sorted by index before TopK, whose ties go to the lower position.

The k nearest then vote: each neighbour's label one-hot, summed per class; the first
maximum (the smallest label) wins, and the probabilities are the vote shares.

So the graph's neighbours are the estimator's (a float64 brute-force order, equal
distances to the smaller training index) whenever the true k nearest are among the m
float32 candidates; the estimator proves that for each query and falls back to a wider
search, the graph cannot, so a query with more than ``m - k`` training rows within
float32 rounding of its k-th distance could differ.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from chainrule.models.export.graph import Graph, onnx_type

__all__ = ["knn_votes"]

# Bytes of one block of training rows in the l1 loop (the |q - x| temporary).
_L1_BLOCK_BYTES = 16 * 2**20


def training_data(model) -> tuple[np.ndarray, np.ndarray]:
    """(X (M, D) float32 or float64, y_index (M,) int64 into ``classes_``) of a fitted model."""
    X = getattr(model, "_fit_X", None)
    y_index = getattr(model, "_y_index", None)
    if X is None or y_index is None:
        raise ValueError("the k-NN model is not fitted (no training data)")
    X = np.asarray(X)
    dtype = np.float32 if np.can_cast(X.dtype, np.float32, "safe") else np.float64
    return X.astype(dtype, copy=False), np.asarray(y_index, dtype=np.int64)


def pool_size(k: int, n_train: int) -> int:
    """Candidates re-measured exactly per query (all training rows when there are few)."""
    return min(n_train, k + max(16, k // 4))


# -- candidates (float32 or the training rows' dtype) ----------------------------------


def _l2_candidates(g: Graph, q: str, X: np.ndarray, Xc: str) -> str:
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64).astype(X.dtype)
    # -2 q.x + ||x||^2 ranks like ||q - x||^2 (||q||^2 is the same along a row).
    return g.op("Gemm", [q, Xc, g.const(sq, "knn.sq_norms")], "knn.approx", alpha=-2.0, transB=1)


def _cosine_candidates(g: Graph, q: str, X: np.ndarray, Xc: str) -> str:
    norm = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    inv = np.divide(-1.0, norm, out=np.zeros_like(norm), where=norm > 0).astype(X.dtype)
    # -q.x / ||x|| ranks like 1 - cos (||q|| is the same along a row); a zero training
    # row gets 0, which is cos = 0.
    dots = g.op("Gemm", [q, Xc], "knn.dots", transB=1)
    return g.op("Mul", [dots, g.const(inv, "knn.neg_inv_norms")], "knn.approx")


def _l1_candidates(g: Graph, q: str, X: np.ndarray, Xc: str) -> str:
    n, d = X.shape
    block = max(1, _L1_BLOCK_BYTES // (X.dtype.itemsize * d))
    body = g.subgraph("knn_l1_row")
    i, cond = body.fresh("i"), body.fresh("cond")
    row = body.op("Gather", [q, i], "knn.query_row", axis=0)
    parts = []
    for s in range(0, n, block):
        e = min(n, s + block)
        rows = body.op("Slice", [Xc, body.ints([s]), body.ints([e]), body.ints([0])], "knn.block")
        diff = body.op("Abs", [body.op("Sub", [rows, row], "knn.diff")], "knn.absdiff")
        parts.append(body.op("ReduceSum", [diff, body.ints([1])], "knn.l1", keepdims=0))
    dist = parts[0] if len(parts) == 1 else body.op("Concat", parts, "knn.l1_row", axis=0)
    cond_out = body.op("Identity", [cond], "cond_out")
    graph = body.to_graph(
        [
            helper.make_tensor_value_info(i, TensorProto.INT64, []),
            helper.make_tensor_value_info(cond, TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info(cond_out, TensorProto.BOOL, []),
            helper.make_tensor_value_info(dist, onnx_type(X.dtype), [n]),
        ],
    )
    n_query = g.op("Shape", [q], "knn.n_query", start=0, end=1)
    trips = g.op("Squeeze", [n_query, g.ints([0])], "knn.trips")
    return g.op("Loop", [trips, ""], "knn.approx", body=graph)


_CANDIDATES = {"l2": _l2_candidates, "l1": _l1_candidates, "cosine": _cosine_candidates}


# -- exact values (float64) ------------------------------------------------------------


def _exact(g: Graph, metric: str, q64: str, cand: str, X: np.ndarray, Xc: str) -> str:
    """Float64 comparison values (N, m) between each query and its candidate rows."""
    xs = g.op("Cast", [g.op("Gather", [Xc, cand], "knn.cand_rows", axis=0)], "knn.x64", to=11)
    qs = g.op("Unsqueeze", [q64, g.ints([1])], "knn.q64_3d")
    last = g.ints([2])
    if metric == "l2":
        diff = g.op("Sub", [xs, qs], "knn.diff64")
        return g.op("ReduceSum", [g.op("Mul", [diff, diff], "knn.sq64"), last], keepdims=0)
    if metric == "l1":
        diff = g.op("Abs", [g.op("Sub", [xs, qs], "knn.diff64")], "knn.abs64")
        return g.op("ReduceSum", [diff, last], "knn.l1_64", keepdims=0)
    # cosine: 1 - q.x / (||q|| ||x||), 0 <= value <= 2; cos = 0 when a norm is zero.
    dots = g.op("ReduceSum", [g.op("Mul", [xs, qs], "knn.prod64"), last], keepdims=0)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    nx = g.op("Gather", [g.const(norms, "knn.norms64"), cand], "knn.cand_norms", axis=0)
    q_sq = g.op("ReduceSum", [g.op("Mul", [q64, q64], "knn.q_sq"), g.ints([1])], keepdims=1)
    denom = g.op("Mul", [nx, g.op("Sqrt", [q_sq], "knn.q_norm")], "knn.denom")
    zero = g.scalar(0.0, np.float64, "knn.zero")
    cos = g.op(
        "Where",
        [g.op("Greater", [denom, zero]), g.op("Div", [dots, denom], "knn.cos_raw"), zero],
        "knn.cos",
    )
    one = g.scalar(1.0, np.float64, "knn.one")
    dist = g.op("Sub", [one, cos], "knn.one_minus_cos")
    return g.op("Clip", [dist, zero, g.scalar(2.0, np.float64, "knn.two")], "knn.cosine64")


# -- the search and the vote -----------------------------------------------------------


def _candidates_by_index(g: Graph, metric: str, q: str, X: np.ndarray, Xc: str, m: int) -> str:
    """(N, m) int64 candidate training indices, ascending along each row."""
    n = X.shape[0]
    if m >= n:
        # Every training row is a candidate: their indices, one row per query.
        n_query = g.op("Shape", [q], "knn.n_query", start=0, end=1)
        shape = g.op("Concat", [n_query, g.ints([n])], "knn.all_shape", axis=0)
        return g.op("Expand", [g.ints(np.arange(n), "knn.all"), shape], "knn.cand")
    if X.dtype != np.float32:
        q = g.op("Cast", [q], "knn.q_train_dtype", to=onnx_type(X.dtype))
    approx = _CANDIDATES[metric](g, q, X, Xc)
    _, cand = g.op("TopK", [approx, g.ints([m])], "knn.pool", n_out=2, largest=0, sorted=1)
    ordered, _ = g.op("TopK", [cand, g.ints([m])], "knn.by_index", n_out=2, largest=0, sorted=1)
    return ordered


def knn_votes(g: Graph, model, rows: str) -> tuple[str, str]:
    """(vote counts (N, C) float32, vote shares (N, C) float32) of float32 rows (N, D)."""
    X, y_index = training_data(model)
    k, metric = int(model.k), str(model.metric)
    if k > X.shape[0]:
        raise ValueError(f"k={k} is larger than the number of training samples ({X.shape[0]})")
    n_classes = len(np.asarray(model.classes_))
    Xc = g.const(X, "knn.train")
    cand = _candidates_by_index(g, metric, rows, X, Xc, pool_size(k, X.shape[0]))
    q64 = g.op("Cast", [rows], "knn.q64", to=11)  # 11: DOUBLE
    exact = _exact(g, metric, q64, cand, X, Xc)
    # Ties in value go to the lower position, which is the lower training index.
    _, pos = g.op("TopK", [exact, g.ints([k])], "knn.nearest", n_out=2, largest=0, sorted=1)
    nearest = g.op("GatherElements", [cand, pos], "knn.neighbours", axis=1)
    labels = g.op("Gather", [g.const(y_index, "knn.y_index"), nearest], "knn.labels", axis=0)
    one_hot = g.op(
        "OneHot",
        [labels, g.ints([n_classes], "knn.depth"), g.const(np.array([0, 1], np.float32), "knn.01")],
        "knn.one_hot",
        axis=-1,
    )
    counts = g.op("ReduceSum", [one_hot, g.ints([1])], "knn.votes", keepdims=0)
    shares = g.op("Div", [counts, g.scalar(float(k), np.float32, "knn.k")], "knn.shares")
    return counts, shares
