"""CIFAR-10 end to end: a tiny archive in the official binary format, served on 127.0.0.1."""

import hashlib

import numpy as np
import pytest

import chainrule.data as data
from chainrule.data import cifar10
from chainrule.data.download import ChecksumError, DownloadError


def cifar_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Records as the official binary version stores them: label byte, then CHW planes."""
    chw = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], chw], axis=1).tobytes()


@pytest.fixture
def fake_cifar(server, monkeypatch, tar_gz):
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
    with pytest.raises(ChecksumError) as failed:
        data.load("cifar10", cache_dir=tmp_path, progress=False)
    assert list((tmp_path / "cifar10").iterdir()) == []
    # the error says how to do without the download
    message = str(failed.value)
    assert "checksum mismatch" in message and "--archive FILE" in message
    assert f"save it as {tmp_path / 'cifar10' / cifar10.ARCHIVE_NAME}" in message


def test_cifar10_unreachable_host_names_the_archive_option_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "URL", "https://127.0.0.1:9/cifar-10-binary.tar.gz")
    with pytest.raises(DownloadError) as failed:
        data.load("cifar10", cache_dir=tmp_path, progress=False)
    message = str(failed.value)
    assert message.startswith("cannot reach https://127.0.0.1:9/")
    assert "get the official cifar-10-binary.tar.gz from https://127.0.0.1:9/" in message
    assert "--archive FILE (archive=FILE from Python)" in message
    assert str(tmp_path / "cifar10" / "cifar-10-binary.tar.gz") in message


def test_cifar10_web_page_instead_of_the_archive(server, tmp_path, monkeypatch):
    # A captive portal or an error page served with status 200.
    page = b"<!DOCTYPE html><html><body>Please log in to the network</body></html>"
    server.routes["/c.tgz"] = server.Reply(page, content_type="text/html")
    monkeypatch.setattr(cifar10, "URL", server.url("/c.tgz"))
    with pytest.raises(DownloadError, match="web page"):
        data.load("cifar10", cache_dir=tmp_path, progress=False)
    assert list((tmp_path / "cifar10").iterdir()) == []
