"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

# scikit-learn's estimator checks include array-API inputs only when SciPy is told to
# accept them, which must happen before SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

NOBODY = 65534


@pytest.fixture
def unprivileged():
    """Run a check as a user whom file permissions apply to.

    Yields ``(folder, run)``: ``folder`` is a fresh folder that such a user can enter, and
    ``run(check)`` calls ``check()``. As root (who reads and writes anything) the call
    happens in a forked child that has given up root for the ``nobody`` user first, and an
    assertion failing there fails the test here.
    """
    folder = Path(tempfile.mkdtemp(prefix="chainrule-perm-"))
    folder.chmod(0o777)

    def run(check):
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            check()
            return
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                check()
                code = 0
            except BaseException:
                traceback.print_exc(file=sys.__stderr__)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the check failed as user nobody"

    try:
        yield folder, run
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def digits_comparison(tmp_path_factory):
    """A ``chainrule compare`` run folder on the bundled digits (its four default
    models), made once for the tests that read its files and its page."""
    from chainrule.cli import main

    out = tmp_path_factory.mktemp("comparison") / "cmp"
    assert main(["compare", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site as ``mkdocs build --strict`` writes it.

    ``CHAINRULE_DOCS_SITE=DIR`` names a site built already (CI builds it once, running the
    tutorials); otherwise it is built here without running them
    (``tests/docs/test_tutorials.py`` runs them on their own). Needs the docs extra.
    """
    given = os.environ.get("CHAINRULE_DOCS_SITE")
    if given:
        return Path(given).resolve()
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e .[docs]")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, CHAINRULE_DOCS_EXECUTE="false", NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out
