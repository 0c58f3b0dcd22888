"""Unpacking selected files of a tar archive, with their checksums."""

import hashlib
import os
import time
from pathlib import Path

import pytest

from chainrule.data.archive import extract_files, read_checksums


def flat(member):
    return Path(member).name


def test_extract_records_checksums_and_skips_unwanted_members(tmp_path, tar_gz):
    members = {"top/a.pkl": b"alpha", "top/sub/b.pkl": b"beta", "top/readme.html": b"<html>"}
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(tar_gz(members))
    keep = {"a.pkl", "b.pkl"}
    target = extract_files(
        archive,
        tmp_path / "out",
        choose=lambda m: flat(m) if flat(m) in keep else None,
        required=("a.pkl",),
        checksums="SUMS",
    )
    assert sorted(p.name for p in target.iterdir()) == ["SUMS", "a.pkl", "b.pkl"]
    sums = read_checksums(target / "SUMS")
    assert sums == {
        "a.pkl": hashlib.sha256(b"alpha").hexdigest(),
        "b.pkl": hashlib.sha256(b"beta").hexdigest(),
    }


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


@pytest.mark.parametrize("text", ["zz  a.pkl\n", "a.pkl\n", "0" * 64 + " a.pkl\n"])
def test_read_checksums_refuses_a_garbled_list(tmp_path, text):
    (tmp_path / "SUMS").write_text(text)
    with pytest.raises(ValueError, match="not a list of SHA-256 checksums"):
        read_checksums(tmp_path / "SUMS")
    with pytest.raises(ValueError, match="missing"):
        read_checksums(tmp_path / "nothing")
