"""Solver: minibatch training, best model on validation, early stopping, checkpoints and
exact resumption."""

import json
import math
import os

import numpy as np
import pytest

from chainrule import nn, optim
from chainrule.nn.functional import cross_entropy
from chainrule.train import (
    CHECKPOINT_NAME,
    TRAIN_ACC_SAMPLES,
    Solver,
    TrainingDivergedError,
    batches_per_epoch,
    load_checkpoint,
)


def _data(n=160, d=12, c=3, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    W = rng.standard_normal((d, c))
    y = (X @ W + noise * rng.standard_normal((n, c))).argmax(1)
    return X, y


def _net(d=12, c=3, seed=0, dropout=0.2):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Linear(d, 32, random_state=rng),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Dropout(dropout, random_state=rng),
        nn.Linear(32, c, random_state=rng),
    )


def _loss(scores, y):
    return cross_entropy(scores, y, label_smoothing=0.1)


def _noisy_augment(X, rng):
    return X + rng.normal(0.0, 0.05, size=X.shape).astype(X.dtype)


class _Crash(Exception):
    pass


def _solver(tmp_path, augment=_noisy_augment, epochs=3, **kw):
    X, y = _data()
    net = _net()
    opt = optim.AdamW(optim.weight_decay_groups(net, 1e-2), lr=1e-2)
    steps = batches_per_epoch(120, 32)
    sched = optim.OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * steps)
    return Solver(
        net,
        opt,
        _loss,
        X[:120],
        y[:120],
        X[120:],
        y[120:],
        batch_size=32,
        epochs=epochs,
        lr_schedule=sched,
        augment=augment,
        checkpoint_dir=tmp_path,
        train_eval_size=50,
        random_state=7,
        verbose=False,
        **kw,
    )


def test_resume_after_a_crash_gives_the_same_model_as_an_uninterrupted_run(tmp_path):
    straight = _solver(tmp_path / "a").train()

    calls = {"n": 0}
    per_epoch = batches_per_epoch(120, 32)

    def crashing_augment(X, rng):
        calls["n"] += 1
        if calls["n"] == 2 * per_epoch + 2:  # in the middle of the third epoch
            raise _Crash
        return _noisy_augment(X, rng)

    with pytest.raises(_Crash):
        _solver(tmp_path / "b", augment=crashing_augment).train()
    assert load_checkpoint(tmp_path / "b")["epoch"] == 2

    # A new process would build everything from scratch: fresh model, optimizer, schedule.
    resumed = _solver(tmp_path / "b").train(resume=True)

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    sa, sb = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    for k in ("loss", "train_acc", "val_acc", "lr"):
        assert straight.history[k] == resumed.history[k], k
    assert (straight.best_epoch, straight.best_val_acc) == (
        resumed.best_epoch,
        resumed.best_val_acc,
    )
    assert straight.rng.bit_generator.state == resumed.rng.bit_generator.state


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    first = _solver(tmp_path).train()
    again = _solver(tmp_path).train(resume=True)
    assert again.history["loss"] == first.history["loss"]
    for k, v in first.model.state_dict().items():
        np.testing.assert_array_equal(v, again.model.state_dict()[k])


def test_checkpoint_is_plain_npz_and_no_temporary_file_is_left(tmp_path):
    s = _solver(tmp_path, epochs=2).train()
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_NAME]
    with np.load(tmp_path / CHECKPOINT_NAME, allow_pickle=False) as z:
        files = set(z.files)
        meta = json.loads(str(z["meta_json"]))
    assert {"model/0.weight", "model/1.running_mean", "best/1.running_var"} <= files
    assert meta["epoch"] == 2 and meta["iteration"] == 2 * batches_per_epoch(120, 32)
    ck = load_checkpoint(tmp_path)
    assert ck["history"]["val_acc"] == s.history["val_acc"]
    np.testing.assert_array_equal(ck["train_subset"], s.train_subset)


def test_damaged_checkpoint_is_refused_with_a_clear_error(tmp_path):
    _solver(tmp_path, epochs=1).train()
    path = tmp_path / CHECKPOINT_NAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        _solver(tmp_path).train(resume=True)
    np.savez(path, something=np.zeros(3))
    with pytest.raises(ValueError, match="not a chainrule checkpoint"):
        load_checkpoint(path)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    _solver(tmp_path, epochs=1).train()
    X, y = _data()
    net = nn.Sequential(nn.Linear(12, 8, random_state=0), nn.ReLU(), nn.Linear(8, 3))
    s = Solver(
        net, optim.Adam(net.parameters()), _loss, X, y, checkpoint_dir=tmp_path, verbose=False
    )
    with pytest.raises(ValueError):
        s.train(resume=True)


def test_best_validation_model_is_restored_including_batchnorm_statistics():
    # Noisy labels and a large learning rate: validation accuracy goes up and down.
    X, y = _data(n=300, noise=3.0, seed=3)
    net = _net(dropout=0.0)
    s = Solver(
        net,
        optim.SGD(net.parameters(), lr=0.5, momentum=0.9),
        _loss,
        X[:200],
        y[:200],
        X[200:],
        y[200:],
        batch_size=20,
        epochs=8,
        random_state=0,
        verbose=False,
    ).train()
    val = s.history["val_acc"]
    best = int(np.argmax(val))
    assert best != len(val) - 1, "the setup should make the last epoch worse than the best"
    assert s.best_epoch == best + 1 and s.best_val_acc == max(val)
    assert s.check_accuracy(X[200:], y[200:]) == max(val)
    assert not net.training  # returned in eval mode


def test_early_stopping_stops_when_validation_accuracy_stalls():
    X, y = _data()
    net = _net()
    s = Solver(
        net,
        optim.SGD(net.parameters(), lr=0.0),
        _loss,
        X[:120],
        y[:120],
        X[120:],
        y[120:],
        batch_size=40,
        epochs=10,
        early_stopping_patience=2,
        random_state=0,
        verbose=False,
    ).train()
    # lr = 0: nothing improves after the first epoch; two more epochs, then stop.
    assert len(s.history["val_acc"]) == 3
    assert s.best_epoch == 1


def test_training_reduces_the_loss_and_records_histories():
    X, y = _data(n=200)
    net = _net(dropout=0.0)
    s = Solver(
        net,
        optim.Adam(net.parameters(), lr=1e-2),
        _loss,
        X,
        y,
        batch_size=50,
        epochs=6,
        train_eval_size=64,
        random_state=0,
        verbose=False,
    ).train()
    h = s.history
    assert len(h["loss"]) == 6 * 4 and len(h["epoch_loss"]) == 6
    assert h["epoch_loss"][-1] < 0.7 * h["epoch_loss"][0]
    assert len(h["train_acc"]) == 6 and h["val_acc"] == []
    assert h["train_acc"][-1] > 0.8
    assert len(s.train_subset) == 64 and len(np.unique(s.train_subset)) == 64


def test_schedule_stepped_per_epoch():
    X, y = _data()
    net = _net()
    opt = optim.SGD(net.parameters(), lr=0.1)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    s = Solver(
        net,
        opt,
        _loss,
        X,
        y,
        batch_size=40,
        epochs=3,
        lr_schedule=sched,
        schedule_per="epoch",
        random_state=0,
        verbose=False,
    ).train()
    np.testing.assert_allclose(s.history["lr"], [0.1, 0.05, 0.025])
    assert opt.lr == pytest.approx(0.0125)


def test_evaluation_is_in_eval_mode_without_touching_batchnorm_statistics():
    X, y = _data()
    net = _net(dropout=0.5)
    s = Solver(
        net,
        optim.SGD(net.parameters(), lr=0.1),
        _loss,
        X,
        y,
        batch_size=40,
        epochs=1,
        eval_batch_size=7,
        random_state=0,
        verbose=False,
    )
    net.train()
    before = net.state_dict()
    a = s.predict_scores(X)
    b = s.predict_scores(X)
    np.testing.assert_array_equal(a, b)  # dropout off
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert net.training  # mode restored
    assert a.shape == (len(X), 3)


def test_evaluation_averages_probabilities_over_views():
    X, y = _data()
    net = _net()
    plain = Solver(net, optim.SGD(net.parameters(), lr=0.1), _loss, X, y, verbose=False)
    viewed = Solver(
        net,
        optim.SGD(net.parameters(), lr=0.1),
        _loss,
        X,
        y,
        verbose=False,
        eval_views=lambda xb: [xb, -xb],
    )
    s = plain.predict_scores(X)
    s_neg = plain.predict_scores(-X)

    def softmax(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    expected = 2 * softmax(s) + softmax(s_neg)
    np.testing.assert_allclose(viewed.predict_scores(X), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="eval_views"):
        Solver(net, optim.SGD(net.parameters(), lr=0.1), _loss, X, y, eval_views=3)


def test_last_batch_is_kept_only_when_at_least_half_a_batch():
    assert batches_per_epoch(100, 32) == 3  # 4 left over: dropped
    assert batches_per_epoch(112, 32) == 4  # 16 left over: kept
    assert batches_per_epoch(10, 32) == 1


def test_progress_output_when_verbose(capsys):
    X, y = _data()
    net = _net()
    Solver(
        net,
        optim.SGD(net.parameters(), lr=0.1),
        _loss,
        X[:120],
        y[:120],
        X[120:],
        y[120:],
        batch_size=40,
        epochs=2,
        random_state=0,
        verbose=True,
    ).train()
    out = capsys.readouterr()
    assert "epoch 2/2" in out.out and "val acc" in out.out and "img/s" in out.out


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 1.5}, "epochs"),
        ({"schedule_per": "week"}, "schedule_per"),
        ({"augment": 3}, "augment"),
        ({"early_stopping_patience": -1}, "early_stopping_patience"),
        ({"X_val": np.zeros((5, 12), np.float32)}, "X_val and y_val"),
        ({"X_val": np.zeros((5, 4), np.float32), "y_val": np.zeros(5, int)}, "features"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    X, y = _data()
    net = _net()
    with pytest.raises((ValueError, TypeError), match=match):
        Solver(net, optim.SGD(net.parameters(), lr=0.1), _loss, X, y, verbose=False, **kwargs)


def test_bad_training_data_is_refused():
    net = _net()
    opt = optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        Solver(net, opt, _loss, np.zeros(12, np.float32), np.zeros(1, int))
    with pytest.raises(ValueError, match="y_train must have shape"):
        Solver(net, opt, _loss, np.zeros((4, 12), np.float32), np.zeros(3, int))
    with pytest.raises(TypeError, match="integer labels"):
        Solver(net, opt, _loss, np.zeros((4, 12), np.float32), np.zeros(4))


def test_diverging_loss_is_reported():
    X, y = _data()
    net = nn.Sequential(nn.Linear(12, 3, random_state=0))
    s = Solver(
        net,
        optim.SGD(net.parameters(), lr=1e30),
        _loss,
        X * 1e10,
        y,
        batch_size=20,
        epochs=2,
        verbose=False,
    )
    # Both kinds of caller keep working: the networks' (FloatingPointError) and the
    # linear classifiers' (ValueError).
    with pytest.raises(FloatingPointError, match="diverged; lower the learning rate"):
        s.train()
    assert issubclass(TrainingDivergedError, ValueError)


def test_non_finite_inputs_are_refused_before_training():
    X, y = _data()
    net = _net()
    opt = optim.SGD(net.parameters(), lr=0.1)
    bad = X.copy()
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="X_train contains NaN or infinity"):
        Solver(net, opt, _loss, bad, y)
    with pytest.raises(ValueError, match="X_val contains NaN or infinity"):
        Solver(net, opt, _loss, X, y, bad, y)
    with pytest.raises(ValueError, match=r"y_val must have shape \(160,\)"):
        Solver(net, opt, _loss, X, y, X, y[:5])
    # Validation rows are cast to the training rows' dtype.
    s = Solver(net, opt, _loss, X, y, X.astype(np.float64), y, verbose=False)
    assert s.X_val.dtype == np.float32


# ---------------------------------------------------------------- schedule factory


@pytest.mark.parametrize("per, n_steps", [("iteration", 3 * 4), ("epoch", 3)])
def test_schedule_factory_is_sized_for_the_whole_run(per, n_steps):
    X, y = _data()  # 160 rows, batch 40: 4 steps per epoch
    net = _net()
    opt = optim.SGD(net.parameters(), lr=0.1)
    calls = []

    def factory(optimizer, total_steps):
        calls.append((optimizer, total_steps))
        return optim.CosineAnnealingLR(optimizer, T_max=total_steps)

    s = Solver(
        net,
        opt,
        _loss,
        X,
        y,
        batch_size=40,
        epochs=3,
        lr_schedule=factory,
        schedule_per=per,
        random_state=0,
        verbose=False,
    )
    assert calls == [(opt, n_steps)]
    s.train()
    assert s.lr_schedule.last_step == n_steps
    assert opt.lr == pytest.approx(0.0, abs=1e-12)  # annealed to the end, not past it
    per_epoch = [0.1 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]
    if per == "epoch":
        np.testing.assert_allclose(s.history["lr"], per_epoch)


def test_schedule_factory_may_return_none_and_must_return_a_schedule():
    X, y = _data()
    net = _net()
    opt = optim.SGD(net.parameters(), lr=0.1)
    s = Solver(net, opt, _loss, X, y, lr_schedule=lambda o, n: None, verbose=False)
    assert s.lr_schedule is None
    with pytest.raises(TypeError, match="returned int, not a schedule"):
        Solver(net, opt, _loss, X, y, lr_schedule=lambda o, n: 3)
    with pytest.raises(TypeError, match="lr_schedule must be a schedule"):
        Solver(net, opt, _loss, X, y, lr_schedule=0.5)


# ---------------------------------------------------------------- options


def test_restore_best_false_keeps_the_last_epoch():
    X, y = _data(n=300, noise=3.0, seed=3)
    kept = {}
    for restore in (True, False):
        net = _net(dropout=0.0)
        s = Solver(
            net,
            optim.SGD(net.parameters(), lr=0.5, momentum=0.9),
            _loss,
            X[:200],
            y[:200],
            X[200:],
            y[200:],
            batch_size=20,
            epochs=8,
            restore_best=restore,
            random_state=0,
            verbose=False,
        ).train()
        kept[restore] = s.check_accuracy(X[200:], y[200:])
    assert kept[True] == max(s.history["val_acc"])
    assert kept[False] == s.history["val_acc"][-1] != kept[True]


def test_progress_run_prints_no_epoch_lines(capsys):
    X, y = _data()
    net = _net()
    s = Solver(
        net,
        optim.SGD(net.parameters(), lr=0.1),
        _loss,
        X,
        y,
        epochs=2,
        verbose=True,
        progress="run",
    )
    s.train()
    assert "epoch" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="progress"):
        Solver(net, s.optimizer, _loss, X, y, progress="batch")


def test_train_accuracy_subsample_has_the_shared_size():
    rng = np.random.default_rng(0)
    n = TRAIN_ACC_SAMPLES + 37
    X = rng.standard_normal((n, 12)).astype(np.float32)
    y = rng.integers(0, 3, n)
    s = Solver(_net(), optim.SGD(_net().parameters(), lr=0.1), _loss, X, y, verbose=False)
    assert len(s.train_subset) == TRAIN_ACC_SAMPLES == len(np.unique(s.train_subset))
    small = Solver(_net(), optim.SGD(_net().parameters()), _loss, X[:50], y[:50], verbose=False)
    np.testing.assert_array_equal(small.train_subset, np.arange(50))


def test_an_augment_that_uses_indices_gets_the_rows_and_the_epoch():
    X, y = _data()
    seen = []

    class Recorder:
        uses_indices = True

        def __call__(self, Xb, rng, indices=None, epoch=None):
            np.testing.assert_array_equal(Xb, X[indices])
            seen.append((epoch, indices.copy()))
            return Xb

    net = _net()
    Solver(net, optim.SGD(net.parameters(), 0.1), _loss, X, y, batch_size=40, epochs=2,
           augment=Recorder(), random_state=0, verbose=False).train()  # fmt: skip
    assert [e for e, _ in seen] == [0] * 4 + [1] * 4
    for epoch in (0, 1):  # each epoch is a permutation of all rows
        rows = np.concatenate([i for e, i in seen if e == epoch])
        np.testing.assert_array_equal(np.sort(rows), np.arange(len(X)))
