import os
import stat

import pytest

from chainrule._files import atomic_write, remove_stale_temps


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
