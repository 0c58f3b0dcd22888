"""The fenced code blocks of a Markdown page, and how the docs' tests run them.

A page's blocks are checked by their language:

- ``python``: run in order, in one namespace per page, in a fresh working folder; an
  exception fails the page. A block right after ``<!-- not run: REASON -->`` is skipped
  (a SLURM cluster, a robot's camera): the reason is required.
- ``pycon``: ``>>>`` examples checked by doctest (``...`` matches anything, runs of
  spaces count as one), in the same namespace as the page's ``python`` blocks.
- ``console``: ``$ COMMAND`` lines, each followed by what it prints to stdout. The
  command runs in the page's working folder (``chainrule ...`` in this process, any
  other through the shell) and must exit with status 0; its output must match the lines
  shown, where times (``3.7 s``, ``469 us``), run-folder names and ``...`` match
  anything, and runs of spaces count as one.

Blocks in any other language (``bash`` for set-up commands and runs on CIFAR-10,
``text`` for layouts and outputs shown for illustration) are not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<lang>[\w+-]*)[^`\n]*$")
# A fence opens a block unless its info string holds a backtick (then it is inline code).
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>\S[^>]*?)\s*-->")

# A duration as the command line prints it (``3.7 s``, ``469 us``, ``0.8 min``) and the
# time-stamped folder of a run that was given no --out.
TIME = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ns|us|µs|ms|s|min)\b")
RUN_FOLDER = re.compile(r"runs/(?:compare|train)-\d{8}-\d{6}(?:-\d+)?")


@dataclass
class Block:
    """One fenced block: its language, its text (indentation removed), the line of its
    opening fence (1-based) and, when it is marked so, why it is not run."""

    lang: str
    text: str
    line: int
    not_run: str | None = None

    def where(self, page: Path) -> str:
        """``docs/PAGE.md:LINE``, for messages and tracebacks."""
        parts = page.parts
        last = len(parts) - 1 - parts[::-1].index("docs") if "docs" in parts else 0
        shown = Path(page.name) if page.name == "README.md" else Path(*parts[last:])
        return f"{shown}:{self.line}"


def blocks(text: str) -> list[Block]:
    """The fenced blocks of Markdown ``text`` in order."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m["indent"], m["fence"], m["lang"]
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        if j == len(lines):
            raise ValueError(f"line {i + 1}: a {fence} block that never closes")
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]]
        before = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        marked = NOT_RUN.search(before)
        found.append(Block(lang, "\n".join(body) + "\n", i + 1, marked and marked["reason"]))
        i = j + 1
    return found


@dataclass
class Command:
    """A ``$ command`` line of a console block and the output shown below it."""

    command: str
    expected: str


def commands(block: Block) -> list[Command]:
    """The commands of a console block, each with the lines that follow it."""
    found: list[Command] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            found.append(Command(line[2:].strip(), ""))
        elif not found:
            raise ValueError(f"line {block.line}: a console block must start with '$ '")
        else:
            found[-1].expected += line + "\n"
    return found


def normalize(text: str) -> str:
    """Output with times and run-folder names masked, runs of spaces as one, and no
    blank lines at either end."""
    text = RUN_FOLDER.sub("runs/<run>", TIME.sub("<time>", text))
    lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in text.strip("\n").splitlines()]
    return "\n".join(lines)


def matches(shown: str, printed: str) -> bool:
    """Whether ``printed`` is what ``shown`` shows, ``...`` standing for any text."""
    parts = [re.escape(p) for p in normalize(shown).split("...")]
    return re.fullmatch(".*?".join(parts), normalize(printed), flags=re.DOTALL) is not None
