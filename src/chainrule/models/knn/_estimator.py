"""``KNearestNeighbors``: the estimator, a thin layer over ``NeighborSearch``."""

from __future__ import annotations

import numbers

import numpy as np

from chainrule.models._base import (
    BaseEstimator,
    ClassifierMixin,
    check_is_fitted,
    check_labels,
    check_X,
    check_X_y,
    unique_labels,
)
from chainrule.models.knn import _distributed
from chainrule.models.knn._metrics import METRICS
from chainrule.models.knn._modelfile import images_of_rows, rows_of_images
from chainrule.models.knn._search import NeighborSearch, check_chunk_size

__all__ = ["KNearestNeighbors", "check_k", "count_votes"]


def check_k(k, name: str = "k") -> int:
    """``k`` as an int >= 1; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {k!r}")
    if k < 1:
        raise ValueError(f"{name} must be at least 1, got {k}")
    return int(k)


def count_votes(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """labels (N, k) class indices -> counts (N, n_classes) int64."""
    n = labels.shape[0]
    flat = (np.arange(n)[:, None] * n_classes + labels).ravel()
    return np.bincount(flat, minlength=n * n_classes).reshape(n, n_classes)


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
        ``OPENBLAS_NUM_THREADS``). For training rows on Dask workers: threads per worker,
        for both (``None``: the worker's own thread count).

    Attributes (after ``fit``)
    --------------------------
    classes_ : (C,) the sorted distinct training labels (int64 or strings).
    n_features_in_ : int, number of features D.
    fit_X_ : (N, D) the training rows, as given to ``fit`` (not copied); for Dask data a
        ``ShardedRows`` (their shape and shards; the rows stay on the workers).
    fit_y_ : (N,) int64, the training labels as indices into ``classes_``.

    With ``k`` and ``metric`` these are the whole model: the neighbours of a query are the
    ``k`` rows of ``fit_X_`` nearest to it by ``metric``.

    The vote: each of the k nearest training points (ties in distance resolved towards
    the smaller training index) votes for its label; the label with most votes wins, and a
    tie between labels goes to the smallest label. ``predict_proba`` gives the vote
    fractions in the order of ``classes_``.

    Precision: float32 input (and 8/16-bit integers) is computed in float32, anything else
    in float64; either way the neighbours are certified equal to a float64 brute-force
    computation (see ``chainrule.models.knn``), so float32 costs no accuracy.

    ``fit`` keeps a reference to ``X`` (as scikit-learn does) plus a centred copy in the
    compute dtype (and, on large data, the filter's reduced rows: ~D/12 numbers per row
    for ``l2``, ~D/3 group sums for ``l1``); do not modify ``X`` in place after fitting.
    """

    def __init__(self, k=1, metric="l2", chunk_size=None, n_jobs=None):
        self.k = k
        self.metric = metric
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs

    # -- fitting ---------------------------------------------------------------------

    def _check_params(self) -> None:
        check_k(self.k)
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {self.metric!r}")
        check_chunk_size(self.chunk_size)
        if self.n_jobs is not None and (
            isinstance(self.n_jobs, bool)
            or not isinstance(self.n_jobs, numbers.Integral)
            or self.n_jobs < 1
        ):
            raise ValueError(f"n_jobs must be None or a positive int, got {self.n_jobs!r}")

    def fit(self, X, y):
        """Remember the training data.

        X : (N, D) array of numbers, no NaN or infinity. y : (N,) class labels, integers
        (any values; float labels must be whole numbers) or strings. Returns ``self``.

        X may also be a training set on the workers of a Dask cluster: a Dask array, or
        a list of shards (futures of arrays, Dask arrays); each shard is searched where it
        lives, with the same neighbours as one array (see ``chainrule.models.knn._distributed``).
        """
        self._check_params()
        search = None
        if _distributed.is_dask_input(X):
            search, y = _distributed.fit_shards(X, y, self.metric, self.k, self.n_jobs, self)
            X = search.rows
        else:
            X, y = check_X_y(X, y, estimator=self)
        if self.k > X.shape[0]:
            raise ValueError(
                f"k={self.k} is larger than the number of training samples ({X.shape[0]})"
            )
        self.classes_, y_index = unique_labels(y, estimator=self)
        self._set_training_data(X, y_index, search)
        return self

    def _set_training_data(self, X, y_index: np.ndarray, search=None) -> None:
        self._search = NeighborSearch(X, self.metric, filter_k=self.k) if search is None else search
        self.fit_X_ = X
        self.fit_y_ = y_index
        self.n_features_in_ = X.shape[1]

    # Earlier names of fit_X_ and fit_y_ (read by the ONNX export).
    @property
    def _fit_X(self) -> np.ndarray:
        return self.fit_X_

    @property
    def _y_index(self) -> np.ndarray:
        return self.fit_y_

    def gather(self) -> KNearestNeighbors:
        """This model with its training rows in this process: ``self``, or for a model
        fitted on Dask shards a copy fitted on the rows gathered into one array (they must
        fit in memory here). A model file needs them: ``save_model(path, model.gather())``."""
        check_is_fitted(self, "fit_X_")
        if not isinstance(self.fit_X_, _distributed.ShardedRows):
            return self
        model = type(self)(**self.get_params())
        model.classes_ = self.classes_
        model._set_training_data(self._search.gather_rows(), self.fit_y_.copy())
        return model

    # -- model files (chainrule.models.io) -------------------------------------------

    def _state_dict(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "fit_X_")
        # np.asarray: rows on Dask workers refuse here, naming gather() (ShardedRows).
        X = np.asarray(self.fit_X_)
        return {"classes_": self.classes_, "fit_X": X, "y_index": self.fit_y_}

    def _state_dict_with(self, preprocessor) -> dict[str, np.ndarray]:
        """What a model file stores, given the preprocessing stored beside it: the
        training images (uint8, ``fit_images``) when ``preprocessor`` turns them into
        exactly ``fit_X_``, else ``_state_dict()`` (see ``_modelfile``)."""
        state = self._state_dict()
        images = None if preprocessor is None else images_of_rows(self.fit_X_, preprocessor)
        if images is not None:
            state = {"classes_": self.classes_, "fit_images": images, "y_index": self.fit_y_}
        return state

    def _load_state_dict_with(self, state: dict[str, np.ndarray], preprocessor) -> None:
        """Restore from a model file's arrays (either form of ``_state_dict_with``)."""
        if "fit_images" in state:
            if "fit_X" in state:
                raise ValueError("the state has both fit_X and fit_images")
            rows = rows_of_images(state["fit_images"], preprocessor)
            state = {**{k: v for k, v in state.items() if k != "fit_images"}, "fit_X": rows}
        self._load_state_dict(state)

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

    def _check_query(self, X) -> np.ndarray:
        check_is_fitted(self, "fit_X_")
        return check_X(X, n_features=self.n_features_in_, estimator=self, allow_empty=True)

    def _check_k_fits(self, k: int) -> int:
        k = check_k(k)
        if k > self.fit_X_.shape[0]:
            raise ValueError(
                f"k={k} is larger than the number of training samples ({self.fit_X_.shape[0]})"
            )
        return k

    def _neighbors(self, Q, k: int, ordered: bool = True, values: bool = True):
        return self._search.kneighbors(
            Q, k, ordered=ordered, values=values, chunk_size=self.chunk_size, n_jobs=self.n_jobs
        )

    def kneighbors(self, X, k=None, return_distance: bool = True):
        """The k nearest training points of each row of X.

        X : (N, D). k : int, default ``self.k``.

        Returns ``(distances, indices)``, both (N, k): distances float64 (true distances:
        Euclidean for l2, Manhattan for l1, ``1 - cos`` for cosine) ascending along each
        row, indices int64 into the training set (equal distances: smaller index first).
        With ``return_distance=False`` only ``indices`` (the same), which can be cheaper.
        """
        Q = self._check_query(X)
        k = self._check_k_fits(self.k if k is None else k)
        v, idx = self._neighbors(Q, k, ordered=True, values=return_distance)
        return (self._search.metric.to_distance(v), idx) if return_distance else idx

    def _votes(self, X) -> np.ndarray:
        """Vote counts (N, C) int64 of the k nearest neighbours."""
        Q = self._check_query(X)
        k = self._check_k_fits(self.k)
        # The vote needs the set of the k nearest, not their order or distances.
        _, idx = self._neighbors(Q, k, ordered=False, values=False)
        return count_votes(self.fit_y_[idx], len(self.classes_))

    def predict(self, X) -> np.ndarray:
        """Predicted labels (N,), values from ``classes_``."""
        votes = self._votes(X)
        # argmax takes the first maximum: ties go to the smallest label.
        return self.classes_[votes.argmax(axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        """Vote fractions (N, C) float64, columns in the order of ``classes_``."""
        votes = self._votes(X)
        return votes / float(self.k)
