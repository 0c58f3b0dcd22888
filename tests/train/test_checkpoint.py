"""Checkpoint files: nested states round-trip without pickle, settings are recorded and a
resume refuses another run's checkpoint, killed writers' temporary files are cleaned."""

import json
import os

import numpy as np
import pytest

from chainrule import nn, optim
from chainrule.nn.functional import cross_entropy
from chainrule.train import CHECKPOINT_NAME, Solver, load_checkpoint, save_checkpoint
from chainrule.train.checkpoint import check_settings


def _state(**over):
    rng = np.random.default_rng(0)
    state = {
        "model": {"0.weight": rng.standard_normal((3, 2)).astype(np.float32)},
        "best_model": {"0.weight": np.ones((3, 2), np.float32)},
        "optimizer": {
            "t": np.array(4),
            "lr": np.array(0.1),
            "groups": [{"wd": 0.0, "m": np.arange(3.0)}, {"wd": 1e-2, "m": None}],
            "betas": (0.9, 0.999),
        },
        "schedule": None,
        "generators": [rng.bit_generator.state],
        "history": {"loss": [2.0, 1.5], "val_acc": []},
        "train_subset": np.array([0, 2, 5]),
        "epoch": 1,
        "iteration": 2,
        "best_val_acc": 0.5,
        "best_epoch": 1,
        "bad_epochs": 0,
        "settings": {"lr": 0.1, "hidden": (10, 5), "seed": 0},
    }
    state.update(over)
    return state


def test_nested_state_round_trips_as_a_plain_npz(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path / CHECKPOINT_NAME, state)
    with np.load(path, allow_pickle=False) as z:  # no pickled member anywhere
        assert {"model/0.weight", "best/0.weight", "train_subset", "meta_json"} <= set(z.files)
    ck = load_checkpoint(tmp_path)  # a folder or the file
    np.testing.assert_array_equal(ck["model"]["0.weight"], state["model"]["0.weight"])
    np.testing.assert_array_equal(ck["best_model"]["0.weight"], 1.0)
    opt = ck["optimizer"]
    assert int(opt["t"]) == 4 and float(opt["lr"]) == 0.1
    np.testing.assert_array_equal(opt["groups"][0]["m"], np.arange(3.0))
    assert opt["groups"][1] == {"wd": 1e-2, "m": None}
    assert opt["betas"] == [0.9, 0.999]  # tuples come back as lists (JSON)
    assert ck["schedule"] is None
    assert ck["generators"] == state["generators"]
    assert ck["history"] == {"loss": [2.0, 1.5], "val_acc": []}
    np.testing.assert_array_equal(ck["train_subset"], [0, 2, 5])
    assert (ck["epoch"], ck["iteration"], ck["best_val_acc"]) == (1, 2, 0.5)
    assert ck["settings"] == {"lr": 0.1, "hidden": [10, 5], "seed": 0}


def test_what_cannot_be_saved_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="cannot save a value of type object"):
        save_checkpoint(tmp_path / "c.npz", _state(optimizer={"x": object()}))
    with pytest.raises(TypeError, match="state keys must be strings"):
        save_checkpoint(tmp_path / "c.npz", _state(optimizer={1: 2}))
    with pytest.raises(TypeError, match="plain JSON values"):
        save_checkpoint(tmp_path / "c.npz", _state(settings={"rng": np.random.default_rng()}))
    assert os.listdir(tmp_path) == []


def test_temporary_files_of_a_killed_writer_are_removed_at_the_next_save(tmp_path):
    stale = tmp_path / f".{CHECKPOINT_NAME}.0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    unrelated = tmp_path / ".notes.0123abcd.tmp"
    unrelated.write_bytes(b"someone else's")
    save_checkpoint(tmp_path / CHECKPOINT_NAME, _state())
    assert sorted(os.listdir(tmp_path)) == [".notes.0123abcd.tmp", CHECKPOINT_NAME]


def test_foreign_damaged_and_missing_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    path = save_checkpoint(tmp_path / CHECKPOINT_NAME, _state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(path)
    np.savez(path, something=np.zeros(3))
    with pytest.raises(ValueError, match="not a chainrule checkpoint"):
        load_checkpoint(path)
    head = json.dumps({"format": "chainrule-checkpoint", "version": "1"})
    np.savez(path, __checkpoint__=np.array(head), meta_json=np.array("{}"))
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        load_checkpoint(path)
    head = json.dumps({"format": "chainrule-checkpoint", "version": 1})
    np.savez(path, __checkpoint__=np.array(head), meta_json=np.array('{"epoch": 1}'))
    with pytest.raises(ValueError, match="damaged checkpoint"):
        load_checkpoint(path)


def test_a_checkpoint_claiming_more_than_memory_is_refused_before_reading(tmp_path):
    """A checkpoint is data from a run folder anyone may have written: its headers are
    checked before any array is allocated, and a FIFO in its place is not waited on."""
    import io
    import tracemalloc
    import zipfile

    path = save_checkpoint(tmp_path / CHECKPOINT_NAME, _state())
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    members["model/0.weight.npy"] = header.getvalue()  # claims 4 TB, holds nothing
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="not a readable checkpoint"):
            load_checkpoint(tmp_path / "huge.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    if os.name == "posix":
        os.mkfifo(tmp_path / "fifo.npz")
        with pytest.raises(ValueError, match="not a plain file"):
            load_checkpoint(tmp_path / "fifo.npz")


def test_check_settings_names_every_difference():
    check_settings({"lr": 0.1, "hidden": [10]}, {"lr": 0.1, "hidden": (10,)})  # same run
    check_settings(None, None)
    with pytest.raises(ValueError) as e:
        check_settings({"lr": 0.1, "seed": 0, "old": 1}, {"lr": 0.2, "seed": 0, "new": 2})
    msg = str(e.value)
    assert "belongs to another run" in msg
    assert "lr: 0.1 in the checkpoint, 0.2 now" in msg
    assert "old: 1 in the checkpoint, '(absent)' now" in msg
    assert "new: '(absent)' in the checkpoint, 2 now" in msg
    assert "seed" not in msg
    with pytest.raises(ValueError, match="records no settings"):
        check_settings(None, {"lr": 0.1})
    # Nested dicts are compared key by key.
    with pytest.raises(ValueError, match=r"differ: params\.lr: 0\.1 in the checkpoint, 0\.2 now\)"):
        check_settings({"params": {"lr": 0.1, "k": 3}}, {"params": {"lr": 0.2, "k": 3}})


# ---------------------------------------------------------------- through the Solver


def _solver(folder, settings, epochs=2):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    net = nn.Sequential(nn.Linear(4, 2, random_state=0))
    return Solver(
        net,
        optim.SGD(net.parameters(), lr=0.1),
        cross_entropy,
        X,
        y,
        batch_size=20,
        epochs=epochs,
        checkpoint_dir=folder,
        settings=settings,
        random_state=0,
        verbose=False,
    )


def test_resume_refuses_a_checkpoint_of_other_settings_and_accepts_its_own(tmp_path):
    first = _solver(tmp_path, {"lr": 0.1, "seed": 0}, epochs=1).train()
    assert load_checkpoint(tmp_path)["settings"] == {"lr": 0.1, "seed": 0}
    with pytest.raises(ValueError, match=r"seed: 0 in the checkpoint, 1 now"):
        _solver(tmp_path, {"lr": 0.1, "seed": 1}).train(resume=True)
    with pytest.raises(ValueError, match="this run has none"):
        _solver(tmp_path, None).train(resume=True)
    # Nothing was overwritten by the refused resumes.
    assert load_checkpoint(tmp_path)["epoch"] == 1
    resumed = _solver(tmp_path, {"seed": 0, "lr": 0.1}).train(resume=True)
    assert resumed.epoch == 2 and resumed.history["loss"][:3] == first.history["loss"]
    straight = _solver(tmp_path / "straight", {"lr": 0.1, "seed": 0}).train()
    np.testing.assert_array_equal(
        resumed.model.state_dict()["0.weight"], straight.model.state_dict()["0.weight"]
    )
