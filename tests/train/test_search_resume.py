"""An interrupted search continues from the trials its run folder recorded: with
``--resume``, or run again into the same folder with the same arguments; never from the
trials of a run with other arguments (which replaces the run only with ``--force``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import chainrule.train.search as search
from chainrule.cli import main
from chainrule.models.io import load_model

SVM = ["train", "svm", "--search", "--epochs", "2", "--quiet"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def trials(monkeypatch):
    """Counts the search's trials; ``stop_at`` interrupts the search (Ctrl-C) at that trial."""
    fit = search.fit_candidate

    class Count:
        n = 0
        stop_at = None

    def counted(*args, **kwargs):
        Count.n += 1
        if Count.n == Count.stop_at:
            raise KeyboardInterrupt
        return fit(*args, **kwargs)

    monkeypatch.setattr(search, "fit_candidate", counted)
    return Count


def metrics(run):
    return json.loads((run / "metrics.json").read_text())


def without_times(rows):
    return [{k: v for k, v in r.items() if k != "fit_time"} for r in rows]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run: its metrics and its model's weights."""
    run = tmp_path_factory.mktemp("whole") / "svm"
    assert main([*SVM, "--out", str(run)]) == 0
    return metrics(run), load_model(run / "model.npz").model.W_


def interrupted(tmp_path, trials, capsys, extra=()):
    run = tmp_path / "cut"
    trials.stop_at = 4
    assert main([*SVM, *extra, "--out", str(run)]) == 130
    assert "interrupted" in capsys.readouterr().err
    cut = metrics(run)
    assert cut["status"] == "interrupted" and "params" not in cut
    assert len(cut["search_trials"]) == 3  # each finished trial was recorded as it came
    trials.n, trials.stop_at = 0, None
    return run, cut


def assert_same_run(run, whole):
    done, (expected, weights) = metrics(run), whole
    assert done["status"] == "done" and "search_trials" not in done
    assert without_times(done["search"]["results"]) == without_times(expected["search"]["results"])
    assert done["params"] == expected["params"]
    assert done["val_accuracy"] == expected["val_accuracy"]
    np.testing.assert_array_equal(load_model(run / "model.npz").model.W_, weights)


def test_resume_runs_only_the_trials_not_recorded(tmp_path, trials, capsys, whole):
    run, cut = interrupted(tmp_path, trials, capsys)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    grid = len(whole[0]["search"]["results"])
    best_recorded = whole[0]["search"]["best_params"] in [r["params"] for r in cut["search_trials"]]
    # the rest of the grid, and the best model fitted again if its trial was recorded
    assert trials.n == grid - 3 + best_recorded
    assert_same_run(run, whole)
    recorded = {json.dumps(r, sort_keys=True) for r in cut["search_trials"]}
    kept = {json.dumps(r, sort_keys=True) for r in metrics(run)["search"]["results"]}
    assert recorded <= kept  # the recorded rows were taken as they were, times included


def test_running_again_with_the_same_arguments_continues(tmp_path, trials, capsys, whole):
    run, _ = interrupted(tmp_path, trials, capsys)
    assert main([*SVM, "--out", str(run)]) == 0
    assert trials.n <= len(whole[0]["search"]["results"]) - 3 + 1
    assert_same_run(run, whole)


def test_other_arguments_start_the_search_afresh(tmp_path, trials, capsys, whole):
    run, _ = interrupted(tmp_path, trials, capsys)
    assert main([*SVM, "--seed", "1", "--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*SVM, "--seed", "1", "--out", str(run), "--force"]) == 0
    assert trials.n == len(whole[0]["search"]["results"])  # every trial, none taken over
    assert metrics(run)["args"]["seed"] == 1


def test_a_finished_search_is_not_resumed(tmp_path, capsys, whole):
    run = tmp_path / "done"
    assert main([*SVM, "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert "has finished" in capsys.readouterr().err
