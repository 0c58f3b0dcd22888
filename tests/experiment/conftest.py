"""A toy model family registered by the tests alone: the proof that a new family needs an
estimator, a spec and a registry entry, and nothing in the command line or the experiment
layer. ``nearest`` takes rows; ``nearest_img`` takes images (N, H, W, C)."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.models import registry
from chainrule.models._base import BaseEstimator, ClassifierMixin, check_is_fitted, check_labels
from chainrule.models.spec import ModelSpec, Option, Plot


class NearestMean(ClassifierMixin, BaseEstimator):
    """Predicts the class whose (shrunk) training mean is closest; rows (N, D)."""

    ndim = 2

    def __init__(self, shrink=0.0, verbose=True):
        self.shrink = shrink
        self.verbose = verbose

    def _rows(self, X):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != self.ndim:
            raise ValueError(f"{type(self).__name__} takes {self.ndim}-D input, got {X.shape}")
        return X.reshape(len(X), -1)

    def fit(self, X, y):
        self.input_shape_ = np.asarray(X).shape[1:]
        X, y = self._rows(X), check_labels(y)
        self.classes_, idx = np.unique(y, return_inverse=True)
        means = np.stack([X[idx == i].mean(0) for i in range(len(self.classes_))])
        self.means_ = (1 - self.shrink) * means + self.shrink * X.mean(0)
        return self

    def predict_proba(self, X):
        check_is_fitted(self, "means_")
        d = ((self._rows(X)[:, None, :] - self.means_[None]) ** 2).sum(-1)
        e = np.exp(-(d - d.min(axis=1, keepdims=True)))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def _state_dict(self):
        shape = np.asarray(self.input_shape_, dtype=np.int64)
        return {"classes_": self.classes_, "means_": self.means_, "input_shape_": shape}

    def _load_state_dict(self, state):
        self.classes_ = np.asarray(state["classes_"])
        self.means_ = np.asarray(state["means_"])
        self.input_shape_ = tuple(int(s) for s in state["input_shape_"])


class ImageNearestMean(NearestMean):
    """The same on images (N, H, W, C): it refuses rows."""

    ndim = 4


SHRINK = Option("--shrink", "shrink", "shrinkage of the class means", parse=float)


class NearestMeanSpec(ModelSpec):
    options = (SHRINK,)
    shown = ("shrink",)
    searched = ("shrink",)
    reuse_search_fit = True

    def defaults(self, data):
        return {"shrink": 0.1 if data.n_samples < 5000 else 0.0}

    def grid(self, params):
        return {"shrink": [0.0, 0.3, 0.9]}

    def check(self, model):
        if not 0 <= model.shrink < 1:
            raise ValueError(f"shrink must be in [0, 1), got {model.shrink!r}")

    def plots(self, model, fitted):
        means = model.means_.T.reshape(-1, len(fitted.classes))
        if self.input_layout == "images":  # (C, H, W) means back to HWC rows for the plot
            c, h, w = model.input_shape_
            means = model.means_.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(-1, h * w * c).T
        return [
            Plot("plot_weight_templates", "means.png", (means, fitted.image_shape, fitted.classes))
        ]


class ImageNearestMeanSpec(NearestMeanSpec):
    input_layout = "images"


@pytest.fixture
def toy_family():
    """``nearest`` and ``nearest_img`` registered for one test, then gone."""
    saved = (dict(registry._LOCATIONS), dict(registry.MODEL_REGISTRY._classes))
    specs = dict(registry._SPECS)
    registry.register_model("nearest", NearestMean, NearestMeanSpec("nearest"))
    registry.register_model("nearest_img", ImageNearestMean, ImageNearestMeanSpec("nearest_img"))
    yield
    for d, old in ((registry._LOCATIONS, saved[0]), (registry.MODEL_REGISTRY._classes, saved[1])):
        d.clear()
        d.update(old)
    registry._SPECS.clear()
    registry._SPECS.update(specs)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def digits():
    from chainrule.data import load
    from chainrule.experiment import TrialData

    return TrialData(
        load("digits", "train"),
        load("digits", "val"),
        load("digits", "test"),
        source={"name": "digits", "val_fraction": 0.2, "seed": 0},
    )
