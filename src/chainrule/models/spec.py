"""Model specs: what running a model family needs to know beyond its estimator class.

An estimator (see ``models/_base.py``) knows how to fit and predict. Its *spec* knows how
to run it well on a data set: good starting hyperparameters for the data's size, the grid
a search tries, the command-line options that set its hyperparameters, the plots that
describe a fitted model, the input layout it wants, and which keyword arguments its
``fit`` takes. The experiment layer (``chainrule.experiment``) and the command line read
only the spec, never the model's name, so a new family is one estimator class, one spec,
one registry entry (``models/registry.py``).

A spec is a :class:`ModelSpec` (or a subclass) named after its registry entry. Every
part has a default that suits a plain estimator: no options, the class's own defaults,
no search grid, no plots of its own, rows in, ``fit(X, y)``.

Example: a nearest-mean classifier (the estimator of ``models/_base.py``'s docstring)
with a shrinkage searched on the validation split, set by ``--shrink`` and drawn as one
template per class::

    # models/nearest_mean_spec.py
    from chainrule.models.spec import ModelSpec, Option, Plot

    SHRINK = Option("--shrink", "shrink", "shrinkage of the class means", parse=float)

    class NearestMeanSpec(ModelSpec):
        options = (SHRINK,)
        shown = ("shrink",)                 # shown in one line: "shrink=0.1"
        searched = ("shrink",)              # what --search chooses

        def defaults(self, data):           # data: a DataSummary
            return {"shrink": 0.1 if data.n_samples < 1000 else 0.0}

        def grid(self, params):
            return {"shrink": [0.0, 0.01, 0.1, 0.5]}

        def plots(self, model, fitted):     # fitted: a FitSummary
            return [Plot("plot_weight_templates", "means.png",
                         (model.means_.T, fitted.image_shape, fitted.classes))]

    NEAREST_MEAN_SPEC = NearestMeanSpec("nearest")

    # models/registry.py: one entry in _FAMILIES
    "nearest": ("chainrule.models.nearest_mean:NearestMean",
                "chainrule.models.nearest_mean_spec:NEAREST_MEAN_SPEC"),

After that ``chainrule train nearest --shrink 0.2``, ``chainrule train nearest --search``
and ``chainrule compare --models knn,nearest`` work, and model files of it load.

What the experiment does with a spec, in order: ``defaults(data)``, then
``random_state`` (the seed) where the class has it, then the values given (``--shrink``:
:meth:`ModelSpec.read_options`), then ``verbose`` where the class has it, then
``check(model)`` before any work; then ``tune`` (a family's own way of choosing
hyperparameters, such as k-NN's cross-validation) or, with ``--search``, a grid search of
``grid(params)`` on the validation split; ``fit`` with the keyword arguments the spec
admits; ``plots``.

Specs are small modules that import their estimator only when they need it, so that
listing the command line's options stays cheap.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "LAYOUTS",
    "DataSummary",
    "FitSummary",
    "Member",
    "MemberBudgetExceeded",
    "ModelSpec",
    "Option",
    "Plot",
    "layer_sizes",
    "members_at_most",
    "network_members",
    "positive_int",
    "round1",
]

# The input a model's fit and predict take: "rows" (N, H*W*C) float32 in HWC order, as
# the linear classifiers and fully connected networks want; "images" (N, H, W, C)
# float32, channels-last, as convolutions want. Both come from one preprocessing (scale,
# centre): the rows are the images flattened.
LAYOUTS = ("rows", "images")


# -- values read from the command line --------------------------------------------------


def positive_int(text) -> int:
    """``"3"`` -> 3; ``ValueError`` for anything that is not an integer >= 1."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"expected a positive integer, got {text!r}") from None
    if value < 1 or isinstance(text, float) and value != text:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return value


def layer_sizes(text) -> tuple[int, ...]:
    """``"1024,1024"`` -> ``(1024, 1024)``; positive integers only."""
    if isinstance(text, list | tuple):
        parts = list(text)
    else:
        parts = [t.strip() for t in str(text).split(",")]
    try:
        sizes = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(
            f"expected layer sizes separated by commas, like 1024,1024; got {text!r}"
        ) from None
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"layer sizes must be positive integers; got {text!r}")
    return sizes


def round1(x: float) -> float:
    """``x`` rounded to one significant digit (1e-2, 3e-2, ...): readable grid values."""
    if x <= 0 or not math.isfinite(x):
        return x
    return float(f"{x:.0e}")


@dataclass(frozen=True)
class Option:
    """A command-line option that sets one hyperparameter.

    flag : ``"--lr"``; several specs may share a flag (``--lr`` sets ``learning_rate``
        of every model that declares it), each with its own ``param`` and ``parse``
    param : the hyperparameter it sets (an ``__init__`` argument of the estimator)
    help : one line for ``--help``
    parse : text -> value; raises ``ValueError`` with a message for bad text
    choices : the values allowed, if only a few are
    switch : an option without a value that sets ``True`` (``--batchnorm``)
    """

    flag: str
    param: str
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple | None = None
    switch: bool = False

    @property
    def dest(self) -> str:
        """The name of the option's value in an argparse namespace (``batch_size``)."""
        return self.flag.lstrip("-").replace("-", "_")


# Options shared by several families (each family lists the ones that apply to it).
LEARNING_RATE = Option("--lr", "learning_rate", "learning rate", parse=float)
REG = Option("--reg", "reg", "L2 regularization strength", parse=float)
EPOCHS = Option("--epochs", "epochs", "passes over the training data", parse=positive_int)
BATCH_SIZE = Option("--batch-size", "batch_size", "images per minibatch", parse=positive_int)
DROPOUT = Option("--dropout", "dropout", "dropout probability", parse=float)
BATCHNORM = Option("--batchnorm", "batchnorm", "batch normalization", switch=True)
OPTIMIZER = Option(
    "--optimizer", "optimizer", "sgd, momentum, nesterov, rmsprop, adam, adamw, muon"
)
SCHEDULE = Option(
    "--schedule", "lr_schedule", "learning-rate schedule, e.g. cosine, onecycle, step"
)
AUGMENT = Option("--augment", "augment", "random crops and flips", switch=True)
LABEL_SMOOTHING = Option(
    "--label-smoothing", "label_smoothing", "label smoothing of the loss", parse=float
)
WEIGHT_DECAY = Option("--weight-decay", "weight_decay", "decoupled weight decay", parse=float)


# -- what a spec is told ------------------------------------------------------------------


@dataclass(frozen=True)
class DataSummary:
    """The training data as a spec sees it when choosing defaults.

    n_samples : training images; n_features : values per image (H*W*C)
    n_classes : classes; image_shape : (H, W, C)
    mean_sq_norm : mean squared Euclidean norm of a preprocessed image (of up to 2,000
        of them): the scale that a stable gradient step depends on
    """

    n_samples: int
    n_features: int
    n_classes: int
    image_shape: tuple[int, int, int]
    mean_sq_norm: float

    @classmethod
    def of(cls, X: np.ndarray, n_classes: int, image_shape, limit: int = 2000) -> DataSummary:
        """The summary of model inputs ``X`` (N, ...) of ``n_classes`` classes."""
        rows = np.asarray(X[:limit], dtype=np.float64).reshape(min(len(X), limit), -1)
        return cls(
            n_samples=int(X.shape[0]),
            n_features=int(math.prod(X.shape[1:])),
            n_classes=int(n_classes),
            image_shape=tuple(int(s) for s in image_shape),
            mean_sq_norm=float(np.mean(np.einsum("ij,ij->i", rows, rows))),
        )


@dataclass(frozen=True)
class FitSummary:
    """What a spec's plots may draw besides the fitted model.

    image_shape : (H, W, C) of the images; classes : class names, ``classes[label]``;
    tuning : the records of the choice of hyperparameters (``knn_cv``, ``search``)
    """

    image_shape: tuple[int, int, int]
    classes: Sequence[str]
    tuning: dict = field(default_factory=dict)


@dataclass
class Plot:
    """A plot to draw: ``chainrule.report.plots.<function>(*args, path=..., **kwargs)``.

    file : the image's name in the run folder (``weights.png``); a comparison prefixes it
    with the model's name (``svm_weights.png``) unless it starts with it already
    """

    function: str
    file: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


class MemberBudgetExceeded(ValueError):
    """A declaration names more arrays than `members_at_most` allows."""


_MEMBER_BUDGET: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "member_budget", default=None
)


@contextlib.contextmanager
def members_at_most(n: int) -> Iterator[None]:
    """Within the block, creating more than ``n`` `Member` objects raises
    `MemberBudgetExceeded` at the ``n + 1``-th.

    A model file is checked against its family's declaration (`ModelSpec.stored`), which
    the file's hyperparameters shape: ``convs_per_stage=10**7`` would have ``stored``
    declare tens of millions of members before any could be compared with the file. The
    reader declares within the number of arrays the file holds, so such a declaration
    stops after that many, whatever family made it.
    """
    token = _MEMBER_BUDGET.set([int(n)])
    try:
        yield
    finally:
        _MEMBER_BUDGET.reset(token)


@dataclass(frozen=True)
class Member:
    """One array that a model file keeps of a fitted model (``model/<name>``).

    A family declares its members (:meth:`ModelSpec.stored`) so that a model file is
    checked before anything it claims is allocated: no member the family does not
    declare, each with the declared number of dimensions and dtype, sizes that agree with
    each other and with the hyperparameters.

    shape : one entry per dimension: an int (that size exactly, e.g. from a
        hyperparameter), a name (``"D"``, ``"C"``, ``"N"``: the same size wherever the
        name appears in the file) or None (any size)
    kinds : the dtype kinds allowed (``numpy.dtype.kind``): ``"f"`` float, ``"i"`` signed
        and ``"u"`` unsigned integer, ``"b"`` bool, ``"U"`` text
    finite : float values must be finite (weights); False for records such as histories
    value : for a scalar integer member, the size name its value must equal
        (``n_features_in_`` is ``"D"``, the rows of the first weight matrix)
    required : a file without it is damaged
    entries : for a 1-D integer member, the size name (or None) each entry must equal
        (an image shape ``(None, None, "channels")`` whose channels are those of the
        first convolution's weights)
    """

    shape: tuple = ()
    kinds: str = "f"
    finite: bool = True
    value: str | None = None
    required: bool = True
    entries: tuple | None = None

    def __post_init__(self):
        budget = _MEMBER_BUDGET.get()
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise MemberBudgetExceeded("the declaration names more arrays than allowed")


def network_members(images: bool = False) -> dict[str, Member]:
    """What every estimator on `chainrule.models.NetworkClassifier` stores besides its
    network's ``net.*`` arrays: the labels, the values per sample (``D``) and the image
    shape (required for a network that reads images; rows may have none)."""
    return {
        "classes_": Member(("C",), "iuU"),
        "n_features_in_": Member((), "iu", value="D"),
        # its channels are those the first layer's weights read, where they say
        "image_shape_": Member((3,), "iu", required=images, entries=(None, None, "channels")),
    }


# -- the spec -------------------------------------------------------------------------------


class ModelSpec:
    """How to run one registered model family; subclass and override what differs.

    Attributes
    ----------
    name : the registry name (``"svm"``)
    options : the command-line options that apply (``Option``)
    shown : the hyperparameters worth showing in one line, in order
    searched : the hyperparameters that ``--search`` chooses (given values are refused)
    input_layout : ``"rows"`` or ``"images"`` (see ``LAYOUTS``)
    fit_validation : ``fit`` takes ``X_val``, ``y_val`` (histories, best epoch)
    checkpoints : ``fit`` takes ``checkpoint_dir`` and ``resume``; a run can be resumed
    reuse_search_fit : the model the search fitted with the best settings is the final
        model (fitting it again with the validation split would give the same one)
    search_needs_validation : the search scores on the validation split (k-NN's
        cross-validation does not)
    compared_by_default : part of ``chainrule compare`` without ``--models``
    """

    options: tuple[Option, ...] = ()
    shown: tuple[str, ...] = ()
    searched: tuple[str, ...] = ()
    input_layout: str = "rows"
    fit_validation: bool = False
    checkpoints: bool = False
    reuse_search_fit: bool = False
    search_needs_validation: bool = True
    compared_by_default: bool = True

    def __init__(self, name: str):
        self.name = name
        self._estimator: Callable[[], type] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- the estimator ------------------------------------------------------------------

    def bind(self, estimator: Callable[[], type]) -> None:
        """Give the spec its estimator class: ``estimator()`` returns it (the registry
        binds every spec it hands out, importing the class on first use)."""
        self._estimator = estimator

    @property
    def estimator(self) -> type:
        """The estimator class of this spec's registry entry."""
        if self._estimator is None:
            raise LookupError(f"the spec {self.name!r} is not bound to a registered model")
        return self._estimator()

    def param_names(self) -> list[str]:
        """The estimator's hyperparameters (its ``__init__`` arguments)."""
        sig = inspect.signature(self.estimator.__init__)
        return [p for p in sig.parameters if p != "self"]

    def estimator_defaults(self) -> dict:
        """The defaults of the estimator's ``__init__``."""
        sig = inspect.signature(self.estimator.__init__)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if k != "self" and p.default is not inspect.Parameter.empty
        }

    # -- choosing hyperparameters --------------------------------------------------------

    def defaults(self, data: DataSummary) -> dict:
        """Starting hyperparameters for this data (``{}``: the estimator's own).

        An estimator on `chainrule.models.NetworkClassifier` whose hyperparameters
        default to ``"auto"`` takes their values from the same recipe in ``fit``, so
        that it trains in Python as the command line trains it."""
        return {}

    def grid(self, params: dict) -> dict | None:
        """The values ``--search`` tries around ``params``: ``{name: [values]}`` over
        ``searched``; None when the family has no grid."""
        return None

    def tune(
        self, params: dict, given: dict, X, y, *, search: bool, seed: int, progress: bool
    ) -> tuple[dict, dict] | None:
        """The family's own choice of hyperparameters on the training rows alone.

        Returns ``(params, records)`` with ``records`` a JSON-able dict (``{"knn_cv":
        ...}``), or None to leave the choice to the grid search (with ``search``) or to
        the values at hand.
        """
        return None

    def check(self, model) -> None:
        """Refuse bad hyperparameters of an unfitted ``model`` before any work."""

    def memory(self, model, data: DataSummary) -> int | None:
        """At least how many bytes fitting the unfitted ``model`` on ``data`` takes besides
        the data itself (parameters, gradients, optimizer state, activations), or None
        when the family does not estimate it. A lower bound: the experiment refuses
        settings whose bound exceeds the machine's memory before allocating anything."""
        return None

    # -- after fitting --------------------------------------------------------------------

    def stored(self, model) -> dict[str, Member] | None:
        """The arrays a model file keeps of ``model`` (name -> `Member`), or None when the
        family declares none (its files then get only the checks every file gets).

        ``model`` is an unfitted estimator built from the file's hyperparameters and
        accepted by :meth:`check`, so the declaration may use its hyperparameters (the
        hidden sizes of a network) but allocates nothing. ``save_model`` refuses a state
        that breaks the declaration, so what is written is what will be read.
        """
        return None

    def plots(self, model, fitted: FitSummary) -> list[Plot]:
        """The family's own plots of a fitted ``model`` (the loss curve, search and
        confusion plots are drawn for every model)."""
        return []

    # -- the command line ----------------------------------------------------------------

    def option(self, flag: str) -> Option | None:
        return next((o for o in self.options if o.flag == flag), None)

    def read_options(self, values: dict[str, Any]) -> tuple[dict, dict]:
        """Hyperparameters from option values ``{flag: value}`` (None: not given).

        A value that is text is parsed by its option; a value already parsed is kept.
        Returns ``(params, sources)``, ``sources[param]`` the flag that set it. Raises
        ``ValueError`` for an option that does not apply or a value that does not parse.
        """
        params, sources = {}, {}
        for flag, value in values.items():
            if value is None:
                continue
            opt = self.option(flag)
            if opt is None:
                raise ValueError(f"{flag} does not apply to model {self.name}")
            if isinstance(value, str) and not opt.switch:
                try:
                    value = opt.parse(value)
                except ValueError as e:
                    raise ValueError(f"argument {flag}: {e}") from None
            params[opt.param] = value
            sources[opt.param] = flag
        return params, sources

    def label(self, param: str) -> str:
        """The short name of a hyperparameter: its option's (``lr``), else its own."""
        opt = next((o for o in self.options if o.param == param), None)
        return param if opt is None else opt.dest

    def describe(self, params: dict) -> str:
        """``k=3 metric=l2``: the ``shown`` hyperparameters of ``params`` in one line."""
        keys = self.shown
        if not keys:
            skip = {"verbose", "random_state", "chunk_size", "n_jobs"}
            keys = tuple(k for k in sorted(params) if k not in skip)
        parts = []
        for k in keys:
            v = params.get(k)
            if v is None:
                continue
            if isinstance(v, list | tuple):
                v = ",".join(str(x) for x in v)
            elif isinstance(v, float):
                v = f"{v:g}"
            parts.append(f"{self.label(k)}={v}")
        return " ".join(parts)
