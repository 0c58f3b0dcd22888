"""The README's and the docs pages' code runs and prints what they show (see ``docblocks`` for the
rules: ``python`` blocks run, ``pycon`` blocks are doctests, ``console`` blocks are
commands with their output)."""

from __future__ import annotations

import doctest
import linecache
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from docblocks import Block, blocks, commands, matches, normalize
from threadpoolctl import threadpool_limits

from chainrule.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CHECKED = {"python", "pycon", "console"}
# The README and every page of the site but the API reference (made from docstrings).
PAGES = [ROOT / "README.md"] + sorted(
    p
    for p in DOCS.rglob("*.md")
    if "api" not in p.relative_to(DOCS).parts
    and any(b.lang in CHECKED for b in blocks(p.read_text()))
)


def run_python(block: Block, page: Path, namespace: dict) -> None:
    name = block.where(page)
    # Tracebacks then show the page's lines.
    linecache.cache[name] = (len(block.text), None, block.text.splitlines(True), name)
    code = compile(block.text, name, "exec")
    exec(code, namespace)


def run_pycon(block: Block, page: Path, namespace: dict) -> None:
    test = doctest.DocTestParser().get_doctest(
        block.text, namespace, block.where(page), str(page), block.line
    )
    report: list[str] = []
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    result = runner.run(test, out=report.append, clear_globs=False)
    assert result.failed == 0, "".join(report)
    namespace.update(test.globs)  # doctest ran on a copy of the page's namespace


def run_command(command: str, capsys) -> str:
    """What ``command`` prints to stdout; it must succeed."""
    argv = shlex.split(command)
    if argv[0] == "chainrule":
        capsys.readouterr()
        status = main(argv[1:])
        captured = capsys.readouterr()
        assert status == 0, f"$ {command}\nexit status {status}\n{captured.err}"
        return captured.out
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    done = subprocess.run(command, shell=True, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"$ {command}\nexit status {done.returncode}\n{done.stderr}"
    return done.stdout


def run_console(block: Block, page: Path, capsys) -> None:
    for cmd in commands(block):
        printed = run_command(cmd.command, capsys)
        assert matches(cmd.expected, printed), (
            f"{block.where(page)}: $ {cmd.command}\n--- the page shows:\n"
            f"{normalize(cmd.expected)}\n--- it prints:\n{normalize(printed)}"
        )


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_the_pages_code_runs_and_prints_what_the_page_shows(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHAINRULE_CACHE", str(tmp_path / ".cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__main__"}
    ran = 0
    # One BLAS thread, as the command line uses on small data: the pages' examples train
    # on the digits, whose matrix products gain nothing from a second thread, and on a
    # busy machine waiting for one makes them many times slower.
    with threadpool_limits(1, user_api="blas"):
        ran = run_page(page, namespace, capsys)
    assert ran > 0


def run_page(page: Path, namespace: dict, capsys) -> int:
    ran = 0
    for block in blocks(page.read_text()):
        if block.lang not in CHECKED or block.not_run:
            continue
        if block.lang == "python":
            run_python(block, page, namespace)
        elif block.lang == "pycon":
            run_pycon(block, page, namespace)
        else:
            run_console(block, page, capsys)
        ran += 1
    return ran
