"""Atomic downloads with checksums and a progress bar, Google Drive included.

A download is written to a temporary file next to its destination, flushed to disk, checked
(length announced by the server, MD5/SHA-256 when given, not a web page) and only then
renamed to the destination. Whatever goes wrong (network error, early end of the transfer,
wrong checksum, Ctrl-C) raises an error and leaves nothing at the destination; what a killed
download left (``.<name>.<8 hex>.part``) is removed by the next download of the same file.

Only ``https`` URLs on the expected hosts are opened, and every redirect and every link
taken from a page is checked the same way (a page cannot send the download to ``file://``
or to another site). Tests serve files from ``http://127.0.0.1`` through
:data:`ALLOW_LOCAL_HTTP`.

Only the standard library's ``urllib`` is used (no extra dependency); it is imported when a
download starts, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .cache import hold, remove_stale_temps, temp_file

__all__ = [
    "ALLOW_LOCAL_HTTP",
    "ChecksumError",
    "DownloadError",
    "GOOGLE_DRIVE_HOSTS",
    "GOOGLE_DRIVE_URL",
    "check_file",
    "download",
    "download_google_drive",
    "file_digest",
    "obtain_archive",
]

#: Where Google Drive serves a file by id (``?export=download&id=...`` is appended).
GOOGLE_DRIVE_URL = "https://drive.google.com/uc"
#: The hosts a Google Drive download may go through (a leading dot: any subdomain).
GOOGLE_DRIVE_HOSTS = ("drive.google.com", "drive.usercontent.google.com", ".googleusercontent.com")
#: Testing hook: while True, plain-HTTP URLs on 127.0.0.1 (a test's local server) are
#: accepted as if they were https URLs of an expected host. Off by default; only tests
#: turn it on (``monkeypatch.setattr(download, "ALLOW_LOCAL_HTTP", True)``).
ALLOW_LOCAL_HTTP = False
USER_AGENT = "chainrule (+https://pypi.org/project/chainrule)"
CHUNK = 1 << 20
TIMEOUT_S = 60.0
_MAX_PAGE = 4 << 20  # a confirmation page is small; more than this is not one
_STALE_PART_S = 60.0  # a .part file this old that no process holds is left by a killed one
_HTML_STARTS = (b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")


class DownloadError(OSError):
    """A download failed (network error, HTTP error, incomplete transfer, unexpected page)."""


class ChecksumError(DownloadError):
    """A downloaded or local file does not have the expected checksum."""


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes (``algorithm``: any name hashlib knows)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: str | os.PathLike, md5: str | None = None, sha256: str | None = None) -> None:
    """Raise :class:`ChecksumError` (naming the file and both digests) on a mismatch."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            actual = file_digest(path, algorithm)
            if actual != expected.lower():
                raise ChecksumError(
                    f"{path}: {algorithm} checksum mismatch (expected {expected.lower()}, "
                    f"got {actual}); the file is corrupt or not the expected one"
                )


def obtain_archive(
    cached: Path,
    md5: str,
    fetch,
    archive: str | os.PathLike | None = None,
    expected: str = "",
) -> Path:
    """The archive file a dataset is unpacked from.

    With ``archive`` (a file downloaded by hand) that file, checked against ``md5``; its
    checksum error ends with ``; expected ...`` when ``expected`` names the right file.
    Otherwise the ``cached`` copy when its checksum is good (a bad one is deleted), else a
    fresh download by ``fetch(cached)``; a failed download's error then says how to do
    without one (the ``--archive`` option, ``archive=``, or the file at ``cached``).
    """
    if archive is not None:
        path = Path(archive).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such archive: {path}")
        try:
            check_file(path, md5=md5)
        except ChecksumError as exc:
            raise ChecksumError(f"{exc}; expected {expected}" if expected else str(exc)) from None
        return path
    if cached.is_file():
        try:
            check_file(cached, md5=md5)
        except ChecksumError:
            cached.unlink()
    if not cached.is_file():
        try:
            fetch(cached)
        except DownloadError as exc:  # ChecksumError too: the same remedy
            raise type(exc)(
                f"{exc}. Without a download: get {expected or cached.name} by hand and give "
                f"it with --archive FILE (archive=FILE from Python), or save it as {cached}"
            ) from None
    return cached


def download(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = TIMEOUT_S,
    hosts: tuple[str, ...] | None = None,
    allow_html: bool = False,
) -> Path:
    """Download ``url`` to the file ``dest`` atomically; return ``Path(dest)``.

    ``url`` must be ``https``; redirects are followed only to ``https`` URLs on ``hosts``
    (default: the host of ``url``; a leading dot admits any subdomain). A web page (HTML)
    is refused unless ``allow_html``: where a file is expected, a page is a login, error or
    quota page.

    Raises :class:`DownloadError` for a refused URL or redirect, network and HTTP errors, a
    web page, and a transfer shorter than the announced ``Content-Length``;
    :class:`ChecksumError` when ``md5``/``sha256`` is given and does not match. In every
    failure case no file is left at ``dest`` (nor a temporary file beside it); an existing
    ``dest`` is replaced only on success.
    """
    import urllib.parse
    import urllib.request

    if hosts is None:
        hosts = ((urllib.parse.urlsplit(url).hostname or "").lower(),)
    hosts = tuple(h.lower() for h in hosts)
    check_url(url, hosts)
    opener = _opener(hosts)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    response = _open(opener.open, request, url, timeout)
    with response:
        return _save(response, url, Path(dest), md5, sha256, progress, allow_html)


def check_url(url: str, hosts: tuple[str, ...]) -> None:
    """Raise :class:`DownloadError` unless ``url`` is ``https`` on one of ``hosts`` (a
    leading dot admits any subdomain), or ``http://127.0.0.1`` under
    :data:`ALLOW_LOCAL_HTTP`."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError as exc:
        raise DownloadError(f"refusing to download from {url!r}: {exc}") from None
    if ALLOW_LOCAL_HTTP and parts.scheme in ("http", "https") and host == "127.0.0.1":
        return
    if parts.scheme != "https":
        raise DownloadError(f"refusing to download from {url!r}: only https URLs are followed")
    if not any(host == h or (h.startswith(".") and host.endswith(h)) for h in hosts):
        raise DownloadError(
            f"refusing to download from {url!r}: {host} is not one of the expected hosts "
            f"({', '.join(hosts)})"
        )


def _opener(hosts: tuple[str, ...], *handlers):
    """A urllib opener that follows a redirect only to a URL :func:`check_url` accepts."""
    import urllib.parse
    import urllib.request

    class CheckedRedirects(urllib.request.HTTPRedirectHandler):
        def http_error_302(self, req, fp, code, msg, headers):
            target = headers.get("Location") or headers.get("URI")
            if target:
                check_url(urllib.parse.urljoin(req.full_url, target), hosts)
            return super().http_error_302(req, fp, code, msg, headers)

        http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    return urllib.request.build_opener(*handlers, CheckedRedirects())


def _open(opener, request, url: str, timeout: float):
    import urllib.error

    try:
        return opener(request, timeout=timeout)
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot reach {url}: {exc.reason}") from exc
    except (OSError, ValueError) as exc:
        raise DownloadError(f"downloading {url} failed: {exc}") from exc


def _save(
    response, url: str, dest: Path, md5, sha256, progress: bool, allow_html: bool = False
) -> Path:
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    if not allow_html and _is_html(response):
        raise DownloadError(_page_message(url, response))
    expected = _content_length(response, url)
    hashes = {}
    if md5:
        hashes["md5"] = (hashlib.md5(), md5.lower())
    if sha256:
        hashes["sha256"] = (hashlib.sha256(), sha256.lower())

    remove_stale_temps(dest.parent, dest.name, ".part", _STALE_PART_S)
    fd, tmp = temp_file(dest.parent, dest.name)
    hold(fd)
    done = False
    received = 0
    try:
        with (
            os.fdopen(fd, "wb") as out,
            tqdm(
                total=expected,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                block = _read(response, url, received, expected)
                if not block:
                    break
                if received == 0 and not allow_html and _looks_like_html(block):
                    raise DownloadError(_page_message(url, response))
                out.write(block)
                for h, _ in hashes.values():
                    h.update(block)
                received += len(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and received != expected:
            raise DownloadError(
                f"downloading {url}: the transfer ended early, after {received} of {expected} bytes"
            )
        for name, (h, want) in hashes.items():
            got = h.hexdigest()
            if got != want:
                raise ChecksumError(
                    f"downloading {url}: {name} checksum mismatch (expected {want}, got {got}); "
                    "the file was not saved"
                )
        os.replace(tmp, dest)
        done = True
        _fsync_dir(dest.parent)
        return dest
    finally:
        if not done:
            tmp.unlink(missing_ok=True)


def _read(response, url: str, received: int, expected: int | None) -> bytes:
    import http.client

    try:
        return response.read(CHUNK)
    except http.client.IncompleteRead as exc:
        raise DownloadError(
            f"downloading {url}: the transfer ended early, after "
            f"{received + len(exc.partial)} of {expected} bytes"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"downloading {url} failed after {received} bytes: {exc}") from exc


def _content_length(response, url: str) -> int | None:
    """The announced length of the body, None when not announced."""
    values = response.headers.get_all("Content-Length") or []
    if not values:
        return None
    lengths = {v.strip() for value in values for v in value.split(",")}
    if len(lengths) != 1 or not next(iter(lengths)).isdigit():
        raise DownloadError(f"downloading {url}: the server sent a bad Content-Length {values}")
    return int(lengths.pop())


def _looks_like_html(block: bytes) -> bool:
    head = block[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(_HTML_STARTS)


def _page_message(url: str, response) -> str:
    kind = response.headers.get_content_type()
    return (
        f"downloading {url}: the server answered with a web page ({kind}) instead of the "
        "file (a login, error or quota page?); nothing was saved"
    )


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, hence best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- Google Drive -------------------------------------------------------------------------


def download_google_drive(
    file_id: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    base_url: str | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download a publicly shared Google Drive file by id, atomically, like :func:`download`.

    For large files Drive first answers with an HTML page ("can't scan this file for
    viruses") instead of the file; this follows it: the form ``id="download-form"`` with its
    hidden inputs (current Drive), else a ``confirm=`` token in a link or a
    ``download_warning`` cookie (older Drive). If Drive still answers with a page (quota
    exceeded, no access), :class:`DownloadError` says so and suggests downloading by hand.

    ``base_url`` defaults to :data:`GOOGLE_DRIVE_URL` (read at call time). Every URL opened
    (redirects, the page's form or link included) must be ``https`` on
    :data:`GOOGLE_DRIVE_HOSTS` or on ``base_url``'s host.
    """
    import http.cookiejar
    import urllib.parse
    import urllib.request

    base = base_url or GOOGLE_DRIVE_URL
    hosts = (*GOOGLE_DRIVE_HOSTS, (urllib.parse.urlsplit(base).hostname or "").lower())
    url = f"{base}?{urllib.parse.urlencode({'export': 'download', 'id': file_id})}"
    check_url(url, hosts)
    jar = http.cookiejar.CookieJar()
    opener = _opener(hosts, urllib.request.HTTPCookieProcessor(jar))
    headers = {"User-Agent": USER_AGENT}
    by_hand = f"the file is at https://drive.google.com/file/d/{file_id} (download it in a browser)"

    response = _open(opener.open, urllib.request.Request(url, headers=headers), url, timeout)
    with response:
        if not _is_html(response):
            return _save(response, url, Path(dest), md5, sha256, progress)
        page = response.read(_MAX_PAGE).decode("utf-8", errors="replace")
        page_url = response.geturl()

    next_url = _confirmed_url(page, page_url, url, jar)
    if next_url is None:
        raise DownloadError(
            f"Google Drive answered {url} with a web page instead of the file and no download "
            f"link in it (quota exceeded or no access?); {by_hand}"
        )
    check_url(next_url, hosts)
    response = _open(
        opener.open, urllib.request.Request(next_url, headers=headers), next_url, timeout
    )
    with response:
        if _is_html(response):
            raise DownloadError(
                f"Google Drive answered the confirmed download {next_url} with another web "
                f"page (quota exceeded or no access?); {by_hand}"
            )
        return _save(response, next_url, Path(dest), md5, sha256, progress)


def _is_html(response) -> bool:
    return response.headers.get_content_type() in ("text/html", "application/xhtml+xml")


def _confirmed_url(page: str, page_url: str, url: str, jar) -> str | None:
    """The URL that the confirmation page leads to, or None if it has none."""
    import urllib.parse

    form = _find_download_form(page)
    if form is not None:
        action, fields = form
        target = urllib.parse.urljoin(page_url, action or page_url)
        sep = "&" if urllib.parse.urlsplit(target).query else "?"
        return target + sep + urllib.parse.urlencode(fields)
    match = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    token = match.group(1) if match else None
    if token is None:
        for cookie in jar:
            if cookie.name.startswith("download_warning"):
                token = cookie.value
                break
    if token is None:
        return None
    return f"{url}&{urllib.parse.urlencode({'confirm': token})}"


def _find_download_form(page: str) -> tuple[str, list[tuple[str, str]]] | None:
    from html.parser import HTMLParser

    class FormParser(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.inside = False
            self.found = False
            self.action = ""
            self.fields: list[tuple[str, str]] = []

        def handle_starttag(self, tag, attrs):
            a = {k: (v or "") for k, v in attrs}
            if tag == "form" and a.get("id") == "download-form":
                self.inside = self.found = True
                self.action = a.get("action", "")
            elif tag == "input" and self.inside and a.get("name"):
                if a.get("type", "text").lower() in ("hidden", "text", ""):
                    self.fields.append((a["name"], a.get("value", "")))

        def handle_endtag(self, tag):
            if tag == "form":
                self.inside = False

    parser = FormParser()
    parser.feed(page)
    parser.close()
    return (parser.action, parser.fields) if parser.found else None
