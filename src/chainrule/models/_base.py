"""Estimator conventions shared by the models (scikit-learn style, without scikit-learn).

A model class inherits ``BaseEstimator`` (and ``ClassifierMixin`` for a classifier) and
follows three rules, the same as scikit-learn's:

1. ``__init__`` takes only hyperparameters, as explicit keyword arguments with defaults
   (no ``*args``/``**kwargs``), and stores each one unchanged under its own name. It does
   no validation and no work: ``get_params``/``set_params`` and ``clone`` rely on that.
2. ``fit(X, y)`` validates the hyperparameters and the data, learns, sets attributes whose
   names end in ``_`` (``classes_``, ``n_features_in_``, ...) and returns ``self``.
3. Everything after ``fit`` checks that the model was fitted (``check_is_fitted``) and
   validates its input with ``check_X``.

Example::

    class NearestMean(ClassifierMixin, BaseEstimator):
        def __init__(self, shrink=0.0):
            self.shrink = shrink

        def fit(self, X, y):
            X, y = check_X_y(X, y)
            self.classes_, y_index = np.unique(y, return_inverse=True)
            self.n_features_in_ = X.shape[1]
            self.means_ = np.stack([X[y_index == i].mean(0) for i in range(len(self.classes_))])
            return self

        def predict(self, X):
            check_is_fitted(self, "means_")
            X = check_X(X, n_features=self.n_features_in_, estimator=self)
            d = ((X[:, None, :] - self.means_[None]) ** 2).sum(-1)
            return self.classes_[d.argmin(1)]

Such a class gets ``get_params``, ``set_params``, a readable ``repr``, ``score``
(accuracy) and works with scikit-learn's ``clone``, ``cross_val_score`` and
``GridSearchCV`` when scikit-learn is installed (it is never imported here unless
scikit-learn itself asks for the estimator's tags).

The validation helpers turn bad input into a ``ValueError``/``TypeError`` whose message
names the argument and the problem, instead of a failure deep inside NumPy.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

__all__ = [
    "BaseEstimator",
    "ClassifierMixin",
    "NotFittedError",
    "check_X",
    "check_X_y",
    "check_is_fitted",
    "check_labels",
]


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``.

    A subclass of both ``ValueError`` and ``AttributeError``, as scikit-learn's is, so that
    code catching either keeps working.
    """


class BaseEstimator:
    """Hyperparameter handling from the ``__init__`` signature.

    ``get_params`` reads the current value of every ``__init__`` argument from the
    attribute of the same name; ``set_params`` sets them (also ``inner__name`` for a
    hyperparameter of a nested estimator) and returns ``self``.
    """

    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        names = []
        for p in inspect.signature(init).parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(
                    f"{cls.__name__}.__init__ must list its hyperparameters explicitly; "
                    f"*args/**kwargs ({p}) are not allowed"
                )
            names.append(p.name)
        return sorted(names)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as a dict ``name -> value`` (the objects themselves, not copies).

        With ``deep=True``, a hyperparameter that is itself an estimator also contributes
        its own hyperparameters as ``name__inner``.
        """
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            try:
                value = getattr(self, name)
            except AttributeError:
                raise AttributeError(
                    f"{type(self).__name__}.__init__ must store its argument {name!r} as "
                    f"self.{name}"
                ) from None
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                for inner, inner_value in value.get_params(deep=True).items():
                    out[f"{name}__{inner}"] = inner_value
            out[name] = value
        return out

    def set_params(self, **params: Any):
        """Set hyperparameters by name (``inner__name`` reaches a nested estimator).

        Values are not validated here; ``fit`` validates them. Returns ``self``.
        """
        if not params:
            return self
        valid = self._get_param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, sep, inner = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters: {', '.join(valid) or '(none)'}"
                )
            if sep:
                nested.setdefault(name, {})[inner] = value
            else:
                setattr(self, name, value)
        for name, inner_params in nested.items():
            getattr(self, name).set_params(**inner_params)
        return self

    def __repr__(self) -> str:
        # Only hyperparameters that differ from their defaults, as scikit-learn prints them.
        sig = inspect.signature(type(self).__init__).parameters
        parts = []
        for name, value in self.get_params(deep=False).items():
            default = sig[name].default
            try:
                same = default is not inspect.Parameter.empty and bool(value == default)
            except (TypeError, ValueError):  # arrays and other odd values
                same = False
            if not same:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __sklearn_tags__(self):
        # Called only by scikit-learn (>= 1.6), so importing it here costs nothing otherwise.
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False))


class ClassifierMixin:
    """``score`` as accuracy, and the markers scikit-learn uses to recognise a classifier.

    Put it before ``BaseEstimator`` in the bases: ``class M(ClassifierMixin, BaseEstimator)``.
    """

    # Read by scikit-learn < 1.6 (``is_classifier``, stratified folds in cross-validation).
    _estimator_type = "classifier"

    def score(self, X, y) -> float:
        """Accuracy: the fraction of rows of ``X`` (N, D) whose predicted label equals ``y``."""
        y = check_labels(y)
        pred = np.asarray(self.predict(X))
        if pred.shape[0] != y.shape[0]:
            raise ValueError(f"X has {pred.shape[0]} samples but y has {y.shape[0]} labels")
        return float(np.mean(pred == y))

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags

        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        tags.target_tags.required = True
        return tags


# --- input validation -----------------------------------------------------------------

# Rows per step of the finiteness check: bounds its temporary bool array to a few MB.
_FINITE_CHECK_ELEMENTS = 1 << 22


def _as_array(value, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists and the like
        raise ValueError(f"{name} could not be converted to an array: {e}") from None


def _check_finite(X: np.ndarray, name: str) -> None:
    if X.dtype.kind not in "fc" or X.size == 0:
        return
    flat = X.reshape(X.shape[0], -1) if X.ndim > 1 else X.reshape(-1, 1)
    step = max(1, _FINITE_CHECK_ELEMENTS // max(1, flat.shape[1]))
    for start in range(0, flat.shape[0], step):
        block = flat[start : start + step]
        ok = np.isfinite(block)
        if not ok.all():
            bad = np.argwhere(~ok)[0]
            row = start + int(bad[0])
            value = block[tuple(bad)]
            what = "NaN" if np.isnan(value) else "infinity"
            where = f"row {row}" if X.ndim > 1 else f"index {row}"
            raise ValueError(f"{name} contains {what} (first at {where}); remove or impute it")


def check_X(
    X,
    *,
    name: str = "X",
    dtype=None,
    n_features: int | None = None,
    estimator=None,
    allow_empty: bool = False,
    ensure_2d: bool = True,
) -> np.ndarray:
    """Validate a data matrix and return it as a C-contiguous ndarray.

    Parameters
    ----------
    X : array-like (N, D), numbers (bool, integer or floating point)
    name : what to call it in error messages
    dtype : convert to this dtype (e.g. ``np.float32``); ``None`` keeps a numeric dtype
    n_features : if given, ``D`` must equal it (the number of features seen by ``fit``)
    estimator : the estimator asking, for the message about ``n_features``
    allow_empty : accept ``N == 0``
    ensure_2d : require ``X.ndim == 2``; with ``False`` any ``ndim >= 1`` passes

    Returns
    -------
    ndarray, C-contiguous, a view of ``X`` when no conversion was needed.

    Raises
    ------
    TypeError : non-numeric dtype (strings, objects, complex numbers)
    ValueError : wrong number of dimensions, no samples or no features, NaN or infinity,
        a feature count different from ``n_features``
    """
    X = _as_array(X, name)
    if X.dtype.kind not in "biuf":
        kind = "complex" if X.dtype.kind == "c" else "non-numeric"
        raise TypeError(f"{name} must hold real numbers, got {kind} dtype {X.dtype}")
    if ensure_2d and X.ndim != 2:
        hint = ""
        if X.ndim == 1:
            hint = " (reshape(-1, 1) for a single feature, reshape(1, -1) for one sample)"
        elif X.ndim > 2:
            hint = " (flatten each sample, e.g. X.reshape(len(X), -1))"
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), "
            f"got shape {X.shape}{hint}"
        )
    if X.ndim == 0:
        raise ValueError(f"{name} must be an array, got the scalar {X!r}")
    if X.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: it has 0 samples (shape {X.shape})")
    if X.ndim == 2 and X.shape[1] == 0:
        raise ValueError(f"{name} has 0 features (shape {X.shape})")
    if n_features is not None and X.ndim == 2 and X.shape[1] != n_features:
        who = type(estimator).__name__ if estimator is not None else "the model"
        raise ValueError(
            f"{name} has {X.shape[1]} features, but {who} was fitted with {n_features} features"
        )
    if dtype is not None:
        X = X.astype(dtype, copy=False)
    X = np.ascontiguousarray(X)
    _check_finite(X, name)
    return X


def check_labels(y, *, name: str = "y") -> np.ndarray:
    """Validate class labels and return them as an int64 array of shape (N,).

    Integer labels are taken as they are (any values, e.g. -1, 3, 7); bool labels become
    0/1; floating point labels are accepted only if every value is a whole number. A
    column vector (N, 1) must be flattened by the caller (``y.ravel()``).
    """
    y = _as_array(y, name)
    if y.ndim != 1:
        hint = " (use y.ravel())" if y.ndim == 2 and y.shape[1] == 1 else ""
        raise ValueError(f"{name} must be a 1-D array of class labels, got shape {y.shape}{hint}")
    if y.dtype.kind in "biu":
        if y.dtype.kind == "u" and y.size and y.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} has labels too large for int64")
        return y.astype(np.int64, copy=False)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinity; labels must be integers")
        if np.any(y != np.round(y)):
            raise TypeError(
                f"{name} must hold integer class labels, got non-integral values of dtype "
                f"{y.dtype} (this is a classifier, not a regressor)"
            )
        return y.astype(np.int64)
    raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")


def check_X_y(X, y, *, dtype=None, min_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validate training data: ``X`` as in :func:`check_X`, ``y`` as in :func:`check_labels`.

    Returns ``(X, y)``: X (N, D) C-contiguous, y (N,) int64. Raises ``ValueError`` when
    the lengths differ or ``N < min_samples``.
    """
    X = check_X(X, dtype=dtype)
    y = check_labels(y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y have different numbers of samples: {X.shape[0]} rows in X, "
            f"{y.shape[0]} labels in y"
        )
    if X.shape[0] < min_samples:
        raise ValueError(f"at least {min_samples} samples are needed, got {X.shape[0]}")
    return X, y


def check_is_fitted(estimator, attributes: str | list[str] | tuple[str, ...]) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` has all the named attributes."""
    names = [attributes] if isinstance(attributes, str) else list(attributes)
    if not all(hasattr(estimator, a) for a in names):
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet; call fit(X, y) first"
        )
