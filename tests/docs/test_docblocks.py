"""How the docs' tests read a page: fenced blocks, markers, commands and the output
matching that decides whether a page shows what its code prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from docblocks import NOT_RUN, blocks, commands, matches

PAGE = """# A page

```python
x = 1
```

Inline ```` ```python ```` is not a fence.

<!-- not run: needs a cluster -->
```python
connect("tcp://HOST:8786")
```

- a list item

    ```console
    $ chainrule eval runs/svm
    accuracy: 95.54% (343 of 359)
    time:     153 us (prediction)
    $ chainrule graph "x * 2" x=3
    f = 6
    ```
"""


def test_blocks_are_found_in_order_with_their_language_line_and_marker():
    found = blocks(PAGE)
    assert [(b.lang, b.line, b.not_run) for b in found] == [
        ("python", 3, None),
        ("python", 10, "needs a cluster"),
        ("console", 16, None),
    ]
    assert found[0].text == "x = 1\n"
    assert found[2].text.startswith("$ chainrule eval")  # the list's indentation removed


def test_a_console_block_is_commands_each_with_its_output():
    (eval_cmd, graph_cmd) = commands(blocks(PAGE)[2])
    assert eval_cmd.command == "chainrule eval runs/svm"
    assert eval_cmd.expected.splitlines() == [
        "accuracy: 95.54% (343 of 359)",
        "time:     153 us (prediction)",
    ]
    assert graph_cmd.expected == "f = 6\n"


@pytest.mark.parametrize(
    "printed, same",
    [
        ("accuracy: 95.54% (343 of 359)\ntime: 2.1 ms (prediction)\n", True),
        ("accuracy:  95.54%  (343 of 359)\ntime: 87 us (prediction)", True),
        ("accuracy: 95.82% (344 of 359)\ntime: 153 us (prediction)\n", False),
        ("accuracy: 95.54% (343 of 359)\n", False),
        ("accuracy: 95.54% (343 of 359)\ntime: 153 us (prediction)\nextra line\n", False),
    ],
)
def test_output_matches_up_to_times_and_spacing_only(printed, same):
    shown = "accuracy: 95.54% (343 of 359)\ntime:     153 us (prediction)\n"
    assert matches(shown, printed) is same


def test_ellipsis_and_run_folders_match_anything_else_must_be_equal():
    assert matches(
        "run folder: runs/compare-20260101-120000  (total 3.7 s)",
        "run folder: runs/compare-20261207-171200  (total 12.1 s)",
    )
    assert matches(
        '{"image": "a.png", "probability": ...}', '{"image": "a.png", "probability": 0.9}'
    )
    assert not matches('{"image": "a.png", ...}', '{"image": "b.png", "label": 3}')


def test_a_fence_that_never_closes_is_an_error():
    with pytest.raises(ValueError, match="never closes"):
        blocks("```python\nx = 1\n")


def test_every_block_marked_not_run_says_why():
    docs = Path(__file__).resolve().parents[2] / "docs"
    for page in docs.rglob("*.md"):
        for line in page.read_text().splitlines():
            if line.strip().startswith("<!-- not run"):
                assert NOT_RUN.fullmatch(line.strip()), (page, line)
