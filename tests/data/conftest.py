"""A small HTTP server on 127.0.0.1 for download tests, started per test in a thread.

Downloads follow only https URLs of the expected hosts; the ``server`` fixture turns on the
documented testing hook ``download.ALLOW_LOCAL_HTTP`` for the test that uses it, so that
``http://127.0.0.1`` is accepted there (and only there).
"""

from __future__ import annotations

import io
import tarfile
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from chainrule.data import download


class Reply:
    """What the server sends for a path: body, content type, extra headers, and optionally
    a Content-Length larger than the body (a transfer that ends early)."""

    def __init__(
        self,
        body: bytes,
        content_type="application/octet-stream",
        headers=None,
        claimed_length=None,
        status=200,
    ):
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}
        self.claimed_length = claimed_length
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the http.server API)
        parts = urlsplit(self.path)
        self.server.hits[parts.path] += 1
        route = self.server.routes.get(parts.path)
        if route is None:
            self.send_error(404, "not found")
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        reply = route(query, self.headers) if callable(route) else route
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        length = reply.claimed_length if reply.claimed_length is not None else len(reply.body)
        self.send_header("Content-Length", str(length))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


class LocalServer:
    Reply = Reply

    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes = {}
        self.httpd.hits = Counter()
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def routes(self) -> dict:
        return self.httpd.routes

    @property
    def hits(self) -> Counter:
        return self.httpd.hits

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(download, "ALLOW_LOCAL_HTTP", True)
    srv = LocalServer()
    try:
        yield srv
    finally:
        srv.close()


def drive_routes(srv: LocalServer, file_id: str, payload: bytes, style: str = "form") -> None:
    """Serve ``payload`` the way Google Drive serves a large file: ``/uc`` answers with a
    confirmation page; following it (``form``: the download form with hidden inputs;
    ``cookie``: a confirm token from a cookie and a link) gives the file."""
    token = "t0K3n_x"

    def uc(query, headers):
        if query.get("id") != file_id:
            return Reply(b"no such file", status=404, content_type="text/plain")
        if style == "cookie" and query.get("confirm") == token:
            if f"download_warning_1={token}" not in headers.get("Cookie", ""):
                return Reply(b"<html>cookie missing</html>", content_type="text/html")
            return Reply(payload)
        if style == "form":
            page = f"""<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning
            </title></head><body><p>Google Drive can't scan this file for viruses.</p>
            <form id="download-form" action="{srv.url("/download")}" method="get">
            <input type="submit" id="uc-download-link" value="Download anyway"/>
            <input type="hidden" name="id" value="{file_id}">
            <input type="hidden" name="export" value="download">
            <input type="hidden" name="confirm" value="t">
            <input type="hidden" name="uuid" value="1234-abcd"></form></body></html>"""
            return Reply(page.encode(), content_type="text/html; charset=utf-8")
        if style == "cookie":
            page = (
                f'<html><body><a id="uc-download-link" href="/uc?export=download&amp;'
                f'confirm={token}&amp;id={file_id}">Download anyway</a></body></html>'
            )
            return Reply(
                page.encode(),
                content_type="text/html",
                headers={"Set-Cookie": f"download_warning_1={token}; Path=/"},
            )
        # "quota": a page without any way to the file
        return Reply(
            b"<html><body>Too many users have viewed or downloaded this file "
            b"recently.</body></html>",
            content_type="text/html",
        )

    def usercontent(query, headers):
        want = {"id": file_id, "export": "download", "confirm": "t", "uuid": "1234-abcd"}
        if query != want:
            return Reply(b"<html>bad request</html>", content_type="text/html", status=400)
        return Reply(payload)

    srv.routes["/uc"] = uc
    srv.routes["/download"] = usercontent


@pytest.fixture
def drive(server):
    """``drive(file_id, payload, style)`` sets up Drive-style routes on ``server``."""

    def setup(file_id: str, payload: bytes, style: str = "form") -> str:
        drive_routes(server, file_id, payload, style)
        return server.url("/uc")

    return setup


@pytest.fixture
def tar_gz():
    """``tar_gz({member name: bytes})`` -> the bytes of a .tar.gz archive holding them."""

    def make(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, payload in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
        return buf.getvalue()

    return make
