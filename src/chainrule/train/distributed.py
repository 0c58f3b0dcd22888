"""Hyperparameter search on a Dask cluster (``pip install "chainrule[distributed]"``).

A search's trials are independent trainings, so they spread over the worker processes of
a `Dask <https://distributed.dask.org>`_ cluster: a local one (one process per core of
this machine), a lab's machines running ``dask scheduler`` and ``dask worker``, or a
SLURM/PBS/Kubernetes allocation through dask-jobqueue or dask-kubernetes::

    from chainrule.train import grid_search
    from chainrule.train.distributed import local_cluster

    with local_cluster(4) as client:                  # 4 worker processes here
        result = grid_search(model, X, y, X_val, y_val, grid, client=client)

    # or an existing cluster: distributed.Client("tcp://host:8786"), or connect(address)

How a search runs there (:func:`run_trials`):

- The four arrays travel once: they are scattered to every worker before the first
  trial (a broadcast), and a trial is a small task: the unfitted estimator and one
  candidate's parameters.
- A trial runs the same function as in one process (``search.fit_candidate``) on one
  BLAS thread (threadpoolctl): a worker is one process per core, and a second BLAS thread
  per worker would only compete with the other workers.
- Rows come back as trials finish (``as_completed``), and the search puts each in its
  candidate's place, so the result is the one a search in this process gives with the
  same seed, row for row (times are measured where each trial ran).
- A worker lost during a trial (its process killed, its machine gone) does not lose
  the trial: the scheduler runs it again on another worker (Dask gives up on a trial
  that has taken ``distributed.scheduler.allowed-failures`` workers down with it, 3 by
  default). The data is on every worker, so nothing else needs to be sent again.
- Only the best candidate's fitted model comes back to the caller; the others are
  released on the workers as soon as a better one is known.
- Trials print no progress of their own (``verbose=False`` where the estimator has it;
  the model that comes back has the caller's ``verbose``): the search's progress bar
  counts the trials instead.

Nothing here imports Dask until a cluster is used, so ``import chainrule`` and a search
in one process work without it.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import os
import uuid

__all__ = [
    "CONNECT_TIMEOUT",
    "INSTALL_HINT",
    "connect",
    "local_cluster",
    "require_distributed",
    "run_trials",
]

INSTALL_HINT = 'pip install "chainrule[distributed]"'
# Seconds to wait for a scheduler: Dask keeps retrying a refused connection until then.
CONNECT_TIMEOUT = 10.0
# glibc malloc settings for local workers: large temporaries are reused, not unmapped.
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": 1 << 30, "MALLOC_MMAP_THRESHOLD_": 1 << 25}


def require_distributed():
    """The ``distributed`` module; ``ImportError`` in one line naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise ImportError(
            f"running on a Dask cluster needs dask.distributed, which is not installed: "
            f"{INSTALL_HINT}"
        ) from None
    return distributed


@contextlib.contextmanager
def local_cluster(n_workers: int, **cluster_options):
    """A Dask cluster of ``n_workers`` processes on this machine, one thread each; yields
    its ``Client`` and shuts the cluster down on leaving.

    ``cluster_options`` go to ``distributed.LocalCluster`` (the dashboard is off unless
    given, e.g. ``dashboard_address=":8787"``). The workers start with glibc's malloc
    thresholds of `WORKER_MALLOC` instead of Dask's low trim threshold, under which every
    large temporary array is mapped and page-faulted afresh (k-NN searches took 2.4x the
    time). The caller's environment is left as it was: Dask's nanny writes the workers'
    variables (one BLAS thread among them) into its parent process, where later
    subprocesses would inherit them.
    """
    distributed = require_distributed()
    import dask

    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
    options = {"threads_per_worker": 1, "processes": True, "dashboard_address": None}
    options.update(cluster_options)
    environ = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC.items()}
    saved = dict(os.environ)
    try:
        with dask.config.set(environ):
            cluster = distributed.LocalCluster(n_workers=n_workers, **options)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with cluster, distributed.Client(cluster) as client:
        yield client


@contextlib.contextmanager
def connect(address: str, timeout: float | None = None):
    """The ``Client`` of the Dask scheduler at ``address`` (``tcp://host:8786``), closed
    on leaving; ``OSError`` in one line when it cannot be reached within ``timeout``
    seconds (default ``CONNECT_TIMEOUT``)."""
    distributed = require_distributed()
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        client = distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise OSError(f"cannot reach the Dask scheduler at {address}: {reason}") from None
    with client:
        yield client


# -- the trials -----------------------------------------------------------------------------

_controller = None


def _one_blas_thread():
    """threadpoolctl's limit of BLAS to one thread (the controller found once per worker)."""
    global _controller
    from threadpoolctl import ThreadpoolController

    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def _trial(fn, template, params, X, y, X_val, y_val, train_score, keep):
    """The task of one trial, on a worker: ``fn`` on one BLAS thread -> ``(row, model)``."""
    with _one_blas_thread():
        row, model = fn(template, params, X, y, X_val, y_val, train_score)
    return row, model if keep else None


def _model_of(fit, shared, verbose):
    # ``shared`` (the scattered data) is held here so that a model lost with its worker
    # before it was fetched can still be fitted again.
    model = fit.result()[1]
    if verbose is not None:
        model.set_params(verbose=verbose)
    return model


def _quiet(template):
    """A copy of ``template`` that prints no progress, and its own ``verbose`` (or None):
    the progress of trials running at once in other processes is noise, not progress."""
    params = template.get_params(deep=False)
    if "verbose" not in params:
        return template, None
    return type(template)(**{**params, "verbose": False}), params["verbose"]


def run_trials(client, fn, template, candidates, todo, data, *, train_score=True, keep=True):
    """Run trials ``todo`` (indices into ``candidates``) on ``client``'s cluster.

    fn : ``fn(template, params, X, y, X_val, y_val, train_score) -> (row, model)``, a
        module-level function (workers import it by name)
    template : the unfitted estimator; candidates : list of parameter dicts
    data : ``(X, y, X_val, y_val)``, scattered to every worker once
    keep : keep each fitted model on its worker until the caller drops ``get_model``

    Yields ``(index, row, get_model)`` as trials finish; ``get_model()`` fetches the
    fitted model (None without ``keep``). Leaving early (an error, Ctrl-C) cancels the
    trials not yet done.
    """
    distributed = require_distributed()
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    template, verbose = _quiet(template)
    shared = client.scatter(list(data), broadcast=True, hash=False)
    token = uuid.uuid4().hex[:8]
    index, fits = {}, {}
    for i in todo:
        fit = client.submit(_trial, fn, template, candidates[i], *shared, train_score, keep,
                            key=f"trial-{token}-{i}")  # fmt: skip
        # With the model kept on the worker, only the row (a small dict) comes back.
        row = client.submit(operator.itemgetter(0), fit, key=f"row-{token}-{i}") if keep else fit
        index[row], fits[i] = i, fit
    try:
        for future in distributed.as_completed(list(index)):
            i = index.pop(future)
            out = future.result()  # a trial's error is raised here, as in one process
            fit = fits.pop(i)
            if keep:
                yield i, out, functools.partial(_model_of, fit, shared, verbose)
            else:
                yield i, out[0], None
    except BaseException:
        client.cancel([*index, *fits.values()])
        raise
