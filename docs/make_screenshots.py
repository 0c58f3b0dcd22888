"""Make the docs' screenshots of the pages (docs/images/*.png) in headless Chromium.

    python docs/make_screenshots.py

Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)
and Selenium (pip install selenium). Runs ``chainrule compare`` on the bundled digits and
``chainrule graph`` on the lecture's sigmoid neuron in a temporary folder, and saves
256-color PNGs of what a browser shows.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from chainrule.cli import main

OUT = Path(__file__).resolve().parent / "images"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")  # fmt: skip


def browser(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def shoot(driver, url: str, name: str, width: int, height: int, scroll_to: str | None = None):
    """Save the window showing ``url`` (after running the script ``scroll_to``)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    driver.get("about:blank")
    driver.get(url)
    time.sleep(0.5)
    if scroll_to:
        driver.execute_script(scroll_to)
        time.sleep(0.2)
    with Image.open(io.BytesIO(driver.get_screenshot_as_png())) as im:
        small = im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(OUT / name, optimize=True)
    print(f"{OUT / name}: {(OUT / name).stat().st_size // 1024} KiB")


def run() -> int:
    work = Path(tempfile.mkdtemp(prefix="chainrule-shots-"))
    try:
        run_dir = work / "compare-digits"
        assert main(["compare", "--out", str(run_dir), "--quiet"]) == 0
        assert main(["eval", str(run_dir), "--model", "svm", "--quiet"]) == 0
        page = work / "neuron.html"
        argv = ["graph", "1/(1 + exp(-(w0*x0 + w1*x1 + w2)))", "w0=2", "x0=-1", "w1=-3",
                "x1=-2", "w2=-3", "--html", str(page), "--quiet"]  # fmt: skip
        assert main(argv) == 0
        driver = browser(str(work / "profile"))
        try:
            report = (run_dir / "report.html").as_uri()
            shoot(driver, report, "report.png", 1000, 820)
            mistakes = "document.querySelector('#model-twolayer .grid').parentElement"
            heading = f"Array.from({mistakes}.querySelectorAll('h3')).pop().scrollIntoView()"
            shoot(driver, report, "report_mistakes.png", 1000, 300, heading)
            shoot(driver, f"{page.as_uri()}#step=19", "graph.png", 1150, 700)
        finally:
            driver.quit()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(run())
