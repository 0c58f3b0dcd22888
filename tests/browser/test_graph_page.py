"""The stepping graph page in a real browser: the lecture's sigmoid neuron forward and
backward, step by step, and a small network's graph from Python."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main

selenium = pytest.importorskip(
    "selenium", reason="selenium is not installed (pip install selenium): no browser to test in"
)
from pagecheck import broken_images, open_page, screenshot_spread, text_of  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

# The lecture's numbers: f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at these values.
VALUES = {"w0": 2, "x0": -1, "w1": -3, "x1": -2, "w2": -3}
GRADIENTS = {"w0": "-0.20", "x0": "0.39", "w1": "-0.39", "x1": "-0.59", "w2": "0.20"}
STEPS = 22  # 5 inputs and 8 gates forward, the output's gradient, 8 gates backward


@pytest.fixture(scope="module")
def neuron_page(tmp_path_factory):
    page = tmp_path_factory.mktemp("graph") / "neuron.html"
    values = [f"{k}={v}" for k, v in VALUES.items()]
    argv = ["graph", "1/(1 + exp(-(w0*x0 + w1*x1 + w2)))", *values, "--html", str(page)]
    assert main([*argv, "--quiet"]) == 0
    return page


def counter(browser) -> str:
    return browser.find_element(By.ID, "counter").text


def leaf_table(browser) -> dict[str, tuple[str, str]]:
    rows = browser.find_elements(By.CSS_SELECTOR, "#leaves tbody tr")
    cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    return {name: (value, grad) for name, value, grad in cells}


def test_stepping_forward_then_backward_reaches_the_lectures_gradients(browser, neuron_page):
    open_page(browser, neuron_page)
    assert counter(browser) == f"step 0 of {STEPS}"
    start = text_of(browser)
    assert all(name in start for name in VALUES)  # the graph is there, without numbers
    for absent in ("0.73", *GRADIENTS.values(), "2.00", "-1.00"):
        assert absent not in start, f"{absent} is in the document at step 0"
    assert broken_images(browser) == []
    spread, inked = screenshot_spread(browser)
    assert spread > 8 and inked > 0.01  # a blank page: 0 and 0

    forward = browser.find_element(By.ID, "next")
    for _ in range(13):  # every node's value, the output last
        forward.click()
    after_forward = text_of(browser)
    assert counter(browser) == f"step 13 of {STEPS}" and "0.73" in after_forward
    assert not any(g in after_forward for g in ("-0.20", "-0.39", "-0.59"))
    assert leaf_table(browser)["w0"] == ("2.00", "")

    body = browser.find_element(By.TAG_NAME, "body")
    for _ in range(STEPS - 13):  # the arrow key steps too
        body.send_keys(Keys.ARROW_RIGHT)
    assert counter(browser) == f"step {STEPS} of {STEPS}"
    end = text_of(browser)
    assert "0.73" in end and all(g in end for g in GRADIENTS.values())
    assert {k: v[1] for k, v in leaf_table(browser).items()} == GRADIENTS
    # the last gate is w0 * x0: upstream 0.20 times the local gradients x0 and w0
    step_text = browser.find_element(By.ID, "step-text").text
    assert (
        "w0: 0.20 \u00d7 -1.00 = -0.20" in step_text and "x0: 0.20 \u00d7 2.00 = 0.39" in step_text
    )
    assert browser.current_url.endswith(f"#step={STEPS}")
    spread, inked = screenshot_spread(browser)
    assert spread > 8 and inked > 0.01  # a blank page: 0 and 0

    browser.find_element(By.ID, "prev").click()  # back one gate: w0's gradient is gone
    assert counter(browser) == f"step {STEPS - 1} of {STEPS}"
    assert leaf_table(browser)["w0"] == ("2.00", "")
    assert "-0.20" in text_of(browser)  # still there: the gradient on the edge neg -> exp


def test_the_address_opens_the_page_at_a_step(browser, neuron_page):
    open_page(browser, neuron_page, "step=end")
    assert counter(browser) == f"step {STEPS} of {STEPS}"
    assert all(g in text_of(browser) for g in GRADIENTS.values())
    open_page(browser, neuron_page, "step=14")  # the forward pass and the output's gradient
    text = text_of(browser)
    assert counter(browser) == f"step 14 of {STEPS}" and "0.73" in text and "1.00" in text
    assert not any(g in text for g in ("-0.20", "0.39", "-0.59"))
    open_page(browser, neuron_page, "step=0")
    browser.find_element(By.ID, "last").click()
    assert counter(browser) == f"step {STEPS} of {STEPS}"
    browser.find_element(By.ID, "first").click()
    assert counter(browser) == f"step 0 of {STEPS}" and "0.73" not in text_of(browser)


def test_a_small_networks_graph_from_python(browser, tmp_path):
    rng = np.random.default_rng(0)
    x = cr.Tensor(rng.normal(size=(8, 3)), name="x")
    W1 = cr.Tensor(rng.normal(size=(3, 16)), requires_grad=True, name="W1")
    W2 = cr.Tensor(rng.normal(size=(16, 4)), requires_grad=True, name="W2")
    labels = rng.integers(0, 4, size=8)
    loss = -((x @ W1).relu() @ W2).log_softmax()[np.arange(8), labels].mean()
    loss.name = "loss"
    loss.backward(retain_graph=True)
    page = tmp_path / "net.html"
    cr.draw_graph(loss, page, title="a small network")
    open_page(browser, page, "step=end")
    text = text_of(browser)
    assert "float64 (3x16)" in text and "float64 (16x4)" in text  # folded into shapes
    assert f"{float(loss.item()):.2f}" in text
    assert leaf_table(browser)["W1"] == ("float64 (3x16)", "float64 (3x16)")
    spread, inked = screenshot_spread(browser)
    assert spread > 8 and inked > 0.01  # a blank page: 0 and 0
