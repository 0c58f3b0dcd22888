"""CIFAR-10 and PROPS end to end: tiny archives in the real formats, served on 127.0.0.1."""

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

import chainrule.data as data
from chainrule.data import cifar10, props
from chainrule.data.download import ChecksumError
from chainrule.data.safe_pickle import UnsafePickleError, load_pickle, loads_pickle


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


# -- CIFAR-10 --------------------------------------------------------------------------


def cifar_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Records as the official binary version stores them: label byte, then CHW planes."""
    chw = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], chw], axis=1).tobytes()


@pytest.fixture
def fake_cifar(server, monkeypatch):
    rng = np.random.default_rng(1)
    members, truth = {}, {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        labels = np.arange(10)[(np.arange(10) + k) % 10]  # every class once per batch
        images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
        members[f"cifar-10-batches-bin/{name}.bin"] = cifar_batch(images, labels)
        truth[name] = (images, labels)
    members["cifar-10-batches-bin/batches.meta.txt"] = "\n".join(cifar10.CLASSES).encode()
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"
    blob = tar_gz(members)
    server.routes["/cifar-10-binary.tar.gz"] = server.Reply(blob)
    monkeypatch.setattr(cifar10, "URL", server.url("/cifar-10-binary.tar.gz"))
    monkeypatch.setattr(cifar10, "MD5", hashlib.md5(blob).hexdigest())
    return blob, truth


def test_cifar10_end_to_end(fake_cifar, server, tmp_path):
    _, truth = fake_cifar
    test = data.load("cifar10", "test", cache_dir=tmp_path, progress=False)
    assert test.images.shape == (10, 32, 32, 3) and test.images.dtype == np.uint8
    np.testing.assert_array_equal(test.images, truth["test_batch"][0])
    np.testing.assert_array_equal(test.labels, truth["test_batch"][1])
    assert test.classes == cifar10.CLASSES
    assert server.hits["/cifar-10-binary.tar.gz"] == 1

    train = data.load("cifar10", "train", cache_dir=tmp_path, progress=False)
    val = data.load("cifar10", "val", cache_dir=tmp_path, progress=False)
    whole = data.load("cifar10", "train", val_fraction=0, cache_dir=tmp_path, progress=False)
    assert server.hits["/cifar-10-binary.tar.gz"] == 1  # unpacked once, then read from cache
    expected = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(whole.images, expected)
    assert (len(train), len(val)) == (40, 10)
    assert np.bincount(val.labels).tolist() == [1] * 10  # stratified
    rows = {r.tobytes() for r in np.concatenate([train.images, val.images])}
    assert rows == {r.tobytes() for r in expected}
    assert len(data.load("cifar10", "all", cache_dir=tmp_path, progress=False)) == 60


def test_cifar10_hand_downloaded_archive(fake_cifar, server, tmp_path):
    blob, truth = fake_cifar
    archive = tmp_path / "mine.tar.gz"
    archive.write_bytes(blob)
    test = data.load("cifar10", "test", cache_dir=tmp_path / "c", archive=archive, progress=False)
    np.testing.assert_array_equal(test.images, truth["test_batch"][0])
    assert server.hits["/cifar-10-binary.tar.gz"] == 0

    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(blob[:-10] + b"0123456789")
    with pytest.raises(ChecksumError, match="official cifar-10-binary.tar.gz"):
        data.load("cifar10", archive=bad, cache_dir=tmp_path / "d", progress=False)


def test_cifar10_corrupt_batch_is_named(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(b"\x00" * 3075)
    with pytest.raises(ValueError, match="data_batch_1.bin is not a CIFAR-10 binary batch"):
        cifar10.read_batches([path])


def test_cifar10_bad_download_leaves_cache_empty(server, tmp_path, monkeypatch):
    server.routes["/c.tgz"] = server.Reply(b"not the archive")
    monkeypatch.setattr(cifar10, "URL", server.url("/c.tgz"))
    with pytest.raises(ChecksumError):
        data.load("cifar10", cache_dir=tmp_path, progress=False)
    assert list((tmp_path / "cifar10").iterdir()) == []


# -- PROPS -----------------------------------------------------------------------------


def instance(label: int, n: int, seed: int, protocol=pickle.DEFAULT_PROTOCOL) -> tuple:
    images = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    entry = {"data": images, "labels": [label] * n}
    return pickle.dumps(entry, protocol=protocol), images


@pytest.fixture
def fake_props(drive, monkeypatch):
    mug1, mug1_img = instance(8, 3, 1)
    mug2, mug2_img = instance(8, 2, 2, protocol=2)
    box1, box1_img = instance(1, 4, 3)
    box2, box2_img = instance(1, 1, 4)
    meta = {"test_split": ["mug_2", "cracker_box_2"], "other": np.arange(3)}
    blob = tar_gz(
        {
            "Progress-Objects-Sample/meta.pkl": pickle.dumps(meta),
            "Progress-Objects-Sample/mug_1.pkl": mug1,
            "Progress-Objects-Sample/mug_2.pkl": mug2,
            "Progress-Objects-Sample/cracker_box_1.pkl": box1,
            "Progress-Objects-Sample/cracker_box_2.pkl": box2,
        }
    )
    monkeypatch.setattr(props, "DRIVE_URL", drive(props.FILE_ID, blob, "form"))
    monkeypatch.setattr(props, "MD5", hashlib.md5(blob).hexdigest())
    train = (np.concatenate([box1_img, mug1_img]), [1] * 4 + [8] * 3)
    test = (np.concatenate([box2_img, mug2_img]), [1] * 1 + [8] * 2)
    return blob, train, test


def test_props_end_to_end_through_drive_confirmation(fake_props, server, tmp_path):
    _, train, test = fake_props
    ds = data.load("props", "test", cache_dir=tmp_path, progress=False)
    assert ds.classes == props.CLASSES
    assert ds.classes[:2] == ["master_chef_can", "cracker_box"] and ds.classes[8] == "mug"
    np.testing.assert_array_equal(ds.images, test[0])
    assert ds.labels.tolist() == test[1]
    tr = data.load("props", "train", val_fraction=0, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(tr.images, train[0])
    assert tr.labels.tolist() == train[1]
    assert server.hits["/uc"] == 1 and server.hits["/download"] == 1
    assert len(data.load("props", "all", cache_dir=tmp_path, progress=False)) == 10


def test_props_refuses_malicious_pickle(tmp_path, monkeypatch):
    evil = pickle.dumps(Evil(str(tmp_path / "pwned")))
    blob = tar_gz(
        {
            "Progress-Objects-Sample/meta.pkl": pickle.dumps({"test_split": ["mug_2"]}),
            "Progress-Objects-Sample/mug_1.pkl": evil,
        }
    )
    archive = tmp_path / "p.tar.gz"
    archive.write_bytes(blob)
    monkeypatch.setattr(props, "MD5", hashlib.md5(blob).hexdigest())
    with pytest.raises(UnsafePickleError, match=r"mug_1\.pkl.*posix\.system|mug_1\.pkl.*os"):
        data.load("props", archive=archive, cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "pwned").exists()


# -- the restricted unpickler --------------------------------------------------------------


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_restricted_unpickler_refuses_code(tmp_path, protocol):
    target = tmp_path / "pwned"
    blob = pickle.dumps({"data": np.zeros(3), "x": Evil(str(target))}, protocol=protocol)
    with pytest.raises(UnsafePickleError, match="system"):
        loads_pickle(blob)
    with pytest.raises(ValueError):  # callers that catch ValueError see it too
        loads_pickle(blob)
    assert not target.exists()
    for name in ("builtins eval", "builtins getattr", "numpy load", "subprocess Popen"):
        module, attr = name.split()
        payload = f"c{module}\n{attr}\n(S'1'\ntR.".encode()
        with pytest.raises(UnsafePickleError, match=f"{module}.{attr}"):
            loads_pickle(payload)


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_restricted_unpickler_reads_arrays(protocol):
    entry = {
        "data": np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3),
        "labels": np.array([3, 4]),
        "scalar": np.float32(2.5),
        "names": ["a", b"b", ("c", 1.5)],
        "fortran": np.asfortranarray(np.ones((3, 2))),
    }
    back = loads_pickle(pickle.dumps(entry, protocol=protocol))
    np.testing.assert_array_equal(back["data"], entry["data"])
    np.testing.assert_array_equal(back["labels"], entry["labels"])
    np.testing.assert_array_equal(back["fortran"], entry["fortran"])
    assert back["scalar"] == np.float32(2.5) and back["names"] == entry["names"]


def test_load_pickle_names_a_truncated_file(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"data": np.zeros(100)})[:50])
    with pytest.raises(ValueError, match="x.pkl is not a readable pickle"):
        load_pickle(path)
