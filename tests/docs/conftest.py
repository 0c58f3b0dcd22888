"""Fixtures of the docs' tests: the built site, served on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site as ``mkdocs build --strict`` writes it.

    ``CHAINRULE_DOCS_SITE=DIR`` names a site built already (CI builds it once, running the
    tutorials); otherwise it is built here without running them (``tests/docs`` runs them
    on their own).
    """
    given = os.environ.get("CHAINRULE_DOCS_SITE")
    if given:
        return Path(given).resolve()
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e .[docs]")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, CHAINRULE_DOCS_EXECUTE="false", NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="session")
def served(site):
    """The base URL of ``site`` served over HTTP on 127.0.0.1 (as a browser sees it)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
