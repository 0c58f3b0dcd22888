"""The README: at most 200 lines, starting with the set-up commands that CI runs on a fresh
machine (``.ci/run``), in the same order, and its CIFAR-10 figures are the numbers page's.
(Its code blocks run, and print what it shows, with the docs pages':
``tests/docs/test_doc_pages.py``.)"""

from __future__ import annotations

import re
from pathlib import Path

from docblocks import blocks

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"


def ci_steps(script: Path = CI) -> list[str]:
    """The commands of a CI script, one per line, written as a user types them: ``python
    -m pip install -q X`` as ``pip install X``, a command run in a fresh folder (``(cd
    "$(mktemp -d)" && X)``) as ``X``."""
    steps = []
    for line in script.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r'^\(cd "\$\(mktemp -d\)" && (.*)\)$', r"\1", line)
        steps.append(line.replace("python -m pip install -q ", "pip install "))
    return steps


def setup_commands() -> list[list[str]]:
    """The steps of the README's first two ``bash`` blocks, after making and activating
    a virtual environment (which they must start with)."""
    found = [b for b in blocks(README.read_text()) if b.lang == "bash"][:2]
    commands = []
    for block in found:
        steps = block.text.strip().split(" && ")
        assert steps[:2] == ["python3 -m venv .venv", ". .venv/bin/activate"], block.text
        commands.append(steps[2:])
    return commands


def test_the_readmes_setup_commands_are_what_ci_runs_in_a_fresh_environment():
    run, test = setup_commands()
    assert run == ["pip install .", "chainrule compare"]
    assert test[-1] == "python -m pytest -q" and test[0].startswith('pip install -e ".[test')
    ci = ci_steps()
    assert any(s.startswith("python3 -m venv ") for s in ci[: ci.index(run[0])])
    where = [ci.index(step) for step in run + test]
    assert where == sorted(where), "CI runs the README's steps in another order"


def test_a_step_ci_runs_otherwise_is_not_taken_for_the_readmes(tmp_path):
    changed = tmp_path / "run"
    changed.write_text(CI.read_text().replace("pip install -q .\n", "pip install -q -e .\n"))
    run, _ = setup_commands()
    assert run[0] in ci_steps() and run[0] not in ci_steps(changed)


def test_the_readme_is_short_and_starts_with_the_setup_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    # Nothing but the title before the first command.
    assert text[: text.index("```")].strip() == "# chainrule"
    first, second = blocks(text)[:2]
    assert first.lang == second.lang == "bash"


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def percentages(text: str) -> list[str]:
    return re.findall(r"(\d+\.\d\d)%", text)


def test_the_readmes_cifar10_figures_are_those_of_the_numbers_page():
    text = README.read_text()
    table = text[text.index("| family |") :].split("\n\n")[0].splitlines()[2:]
    numbers = (ROOT / "docs" / "numbers.md").read_text()
    section = numbers[numbers.index("## Accuracy") :]
    section = section[: section.index("\n## ")]
    rows = [row for row in section.splitlines() if row.startswith("| ")]
    measured = {f for row in rows for f in percentages(cells(row)[1])}
    shown = [f for row in table for f in percentages(cells(row)[-1])]
    assert len(table) == 6 and len(shown) >= 6
    assert set(shown) <= measured, set(shown) - measured


def test_the_readmes_links_lead_to_files_of_the_repository():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert len(local) >= 10  # into the docs
    assert [link for link in local if not (ROOT / link).is_file()] == []
