"""The docs site's pages in headless Chromium: the home page and a tutorial render (the
theme's styles and the text are there; a screenshot is not blank)."""

from __future__ import annotations

import pytest

selenium = pytest.importorskip(
    "selenium", reason="selenium is not installed (pip install selenium): no browser to test in"
)
from pagecheck import open_page, screenshot_spread, text_of  # noqa: E402

pytestmark = pytest.mark.docs


@pytest.mark.parametrize(
    "page, heading",
    [
        ("index.html", "In five minutes"),
        ("tutorials/01-computational-graphs/index.html", "The sigmoid neuron"),
    ],
)
def test_a_docs_page_renders(page, heading, site, browser):
    open_page(browser, site / page)
    assert heading in text_of(browser)
    # The theme's stylesheet applied: the header bar has Material's colour, not the
    # browser's default of none.
    header = browser.execute_script(
        "return getComputedStyle(document.querySelector('.md-header')).backgroundColor"
    )
    assert header not in ("rgba(0, 0, 0, 0)", "transparent", "rgb(255, 255, 255)"), header
    spread, inked = screenshot_spread(browser)
    assert spread > 8 and inked > 0.01  # a blank page: 0 and 0
