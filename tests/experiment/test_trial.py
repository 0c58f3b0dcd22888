"""The experiment layer on the registered models: settings records in, result records out
(picklable, JSON-able), the search's model kept where the spec says so, every model's
plots drawn, and the data computed once per input layout."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from chainrule.experiment import (
    ExperimentError,
    Output,
    Result,
    Trial,
    TrialData,
    check_trial,
    choose_settings,
    run_trial,
)
from chainrule.models.registry import MODEL_REGISTRY
from chainrule.report.run import RunFolder
from chainrule.train import TRAIN_ACC_SAMPLES

QUICK = {"svm": {"epochs": 2}, "softmax": {"epochs": 2}, "twolayer": {"epochs": 1}}
QUICK["mlp"] = {"epochs": 1, "hidden_dims": (16,)}
QUICK["cnn"] = {"epochs": 1, "channels": (4, 8)}


def test_records_travel_as_json_and_pickle(digits):
    trial = Trial("svm", {"epochs": 2, "reg": 1e-3}, {"epochs": "--epochs"}, seed=4, verbose=False)
    assert Trial.from_dict(json.loads(json.dumps(trial.to_dict()))) == trial
    assert pickle.loads(pickle.dumps(trial)) == trial
    result = run_trial(trial, digits)
    assert isinstance(result, Result) and result.model == "svm"
    assert result.params["epochs"] == 2 and result.params["random_state"] == 4
    assert Result.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert pickle.loads(pickle.dumps(result)) == result
    # the numbers are those of the model: confusion matrices agree with the accuracies
    for split, n in (("val", 288), ("test", 359)):
        cm = np.array(getattr(result, f"confusion_matrix_{split}"))
        assert cm.sum() == n
        assert np.trace(cm) / n == pytest.approx(getattr(result, f"{split}_accuracy"))
    assert result.train_accuracy_n == min(1150, TRAIN_ACC_SAMPLES)
    assert 0.5 < result.train_accuracy <= 1
    assert result.predict_time_s == result.test_predict_time_s
    with pytest.raises(ValueError, match="no field"):
        Trial.from_dict({"model": "svm", "colour": "red"})


def test_same_trial_same_result(digits):
    trial = Trial("twolayer", {"epochs": 2, "hidden_size": 16}, seed=1, verbose=False)
    a, b = run_trial(trial, digits), run_trial(trial, digits)
    assert a.val_accuracy == b.val_accuracy and a.history["loss"] == b.history["loss"]
    assert a.confusion_matrix_test == b.confusion_matrix_test


def test_the_search_model_is_kept_where_the_spec_says_so(digits):
    svm = choose_settings(Trial("svm", {"epochs": 2}, search=True, verbose=False), digits)
    assert svm.model is not None and svm.model.get_params()["reg"] == svm.params["reg"]
    rows = svm.tuning["search"]["results"]
    assert len(rows) == 9 and svm.fit_time_s in [r["fit_time"] for r in rows]
    assert svm.model.score(digits.inputs("rows", "val"), digits.labels("val")) == max(
        r["val_acc"] for r in rows
    )
    # a network refits with the validation split (best epoch), so its search model is not kept
    net = choose_settings(
        Trial("twolayer", {"epochs": 1, "hidden_size": 8}, search=True, verbose=False), digits
    )
    assert net.model is None and len(net.tuning["search"]["results"]) == 6


def test_knn_chooses_k_by_cross_validation_unless_given(digits):
    chosen = choose_settings(Trial("knn"), digits)
    cv = chosen.tuning["knn_cv"]
    assert chosen.params["k"] == cv["best_k"] and cv["n"] == 1150 and cv["folds"] == 5
    assert choose_settings(Trial("knn", {"k": 7}), digits).tuning == {}
    # k-NN's search is its cross-validation: it needs no validation split
    check_trial(Trial("knn", search=True), validation=False)


def test_trials_that_cannot_run_are_refused_before_any_work():
    with pytest.raises(ExperimentError, match="unknown model 'forest'"):
        check_trial(Trial("forest"))
    with pytest.raises(ExperimentError, match="--k does not apply to model svm"):
        check_trial(Trial("svm", {"k": 3}, {"k": "--k"}))
    with pytest.raises(ExperimentError, match="leave out learning_rate"):
        check_trial(Trial("svm", {"learning_rate": 0.1}, search=True))
    with pytest.raises(ExperimentError, match="search for svm needs a validation split"):
        check_trial(Trial("svm", search=True), validation=False)
    with pytest.raises(ExperimentError, match="bad settings for svm: .*learning_rate"):
        check_trial(Trial("svm", {"learning_rate": -1.0}))


@pytest.mark.parametrize("name", list(MODEL_REGISTRY))
def test_every_model_draws_its_plots(name, digits, tmp_path):
    expected = {
        "knn": {"knn_cv.png"},
        "svm": {"svm_weights.png", "svm_loss.png", "svm_accuracy_time.png"},
        "softmax": {"softmax_weights.png", "softmax_loss.png", "softmax_accuracy_time.png"},
        "twolayer": {"twolayer_first_layer.png", "twolayer_loss.png", "twolayer_accuracy_time.png"},
        "mlp": {"mlp_first_layer.png", "mlp_loss.png", "mlp_accuracy_time.png"},
        "cnn": {"cnn_filters.png", "cnn_loss.png", "cnn_accuracy_time.png"},
    }[name] | {f"{name}_confusion.png"}
    folder = RunFolder(tmp_path)
    output = Output(folder, model_file=f"{name}.npz", prefix=f"{name}_")
    result = run_trial(Trial(name, QUICK.get(name, {}), verbose=False), digits, output)
    assert result.plot_errors == {}
    assert set(result.plots) == expected
    mistakes = result.mistakes
    sheet = {f"{name}_mistakes.png"} if mistakes["total"] else set()
    assert {p.name for p in tmp_path.iterdir()} == expected | {f"{name}.npz"} | sheet
    assert result.model_file == f"{name}.npz"
    # the page's record of the validation images it got wrong, most confident first
    n_val = len(digits.labels("val"))
    assert mistakes["split"] == "val" and mistakes["n"] == n_val
    assert mistakes["total"] == round((1 - result.val_accuracy) * n_val)
    probabilities = [m["probability"] for m in mistakes["items"]]
    assert len(probabilities) == min(mistakes["total"], 48)
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(m["true"] != m["pred"] for m in mistakes["items"])


def test_trial_data_computes_each_layout_once():
    from chainrule.data import load

    data = TrialData(load("digits", "train"), source={"name": "digits"})
    rows = data.inputs("rows", "train")
    assert rows.shape == (1150, 64) and data.inputs("rows", "train") is rows
    images = data.inputs("images", "train")
    assert images.shape == (1150, 8, 8, 1)  # channels-last, as decoded
    np.testing.assert_array_equal(images.reshape(1150, -1), rows)  # the rows are the images
    assert data.preprocessor("images").flatten is False
    assert data.inputs("rows", "val") is None and data.labels("val") is None
    assert data.size("val") == 0 and data.describe()["n_val"] == 0
    with pytest.raises(ValueError, match="unknown input layout"):
        data.preprocessor("columns")
