"""The run folders' pages in a real browser: what a person sees on them."""

from __future__ import annotations

import json

import pytest

from chainrule.cli import main
from chainrule.report.text import format_accuracy

selenium = pytest.importorskip(
    "selenium", reason="selenium is not installed (pip install selenium): no browser to test in"
)
from pagecheck import broken_images, open_page, screenshot_spread, text_of  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "softmax"
    argv = ["train", "softmax", "--search", "--epochs", "5", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    return out


def heading_of(table, text):
    return next(h for h in table.find_elements(By.TAG_NAME, "th") if h.text.startswith(text))


def metrics_of(folder):
    return json.loads((folder / "metrics.json").read_text())


def test_compare_report_shows_every_model_its_plots_and_mistakes(browser, digits_comparison):
    open_page(browser, digits_comparison / "report.html")
    text = text_of(browser)
    models = metrics_of(digits_comparison)["models"]
    assert set(models) == {"knn", "svm", "softmax", "twolayer"}
    board = browser.find_element(By.CSS_SELECTOR, "#leaderboard table")
    for name, record in models.items():
        row = next(r for r in board.find_elements(By.CSS_SELECTOR, "tbody tr") if name in r.text)
        assert format_accuracy(record["val_accuracy"]) in row.text
        assert format_accuracy(record["test_accuracy"]) in row.text
        assert f"{name}.npz" in row.text
    best = max(models, key=lambda n: models[n]["val_accuracy"])
    assert f"Best on the validation split: {best}" in text
    # every picture loaded: plots, the sample images, the mistakes' tiles
    images = browser.find_elements(By.TAG_NAME, "img")
    plots = {i.get_attribute("src").rsplit("/", 1)[-1] for i in images}
    assert {"twolayer_loss.png", "knn_cv.png", "svm_confusion.png", "samples.png"} <= plots
    assert broken_images(browser) == []
    mistakes = browser.find_elements(By.CSS_SELECTOR, ".mistake")
    assert mistakes, "no misclassified example shown"
    first = mistakes[0]
    browser.execute_script("arguments[0].scrollIntoView()", first)
    assert first.is_displayed() and "true:" in first.text and "predicted:" in first.text
    tile = first.find_element(By.TAG_NAME, "img")
    assert browser.execute_script("return arguments[0].naturalWidth", tile) > 0
    browser.execute_script("window.scrollTo(0, 0)")
    spread, inked = screenshot_spread(browser)
    assert spread > 8 and inked > 0.01  # a blank page: 0 and 0


def test_the_leaderboard_sorts_by_a_clicked_column(browser, digits_comparison):
    open_page(browser, digits_comparison / "report.html")
    board = browser.find_element(By.CSS_SELECTOR, "#leaderboard table")
    heading = heading_of(board, "test acc")

    def column():
        cells = board.find_elements(By.CSS_SELECTOR, "tbody tr td:nth-child(4)")
        return [float(c.get_attribute("data-sort")) for c in cells]

    heading.click()
    assert column() == sorted(column(), reverse=True)
    heading.click()
    assert column() == sorted(column())


def test_on_a_phone_nothing_runs_off_the_page(browser, digits_comparison):
    open_page(browser, digits_comparison / "report.html", width=390, height=844)
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390  # wide tables scroll inside their own box
    figure = browser.find_element(By.CSS_SELECTOR, "figure img")
    assert figure.size["width"] <= 390
    spread, inked = screenshot_spread(browser)
    assert spread > 8 and inked > 0.01  # a blank page: 0 and 0


def test_search_page_has_a_sortable_table_with_the_best_marked(browser, search_run):
    open_page(browser, search_run / "report.html")
    search = metrics_of(search_run)["search"]
    table = next(
        t for t in browser.find_elements(By.CSS_SELECTOR, "table.sortable")
        if "validation acc" in t.text and "learning_rate" in t.text
    )  # fmt: skip
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == len(search["results"]) == 9
    best = table.find_elements(By.CSS_SELECTOR, "tbody tr.best")
    assert len(best) == 1 and "best" in best[0].text
    assert format_accuracy(search["best_val_accuracy"]) in best[0].text
    heading = heading_of(table, "fit time")
    heading.click()
    times = [float(c.get_attribute("data-sort")) for c in table.find_elements(
        By.CSS_SELECTOR, "tbody tr td:last-child")]  # fmt: skip
    assert times == sorted(times, reverse=True)
    spread, inked = screenshot_spread(browser)
    assert spread > 8 and inked > 0.01  # a blank page: 0 and 0
    assert "search.png" in [
        i.get_attribute("src").rsplit("/", 1)[-1] for i in browser.find_elements(By.TAG_NAME, "img")
    ]
    assert broken_images(browser) == []


def test_eval_and_the_comparison_of_runs(browser, digits_comparison, search_run, tmp_path):
    assert main(["eval", str(search_run), "--split", "val", "--quiet"]) == 0
    open_page(browser, search_run / "report.html")
    section = browser.find_element(By.ID, "evaluations")
    assert "softmax on digits (validation)" in section.text
    assert broken_images(browser) == []

    page = tmp_path / "runs.html"
    assert main(["report", str(digits_comparison), str(search_run), "--out", str(page)]) == 0
    open_page(browser, page)
    rows = browser.find_elements(By.CSS_SELECTOR, "table tbody tr")
    assert len(rows) == 5  # four models of the comparison, one of the training run
    spread, inked = screenshot_spread(browser)
    assert spread > 8 and inked > 0.01  # a blank page: 0 and 0
    link = browser.find_element(By.CSS_SELECTOR, "table tbody tr.best td a")
    link.click()
    assert browser.title == "chainrule compare on digits"
    assert broken_images(browser) == []
