import hashlib
import os

import pytest

from chainrule.data.download import (
    ChecksumError,
    DownloadError,
    check_file,
    download,
    download_google_drive,
)

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # several read chunks
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_download_good_checksum(server, tmp_path):
    server.routes["/f.bin"] = server.Reply(PAYLOAD)
    dest = tmp_path / "sub" / "f.bin"
    out = download(server.url("/f.bin"), dest, md5=MD5, sha256=SHA256, progress=False)
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == ["f.bin"]
    check_file(dest, md5=MD5, sha256=SHA256)


def test_download_bad_checksum_leaves_nothing(server, tmp_path):
    server.routes["/f.bin"] = server.Reply(PAYLOAD)
    dest = tmp_path / "f.bin"
    with pytest.raises(ChecksumError, match="md5 checksum mismatch"):
        download(server.url("/f.bin"), dest, md5="0" * 32, progress=False)
    assert leftovers(tmp_path) == []
    with pytest.raises(ChecksumError, match="sha256"):
        download(server.url("/f.bin"), dest, sha256="f" * 64, progress=False)
    assert leftovers(tmp_path) == []


def test_failed_download_keeps_previous_file(server, tmp_path):
    server.routes["/f.bin"] = server.Reply(PAYLOAD)
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ChecksumError):
        download(server.url("/f.bin"), dest, md5="0" * 32, progress=False)
    assert dest.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["f.bin"]


def test_truncated_transfer_is_an_error(server, tmp_path):
    server.routes["/f.bin"] = server.Reply(PAYLOAD[:100_000], claimed_length=len(PAYLOAD))
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match=f"100000 of {len(PAYLOAD)} bytes"):
        download(server.url("/f.bin"), dest, progress=True)
    assert leftovers(tmp_path) == []


def test_http_error_and_unreachable_host(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/missing"), tmp_path / "x", progress=False)
    server.close()
    with pytest.raises(DownloadError, match="cannot reach"):
        download(server.url("/missing"), tmp_path / "x", progress=False, timeout=5)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("style", ["form", "cookie"])
def test_google_drive_confirmation_page(drive, server, tmp_path, style):
    base = drive("FILEID123", PAYLOAD, style)
    dest = tmp_path / "archive.tar.gz"
    download_google_drive("FILEID123", dest, md5=MD5, progress=False, base_url=base)
    assert dest.read_bytes() == PAYLOAD
    assert server.hits["/uc"] == (1 if style == "form" else 2)
    assert server.hits["/download"] == (1 if style == "form" else 0)


def test_google_drive_small_file_served_directly(server, tmp_path):
    server.routes["/uc"] = server.Reply(PAYLOAD, headers={"Content-Disposition": "attachment"})
    dest = tmp_path / "a"
    download_google_drive("X", dest, md5=MD5, progress=False, base_url=server.url("/uc"))
    assert dest.read_bytes() == PAYLOAD


def test_google_drive_page_without_link(drive, tmp_path, monkeypatch):
    import chainrule.data.download as dl

    monkeypatch.setattr(dl, "GOOGLE_DRIVE_URL", drive("FILEID123", PAYLOAD, "quota"))
    with pytest.raises(DownloadError, match="web page instead of the file.*archive="):
        download_google_drive("FILEID123", tmp_path / "a", progress=False)
    assert leftovers(tmp_path) == []


def test_google_drive_wrong_checksum(drive, tmp_path):
    base = drive("FILEID123", PAYLOAD, "form")
    with pytest.raises(ChecksumError):
        download_google_drive(
            "FILEID123", tmp_path / "a", md5="1" * 32, progress=False, base_url=base
        )
    assert leftovers(tmp_path) == []
