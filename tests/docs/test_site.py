"""The docs site builds strictly and has a page for every entry of its navigation, and
its API reference is made from the docstrings. (tests/browser/test_docs_site.py opens
its pages in a browser.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[2]


def nav_pages() -> list[str]:
    """The Markdown and notebook pages named in mkdocs.yml's navigation."""
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


class Links(HTMLParser):
    """The href and src values of a page."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.found += [v for k, v in attrs if k in ("href", "src") and v]


def test_every_link_between_the_pages_resolves(site):
    # mkdocs --strict checks the links of Markdown pages; this also covers the links in
    # the notebooks' text, which reach the site as HTML.
    broken = []
    for page in site.rglob("*.html"):
        if page.name == "404.html":  # served for any address: its links start at the root
            continue
        parser = Links()
        parser.feed(page.read_text(errors="replace"))
        for link in parser.found:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or not parts.path:
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {link}")
    assert not broken, "\n".join(broken[:20])
