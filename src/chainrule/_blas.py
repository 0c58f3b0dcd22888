"""How many threads NumPy's BLAS may use for work on a small data set."""

from __future__ import annotations

import contextlib
import threading

__all__ = ["SMALL_DATA", "blas_threads_for", "one_blas_thread"]

# Below this many input values (samples x values per sample) a data set counts as small.
SMALL_DATA = 2_000_000


_controller = None
_controller_lock = threading.Lock()


def _blas_controller():
    """threadpoolctl's view of the loaded thread pools, made once (finding them takes a
    millisecond or more; a prediction of a few hundred digits takes less), or None
    without threadpoolctl."""
    global _controller
    with _controller_lock:
        if _controller is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                _controller = False
            else:
                _controller = ThreadpoolController()
        return _controller or None


def one_blas_thread():
    """A context in which NumPy's BLAS uses one thread (threadpoolctl, installed with
    scikit-learn; without it, a context that changes nothing).

    The matrix products of small data sets (the bundled digits: 1,150 x 64; a minibatch
    of a few hundred rows) are far too small to gain from threads, and on a machine whose
    cores are busy with other work, waking a second BLAS thread for each of them made a
    small network's training ten times slower.
    """
    controller = _blas_controller()
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")


def blas_threads_for(n_values: int):
    """`one_blas_thread` for a data set of at most `SMALL_DATA` values, else nothing."""
    return one_blas_thread() if n_values <= SMALL_DATA else contextlib.nullcontext()
