"""Search on a Dask cluster: the same rows and winner as the search in one process, a
worker lost mid-search costs nothing but time, BLAS on one thread per trial, and without
Dask installed nothing changes except that asking for a cluster is a one-line error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from chainrule.cli import main
from chainrule.data import load
from chainrule.experiment import Trial, TrialData, run_trial
from chainrule.models.linear import LinearSVM
from chainrule.models.mlp import TwoLayerNet
from chainrule.train import grid_search, random_search
from chainrule.train.distributed import _trial, local_cluster


@pytest.fixture(scope="module")
def digits():
    source = {"name": "digits", "val_fraction": 0.2, "seed": 0}
    return TrialData(load("digits", "train"), load("digits", "val"), source=source)


@pytest.fixture(scope="module")
def client():
    """One local cluster of two worker processes for the module (starting one takes
    seconds); a killed worker is restarted by its nanny."""
    pytest.importorskip("distributed")
    with local_cluster(2) as c:
        yield c


def rows_without_times(rows):
    return [{k: v for k, v in r.items() if k != "fit_time"} for r in rows]


def splits(data):
    return (
        data.inputs("rows", "train"),
        data.labels("train"),
        data.inputs("rows", "val"),
        data.labels("val"),
    )


# ------------------------------------------------------------------ on the cluster


def test_digits_search_on_two_workers_is_the_sequential_search(digits, client):
    # The command line's six-trial search of the two-layer network (3 learning rates x
    # 2 regularization strengths), in this process and on two worker processes.
    trial = Trial("twolayer", {"epochs": 10}, search=True, seed=3)
    here, there = run_trial(trial, digits), run_trial(trial, digits, client=client)
    a, b = here.tuning["search"], there.tuning["search"]
    assert len(a["results"]) == 6
    assert rows_without_times(b["results"]) == rows_without_times(a["results"])
    assert b["best_params"] == a["best_params"] and b["best_val_accuracy"] == a["best_val_accuracy"]
    assert there.params == here.params and there.val_accuracy == here.val_accuracy
    # every trial's time was measured where it ran, so each is a real (positive) fit time
    assert all(r["fit_time"] > 0 for r in b["results"])


def test_best_model_comes_back_from_the_worker_bit_for_bit(digits, client):
    # A Generator random_state, a random search, a model kept from the search: the rows
    # arrive in the order trials finish, and each is put in its candidate's place.
    X, y, Xv, yv = splits(digits)
    svm = LinearSVM(epochs=3, random_state=np.random.default_rng(5), verbose=False)
    space = {"learning_rate": (1e-3, 1e-1), "reg": (1e-5, 1e-1)}
    arrived = []
    here = random_search(svm, X, y, Xv, yv, space, n_iter=5, random_state=2, verbose=False)
    there = random_search(svm, X, y, Xv, yv, space, n_iter=5, random_state=2, verbose=False,
                          client=client, on_result=arrived.append)  # fmt: skip
    assert rows_without_times(there.results) == rows_without_times(here.results)
    assert there.best_params == here.best_params
    np.testing.assert_array_equal(there.best_estimator.W_, here.best_estimator.W_)
    mine, theirs = here.best_estimator.get_params(), there.best_estimator.get_params()
    # the fitted models' Generators drew the same numbers
    assert (
        mine.pop("random_state").bit_generator.state
        == theirs.pop("random_state").bit_generator.state
    )
    assert mine == theirs
    assert sorted(map(json.dumps, arrived)) == sorted(map(json.dumps, there.results))
    # A search that recorded three rows runs the other two only.
    arrived = []
    again = random_search(svm, X, y, Xv, yv, space, n_iter=5, random_state=2, verbose=False,
                          client=client, recorded=here.results[:3], refit=False,
                          on_result=arrived.append)  # fmt: skip
    assert len(arrived) == 2 and again.best_estimator is None
    assert rows_without_times(again.results) == rows_without_times(here.results)


def test_a_trial_error_on_a_worker_is_raised_here(digits, client):
    X, y, Xv, yv = splits(digits)
    net = TwoLayerNet(hidden_size=8, epochs=1, verbose=False)
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        grid_search(net, X, y, Xv, yv, {"epochs": [1, 0]}, verbose=False, client=client)
    with pytest.raises(TypeError, match="dask.distributed.Client"):
        grid_search(net, X, y, Xv, yv, {"epochs": [1]}, verbose=False, client=object())


def test_a_worker_killed_during_the_search_loses_no_trial(digits, client):
    X, y, Xv, yv = splits(digits)
    net = TwoLayerNet(hidden_size=32, epochs=15, random_state=0, verbose=False)
    grid = {"learning_rate": [1e-3, 3e-3, 1e-2], "reg": [1e-5, 1e-3]}
    with threadpool_limits(limits=1, user_api="blas"):  # as fast as it gets on small data
        here = grid_search(net, X, y, Xv, yv, grid, verbose=False, refit=False)
    pids = client.run(os.getpid)  # {worker address: process id}
    killed = []

    def kill_a_busy_worker(row):
        if killed:
            return
        busy = [w for w, keys in client.processing().items() if keys]
        assert busy, "no trial left running when the first one finished"
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed.append((pids[busy[0]], list(client.processing()[busy[0]])))

    there = grid_search(net, X, y, Xv, yv, grid, verbose=False, client=client,
                        on_result=kill_a_busy_worker)  # fmt: skip
    pid, lost = killed[0]
    assert lost  # trials were running on the worker when it died ...
    assert rows_without_times(there.results) == rows_without_times(here.results)  # ... none lost
    assert there.best_params == here.best_params and there.best_estimator is not None
    # the worker really died: its nanny started a new process in its place
    deadline = time.monotonic() + 30
    while len(client.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid not in client.run(os.getpid).values()


def test_the_command_line_on_an_existing_cluster(client, tmp_path, capsys):
    # --scheduler: the run's metrics are those of the run in one process.
    address = client.scheduler.address
    runs = {}
    for name, where in (("here", []), ("there", ["--scheduler", address])):
        out = tmp_path / name
        argv = ["train", "twolayer", "--search", "--epochs", "5", "--out", out, *where]
        assert main([str(a) for a in argv]) == 0
        runs[name] = json.loads((out / "metrics.json").read_text())
    err = capsys.readouterr().err
    assert f"search trials run on the Dask cluster at {address} (2 workers)" in err
    here, there = runs["here"], runs["there"]
    assert rows_without_times(there["search"]["results"]) == rows_without_times(
        here["search"]["results"]
    )
    assert there["params"] == here["params"] and there["val_accuracy"] == here["val_accuracy"]
    assert "scheduler" not in there["args"]  # where it ran is not a setting of the run
    # compare --search takes it too
    out = tmp_path / "compare"
    argv = ["compare", "--models", "svm", "--search", "--scheduler", address, "--out", out]
    assert main([str(a) for a in [*argv, "--quiet"]]) == 0
    svm = json.loads((out / "metrics.json").read_text())["models"]["svm"]
    assert len(svm["search"]["results"]) == 9


def test_a_scheduler_that_cannot_be_reached_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    import chainrule.train.distributed as dist

    monkeypatch.setattr(dist, "CONNECT_TIMEOUT", 0.5)
    out = tmp_path / "run"
    argv = ["train", "svm", "--search", "--scheduler", "tcp://127.0.0.1:9", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert not out.exists()


# ------------------------------------------------------------------ in this process


def test_a_trial_runs_on_one_blas_thread():
    from threadpoolctl import threadpool_info

    def probe(template, params, X, y, X_val, y_val, train_score):
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        return {"blas_threads": blas, "params": params}, "model"

    row, model = _trial(probe, None, {"a": 1}, None, None, None, None, True, True)
    assert row["blas_threads"] and set(row["blas_threads"]) == {1}
    assert row["params"] == {"a": 1} and model == "model"
    assert _trial(probe, None, {}, None, None, None, None, True, False)[1] is None


def test_chainrule_and_a_search_in_one_process_do_not_import_dask():
    code = (
        "import sys, numpy as np\n"
        "import chainrule, chainrule.train, chainrule.experiment, chainrule.cli.train\n"
        "from chainrule.models.linear import LinearSVM\n"
        "X = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)\n"
        "y = np.arange(60) % 3\n"
        "chainrule.train.grid_search(LinearSVM(epochs=1, verbose=False), X, y, X, y,\n"
        "                            {'reg': [0.1, 1.0]}, verbose=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def without_dask(monkeypatch):
    """Dask made unimportable, as when the extra is not installed."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("dask", "distributed"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "distributed", None)


@pytest.mark.parametrize("where", [["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:1"]])
def test_without_dask_asking_for_a_cluster_is_one_line(where, without_dask, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "twolayer", "--search", "--out", str(out), "--quiet", *where])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("chainrule train: error: ")
    assert 'pip install "chainrule[distributed]"' in err
    assert not out.exists()  # refused before any data was loaded or anything written
    with pytest.raises(ImportError, match=r"chainrule\[distributed\]"):
        with local_cluster(2):
            pass


def test_a_cluster_without_a_search_is_refused(tmp_path, capsys):
    code = main(["compare", "--workers", "2", "--out", str(tmp_path / "c"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--workers runs the search's trials on a cluster; add --search" in err


def test_a_local_cluster_leaves_the_callers_environment_alone():
    import os

    from chainrule.train.distributed import WORKER_MALLOC, local_cluster

    before = dict(os.environ)

    def worker_env():
        import os

        return {k: os.environ.get(k) for k in WORKER_MALLOC}

    with local_cluster(1) as client:
        assert dict(os.environ) == before
        (seen,) = client.run(worker_env).values()
    assert seen == {k: str(v) for k, v in WORKER_MALLOC.items()}
    assert dict(os.environ) == before
