"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import shutil
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
