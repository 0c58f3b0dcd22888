"""The graph's records, its layout, its steps and the stepping page's HTML (what the page
holds before any script runs; tests/browser/ runs the script in a real browser)."""

import base64
import json
import re

import numpy as np
import pytest

from chainrule import Tensor, draw_graph
from chainrule.autograd.graph_layout import layout
from chainrule.autograd.graph_steps import edge_texts, node_texts, steps
from chainrule.autograd.graph_view import read_graph

LECTURE_GRADS = {"w0": "-0.20", "x0": "0.39", "w1": "-0.39", "x1": "-0.59", "w2": "0.20"}


def neuron(retain=True, backward=True):
    """The lecture's sigmoid neuron, f = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2)))."""
    values = {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0}
    t = {k: Tensor(v, requires_grad=True, name=k) for k, v in values.items()}
    f = 1 / (1 + (-(t["w0"] * t["x0"] + t["w1"] * t["x1"] + t["w2"])).exp())
    f.name = "f"
    if backward:
        f.backward(retain_graph=retain)
    return t, f


def payload(page: str) -> dict:
    m = re.search(r'<script id="graph-data" type="application/octet-stream">([^<]*)</script>', page)
    return json.loads(base64.b64decode(m.group(1)).decode("utf-8"))


def test_records_of_the_neuron_in_topological_order():
    _, f = neuron()
    view = read_graph(f)
    labels = [n.label for n in view.nodes]
    assert labels == ["w0", "x0", "*", "w1", "x1", "*", "+", "w2", "+", "neg", "exp", "+1", "1/x"]
    position = {id(n): i for i, n in enumerate(view.nodes)}
    for e in view.edges:
        if e.target is not None:
            assert position[id(view.nodes[e.source])] < e.target
    assert view.edge_grads_kept and view.output == len(view.nodes) - 1
    by_leaf = {
        view.nodes[e.source].label: e for e in view.edges if view.nodes[e.source].kind == "leaf"
    }
    for name, grad in LECTURE_GRADS.items():
        assert f"{float(by_leaf[name].grad):.2f}" == grad


def test_steps_forward_node_by_node_then_backward_gate_by_gate():
    _, f = neuron()
    view = read_graph(f)
    s = steps(view)
    phases = [x["phase"] for x in s]
    assert phases == ["forward"] * 13 + ["seed"] + ["backward"] * 8
    forward = [view.nodes[x["node"]].label for x in s[:13]]
    assert forward == [n.label for n in view.nodes]
    backward = [view.nodes[x["node"]].label for x in s[14:]]
    assert backward == ["1/x", "+1", "exp", "neg", "+", "+", "*", "*"]
    assert s[0]["text"] == "input w0 = 2.00"
    assert s[2]["text"] == "gate *: 2.00, -1.00 \u2192 -2.00"
    assert "is 1.00" in s[13]["text"]
    # The last gate: upstream 0.20 times the local gradients x0 = -1 and w0 = 2.
    assert "w0: 0.20 \u00d7 -1.00 = -0.20" in s[-1]["text"]
    assert "x0: 0.20 \u00d7 2.00 = 0.39" in s[-1]["text"]
    calcs = {
        view.nodes[e.source].label: t.get("calc") for e, t in zip(view.edges, edge_texts(view))
    }
    assert calcs["exp"] == "-0.53 \u00d7 1.00 = -0.53"  # d(1 + u)/du = 1
    assert calcs["w2"] == "0.20 \u00d7 1.00 = 0.20"


def test_a_fork_sums_its_branches():
    x = Tensor(1.0, requires_grad=True, name="x")
    f = x**2 + x.exp()
    f.backward(retain_graph=True)
    view = read_graph(f)
    x_node = next(i for i, n in enumerate(view.nodes) if n.label == "x")
    assert node_texts(view)[x_node]["sum"] == "2.00 + 2.72 = 4.72"
    assert view.nodes[x_node].uses == 2


def test_without_kept_edges_one_step_shows_the_kept_gradients():
    _, f = neuron(retain=False)
    s = steps(read_graph(f))
    assert [x["phase"] for x in s].count("backward") == 0
    assert s[-1]["phase"] == "gradients" and len(s) == 14
    _, f = neuron(backward=False)
    assert [x["phase"] for x in steps(read_graph(f))] == ["forward"] * 13


def test_layout_puts_every_operation_right_of_its_inputs_and_keeps_rows_apart():
    _, f = neuron()
    view = read_graph(f)
    lay = layout(view)
    for e in view.edges:
        if e.target is not None:
            assert lay.column[e.source] < lay.column[e.target]
    for c in range(lay.columns):
        rows = sorted(r for r, col in zip(lay.row, lay.column) if col == c)
        assert all(b - a >= 1.0 - 1e-9 for a, b in zip(rows, rows[1:]))
    assert lay.output_column == lay.column[view.output] + 1
    w2 = next(i for i, n in enumerate(view.nodes) if n.label == "w2")
    assert lay.column[w2] == 2  # a leaf sits just left of its operation: a short edge


def test_the_page_holds_no_value_before_its_script_runs():
    _, f = neuron()
    page = draw_graph(f, format="html", title="sigmoid neuron")
    assert page.startswith("<!DOCTYPE html>")
    for text in ("0.73", *LECTURE_GRADS.values(), "2.00", "-3.00"):
        assert text not in page
    data = payload(page)
    assert len(data["steps"]) == 22
    assert {e["grad"] for e in data["edges"]} >= set(LECTURE_GRADS.values())
    assert any(e["value"] == "0.73" for e in data["edges"])
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "<link" not in page and " src=" not in page


def test_names_are_escaped_in_the_page(tmp_path):
    a = Tensor(2.0, requires_grad=True, name='<img src=x onerror="alert(1)">&')
    f = a * 3
    f.name = "</script><b>f"
    f.backward(retain_graph=True)
    path = tmp_path / "g.html"
    page = draw_graph(f, path, title="<i>t</i>")
    assert path.read_text() == page
    assert "<img src=x" not in page and "</script><b>" not in page and "<i>t</i>" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert "<title>&lt;i&gt;t&lt;/i&gt;</title>" in page
    assert payload(page)["nodes"][0]["label"] == '<img src=x onerror="alert(1)">&'


def test_a_small_network_folds_large_arrays_into_shapes(tmp_path):
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(8, 3)), name="x")
    W = Tensor(rng.normal(size=(3, 16)), requires_grad=True, name="W1")
    b = Tensor(np.zeros(4), requires_grad=True, name="b")
    W2 = Tensor(rng.normal(size=(16, 4)), requires_grad=True, name="W2")
    loss = -((x @ W).relu() @ W2 + b).log_softmax()[np.arange(8), rng.integers(0, 4, 8)].mean()
    loss.backward(retain_graph=True)
    data = payload(draw_graph(loss, format="html"))
    texts = {e["value"] for e in data["edges"]} | {e["grad"] for e in data["edges"]}
    assert {"float64 (8x3)", "float64 (3x16)", "float64 (8x16)", "float64 (16x4)"} <= texts
    backward = [s for s in data["steps"] if s["phase"] == "backward"]
    assert len(backward) == sum(1 for n in data["nodes"] if n["kind"] == "op")
    draw_graph(loss, tmp_path / "net.png", engine="matplotlib")
    assert (tmp_path / "net.png").stat().st_size > 5000


def test_formats_and_engines_are_checked(tmp_path):
    _, f = neuron()
    with pytest.raises(ValueError, match="format must be one of"):
        draw_graph(f, format="jpeg")
    with pytest.raises(ValueError, match="needs a path"):
        draw_graph(f, format="svg")
    with pytest.raises(ValueError, match="engine must be one of"):
        draw_graph(f, tmp_path / "g.svg", engine="cairo")
    assert draw_graph(f, tmp_path / "g.htm").startswith("<!DOCTYPE html>")
    assert draw_graph(f).startswith("digraph")


def test_the_engine_pages_neuron_example_prints_the_lecture_numbers(
    tmp_path, monkeypatch, capsys
):
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()
    start = page.index('w0 = cr.Tensor(2.0, requires_grad=True, name="w0")')
    code = "import chainrule as cr\n" + page[start : page.index("```", start)]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/engine.md", "exec"), {})
    assert capsys.readouterr().out == "0.73 -0.20 0.39\n"
    assert payload((tmp_path / "neuron.html").read_text())["nodes"][0]["label"] == "w0"


def test_matplotlib_refuses_a_graph_too_large_for_one_picture(tmp_path):
    x = Tensor(0.5, requires_grad=True, name="x")
    y = x
    for _ in range(150):  # 151 columns: a picture about 38,000 pixels wide
        y = y * 1.5
    with pytest.raises(ValueError, match=r"too large to draw with matplotlib; install Graphviz"):
        draw_graph(y, tmp_path / "big.png", engine="matplotlib")
    assert not (tmp_path / "big.png").exists()
    assert len(payload(draw_graph(y, format="html"))["steps"]) == 151  # the page takes it
