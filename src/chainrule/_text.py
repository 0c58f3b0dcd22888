"""Text from files and folders, as a terminal should show it.

Class names come from model files, ONNX metadata and folder names, and paths from the
user: any of them can hold control characters (``"\\x1b[2J"`` clears a terminal, a
right-to-left override reorders what follows). Whatever chainrule prints goes through
`shown` (a name on its own: as it is when every character is printable, else as ``repr``
writes it, quotes included, so that an escaped name cannot be mistaken for a plain one)
or `escaped` (a line of text: each character that is not printable written as ``repr``
writes it inside a string).
"""

from __future__ import annotations

__all__ = ["escaped", "shown"]


def shown(name) -> str:
    """``name`` as text to print: itself if printable, else its ``repr``
    (``"\\x1b[2Jcat"`` -> ``"'\\\\x1b[2Jcat'"``)."""
    text = str(name)
    return text if text.isprintable() else repr(text)


def escaped(text) -> str:
    """``text`` with each character that is not printable escaped as ``repr`` would
    (``"a\\x07b"`` -> ``"a\\\\x07b"``); printable text is returned as it is."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
