"""k-NN on a training set split across Dask workers: the neighbours, distances and
predictions of the same rows fitted as one array, bit for bit; the rows never leave their
workers; model files need the rows gathered; without dask.distributed, one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from knn_reference import brute_force, image_like, smooth_images

from chainrule.models import load_model, save_model
from chainrule.models.knn import KNearestNeighbors, _distributed, _groupsums, _search

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

from chainrule.train.distributed import local_cluster  # noqa: E402

BOUNDS = [0, 450, 1000, 1400]  # three shards of unequal sizes


@pytest.fixture(scope="module")
def client():
    """One local cluster of two worker processes for the module (starting one takes a
    second or two)."""
    with local_cluster(2) as c:
        yield c


@pytest.fixture
def workers(client):
    """The two workers' addresses (a killed worker comes back at another address)."""
    return sorted(client.nthreads())


@pytest.fixture(scope="module")
def data():
    """Blurry images (192 features), with rows repeated across shard boundaries (exact
    ties between shards) and queries that are training rows."""
    rng = np.random.default_rng(30)
    X = smooth_images(rng, 1400)
    X[900:930] = X[10:40]  # shard 0's rows again in shard 1
    X[1300:1310] = X[20:30]  # and in shard 2
    X[460:470] = X[455:465]  # and inside shard 1
    y = rng.integers(0, 4, len(X))
    Q = np.concatenate([smooth_images(rng, 60), X[10:25], X[1305:1310]])
    return X, y, Q


@pytest.fixture
def filters(request, client, monkeypatch):
    """With ``True``, the filters (projection, group sums) are prepared on shards this
    small, here and on the workers (separate processes)."""
    if not request.param:
        yield False
        return
    sizes = [(_search, "FILTER_MIN_TRAIN", 300), (_search, "FILTER_MIN_FEATURES", 32),
             (_groupsums, "COARSE_SHARE", 16)]  # fmt: skip
    before = [(module, name, getattr(module, name)) for module, name, _ in sizes]
    for module, name, value in sizes:
        monkeypatch.setattr(module, name, value)
        client.run(setattr, module, name, value)
    yield True
    for module, name, value in before:
        client.run(setattr, module, name, value)


def scattered_shards(client, X, workers, bounds=BOUNDS):
    """Futures of the shards X[a:b], shard i held by workers[i % 2] alone."""
    return [
        client.scatter(X[a:b], workers=[workers[i % len(workers)]], hash=False)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]


def shard_info(client, model):
    search = model._search
    return client.gather(_distributed._pinned(client, _distributed._describe, search.shards, "t"))


# ------------------------------------------------------------------ exactness


@pytest.mark.parametrize("filters", [False, True], indirect=True)
@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
def test_three_shards_on_two_workers_are_the_one_array_fit(client, workers, data, metric, filters):
    X, y, Q = data
    shards = scattered_shards(client, X, workers)
    reference = brute_force(X, Q, metric)[1]
    for k in (1, 5):
        here = KNearestNeighbors(k=k, metric=metric).fit(X, y)
        there = KNearestNeighbors(k=k, metric=metric).fit(shards, y)
        # the shards were searched where they were put, with a filter when asked for
        holders = _distributed._holders(client, there._search.shards)
        assert holders == [workers[0], workers[1], workers[0]]
        info = shard_info(client, there)
        assert [n for n, *_ in info] == [450, 550, 400]
        assert all((f is not None) == filters for *_, f in info), info
        d0, i0 = here.kneighbors(Q)
        d1, i1 = there.kneighbors(Q)
        np.testing.assert_array_equal(i1, i0)
        np.testing.assert_array_equal(d1, d0)
        np.testing.assert_array_equal(i1, reference[:, :k])
        np.testing.assert_array_equal(there.kneighbors(Q, return_distance=False), i0)
        np.testing.assert_array_equal(there.predict(Q), here.predict(Q))
        np.testing.assert_array_equal(there.predict_proba(Q), here.predict_proba(Q))
    # ties across shards: the query X[10] has its copy X[900] second, not shard order first
    assert list(i1[60, :2]) == [10, 900]


def test_a_dask_array_with_uneven_and_column_blocks(client, data):
    # Row blocks of 450, 550 and 400 rows, each cut into two column blocks: a shard holds
    # whole rows (the columns are joined on the workers).
    X, y, Q = data
    dX = da.from_array(X, chunks=((450, 550, 400), (96, 96)))
    dy = da.from_array(y, chunks=500)
    there = KNearestNeighbors(k=5).fit(dX, dy)
    here = KNearestNeighbors(k=5).fit(X, y)
    assert there.fit_X_.shape == X.shape and list(there.fit_X_.offsets) == BOUNDS
    assert there.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(there.kneighbors(Q)[1], here.kneighbors(Q)[1])
    np.testing.assert_array_equal(there.predict(Q), here.predict(Q))
    np.testing.assert_array_equal(there.classes_, here.classes_)


def test_queries_in_several_chunks_and_an_empty_shard(client, workers, data, monkeypatch):
    # Queries go out 7 at a time (several chunks in flight); one shard has no rows.
    X, y, Q = data
    monkeypatch.setattr(_distributed, "QUERY_CHUNK_BYTES", 7 * X.shape[1] * X.itemsize)
    shards = scattered_shards(client, X, workers, bounds=[0, 450, 450, 1400])
    there = KNearestNeighbors(k=3, metric="l1").fit(shards, y)
    here = KNearestNeighbors(k=3, metric="l1").fit(X, y)
    assert list(there.fit_X_.offsets) == [0, 450, 450, 1400]
    d1, i1 = there.kneighbors(Q)
    d0, i0 = here.kneighbors(Q)
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_array_equal(d1, d0)
    assert there.kneighbors(Q[:0])[1].shape == (0, 3)


def test_k_larger_than_a_shard_and_text_labels(client, workers):
    # k = 4 over shards of 2, 1 and 3 rows: each gives what it has, the merge the rest;
    # labels per shard, as futures, and text labels.
    rng = np.random.default_rng(1)
    X = image_like(rng, 6, d=8)
    y = np.array(["cup", "mug", "mug", "cup", "bowl", "bowl"])
    shards = scattered_shards(client, X, workers, bounds=[0, 2, 3, 6])
    labels = [client.scatter(y[:2]), client.scatter(y[2:3]), client.scatter(y[3:])]
    there = KNearestNeighbors(k=4).fit(shards, labels)
    here = KNearestNeighbors(k=4).fit(X, y)
    np.testing.assert_array_equal(there.classes_, ["bowl", "cup", "mug"])
    np.testing.assert_array_equal(there.kneighbors(X)[1], here.kneighbors(X)[1])
    np.testing.assert_array_equal(there.predict(X), here.predict(X))
    with pytest.raises(ValueError, match="requires y to be passed"):
        KNearestNeighbors().fit(shards, None)


# ------------------------------------------------------------------ the rows stay put


def outgoing(client):
    return client.run(lambda dask_worker: list(dask_worker.transfer_outgoing_log))


def test_the_training_rows_never_travel(client, workers, data):
    # Every transfer a worker makes is in its log: to the client (through the scheduler)
    # only the fit's shard descriptions and the candidate lists go; to the other worker
    # only the queries (a broadcast is one copy from here, then one between workers).
    X, y, Q = data
    shards = scattered_shards(client, X, workers)
    before = {w: len(log) for w, log in outgoing(client).items()}
    model = KNearestNeighbors(k=5, metric="l2").fit(shards, y)
    model.predict(Q)
    _, idx = model.kneighbors(Q)
    after = outgoing(client)
    sent = [entry for w, log in after.items() for entry in log[before[w] :]]
    to_workers = [e for e in sent if e["who"] in workers]
    to_client = sum(e["total"] for e in sent if e["who"] not in workers)
    assert [e["total"] for e in to_workers] == [Q.nbytes, Q.nbytes]  # predict, kneighbors
    shard_keys = {f.key for f in shards + model._search.shards}
    assert not shard_keys & {key for e in sent for key in e["keys"]}
    # three shards x two calls x (values + indices) of (n_queries, 5), plus a little
    lists = 3 * 2 * idx.nbytes * 2
    assert 0 < to_client <= lists + 10_000, (to_client, lists)
    assert X.nbytes > 10 * to_client  # the rows would not have fitted in that
    # and no shard was copied to a second worker
    holders = client.who_has(shards + model._search.shards)
    assert all(len(where) == 1 for where in holders.values())


def test_the_model_here_holds_no_rows(client, workers, data):
    X, y, Q = data
    model = KNearestNeighbors(k=1).fit(scattered_shards(client, X, workers), y)
    with pytest.raises(ValueError, match=r"live in 3 shards on Dask workers; model.gather"):
        np.asarray(model.fit_X_)
    assert model.fit_y_.shape == (len(X),)


# ------------------------------------------------------------------ model files


def test_a_sharded_model_refuses_pickle_in_words_and_its_gathered_copy_pickles(
    client, workers, data
):
    import copy
    import pickle

    X, y, Q = data
    model = KNearestNeighbors(k=3).fit(scattered_shards(client, X, workers), y)
    for attempt in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError) as refused:
            attempt(model)
        message = str(refused.value)
        assert message.startswith("cannot pickle or copy a k-NN fitted on Dask shards: the "
                                  "1,400 training rows of this k-NN live in 3 shards")  # fmt: skip
        assert "model.gather() brings them here (1.0 MiB)" in message
    again = pickle.loads(pickle.dumps(model.gather()))
    np.testing.assert_array_equal(again.predict(Q), model.predict(Q))


def test_a_sharded_model_is_saved_by_gathering_it(client, workers, data, tmp_path):
    X, y, Q = data
    model = KNearestNeighbors(k=5, metric="cosine").fit(scattered_shards(client, X, workers), y)
    path = tmp_path / "knn.npz"
    with pytest.raises(ValueError) as e:
        save_model(path, model)
    message = str(e.value)
    assert "\n" not in message and "1,400 training rows" in message
    assert "model.gather() brings them here (1.0 MiB)" in message
    assert not path.exists()
    local = model.gather()
    assert isinstance(local.fit_X_, np.ndarray)
    np.testing.assert_array_equal(local.fit_X_, X)
    assert local.get_params() == model.get_params()
    save_model(path, local)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.model.predict(Q), model.predict(Q))
    np.testing.assert_array_equal(loaded.model.kneighbors(Q)[1], model.kneighbors(Q)[1])
    # a model fitted on one array gathers to itself
    assert local.gather() is local
    # the ONNX export needs the rows too
    pytest.importorskip("onnx")
    from chainrule.models import export_onnx

    with pytest.raises(ValueError, match=r"live in 3 shards on Dask workers; model.gather\(\) "):
        export_onnx(model, tmp_path / "knn.onnx")
    assert not (tmp_path / "knn.onnx").exists()


# ------------------------------------------------------------------ bad input


def test_a_bad_shard_is_named(client, workers, data):
    X, y, _ = data
    bad = X.copy()
    bad[600, 3] = np.nan
    with pytest.raises(ValueError, match=r"^shard 1 of X contains NaN \(first at row 150\)"):
        KNearestNeighbors().fit(scattered_shards(client, bad, workers), y)
    shards = [client.scatter(X[:10]), client.scatter(X[10:20, :50])]
    with pytest.raises(ValueError, match="shard 0 has 192, shard 1 has 50"):
        KNearestNeighbors().fit(shards, y[:20])
    with pytest.raises(ValueError, match="1400 rows in the shards of X, 20 labels in y"):
        KNearestNeighbors().fit(scattered_shards(client, X, workers), y[:20])
    with pytest.raises(ValueError, match=r"k=30 is larger than the number of training samples"):
        KNearestNeighbors(k=30).fit([client.scatter(X[:20])], y[:20])
    with pytest.raises(TypeError, match="shard 1 of X must be a Dask future or a Dask array"):
        KNearestNeighbors().fit([client.scatter(X[:10]), X[10:20]], y[:20])
    with pytest.raises(ValueError, match="must be a 2-D array"):
        KNearestNeighbors().fit(da.from_array(X[:, 0]), y)


def test_a_closed_client(client, data):
    X, y, Q = data
    with distributed.Client(client.scheduler.address) as other:
        model = KNearestNeighbors().fit([other.scatter(X)], y)
    with pytest.raises(RuntimeError, match="the Dask client this k-NN was fitted with is closed"):
        model.predict(Q)


def test_a_dask_array_without_a_client(data, monkeypatch):
    def no_client():
        raise ValueError("No clients found")

    monkeypatch.setattr(distributed, "default_client", no_client)
    X, y, _ = data
    with pytest.raises(ValueError, match=r"there is no client: create one first"):
        KNearestNeighbors().fit(da.from_array(X), y)


@pytest.fixture
def without_distributed(monkeypatch):
    """dask.distributed made unimportable (dask itself stays), as without the extra."""
    for name in list(sys.modules):
        if name.split(".")[0] == "distributed":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "distributed", None)


def test_without_the_extra_dask_data_is_one_line(data, without_distributed):
    X, y, Q = data
    with pytest.raises(ImportError) as e:
        KNearestNeighbors().fit(da.from_array(X, chunks=500), y)
    assert str(e.value).count("\n") == 0 and 'pip install "chainrule[distributed]"' in str(e.value)
    # one array works as ever
    model = KNearestNeighbors(k=3).fit(X, y)
    np.testing.assert_array_equal(model.kneighbors(Q)[1], brute_force(X, Q, "l2")[1][:, :3])


def test_a_one_array_fit_imports_no_dask():
    code = (
        "import sys, numpy as np\n"
        "from chainrule.models.knn import KNearestNeighbors\n"
        "X = np.random.default_rng(0).standard_normal((50, 4))\n"
        "KNearestNeighbors(k=3).fit(X, np.arange(50) % 2).predict(X)\n"
        "KNearestNeighbors(k=3).fit(list(X), list(np.arange(50) % 2)).predict(X)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ a worker lost


def kill(client, address):
    """Kill the worker process at ``address``; return once the scheduler knows."""
    os.kill(client.run(os.getpid)[address], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while address in client.nthreads() and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_for_two_workers(client):
    deadline = time.monotonic() + 60
    while len(client.nthreads()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_worker_lost_with_a_shard_is_one_clear_error(client, workers, data, monkeypatch):
    X, y, Q = data
    spread = KNearestNeighbors(k=3).fit(scattered_shards(client, X, workers), y)
    kept = KNearestNeighbors(k=3).fit([client.scatter(X, workers=[workers[0]])], y)
    expected = KNearestNeighbors(k=3).fit(X, y).predict(Q)
    try:
        # during a search: the worker holding shard 1 dies once the first chunk is merged
        monkeypatch.setattr(_distributed, "QUERY_CHUNK_BYTES", 10 * X.shape[1] * X.itemsize)
        merge = _distributed.merge_neighbors

        def merge_then_kill(lists, k):
            if not killed:
                killed.append(kill(client, workers[1]))
            return merge(lists, k)

        killed = []
        monkeypatch.setattr(_distributed, "merge_neighbors", merge_then_kill)
        with pytest.raises(RuntimeError, match="left the cluster.*fit the model again"):
            spread.predict(Q)
        assert killed
        # and after it: the same error at once, while a model on the other worker works
        with pytest.raises(RuntimeError, match=r"^shard 1 of this k-NN is on no Dask worker"):
            spread.predict(Q)
        np.testing.assert_array_equal(kept.predict(Q), expected)
    finally:
        wait_for_two_workers(client)
