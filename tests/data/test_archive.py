"""Unpacking selected files of a tar archive."""

import os
import time
from pathlib import Path

import pytest

from chainrule.data.archive import extract_files


def flat(member):
    return Path(member).name


def test_extract_takes_the_chosen_members_only(tmp_path, tar_gz):
    members = {"top/a.pkl": b"alpha", "top/sub/b.pkl": b"beta", "top/readme.html": b"<html>"}
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(tar_gz(members))
    keep = {"a.pkl", "b.pkl"}
    target = extract_files(
        archive,
        tmp_path / "out",
        choose=lambda m: flat(m) if flat(m) in keep else None,
        required=("a.pkl",),
    )
    assert sorted(p.name for p in target.iterdir()) == ["a.pkl", "b.pkl"]
    assert (target / "b.pkl").read_bytes() == b"beta"


def test_extract_refuses_missing_files_and_leaves_nothing(tmp_path, tar_gz):
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(tar_gz({"a.pkl": b"a"}))
    with pytest.raises(ValueError, match="lacks meta.pkl"):
        extract_files(archive, tmp_path / "out", choose=flat, required=("meta.pkl",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tar.gz"]
    with pytest.raises(ValueError, match="refusing to store"):
        extract_files(archive, tmp_path / "out", choose=lambda m: "../evil")


def test_a_killed_unpacking_is_cleaned_up_by_the_next(tmp_path, tar_gz):
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(tar_gz({"a.pkl": b"a"}))
    left = tmp_path / ".out.0123abcd.tmp"  # what a SIGKILLed unpacking leaves
    left.mkdir()
    (left / "a.pkl").write_bytes(b"half")
    old = time.time() - 3600
    for p in (left / "a.pkl", left):
        os.utime(p, (old, old))
    extract_files(archive, tmp_path / "out", choose=flat)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "x.tar.gz"]
