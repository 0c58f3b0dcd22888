"""Screenshots of web pages with headless Chromium, for the tests that check that pages
render. Without Chromium a test that needs one is skipped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


def chromium() -> str | None:
    """The path of a Chromium or Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(url: str, path: Path) -> np.ndarray:
    browser = chromium()
    if browser is None:
        pytest.skip("no Chromium to render the pages with")
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={path.parent / 'profile'}",
            "--window-size=1280,900",
            "--virtual-time-budget=5000",
            f"--screenshot={path}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and path.is_file(), done.stderr
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
