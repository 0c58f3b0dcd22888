"""Estimator conventions shared by the models (scikit-learn style, without scikit-learn).

A model class inherits ``BaseEstimator`` (and ``ClassifierMixin`` for a classifier) and
follows three rules, the same as scikit-learn's:

1. ``__init__`` takes only hyperparameters, as explicit keyword arguments with defaults
   (no ``*args``/``**kwargs``), and stores each one unchanged under its own name. It does
   no validation and no work: ``get_params``/``set_params`` and ``clone`` rely on that.
2. ``fit(X, y)`` validates the hyperparameters and the data, learns, sets attributes whose
   names end in ``_`` (``classes_``, ``n_features_in_``, ...) and returns ``self``.
3. Everything after ``fit`` checks that the model was fitted (``check_is_fitted``) and
   validates its input with ``check_X``. A ``decision_function`` returns (N,) for two
   classes (``decision_from_scores``), as scikit-learn's classifiers do.

Example::

    class NearestMean(ClassifierMixin, BaseEstimator):
        def __init__(self, shrink=0.0):
            self.shrink = shrink

        def fit(self, X, y):
            X, y = check_X_y(X, y, estimator=self)
            self.classes_, y_index = unique_labels(y, estimator=self)
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
``GridSearchCV`` when scikit-learn is installed (it is imported only when scikit-learn
asks for an estimator's tags, or for the two classes below).

The validation helpers turn bad input into a ``ValueError``/``TypeError`` whose message
names the argument and the problem, instead of a failure deep inside NumPy; the messages
use the phrases scikit-learn's own ``check_estimator`` looks for, so the estimators pass
its checks. Class labels may be integers or strings (``classes_`` keeps their type).

``NotFittedError`` (raised by ``check_is_fitted``) and ``DataConversionWarning`` (a
column-vector ``y`` that is flattened) are created the first time they are looked up:
where scikit-learn is installed they derive from scikit-learn's classes of the same name,
so ``except sklearn.exceptions.NotFittedError`` catches ours, while ``import chainrule``
never pays for importing scikit-learn (about a second).
"""

from __future__ import annotations

import inspect
import numbers
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

__all__ = [
    "BaseEstimator",
    "ClassifierMixin",
    "DataConversionWarning",
    "NotFittedError",
    "check_X",
    "check_X_y",
    "check_is_fitted",
    "check_labels",
    "decision_from_scores",
    "label_indices",
    "unique_labels",
]


# --- exception classes shared with scikit-learn -------------------------------------

# name -> (bases without scikit-learn, docstring)
_SKLEARN_TWINS: dict[str, tuple[tuple[type, ...], str]] = {
    "NotFittedError": (
        (ValueError, AttributeError),
        """A method that needs a fitted model was called before ``fit``.

    A subclass of both ``ValueError`` and ``AttributeError``, as scikit-learn's is, and of
    ``sklearn.exceptions.NotFittedError`` itself where scikit-learn is installed.
    """,
    ),
    "DataConversionWarning": (
        (UserWarning,),
        """Input data was converted to the form an estimator needs (e.g. a column-vector
    ``y`` flattened); a subclass of ``sklearn.exceptions.DataConversionWarning`` where
    scikit-learn is installed.
    """,
    ),
}
_twins: dict[str, type] = {}
_twins_lock = threading.Lock()

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ provides them

    class NotFittedError(ValueError, AttributeError): ...

    class DataConversionWarning(UserWarning): ...


def _sklearn_twin(name: str) -> type:
    """The class ``name`` of this module, created once per process (thread-safe)."""
    with _twins_lock:
        cls = _twins.get(name)
        if cls is None:
            bases, doc = _SKLEARN_TWINS[name]
            try:
                from sklearn import exceptions

                theirs = getattr(exceptions, name)
                bases = (theirs, *(b for b in bases if not issubclass(theirs, b)))
            except Exception:  # not installed, or broken: ours alone
                pass
            cls = type(name, bases, {"__doc__": doc, "__module__": __name__})
            _twins[name] = cls
        return cls


def __getattr__(name: str):
    if name in _SKLEARN_TWINS:
        return _sklearn_twin(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SKLEARN_TWINS])


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
        if (pred.dtype.kind in "US") != (y.dtype.kind in "US"):
            return 0.0  # strings never equal numbers (NumPy < 2 would not compare them)
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


def _who(estimator) -> str:
    return type(estimator).__name__ if estimator is not None else "the model"


def _outside_stacklevel() -> int:
    """``stacklevel`` for a warning about the caller's data: the first frame outside
    chainrule, so that the warning names the user's line, not a validation helper."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("chainrule."):
        frame = frame.f_back
        level += 1
    return level


def _is_sparse(X) -> bool:
    # A SciPy sparse matrix exists only once scipy.sparse is imported: no import here.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def _as_array(value, name: str) -> np.ndarray:
    if _is_sparse(value):
        raise TypeError(
            f"{name} is a sparse matrix ({type(value).__name__}), and sparse input is not "
            f"supported: pass dense data, e.g. {name}.toarray()"
        )
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists and the like
        raise ValueError(f"{name} could not be converted to an array: {e}") from None


def _as_real(X: np.ndarray, name: str) -> np.ndarray:
    """X with a real number dtype: objects that are numbers become float64."""
    kind = X.dtype.kind
    if kind in "biuf":
        return X
    if kind == "c":
        raise ValueError(
            f"Complex data not supported: {name} has dtype {X.dtype}; pass its real part "
            f"({name}.real) or its magnitude (np.abs({name}))"
        )
    if kind == "O":
        try:
            return X.astype(np.float64)
        except (TypeError, ValueError) as e:  # e.g. "float() argument must be a string or..."
            raise TypeError(f"{name} holds objects that are not numbers: {e}") from None
    raise TypeError(f"{name} must hold real numbers, got non-numeric dtype {X.dtype}")


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
    X : array-like (N, D) of numbers (bool, integer, floating point, or Python objects
        that are numbers, which become float64)
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
    TypeError : a sparse matrix, strings, objects that are not numbers
    ValueError : complex numbers, wrong number of dimensions, no samples or no features,
        NaN or infinity, a feature count different from ``n_features``
    """
    X = _as_real(_as_array(X, name), name)
    if ensure_2d and X.ndim != 2:
        hint = ""
        if X.ndim == 1:
            hint = (
                f". Reshape your data: {name}.reshape(-1, 1) for a single feature, "
                f"{name}.reshape(1, -1) for a single sample"
            )
        elif X.ndim > 2:
            hint = f" (flatten each sample, e.g. {name}.reshape(len({name}), -1))"
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), "
            f"got shape {X.shape}{hint}"
        )
    if X.ndim == 0:
        raise ValueError(f"{name} must be an array, got the scalar {X!r}")
    if X.shape[0] == 0 and not allow_empty:
        raise ValueError(
            f"{name} is empty: 0 sample(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if X.ndim == 2 and X.shape[1] == 0:
        raise ValueError(
            f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if n_features is not None and X.ndim == 2 and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features, but {_who(estimator)} is expecting "
            f"{n_features} features as input (the number it was fitted with)"
        )
    if dtype is not None:
        X = X.astype(dtype, copy=False)
    X = np.ascontiguousarray(X)
    _check_finite(X, name)
    return X


def _object_labels(y: np.ndarray, name: str) -> np.ndarray:
    """Labels held as Python objects: all strings, or all numbers."""
    values = y.tolist()
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=str)
    if all(isinstance(v, numbers.Real) for v in values):
        return np.array(values)  # int64, bool or float64: checked as such by the caller
    kinds = sorted({type(v).__name__ for v in values})
    raise ValueError(
        f"Unknown label type: {name} mixes labels of types {', '.join(kinds)}; class labels "
        f"must be all integers or all strings"
    )


def check_labels(y, *, name: str = "y", estimator=None) -> np.ndarray:
    """Validate class labels and return them as an array of shape (N,).

    Integer labels become int64 (any values, e.g. -1, 3, 7); bool labels become 0/1;
    floating point labels are accepted only if every value is a whole number (int64).
    String labels stay strings (``<U``); Python objects must be all strings or all
    numbers. A column vector (N, 1) is flattened with a `DataConversionWarning`.

    Raises ``ValueError`` for ``None``, other shapes, NaN or infinity, non-integral numbers
    (a regression target), complex numbers and any other kind of label.
    """
    if y is None:
        raise ValueError(f"{_who(estimator)} requires y to be passed, but the target y is None")
    y = _as_array(y, name)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            f"A column-vector {name} was passed when a 1d array was expected. Please change "
            f"the shape of {name} to (n_samples,), for example using ravel().",
            _sklearn_twin("DataConversionWarning"),
            stacklevel=_outside_stacklevel(),
        )
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels, got shape {y.shape}")
    if y.dtype.kind == "O":
        y = _object_labels(y, name)
    kind = y.dtype.kind
    if kind in "US":
        return y
    if kind in "biu":
        if kind == "u" and y.size and y.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} has labels too large for int64")
        return y.astype(np.int64, copy=False)
    if kind == "f":
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinity; labels must be integers")
        fractional = y != np.round(y)
        if fractional.any():
            raise ValueError(
                f"Unknown label type: continuous. {name} holds non-integral values (e.g. "
                f"{float(y[fractional][0])!r}); a classifier needs class labels (integers or "
                f"strings), not a regression target"
            )
        return y.astype(np.int64)
    what = "complex numbers" if kind == "c" else f"values of dtype {y.dtype}"
    raise ValueError(
        f"Unknown label type: {name} holds {what}; class labels must be integers or strings"
    )


def check_X_y(
    X, y, *, dtype=None, min_samples: int = 1, estimator=None, ensure_2d: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validate training data: ``X`` as in :func:`check_X`, ``y`` as in :func:`check_labels`.

    Returns ``(X, y)``: X (N, D) C-contiguous (any ``ndim >= 1`` with ``ensure_2d=False``),
    y (N,) int64 or strings. Raises ``ValueError`` when the lengths differ or
    ``N < min_samples``.
    """
    X = check_X(X, dtype=dtype, ensure_2d=ensure_2d)
    y = check_labels(y, estimator=estimator)
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y have different numbers of samples: {X.shape[0]} rows in X, "
            f"{y.shape[0]} labels in y"
        )
    if X.shape[0] < min_samples:
        raise ValueError(f"at least {min_samples} samples are needed, got {X.shape[0]}")
    return X, y


def unique_labels(y: np.ndarray, *, min_classes: int = 1, estimator=None):
    """``(classes, y_index)``: the sorted distinct labels (C,) of checked labels ``y`` (N,)
    and each label's index into them, (N,) int64. Raises ``ValueError`` when there are
    fewer than `min_classes`."""
    classes, y_index = np.unique(y, return_inverse=True)
    if len(classes) < min_classes:
        found = f"1 class ({classes[0].item()!r})" if len(classes) == 1 else f"{len(classes)}"
        raise ValueError(
            f"{_who(estimator)} needs at least {min_classes} classes in y, got {found}"
        )
    return classes, y_index.reshape(-1).astype(np.int64, copy=False)


def label_indices(classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Index of each of `labels` (N,) in the sorted `classes` (C,), int64; -1 for a label
    that is not one of them (a string where the classes are numbers counts as unknown)."""
    if (classes.dtype.kind in "US") != (labels.dtype.kind in "US") or len(classes) == 0:
        return np.full(labels.shape, -1, dtype=np.int64)
    pos = np.searchsorted(classes, labels).clip(0, len(classes) - 1)
    return np.where(classes[pos] == labels, pos, -1).astype(np.int64, copy=False)


def decision_from_scores(scores: np.ndarray) -> np.ndarray:
    """``decision_function`` from class scores (N, C): the scores themselves, or for two
    classes (N,) ``scores[:, 1] - scores[:, 0]``, scikit-learn's convention (> 0 predicts
    ``classes_[1]``).

    ``s1 - s0 > 0`` exactly when ``s1 > s0`` (the difference of two finite floats is zero
    only when they are equal), so its sign agrees with ``argmax`` (a tie: ``classes_[0]``).
    """
    return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores


def check_is_fitted(estimator, attributes: str | list[str] | tuple[str, ...]) -> None:
    """Raise `NotFittedError` unless ``estimator`` has all the named attributes."""
    names = [attributes] if isinstance(attributes, str) else list(attributes)
    if not all(hasattr(estimator, a) for a in names):
        raise _sklearn_twin("NotFittedError")(
            f"this {type(estimator).__name__} is not fitted yet; call fit(X, y) first"
        )
