"""What the browser tests check on a page: loading it at a width, its text, its images,
and whether a screenshot of it shows anything."""

from __future__ import annotations

import io
import os
import time

import numpy as np


def open_page(driver, path, fragment: str = "", width: int = 1200, height: int = 900):
    """Load the file ``path`` (at ``#fragment``) in a window of ``width`` CSS pixels."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    driver.get("about:blank")  # a new fragment of the same file would not reload it
    url = f"file://{os.path.abspath(path)}" + (f"#{fragment}" if fragment else "")
    driver.get(url)
    deadline = time.monotonic() + 20
    while driver.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, f"{url} did not finish loading"
        time.sleep(0.05)


def text_of(driver) -> str:
    """Every text in the page's body, whether shown or hidden (the document's text)."""
    return driver.execute_script("return document.body.textContent")


def broken_images(driver) -> list[str]:
    """The images of the page that did not load (missing file, not a picture)."""
    return driver.execute_script(
        "return Array.from(document.images)"
        ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )


def screenshot_spread(driver) -> tuple[float, float]:
    """(standard deviation of the gray levels, share of pixels not near-white) of a
    screenshot of the window: a blank page gives (0, 0)."""
    from PIL import Image

    with Image.open(io.BytesIO(driver.get_screenshot_as_png())) as im:
        gray = np.asarray(im.convert("L"), dtype=np.float64)
    return float(gray.std()), float((gray < 235).mean())
