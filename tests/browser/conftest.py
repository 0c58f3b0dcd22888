"""A headless Chromium for the tests that look at the pages as a person does.

Uses Debian's ``chromium`` and ``chromium-driver`` through Selenium (``.ci/run``
installs both); the tests skip, saying why, where any of them is missing. Chromium
starts with a fresh profile and without the background services that try to reach the
network.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1200,900",
)


def _find(*names: str) -> str | None:
    for name in names:
        found = os.environ.get(f"CHAINRULE_{name.upper().replace('-', '_')}") or shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    """A Selenium driver of headless Chromium (one for the session)."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
    )
    from selenium.webdriver.chrome.service import Service

    chromium = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip(
            "headless Chromium is not installed: apt-get install chromium chromium-driver "
            "(as .ci/run does)"
        )
    profile = tempfile.mkdtemp(prefix="chainrule-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
