"""Sample image files to try ``chainrule predict`` on: digits of the bundled test split.

``python -m chainrule.data.samples [FOLDER]`` writes ``digit0.png`` ... ``digit9.png`` (8x8
grayscale, the first test image of each class, never seen in training) into FOLDER
(default: the current folder) and prints their paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from chainrule._files import atomic_write

__all__ = ["write_digit_pngs"]


def write_digit_pngs(folder: str | os.PathLike = ".", n_per_class: int = 1) -> list[Path]:
    """Write digits of the bundled test split as 8x8 grayscale PNG files.

    The first ``n_per_class`` test images of each class ``c``, in test-split order, go to
    ``folder/digit<c>.png`` (``digit<c>_<i>.png``, i = 0, 1, ... when ``n_per_class > 1``).
    Reading one back with :func:`chainrule.data.read_image` gives exactly the test image.
    Returns the paths written; existing files of those names are replaced.
    """
    from PIL import Image

    from .loading import load

    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive int, got {n_per_class!r}")
    test = load("digits", split="test", progress=False)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for c, name in enumerate(test.classes):
        for i, index in enumerate(((test.labels == c).nonzero()[0])[:n_per_class]):
            stem = f"digit{name}" if n_per_class == 1 else f"digit{name}_{i}"
            path = folder / f"{stem}.png"
            with atomic_write(path) as f:  # never through a link at that name
                Image.fromarray(test.images[index, :, :, 0]).save(f, format="PNG")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m chainrule.data.samples [FOLDER]", file=sys.stderr)
        return 2
    try:
        paths = write_digit_pngs(args[0] if args else ".")
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
