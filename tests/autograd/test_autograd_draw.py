import os
import re
import stat
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule import Tensor, draw_graph

GREEN = "#2e7d32"
RED = "#c62828"


def edge(value, grad=None):
    label = f'<font color="{GREEN}">{value}</font>'
    if grad is not None:
        label += f'<br/><font color="{RED}">{grad}</font>'
    return f"[label=<{label}>];"


def lecture_graph():
    x = Tensor(-2.0, requires_grad=True, name="x")
    y = Tensor(5.0, requires_grad=True, name="y")
    z = Tensor(-4.0, requires_grad=True, name="z")
    return x, y, z, (x + y) * z


def edges(dot):
    """{(source label, target label): edge label} of a DOT text made by draw_graph."""
    labels = dict(re.findall(r"^\s*(\w+) \[label=\"([^\"]*)\"", dot, flags=re.M))
    found = {}
    for src, dst, label in re.findall(r"^\s*(\w+) -> (\w+) (\[.*\];)$", dot, flags=re.M):
        found[(labels.get(src, src), labels.get(dst, dst))] = label
    return found


def test_forward_values_on_every_edge_before_backward():
    *_, f = lecture_graph()
    dot = draw_graph(f)
    e = edges(dot)
    assert e[("x", "+")] == edge("-2.00")
    assert e[("y", "+")] == edge("5.00")
    assert e[("+", "*")] == edge("3.00")
    assert e[("z", "*")] == edge("-4.00")
    assert e[("*", "output")] == edge("-12.00")
    assert dot.count("shape=circle") == 2 and dot.count("shape=box") == 3


def test_gradients_after_backward_leaves_always_intermediates_when_kept():
    *_, f = lecture_graph()
    f.backward()
    e = edges(draw_graph(f))
    assert e[("x", "+")] == edge("-2.00", "-4.00")
    assert e[("y", "+")] == edge("5.00", "-4.00")
    assert e[("z", "*")] == edge("-4.00", "3.00")
    assert e[("+", "*")] == edge("3.00")  # released: no intermediate gradient

    *_, f = lecture_graph()
    f.backward(retain_graph=True)
    e = edges(draw_graph(f))
    assert e[("+", "*")] == edge("3.00", "-4.00")
    assert e[("*", "output")] == edge("-12.00", "1.00")


def test_retain_grad_keeps_one_intermediate():
    x = Tensor(3.0, requires_grad=True, name="x")
    q = (x * x).retain_grad()
    f = q.exp()
    f.backward()
    assert np.isclose(q.grad, np.exp(9.0))
    assert "8103.08" in edges(draw_graph(f))[("*", "exp")]


def test_copy_gate_draws_one_node_with_two_edges_and_constants_in_the_operation():
    x = Tensor(2.0, requires_grad=True, name="x")
    f = 1 / (1 + (-x * x).exp())
    dot = draw_graph(f)
    assert dot.count('label="x"') == 1
    # One node for x, two edges out of it: the value is copied to neg and to *.
    assert len(re.findall(r"^\s*n0 -> ", dot, flags=re.M)) == 2
    assert 'label="+1"' in dot and 'label="1/x"' in dot and 'label="neg"' in dot


def test_arrays_listed_when_small_and_summarised_by_shape_when_large():
    small = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True, name="v")
    big = Tensor(np.ones((200, 10), dtype=np.float32), requires_grad=True, name="W")
    out = (small.sum() * big).mean()
    out.backward()
    e = edges(draw_graph(out))
    assert e[("v", "sum")] == edge("[1.00, -2.00, 3.00]", "[1.00, 1.00, 1.00]")
    assert e[("W", "*")] == edge("float32 (200x10)", "float32 (200x10)")


def test_unnamed_leaves_and_user_functions_are_labeled():
    class Multiply(cr.Function):
        @staticmethod
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            return x * y

        @staticmethod
        def backward(ctx, grad_z):
            x, y = ctx.saved_tensors
            return y * grad_z, x * grad_z

    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.full(3, 2.0))
    dot = draw_graph(Multiply.apply(a, b).sum())
    assert 'label="Multiply"' in dot
    assert 'label="param (3)"' in dot and 'label="input (3)"' in dot


def test_writes_dot_files_and_rejects_unknown_suffixes(tmp_path):
    *_, f = lecture_graph()
    text = draw_graph(f, tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text() == text
    with pytest.raises(ValueError, match=r"\.dot"):
        draw_graph(f, tmp_path / "g.txt")
    with pytest.raises(TypeError):
        draw_graph(np.ones(3))


def test_without_dot_matplotlib_draws_and_graphviz_can_be_required(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    *_, f = lecture_graph()
    f.backward()
    text = draw_graph(f, tmp_path / "g.svg")  # no `dot` on PATH: matplotlib draws it
    assert text == draw_graph(f)  # still returns the DOT text
    svg = (tmp_path / "g.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    draw_graph(f, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(RuntimeError, match=r"Graphviz's `dot` program is not installed") as info:
        draw_graph(f, tmp_path / "h.svg", engine="graphviz")
    assert "apt-get install graphviz" in str(info.value)
    assert not (tmp_path / "h.svg").exists()


def _fake_dot(folder, body):
    """A `dot` executable (a Python script) in `folder`, which becomes the whole PATH."""
    folder.mkdir()
    script = folder / "dot"
    script.write_text(f"#!{sys.executable}\nimport sys\n{body}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


@pytest.mark.skipif(os.name != "posix", reason="the fake dot relies on a #! line")
def test_svg_and_png_are_rendered_by_the_dot_program(tmp_path, monkeypatch):
    # Records its arguments and copies the DOT text from stdin to stdout; chainrule writes
    # the file itself (atomically: a link at the target's name is replaced, not followed).
    bin_dir = _fake_dot(
        tmp_path / "bin",
        "args = sys.argv[1:]\n"
        f"open({str(tmp_path / 'args')!r}, 'w').write(' '.join(args))\n"
        "sys.stdout.write(sys.stdin.read())\n",
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    *_, f = lecture_graph()
    (tmp_path / "victim").write_text("important")
    (tmp_path / "g.png").symlink_to(tmp_path / "victim")
    for suffix in ("svg", "png"):
        target = tmp_path / f"g.{suffix}"
        text = draw_graph(f, target)
        assert target.read_text() == text
        assert (tmp_path / "args").read_text().split() == [f"-T{suffix}"]
    assert (tmp_path / "victim").read_text() == "important"


@pytest.mark.skipif(os.name != "posix", reason="the fake dot relies on a #! line")
def test_a_failing_dot_program_is_reported(tmp_path, monkeypatch):
    bin_dir = _fake_dot(
        tmp_path / "bin", "sys.stderr.write('Error: syntax error in line 1\\n')\nsys.exit(3)\n"
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    *_, f = lecture_graph()
    with pytest.raises(RuntimeError, match=r"exit status 3\): Error: syntax error"):
        draw_graph(f, tmp_path / "g.png")


def _node_labels(dot):
    """{node id: label} for plain and HTML labels."""
    labels = dict(re.findall(r'^\s*(\w+) \[label="([^"]*)"', dot, flags=re.M))
    labels.update(re.findall(r"^\s*(\w+) \[label=<(.*)>, shape", dot, flags=re.M))
    return labels


def _edges_by_target(dot):
    """{(source label, target label): [edge labels]} (several edges may join two nodes)."""
    labels = _node_labels(dot)
    found = {}
    for src, dst, label in re.findall(r"^\s*(\w+) -> (\w+) (\[.*\];)$", dot, flags=re.M):
        found.setdefault((labels.get(src, src), labels.get(dst, dst)), []).append(label)
    return found


def test_each_edge_of_a_fork_carries_its_own_branch_gradient():
    # f = x**2 + exp(x) at x = 1: the branches carry 2x = 2 and e^x = 2.72, which add up
    # at the fork (the copy gate) to df/dx = 4.72, shown at x.
    x = Tensor(1.0, requires_grad=True, name="x")
    f = x**2 + x.exp()
    f.backward(retain_graph=True)
    dot = draw_graph(f)
    x_label = f'x<br/><font color="{RED}">4.72</font>'
    e = _edges_by_target(dot)
    assert e[(x_label, "**2")] == [edge("1.00", "2.00")]
    assert e[(x_label, "exp")] == [edge("1.00", "2.72")]
    assert e[("**2", "+")] == [edge("1.00", "1.00")] and e[("exp", "+")] == [edge("2.72", "1.00")]


def test_a_value_used_twice_by_one_operation_has_two_edges_each_with_its_gradient():
    x = Tensor(3.0, requires_grad=True, name="x")
    y = Tensor(2.0, requires_grad=True, name="y")
    f = x * x * y  # x * x: the mul gate swaps, each edge gets the other factor times y
    f.backward(retain_graph=True)
    e = _edges_by_target(draw_graph(f))
    assert e[(f'x<br/><font color="{RED}">12.00</font>', "*")] == [edge("3.00", "6.00")] * 2


def test_without_the_branch_gradients_a_fork_shows_only_the_total_at_its_value():
    x = Tensor(1.0, requires_grad=True, name="x")
    f = x**2 + x.exp()
    f.backward()  # graph released: the gradient of each branch is not known
    dot = draw_graph(f)
    e = _edges_by_target(dot)
    x_label = f'x<br/><font color="{RED}">4.72</font>'
    assert e[(x_label, "**2")] == [edge("1.00")] and e[(x_label, "exp")] == [edge("1.00")]
