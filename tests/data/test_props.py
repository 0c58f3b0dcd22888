"""PROPS end to end: a tiny archive of pickles in the real layout, served through a Google
Drive-style confirmation page on 127.0.0.1; the unpacked files are checked on every read."""

import hashlib
import os
import pickle

import numpy as np
import pytest

import chainrule.data as data
from chainrule.data import props
from chainrule.data.safe_pickle import UnsafePickleError


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def instance(label: int, n: int, seed: int, protocol=pickle.DEFAULT_PROTOCOL) -> tuple:
    images = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    entry = {"data": images, "labels": [label] * n}
    return pickle.dumps(entry, protocol=protocol), images


@pytest.fixture
def fake_props(drive, monkeypatch, tar_gz):
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


def test_props_refuses_malicious_pickle(tmp_path, monkeypatch, tar_gz):
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


# -- the unpacked cache is checked on every read ----------------------------------------


def unpacked(tmp_path):
    return tmp_path / "props" / props.FOLDER


def test_unpacked_files_come_with_their_checksums(fake_props, tmp_path):
    data.load("props", "test", cache_dir=tmp_path, progress=False)
    folder = unpacked(tmp_path)
    lines = (folder / props.CHECKSUMS).read_text().splitlines()
    names = [line.split("  ")[1] for line in lines]
    assert names == sorted(p.name for p in folder.glob("*.pkl"))
    for line in lines:
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("how", ["changed", "added", "removed", "no checksums"])
def test_a_planted_cache_file_is_never_unpickled(fake_props, server, tmp_path, monkeypatch, how):
    # Someone (or something) alters the unpacked folder after the archive's md5 was
    # checked: the altered folder must not be read; it is unpacked again from the archive.
    _, train, _ = fake_props
    data.load("props", "test", cache_dir=tmp_path, progress=False)
    folder = unpacked(tmp_path)
    planted, _ = instance(0, 5, 99)  # valid data, wrong images and labels
    if how == "changed":
        (folder / "mug_1.pkl").write_bytes(planted)
    elif how == "added":
        (folder / "master_chef_can_1.pkl").write_bytes(planted)
    elif how == "removed":
        (folder / "mug_1.pkl").unlink()
    else:
        (folder / props.CHECKSUMS).unlink()
    if how != "no checksums":
        with pytest.raises(props.UnpackedFileError, match=r"\.pkl"):
            props.read_props(folder)

    tr = data.load("props", "train", val_fraction=0, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(tr.images, train[0])
    assert tr.labels.tolist() == train[1]
    assert not (folder / "master_chef_can_1.pkl").exists()
    assert server.hits["/download"] == 1  # unpacked again from the cached archive


def test_a_pickle_bomb_in_meta_is_refused_quickly(tmp_path, monkeypatch, tar_gz):
    bomb = []
    for _ in range(25):
        bomb = [bomb] * 8
    blob = tar_gz(
        {
            "Progress-Objects-Sample/meta.pkl": pickle.dumps({"test_split": bomb}),
            "Progress-Objects-Sample/mug_1.pkl": instance(8, 2, 1)[0],
        }
    )
    archive = tmp_path / "p.tar.gz"
    archive.write_bytes(blob)
    monkeypatch.setattr(props, "MD5", hashlib.md5(blob).hexdigest())
    with pytest.raises(UnsafePickleError, match=r"meta\.pkl: .*more than 10,000,000 elements"):
        data.load("props", archive=archive, cache_dir=tmp_path, progress=False)
