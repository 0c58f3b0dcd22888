"""The docs site builds strictly, has a page for every entry of its navigation, and its
pages render in a browser (a headless-Chromium screenshot is not blank)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from browser import screenshot

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[2]


def nav_pages() -> list[str]:
    """The Markdown and notebook pages named in mkdocs.yml's navigation."""
    import re

    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") :]
    return re.findall(r"([\w./-]+\.(?:md|ipynb))\s*$", nav, flags=re.MULTILINE)


def built(site: Path, page: str) -> Path:
    stem = page.rsplit(".", 1)[0]
    if stem == "index" or stem.endswith("/index"):
        return site / (stem + ".html")
    return site / stem / "index.html"


def test_every_page_of_the_navigation_is_built(site):
    pages = nav_pages()
    assert "index.md" in pages and any(p.endswith(".ipynb") for p in pages)
    missing = [p for p in pages if not built(site, p).is_file()]
    assert not missing


def test_the_api_reference_is_generated_from_the_docstrings(site):
    html = (site / "api" / "engine" / "index.html").read_text()
    # Phrases of the docstrings of Tensor and gradcheck, not of the page itself.
    assert "An array that remembers how it was computed" in html
    assert "finite differences" in html


@pytest.mark.parametrize("page", ["index.md", "tutorials/01-computational-graphs.ipynb"])
def test_a_page_renders_in_a_browser(page, site, served, tmp_path):
    html = built(site, page).relative_to(site).as_posix()
    pixels = screenshot(served + html, tmp_path / "page.png")
    assert pixels.shape[:2] == (900, 1280)
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    background = counts.max() / counts.sum()
    # The theme's stylesheet loaded: the header bar across the top is coloured, not white
    # (an unstyled page or a server's error page has none).
    header = pixels[8:40].reshape(-1, 3).astype(int)
    coloured = np.mean((255 - header).max(axis=1) > 60)
    assert coloured > 0.8, coloured
    # And the page has content: a rendered page here is 70-85% background, a page of one
    # line of text (an error message) over 99%.
    assert len(colours) > 100 and background < 0.95, (len(colours), background)
