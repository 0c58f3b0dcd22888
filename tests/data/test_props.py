"""PROPS end to end: a tiny archive of pickles in the real layout, served through a Google
Drive-style confirmation page on 127.0.0.1; every file is checked against its md5 when read."""

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


def use_archive(monkeypatch, blob: bytes, files: dict[str, bytes]) -> None:
    """Make ``blob`` the official archive and ``files`` its official pickles."""
    monkeypatch.setattr(props, "MD5", hashlib.md5(blob).hexdigest())
    monkeypatch.setattr(
        props, "FILE_MD5", {k: hashlib.md5(v).hexdigest() for k, v in files.items()}
    )


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
    files = {
        "meta.pkl": pickle.dumps(meta),
        "mug_1.pkl": mug1,
        "mug_2.pkl": mug2,
        "cracker_box_1.pkl": box1,
        "cracker_box_2.pkl": box2,
    }
    blob = tar_gz({f"Progress-Objects-Sample/{k}": v for k, v in files.items()})
    monkeypatch.setattr(props, "DRIVE_URL", drive(props.FILE_ID, blob, "form"))
    use_archive(monkeypatch, blob, files)
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
    files = {
        "meta.pkl": pickle.dumps({"test_split": ["mug_2"]}),
        "mug_1.pkl": pickle.dumps(Evil(str(tmp_path / "pwned"))),
    }
    blob = tar_gz({f"Progress-Objects-Sample/{k}": v for k, v in files.items()})
    archive = tmp_path / "p.tar.gz"
    archive.write_bytes(blob)
    use_archive(monkeypatch, blob, files)
    with pytest.raises(UnsafePickleError, match=r"mug_1\.pkl.*posix\.system|mug_1\.pkl.*os"):
        data.load("props", archive=archive, cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "pwned").exists()


# -- every file is checked against its md5 when read -------------------------------------


def unpacked(tmp_path):
    return tmp_path / "props" / props.FOLDER


def test_the_bundled_md5_list_covers_the_official_archive():
    sums = props.file_md5s()
    assert len(sums) == 158 and props.META_FILE in sums
    assert all(len(d) == 32 and int(d, 16) >= 0 for d in sums.values())
    objects = {name.rsplit("_", 1)[0] for name in sums if name != props.META_FILE}
    assert objects == set(props.CLASSES)


@pytest.mark.parametrize("how", ["changed", "removed", "planted"])
def test_a_planted_cache_file_is_never_unpickled(fake_props, server, tmp_path, monkeypatch, how):
    # Someone (or something) alters the unpacked folder after the archive's md5 was
    # checked: no altered file is unpickled, and the data stay the official data.
    _, train, _ = fake_props
    data.load("props", "test", cache_dir=tmp_path, progress=False)
    folder = unpacked(tmp_path)
    fake, _ = instance(0, 5, 99)  # valid data, wrong images and labels
    if how == "changed":
        (folder / "mug_1.pkl").write_bytes(fake)
    elif how == "removed":
        (folder / "mug_1.pkl").unlink()
    else:
        (folder / "master_chef_can_1.pkl").write_bytes(fake)  # not an official file
    if how != "planted":
        with pytest.raises(props.UnpackedFileError, match=r"mug_1\.pkl (is not the file|is miss)"):
            props.read_props(folder)

    from chainrule.data import safe_pickle

    read = []
    real_load = safe_pickle.load_pickle
    monkeypatch.setattr(
        safe_pickle, "load_pickle", lambda p, **kw: read.append(p) or real_load(p, **kw)
    )
    tr = data.load("props", "train", val_fraction=0, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(tr.images, train[0])
    assert tr.labels.tolist() == train[1]
    assert {"meta.pkl", "mug_1.pkl"} <= {p.name for p in read}
    assert "master_chef_can_1.pkl" not in {p.name for p in read}
    assert server.hits["/download"] == 1  # unpacked again from the cached archive


def test_a_pickle_bomb_in_meta_is_refused_quickly(tmp_path, monkeypatch, tar_gz):
    bomb = []
    for _ in range(25):
        bomb = [bomb] * 8
    files = {"meta.pkl": pickle.dumps({"test_split": bomb}), "mug_1.pkl": instance(8, 2, 1)[0]}
    blob = tar_gz({f"Progress-Objects-Sample/{k}": v for k, v in files.items()})
    archive = tmp_path / "p.tar.gz"
    archive.write_bytes(blob)
    use_archive(monkeypatch, blob, files)
    with pytest.raises(UnsafePickleError, match=r"meta\.pkl: .*more than 10,000,000 elements"):
        data.load("props", archive=archive, cache_dir=tmp_path, progress=False)
