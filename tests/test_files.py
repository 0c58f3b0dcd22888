import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from chainrule._files import (
    RECORD_FILE,
    FileRecord,
    ForeignFileError,
    atomic_write,
    read_file,
    remove_stale_temps,
    write_file,
)


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    with atomic_write(target, "w") as f:
        f.write("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as f:
        f.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_atomic_write_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "model.npz") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.npz").stat().st_mode) == 0o644


def test_atomic_write_refuses_other_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "a", "a"):
            pass


def test_remove_stale_temps_takes_only_its_own_pattern(tmp_path):
    stale = tmp_path / ".checkpoint.npz.0123abcd.tmp"
    stale.write_bytes(b"")
    keep = [tmp_path / ".checkpoint.npz.notmine.tmp", tmp_path / "checkpoint.npz"]
    for p in keep:
        p.write_bytes(b"")
    assert remove_stale_temps(tmp_path, "checkpoint.npz") == [stale]
    assert not stale.exists() and all(p.exists() for p in keep)


# -- never through a link; in a recorded folder, never over a file chainrule did not write --

posix = pytest.mark.skipif(os.name != "posix", reason="links and FIFOs")


def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("important\n")
    return path


@posix
def test_atomic_write_replaces_a_link_never_the_file_it_points_to(tmp_path):
    target = victim(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.npz").symlink_to(target)
    write_file(tmp_path / "out" / "model.npz", b"new")
    assert target.read_text() == "important\n"
    assert not (tmp_path / "out" / "model.npz").is_symlink()


@posix
@pytest.mark.parametrize("kind", ["file", "symbolic link", "folder"])
def test_in_a_recorded_folder_a_file_chainrule_did_not_write_is_never_replaced(tmp_path, kind):
    run = tmp_path / "run"
    run.mkdir()
    target = victim(tmp_path)
    if kind == "file":
        (run / "loss.png").write_text("the user's own\n")
    elif kind == "folder":
        (run / "loss.png").mkdir()
    else:
        (run / "loss.png").symlink_to(target)
    with FileRecord.open(run):
        with pytest.raises(ForeignFileError, match="loss.png.*did not write"):
            write_file(run / "loss.png", b"png")
    assert target.read_text() == "important\n"
    if kind == "file":
        assert (run / "loss.png").read_text() == "the user's own\n"
    assert not list(run.glob(".loss.png.*"))  # no temporary file left behind


def test_the_record_lists_what_was_written_by_name_size_and_hash(tmp_path):
    with FileRecord.open(tmp_path) as record:
        write_file(tmp_path / "a.npz", b"abc")
        with atomic_write(tmp_path / "metrics.json", "w") as f:
            f.write("{}")
        write_file(tmp_path / "a.npz", b"abcd")  # chainrule's own file: replaced
        assert record.ours("a.npz") and record.ours("metrics.json")
    saved = json.loads((tmp_path / RECORD_FILE).read_text())
    entry = saved["files"]["a.npz"]
    assert (entry["size"], entry["sha256"]) == (4, hashlib.sha256(b"abcd").hexdigest())
    with FileRecord.open(tmp_path) as record:
        assert record.known and record.ours("a.npz")
        (tmp_path / "a.npz").write_bytes(b"user")  # same size, other content
        assert not record.ours("a.npz")
        assert record.unknown(["a.npz", "metrics.json", "missing"]) == ["a.npz"]
        with pytest.raises(ForeignFileError):
            record.remove("a.npz")
        record.remove("metrics.json")
        assert not (tmp_path / "metrics.json").exists() and "metrics.json" not in record.names


def test_a_folder_is_recognised_however_its_path_is_spelled(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(tmp_path)
    with FileRecord.open(run) as record:
        write_file(Path("run") / ".." / "run" / "x.json", "{}")
        if os.name == "posix":
            (tmp_path / "alias").symlink_to(run)
            write_file(tmp_path / "alias" / "y.json", "{}")
        assert record.ours("x.json") and (os.name != "posix" or record.ours("y.json"))
    with FileRecord.open(run):  # closed records guard nothing
        pass
    write_file(run / "z.json", "{}")
    with FileRecord.open(run) as record:
        assert not record.ours("z.json")


def test_a_damaged_record_knows_nothing(tmp_path):
    (tmp_path / RECORD_FILE).write_text("{not json")
    (tmp_path / "model.npz").write_bytes(b"x")
    with FileRecord.open(tmp_path) as record:
        assert not record.known and "damaged" in record.problem
        assert not record.ours("model.npz")


@posix
def test_read_file_never_follows_a_link_never_hangs_and_is_bounded(tmp_path):
    target = victim(tmp_path)
    (tmp_path / "link").symlink_to(target)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="symbolic link"):
        read_file(tmp_path / "link", 100)
    with pytest.raises(OSError, match="not a plain file"):
        read_file(tmp_path / "fifo", 100)
    with pytest.raises(OSError, match="larger than"):
        read_file(target, 4)
    assert read_file(target, 100) == b"important\n"
