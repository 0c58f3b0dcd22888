"""Training runs in run folders: a checkpointing family is told which run its checkpoint
belongs to (the same on a resume, different for other data or another seed), settings
that cannot fit in memory are refused before anything is written, and the run records
what it was measured with."""

from __future__ import annotations

import json
import platform
import sys

import numpy as np
import pytest

from chainrule._files import FileRecord, write_file
from chainrule.experiment import ExperimentError, Trial, TrialData, train_run
from chainrule.models import registry
from chainrule.models._base import BaseEstimator, ClassifierMixin
from chainrule.models.spec import Member, ModelSpec


class CheckpointingMean(ClassifierMixin, BaseEstimator):
    """Predicts the class of the nearest class mean. Its fit checkpoints: it keeps the
    settings of its run in the folder and refuses to resume a checkpoint of other
    settings, as the Solver does."""

    seen: list = []

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y, *, checkpoint_dir=None, resume=False, checkpoint_settings=None):
        CheckpointingMean.seen.append(checkpoint_settings)
        path = checkpoint_dir / "checkpoint.npz"
        if resume and path.exists():
            if json.loads(path.read_text()) != checkpoint_settings:
                raise ValueError("the checkpoint belongs to another run")
        write_file(path, json.dumps(checkpoint_settings))  # recorded as the run's file
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(0) for c in self.classes_])
        return self

    def predict(self, X):
        d = ((np.asarray(X)[:, None, :] - self.means_[None]) ** 2).sum(-1)
        return self.classes_[d.argmin(axis=1)]

    def _state_dict(self):
        return {"classes_": self.classes_, "means_": self.means_}

    def _load_state_dict(self, state):
        self.classes_, self.means_ = state["classes_"], state["means_"]


class CheckpointingSpec(ModelSpec):
    checkpoints = True

    def stored(self, model):
        return {"classes_": Member(("C",), "iu"), "means_": Member(("C", "D"))}


@pytest.fixture
def checkpointing_family():
    registry.register_model("ckmean", CheckpointingMean, CheckpointingSpec("ckmean"))
    CheckpointingMean.seen = []
    yield "ckmean"
    registry._LOCATIONS.pop("ckmean", None)
    registry.MODEL_REGISTRY._classes.pop("ckmean", None)
    registry._SPECS.pop("ckmean", None)


def digits_split(seed: int) -> TrialData:
    from chainrule.data import load

    source = {"name": "digits", "val_fraction": 0.2, "seed": seed}
    train = load("digits", "train", random_state=seed)
    val = load("digits", "val", random_state=seed)
    return TrialData(train, val, source=source)


def test_a_checkpoint_is_told_its_run(tmp_path, checkpointing_family):
    run = tmp_path / "run"
    trial = Trial(checkpointing_family, seed=3)
    train_run(trial, digits_split(0), run, args={})
    (run / "metrics.json").unlink()  # as if interrupted: the checkpoint stays
    with FileRecord.open(run):
        write_file(run / "checkpoint.npz", json.dumps(CheckpointingMean.seen[-1]))
    resumed = Trial(checkpointing_family, seed=3, resume=True)
    train_run(resumed, digits_split(0), run, args={})
    first, again = CheckpointingMean.seen
    assert first == again and first["seed"] == 3 and first["split_seed"] == 0
    assert first["n_train"] == 1150 and first["data"] == "digits"
    with FileRecord.open(run):
        write_file(run / "checkpoint.npz", json.dumps(first))
    for other, data in ((Trial(checkpointing_family, seed=4, resume=True), digits_split(0)),
                        (resumed, digits_split(1))):  # fmt: skip
        with pytest.raises(ExperimentError, match="belongs to another run"):
            train_run(other, data, run, args={})
    assert CheckpointingMean.seen[-1] != first and CheckpointingMean.seen[-2] != first


def test_settings_beyond_the_machines_memory_leave_no_run(tmp_path, monkeypatch):
    import chainrule.experiment.trial as trial_module

    monkeypatch.setattr(trial_module, "physical_memory", lambda: 10**9)
    run = tmp_path / "run"
    trial = Trial("twolayer", {"hidden_size": 2_000_000}, {"hidden_size": "--hidden"})
    with pytest.raises(
        ExperimentError, match=r"needs at least .* GB of memory .* this machine's 1\.0 GB"
    ):
        train_run(trial, digits_split(0), run, args={})
    assert not run.exists()


def test_the_run_records_what_it_was_measured_with(tmp_path):
    run = tmp_path / "run"
    argv = ["chainrule", "train", "svm", "--out", "a b"]
    train_run(Trial("svm", {"epochs": 1}), digits_split(0), run, args={}, command_line=argv)
    env = json.loads((run / "metrics.json").read_text())["environment"]
    assert env["numpy"] == np.__version__ and env["python"] == platform.python_version()
    assert env["command_line"] == "chainrule train svm --out 'a b'"
    assert env["platform"] == platform.platform() and env["executable"] == sys.executable
    assert env["started"].endswith("+00:00") and env["blas"]
    assert {"internal_api", "version"} <= set(env["blas"][0])
