"""The records of a trial: its settings in (`Trial`), its results out (`Result`).

Both hold plain values only (strings, numbers, lists, dicts), so that they pickle, travel
to another process or machine and back, and are written to ``metrics.json`` as they are:
``Trial.from_dict(json.loads(json.dumps(trial.to_dict()))) == trial`` for the settings
the command line makes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from chainrule.report.run import to_jsonable

__all__ = ["Result", "Trial"]


class _Record:
    def to_dict(self) -> dict:
        """The record as a JSON-able dict."""
        return to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict):
        """The record from :meth:`to_dict` output (unknown keys are refused)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        return cls(**d)


@dataclass
class Trial(_Record):
    """One run of one model: which model, and what decides its hyperparameters.

    model : the registered name (``"svm"``)
    params : hyperparameters given; they override the defaults the model's spec chooses
        for the data (with ``tune=False`` they are the complete settings)
    sources : ``{param: "--lr"}``, how each given value was named, for error messages
    search : tune the hyperparameters the spec searches (on the validation split, or the
        family's own way, such as k-NN's cross-validation)
    tune : False takes ``params`` as they are: no cross-validation or search (the
        settings an interrupted run had chosen)
    seed : the ``random_state`` of the model, the seed of cross-validation and of the
        training-accuracy sample
    verbose : the estimator's own progress output, where it has ``verbose`` (off by
        default, as in scikit-learn, and for trials that run in another process)
    progress : progress bars of cross-validation and search
    resume : continue from the checkpoint in the output folder (models that checkpoint)
    """

    model: str
    params: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    search: bool = False
    tune: bool = True
    seed: int = 0
    verbose: bool = False
    progress: bool = False
    resume: bool = False


@dataclass
class Result(_Record):
    """What a trial measured.

    model : the registered name; params : the fitted model's hyperparameters
    settings : the hyperparameters that matter, in words (``"k=3 metric=l2"``)
    train_accuracy : on ``train_accuracy_n`` training images (a seeded sample)
    val_accuracy, test_accuracy : None without that split
    fit_time_s : seconds of ``fit`` (of the search's fit when its model was kept)
    val_predict_time_s, test_predict_time_s : seconds to predict the whole split
    confusion_matrix_val, confusion_matrix_test : (C, C) nested lists, rows true classes
    history : the model's per-iteration and per-epoch curves (lists), or None
    tuning : how hyperparameters were chosen: ``{"knn_cv": {...}, "search": {...}}``
    model_file : the model file's name in the run folder, None when not saved
    plots, plot_errors : the plots written, and those that failed with their error
    mistakes : the misclassified images of the validation split (else the test split),
        most confident first, with their contact sheet in the run folder (see
        ``chainrule.experiment.examples``); None when not recorded
    """

    model: str
    params: dict[str, Any]
    settings: str | None = None
    train_accuracy: float | None = None
    train_accuracy_n: int = 0
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    fit_time_s: float | None = None
    val_predict_time_s: float | None = None
    test_predict_time_s: float | None = None
    confusion_matrix_val: list | None = None
    confusion_matrix_test: list | None = None
    history: dict | None = None
    tuning: dict = field(default_factory=dict)
    model_file: str | None = None
    plots: list[str] = field(default_factory=list)
    plot_errors: dict[str, str] = field(default_factory=dict)
    mistakes: dict | None = None

    @property
    def predict_time_s(self) -> float | None:
        """Prediction time on the test split, else on the validation split."""
        return self.val_predict_time_s if self.test_accuracy is None else self.test_predict_time_s
