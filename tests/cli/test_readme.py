"""The README's command-line examples print what the README shows: the comparison table
on the digits (everything but the times) and the ``eval --model svm`` of that run."""

from __future__ import annotations

import re
from pathlib import Path

from chainrule.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def block_from(text: str, marker: str) -> list[str]:
    """The lines of a fenced block from ``marker`` (its opening fence, or a line in it)
    to its closing fence."""
    body = text[text.index(marker) :]
    if body.startswith("```"):
        body = body[body.index("\n") + 1 :]
    return body[: body.index("```")].rstrip("\n").splitlines()


def without_times(row: str) -> list[str]:
    """A table row's cells, the fit and predict times dropped."""
    cells = re.split(r"\s{2,}", row.strip())
    return cells[:3] + cells[5:]


def test_the_comparison_table_and_its_eval_are_the_readmes(tmp_path, capsys):
    readme = README.read_text()
    shown = block_from(readme, "```\ndigits: 1150 training")
    out = tmp_path / "cmp"
    assert main(["compare", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == shown[0]
    assert [without_times(r) for r in printed[1:-1]] == [without_times(r) for r in shown[1:-1]]

    shown = block_from(readme, "$ chainrule eval runs/compare-.../ --model svm")
    assert main(["eval", str(out), "--model", "svm"]) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = [line.replace("runs/compare-...", str(out)) for line in shown[1:]]
    assert len(printed) == len(shown)
    for got, want in zip(printed, shown):
        if want.startswith("time:"):
            assert re.fullmatch(r"time:\s+[\d.]+ (us|ms) \(prediction\)", got), got
        else:
            assert got == want
    assert '"correct": 343' in readme and '"accuracy": 0.9554' in readme
