"""k-NN over a training set split across the workers of a Dask cluster.

``KNearestNeighbors.fit(X, y)`` takes, besides one array, training rows that live on the
workers of a `Dask <https://distributed.dask.org>`_ cluster
(``pip install "chainrule[distributed]"``):

- a Dask array of shape (N, D): each block of rows is a shard (columns are joined
  first, so a shard holds whole rows);
- a list of shards: futures of (n_i, D) arrays (``client.scatter``, ``client.submit``)
  or Dask arrays, in the order of the training indices.

The labels ``y`` (N,) come to this process (a NumPy array, a Dask array, or a list of
label futures per shard): they are one integer per row, and the vote is counted here.

How the neighbours are found (:class:`ShardedSearch`):

- ``fit`` builds one :class:`~chainrule.models.knn.NeighborSearch` per shard *on the
  worker that holds the shard* (each shard validated there: finite, two-dimensional,
  the same D), and keeps it there as a future, so that its prepared rows and filter are
  made once and serve every later ``predict``.
- ``kneighbors``/``predict`` send each chunk of queries from here once (to one worker;
  every other worker holding shards fetches it once, for all its shards), run each
  shard's exact top k there, and bring back only ``(n_queries, k)`` float64 values and
  int64 indices per shard, which ``merge_neighbors`` joins here after adding each
  shard's offset. While the workers search one chunk, the next one is on its way.
- A worker that leaves the cluster takes its shards with it: the next ``predict`` (or
  the one running) raises one ``RuntimeError`` saying so, instead of waiting for a
  worker that will not come back; fit again.

Why the result is the one-array result, bit for bit: each shard's search is exact on its
own (whatever filter it prepared from its own rows), giving its top k by (float64 value,
index); the float64 value of a pair is computed from the two original rows alone (one
reduction over the D features, the same operations whichever shard, chunk or batch
holds the pair), so a pair has the same value in every search; offsets keep the order of
indices, so ``merge_neighbors``'s order by (value, global index) settles ties towards the
smallest training index exactly as one search over the whole array does.

Why the rows stay on their workers: every task that reads a shard is restricted to a
worker that holds its search (``workers=``, not loosened), so neither the scheduler's
placement nor work stealing moves a shard; nothing but candidate lists is gathered here.
A model file needs every row in one place: ``save_model`` refuses a sharded model, and
``model.gather()`` gives a one-array copy to save.

Nothing here imports Dask until Dask data is given to ``fit``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from concurrent.futures import CancelledError

import numpy as np

from chainrule.models._base import check_labels, check_X
from chainrule.models.knn._metrics import make_metric
from chainrule.models.knn._parallel import default_jobs
from chainrule.models.knn._search import NeighborSearch
from chainrule.models.knn._select import merge_neighbors

__all__ = ["QUERY_CHUNK_BYTES", "ShardedRows", "ShardedSearch", "fit_shards", "is_dask_input"]

# Queries sent to the workers at a time: enough for full-size blocks in each shard's
# search (2,048 queries or more), little enough that the next chunk's transfer overlaps
# the search of this one and memory stays bounded for any number of queries.
QUERY_CHUNK_BYTES = 64 * 2**20


def is_dask_input(X) -> bool:
    """Whether ``X`` is Dask data (a Dask collection, a future, or a list of them), judged
    by the type's package so that nothing imports Dask for an ordinary array."""
    first = X[0] if isinstance(X, list | tuple) and len(X) else X
    return type(first).__module__.partition(".")[0] in ("dask", "distributed")


# -- on the workers ---------------------------------------------------------------------

_controller = None


def _blas_limit(n: int):
    """threadpoolctl's limit of BLAS to ``n`` threads (the controller found once)."""
    global _controller
    from threadpoolctl import ThreadpoolController

    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=n, user_api="blas")


def _worker_threads(n_jobs) -> int:
    """``n_jobs``, or the threads of the worker running this task: a cluster gives each
    worker its share of the cores, and more threads would compete with the others."""
    if n_jobs is not None:
        return n_jobs
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError):  # not in a worker
        return default_jobs()


def _array_bytes(obj, seen: set, depth: int = 4) -> int:
    """Bytes of the arrays reachable from ``obj`` through attributes, lists and dicts."""
    if id(obj) in seen or depth < 0:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, list | tuple):
        items = obj
    elif isinstance(obj, dict):
        items = obj.values()
    elif hasattr(obj, "__dict__"):
        items = vars(obj).values()
    else:
        return 0
    return sum(_array_bytes(v, seen, depth - 1) for v in items)


class ShardSearch:
    """One shard's ``NeighborSearch``, held by the worker that holds the shard.

    ``sys.getsizeof`` (what Dask reports to its scheduler) counts the arrays inside, so
    the cluster's memory accounting sees the shard's rows, prepared rows and filter.
    """

    def __init__(self, X: np.ndarray, metric: str, filter_k: int):
        self.X = X
        # (A Dask array's blocks may be empty, e.g. after selecting rows by a mask.)
        self.search = NeighborSearch(X, metric, filter_k=filter_k) if len(X) else None

    def __sizeof__(self) -> int:
        return object.__sizeof__(self) + _array_bytes(self, set())


def _build(number: int, shard, metric: str, filter_k: int, n_jobs) -> ShardSearch:
    """Task: the search of shard ``number``, validated where it lives."""
    try:
        X = check_X(shard, name=f"shard {number} of X", allow_empty=True)
    except (TypeError, ValueError) as e:
        raise type(e)(str(e)) from None  # the message alone, not the worker's traceback
    with _blas_limit(_worker_threads(n_jobs)):
        return ShardSearch(X, metric, filter_k)


def _describe(shard: ShardSearch) -> tuple:
    """Task: (rows, features, dtype name, filter name or None) of a shard."""
    s, X = shard.search, shard.X
    name = None if s is None or s.filter is None else type(s.filter).__name__
    return X.shape[0], X.shape[1], X.dtype.name, name


def _search(shard: ShardSearch, Q: np.ndarray, k: int, chunk_size, n_jobs):
    """Task: the shard's exact top ``k`` of each query, ``(values (nq, k) float64, local
    indices (nq, k) int64)`` as a set (the merge orders them)."""
    n = _worker_threads(n_jobs)
    with _blas_limit(n):
        return shard.search.kneighbors(
            Q, k, ordered=False, values=True, chunk_size=chunk_size, n_jobs=n
        )


def _rows(shard: ShardSearch) -> np.ndarray:
    """Task: the shard's rows (for ``gather``)."""
    return shard.X


# -- here, on the client -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShardedRows:
    """Where the training rows of a k-NN fitted on Dask workers are: ``fit_X_`` of such a
    model. shape : (N, D); offsets : (S + 1,) int64, shard ``s`` holds the training rows
    ``offsets[s]:offsets[s + 1]``; dtypes : each shard's dtype name.

    ``np.asarray`` of it refuses (the rows stay on the workers): ``model.gather()``
    brings them to this process.
    """

    shape: tuple[int, int]
    offsets: np.ndarray
    dtypes: tuple[str, ...]

    @property
    def n_shards(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        sizes = np.diff(self.offsets)
        return int(sum(int(n) * self.shape[1] * np.dtype(t).itemsize
                       for n, t in zip(sizes, self.dtypes, strict=True)))  # fmt: skip

    def where(self) -> str:
        """Where the rows are and how to get them, in words."""
        return (
            f"the {self.shape[0]:,} training rows of this k-NN live in {self.n_shards} "
            f"shards on Dask workers; model.gather() brings them here "
            f"({_size(self.nbytes)}) as a model with one array"
        )

    def __array__(self, dtype=None, copy=None):
        raise ValueError(f"{self.where()} (e.g. to save it)")


def _size(nbytes: int) -> str:
    """``nbytes`` for a person: 512 bytes, 3.1 KiB, 117.2 MiB, 11.4 GiB."""
    if nbytes < 1024:
        return f"{nbytes} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        nbytes /= 1024
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:,.1f} {unit}"


class ShardedSearch:
    """``NeighborSearch``'s ``kneighbors`` over shards searched on their workers.

    client : the ``distributed.Client``; shards : futures of each shard's
    ``ShardSearch``; rows : the ``ShardedRows``; metric : the metric's name.
    """

    def __init__(self, client, shards: list, rows: ShardedRows, metric: str):
        self.client = client
        self.shards = shards
        self.rows = rows
        # Only ``to_distance`` is used here (comparison values -> distances).
        self.metric = make_metric(metric, np.dtype(np.float64), rows.shape[1])

    @property
    def n_train(self) -> int:
        return self.rows.shape[0]

    def __getstate__(self):
        # The shards' searches are futures of one client's connection to its cluster: a
        # copy in another process (pickle) or here (deepcopy) could not use them.
        raise TypeError(
            f"cannot pickle or copy a k-NN fitted on Dask shards: {self.rows.where()}, "
            "which pickles"
        )

    def _check_client(self):
        if self.client.status != "running":
            raise RuntimeError(
                f"the Dask client this k-NN was fitted with is {self.client.status}; "
                "its shards are gone with it: fit again on a running client"
            )
        return self.client

    def kneighbors(self, Q, k: int, ordered=True, values=True, chunk_size=None, n_jobs=None):
        """The k nearest training rows of each query, as ``NeighborSearch.kneighbors``:
        ``(vals (nq, k) float64 or None, idx (nq, k) int64)``, ordered by (value, index)
        whatever ``ordered`` says. Q : (nq, D), validated. n_jobs : threads per worker
        (default: the worker's own)."""
        client = self._check_client()
        n = Q.shape[0]
        out_v = np.empty((n, k))
        out_i = np.empty((n, k), dtype=np.int64)
        step = max(1, QUERY_CHUNK_BYTES // max(1, Q.shape[1] * Q.dtype.itemsize))
        holders = _holders(client, self.shards)
        pending = deque()
        try:
            for s in range(0, n, step):
                chunk = Q[s : s + step]
                pending.append((s, self._submit(client, chunk, k, holders, chunk_size, n_jobs)))
                if len(pending) > 1:  # the next chunk travels while this one is searched
                    self._merge_into(client, *pending.popleft(), k, holders, out_v, out_i)
            while pending:
                self._merge_into(client, *pending.popleft(), k, holders, out_v, out_i)
        except BaseException as e:
            client.cancel([f for _, futures in pending for f in futures if f is not None])
            if isinstance(e, CancelledError | OSError):  # a worker left mid-search
                _holders(client, self.shards)  # "fit again" if it took a shard with it
                raise RuntimeError(
                    f"a Dask worker left the cluster during the search ({type(e).__name__}); "
                    "every shard is still on a worker: ask again"
                ) from None
            raise
        return (out_v if values else None), out_i

    def _submit(self, client, chunk, k: int, holders, chunk_size, n_jobs) -> list:
        """One chunk of queries, sent once to the workers holding shards, and each
        shard's search of it on the worker holding that shard (None for an empty shard)."""
        sizes = np.diff(self.rows.offsets)
        # To one worker; each other worker holding a shard fetches it once for all its
        # shards (a broadcast, through Dask's own transfers, which survive a lost worker).
        q = client.scatter(chunk, hash=False)
        token = uuid.uuid4().hex[:8]
        futures = []
        for i, (shard, n, w) in enumerate(zip(self.shards, sizes, holders, strict=True)):
            args = (_search, shard, q, min(k, int(n)), chunk_size, n_jobs)
            futures.append(_on(client, w, f"knn-search-{token}-{i}", *args) if n else None)
        return futures

    def _merge_into(self, client, start: int, futures, k: int, holders, out_v, out_i) -> None:
        """Wait for one chunk's candidate lists and write their merge to ``out_*``."""
        shards = [i for i, f in enumerate(futures) if f is not None]
        done = [futures[i] for i in shards]
        _wait(client, done, [holders[i] for i in shards])
        found = client.gather(done)
        offsets = self.rows.offsets[shards]
        lists = [(v, i + off) for (v, i), off in zip(found, offsets, strict=True)]
        v, i = merge_neighbors(lists, k)
        out_v[start : start + len(v)] = v
        out_i[start : start + len(i)] = i

    def gather_rows(self) -> np.ndarray:
        """The training rows (N, D), gathered from the workers into one array."""
        client = self._check_client()
        parts = _pinned(client, _rows, self.shards, "knn-rows")
        _wait(client, parts, _holders(client, self.shards))
        parts = client.gather(parts)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


# Seconds between checks that the workers a wait depends on are still there.
POLL_SECONDS = 1.0


def _holders(client, shards: list, hint: str = ": fit the model again") -> list[str]:
    """The address of a worker holding each (computed) future of ``shards``."""
    # (A scattered shard lost with its worker is cancelled: it cannot be made again.)
    present = [f for f in shards if f.status not in ("lost", "cancelled")]
    who = client.who_has(present) if present else {}
    for i, f in enumerate(shards):
        if not who.get(f.key):
            raise RuntimeError(
                f"shard {i} of this k-NN is on no Dask worker (it left the cluster){hint}"
            )
    return [sorted(who[f.key])[0] for f in shards]


def _wait(client, futures: list, where: list[str] | None = None) -> None:
    """Wait until ``futures`` are done, raising a task's error here. With ``where`` (the
    worker each task is restricted to), ``RuntimeError`` when one of them leaves the
    cluster first: its task would wait for it for ever."""
    from distributed import TimeoutError, wait

    while True:
        try:
            wait(futures, timeout=None if where is None else POLL_SECONDS)
            break
        except TimeoutError:
            # (Not scheduler_info()["workers"]: the client's periodic refresh can empty it.)
            alive = client.nthreads()
            for f, w in zip(futures, where, strict=True):
                if w not in alive and not f.done():
                    raise RuntimeError(
                        f"the Dask worker {w} holding a shard of this k-NN left the "
                        "cluster: fit the model again"
                    ) from None
    for f in futures:
        if f.status == "error":
            f.result()  # raises the task's error (a bad shard, say)
        if f.status in ("lost", "cancelled"):  # a shard or the queries lost with a worker
            raise RuntimeError(
                "a Dask worker holding a shard of this k-NN left the cluster: fit the model again"
            )


def _on(client, where: str, key: str, fn, *args):
    """The future of ``fn(*args)`` run on the worker ``where`` and on no other (so that
    neither the scheduler's placement nor work stealing moves the shard it reads)."""
    return client.submit(fn, *args, key=key, workers=[where], allow_other_workers=False)


def _pinned(client, fn, shards: list, name: str, *args) -> list:
    """Futures of ``fn(shard, *args)`` for each of ``shards``, each on the worker holding
    it."""
    token = uuid.uuid4().hex[:8]
    where = _holders(client, shards)
    return [
        _on(client, w, f"{name}-{token}-{i}", fn, f, *args)
        for i, (f, w) in enumerate(zip(shards, where, strict=True))
    ]


# -- fitting -------------------------------------------------------------------------------


def fit_shards(
    X, y, metric: str, filter_k: int, n_jobs=None, estimator=None
) -> tuple[ShardedSearch, np.ndarray]:
    """The search of Dask training data ``X`` (see the module docstring) and its labels.

    Builds each shard's search on its worker (prepared for ``filter_k`` neighbours, with
    ``n_jobs`` threads or the worker's own). Returns ``(search, y)``: the
    ``ShardedSearch`` and the labels (N,) here, checked as ``check_labels`` does for
    ``estimator``. Raises ``ImportError`` (one line) without dask.distributed;
    ``TypeError``/``ValueError`` naming the shard for bad rows, and for labels that do
    not match them.
    """
    from chainrule.train.distributed import require_distributed

    distributed = require_distributed()
    client, parts = _shard_futures(distributed, X)
    labels = check_labels(_gathered_labels(distributed, client, y), estimator=estimator)
    _wait(client, parts)  # the blocks of a Dask array are computed first
    where = _holders(client, parts, hint="")
    token = uuid.uuid4().hex[:8]
    shards = [
        _on(client, w, f"knn-shard-{token}-{i}", _build, i, part, metric, filter_k, n_jobs)
        for i, (part, w) in enumerate(zip(parts, where, strict=True))
    ]
    _wait(client, shards, where)
    described = _pinned(client, _describe, shards, "knn-describe")
    _wait(client, described, where)
    info = client.gather(described)
    widths = {d for _, d, _, _ in info}
    if len(widths) > 1:
        first = [i for i, (_, d, _, _) in enumerate(info) if d != info[0][1]][0]
        raise ValueError(
            f"the shards of X have different numbers of features: shard 0 has {info[0][1]}, "
            f"shard {first} has {info[first][1]}"
        )
    offsets = np.concatenate([[0], np.cumsum([n for n, _, _, _ in info])]).astype(np.int64)
    n = int(offsets[-1])
    if n == 0:
        raise ValueError(f"X is empty: its {len(info)} shards have 0 samples")
    if len(labels) != n:
        raise ValueError(
            f"X and y have different numbers of samples: {n} rows in the shards of X, "
            f"{len(labels)} labels in y"
        )
    rows = ShardedRows((n, info[0][1]), offsets, tuple(t for _, _, t, _ in info))
    return ShardedSearch(client, shards, rows, metric), labels


def _default_client(distributed):
    try:
        return distributed.default_client()
    except ValueError:
        raise ValueError(
            "k-NN on a Dask array runs on a Dask cluster, and there is no client: create "
            "one first (distributed.Client(address), or "
            "chainrule.train.distributed.local_cluster(n_workers))"
        ) from None


def _shard_futures(distributed, X) -> tuple:
    """(client, futures of the shards' arrays, in order) for Dask training data."""
    import dask
    import dask.array as da

    if isinstance(X, distributed.Future):
        X = [X]
    if isinstance(X, list | tuple):
        futures = [p for p in X if isinstance(p, distributed.Future)]
        client = futures[0].client if futures else _default_client(distributed)
        parts = []
        for i, part in enumerate(X):
            if isinstance(part, distributed.Future):
                parts.append(part)
            elif dask.is_dask_collection(part):
                parts.append(client.compute(part))
            else:
                raise TypeError(
                    f"shard {i} of X must be a Dask future or a Dask array, "
                    f"got {type(part).__name__}"
                )
        return client, parts
    if not isinstance(X, da.Array):
        raise TypeError(
            "X must be an array, a Dask array or a list of shards (Dask futures or Dask "
            f"arrays), got {type(X).__name__}"
        )
    if X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D array of shape (n_samples, n_features), got shape {X.shape}"
        )
    client = _default_client(distributed)
    # A shard holds whole rows: the blocks of a row are joined on the workers.
    blocks = X.rechunk({1: -1}).to_delayed().ravel()
    return client, client.compute(list(blocks))


def _gathered_labels(distributed, client, y):
    """``y`` here: a Dask array computed, futures (one per shard) gathered and joined."""
    import dask

    if isinstance(y, list | tuple) and is_dask_input(y):
        parts = [client.compute(p) if dask.is_dask_collection(p) else p for p in y]
        return np.concatenate([np.asarray(p) for p in client.gather(parts)])
    if isinstance(y, distributed.Future):
        return y.result()
    if dask.is_dask_collection(y):
        return client.compute(y).result()
    return y
