"""The cache folder and the clean-up of what killed writers leave in it."""

import os
import time

import pytest

from chainrule.data.cache import ENV_VAR, cache_root, hold, remove_stale_temps


def age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_cache_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env" and (tmp_path / "env").is_dir()
    assert cache_root(tmp_path / "given") == tmp_path / "given"
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="cannot create the cache folder"):
        cache_root(tmp_path / "file" / "sub")


def test_remove_stale_temps_takes_old_unheld_entries_of_its_own_pattern(tmp_path):
    stale_file = tmp_path / ".a.tar.gz.0123abcd.part"
    stale_dir = tmp_path / ".folder.89abcdef.tmp"
    keep = {
        "recent": tmp_path / ".a.tar.gz.11112222.part",
        "held": tmp_path / ".a.tar.gz.33334444.part",
        "not hex": tmp_path / ".a.tar.gz.notmine0.part",
        "other name": tmp_path / ".b.tar.gz.0123abcd.part",
        "the file itself": tmp_path / "a.tar.gz",
    }
    for p in [stale_file, *keep.values()]:
        p.write_bytes(b"x")
    stale_dir.mkdir()
    (stale_dir / "meta.pkl").write_bytes(b"x")
    for p in [stale_file, stale_dir, stale_dir / "meta.pkl", *keep.values()]:
        if p != keep["recent"]:
            age(p, 120)
    with open(keep["held"], "rb") as f:
        hold(f.fileno())
        removed = remove_stale_temps(tmp_path, "a.tar.gz", ".part", min_age_s=60)
        removed += remove_stale_temps(tmp_path, "folder", ".tmp", min_age_s=60)
    assert sorted(removed) == sorted([stale_file, stale_dir])
    assert all(p.exists() for p in keep.values())


def test_a_folder_still_being_filled_is_kept(tmp_path):
    busy = tmp_path / ".folder.0123abcd.tmp"
    busy.mkdir()
    age(busy, 3600)
    (busy / "new.pkl").write_bytes(b"x")  # written a moment ago
    assert remove_stale_temps(tmp_path, "folder", ".tmp", min_age_s=60) == []
    assert remove_stale_temps(tmp_path, "fold*", ".tmp", min_age_s=0) == [busy]
    assert remove_stale_temps(tmp_path / "missing", "x", ".tmp", 0) == []
