"""Downloads: atomic, checked, https to the expected hosts only, never a web page."""

import hashlib
import os
import time

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
    with pytest.raises(
        DownloadError, match="web page instead of the file.*drive.google.com/file/d/FILEID123"
    ):
        download_google_drive("FILEID123", tmp_path / "a", progress=False)
    assert leftovers(tmp_path) == []


def test_google_drive_wrong_checksum(drive, tmp_path):
    base = drive("FILEID123", PAYLOAD, "form")
    with pytest.raises(ChecksumError):
        download_google_drive(
            "FILEID123", tmp_path / "a", md5="1" * 32, progress=False, base_url=base
        )
    assert leftovers(tmp_path) == []


# -- where a download may go -----------------------------------------------------------


def test_plain_http_is_refused_without_the_testing_hook(server, tmp_path, monkeypatch):
    import chainrule.data.download as dl

    server.routes["/f.bin"] = server.Reply(PAYLOAD)
    monkeypatch.setattr(dl, "ALLOW_LOCAL_HTTP", False)
    with pytest.raises(DownloadError, match="only https URLs are followed"):
        download(server.url("/f.bin"), tmp_path / "f.bin", progress=False)
    assert server.hits["/f.bin"] == 0 and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://drive.google.com/uc?id=1", True),
        ("https://doc-0s-3k-docs.googleusercontent.com/docs/x", True),
        ("https://DRIVE.usercontent.google.com/download", True),
        ("http://drive.google.com/uc", False),
        ("file:///dev/zero", False),
        ("ftp://drive.google.com/x", False),
        ("https://drive.google.com@evil.example/uc", False),
        ("https://evilgoogleusercontent.com/x", False),
        ("https://drive.google.com.evil.example/x", False),
        ("http://127.0.0.1:8000/x", False),  # only under the testing hook
    ],
)
def test_check_url(url, ok):
    from chainrule.data.download import GOOGLE_DRIVE_HOSTS, check_url

    if ok:
        check_url(url, GOOGLE_DRIVE_HOSTS)
    else:
        with pytest.raises(DownloadError, match="refusing to download from"):
            check_url(url, GOOGLE_DRIVE_HOSTS)


def test_drive_page_cannot_send_the_download_to_a_local_file(server, tmp_path):
    # A confirmation page whose form points at file:// used to be followed (file:///dev/zero
    # fills the disk); here the file is small so that the old behaviour shows as a copy.
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for the download folder")
    page = (
        f'<html><form id="download-form" action="file://{secret}"><input type="hidden" '
        'name="id" value="X"></form></html>'
    )
    server.routes["/uc"] = server.Reply(page.encode(), content_type="text/html")
    dest = tmp_path / "out" / "a.tar.gz"
    with pytest.raises(DownloadError, match="refusing to download from 'file://.*only https"):
        download_google_drive("X", dest, progress=False, base_url=server.url("/uc"))
    assert not dest.parent.exists() or leftovers(dest.parent) == []


@pytest.mark.parametrize(
    "location, message",
    [
        ("https://example.invalid/archive.tar.gz", "example.invalid is not one of the expected"),
        ("file:///etc/passwd", "'file:///etc/passwd': only https"),
        ("/elsewhere", None),  # same host: followed
    ],
)
def test_redirects_stay_on_the_expected_hosts(server, tmp_path, location, message):
    server.routes["/f.bin"] = server.Reply(b"", status=302, headers={"Location": location})
    server.routes["/elsewhere"] = server.Reply(PAYLOAD)
    dest = tmp_path / "f.bin"
    if message is None:
        download(server.url("/f.bin"), dest, md5=MD5, progress=False)
        assert dest.read_bytes() == PAYLOAD
    else:
        with pytest.raises(DownloadError, match=message):
            download(server.url("/f.bin"), dest, progress=False)
        assert leftovers(tmp_path) == []


# -- what a download must be -------------------------------------------------------------


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"<!DOCTYPE html><html><body>Sign in to continue</body></html>", "text/html"),
        (b"\n  <html><body>quota exceeded</body></html>", "application/octet-stream"),
    ],
)
def test_a_web_page_is_not_saved_as_the_file(server, tmp_path, body, content_type):
    server.routes["/f.bin"] = server.Reply(body, content_type=content_type)
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match=r"web page \(.*\) instead of the file"):
        download(server.url("/f.bin"), dest, progress=False)
    assert leftovers(tmp_path) == []
    download(server.url("/f.bin"), dest, progress=False, allow_html=True)
    assert dest.read_bytes() == body


def test_conflicting_content_lengths_are_refused(server, tmp_path):
    # http.client reads as many bytes as the first header says; the second one is the
    # real length: the short body used to be kept without a word.
    server.routes["/f.bin"] = server.Reply(
        PAYLOAD[:1000], headers={"Content-Length": str(len(PAYLOAD))}
    )
    with pytest.raises(DownloadError, match="bad Content-Length"):
        download(server.url("/f.bin"), tmp_path / "f.bin", progress=False)
    assert leftovers(tmp_path) == []


def test_a_killed_download_is_cleaned_up_by_the_next(server, tmp_path):
    from chainrule.data.cache import hold

    server.routes["/f.bin"] = server.Reply(PAYLOAD)
    stale = tmp_path / ".f.bin.0123abcd.part"  # what a SIGKILLed download leaves
    stale.write_bytes(PAYLOAD[:1000])
    recent = tmp_path / ".f.bin.4567cdef.part"  # just created by another process
    recent.write_bytes(b"")
    live = tmp_path / ".f.bin.89abcdef.part"  # another process still writing it
    live.write_bytes(b"")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(live, (old, old))
    other = tmp_path / ".g.bin.0123abcd.part"  # another file's download
    other.write_bytes(b"")
    os.utime(other, (old, old))
    with open(live, "rb") as f:
        hold(f.fileno())
        download(server.url("/f.bin"), tmp_path / "f.bin", md5=MD5, progress=False)
        remaining = leftovers(tmp_path)
    assert remaining == sorted(["f.bin", recent.name, live.name, other.name])
