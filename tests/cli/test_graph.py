import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from chainrule.cli import main
from chainrule.cli.graph import ExpressionError, parse, variables


def run_cli(capsys, *argv):
    code = main(["graph", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def parse_output(out: str) -> dict[str, float]:
    values = {}
    for line in out.splitlines():
        if " = " in line:
            k, v = line.split(" = ")
            values[k] = float(v)
    return values


def test_lecture_example_values_and_gradients(capsys, tmp_path):
    path = tmp_path / "g.dot"
    code, out, err = run_cli(capsys, "(x + y) * z", "x=-2", "y=5", "z=-4", "--out", str(path))
    assert code == 0, err
    assert parse_output(out) == {"f": -12.0, "df/dx": -4.0, "df/dy": -4.0, "df/dz": 3.0}
    dot = path.read_text()
    assert dot.startswith("digraph")
    # The intermediate q = x + y = 3 with its gradient -4 is drawn (graph retained).
    assert '<font color="#2e7d32">3.00</font><br/><font color="#c62828">-4.00</font>' in dot
    for name in ("x", "y", "z"):
        assert f'label="{name}"' in dot


def test_sigmoid_example_from_primitives(capsys):
    code, out, _ = run_cli(
        capsys, "1 / (1 + exp(-(w0*x0 + w1*x1 + w2)))", "w0=2", "x0=-1", "w1=-3", "x1=-2", "w2=-3"
    )
    assert code == 0
    v = parse_output(out)
    assert round(v["f"], 2) == 0.73
    assert [round(v[f"df/d{n}"], 2) for n in ("w0", "x0", "w1", "x1", "w2")] == [
        -0.20,
        0.39,
        -0.39,
        -0.59,
        0.20,
    ]


def test_power_binds_tighter_than_unary_minus_and_groups_right(capsys):
    code, out, _ = run_cli(capsys, " -x**2", "x=3")  # a leading space keeps argparse away
    assert code == 0 and parse_output(out) == {"f": -9.0, "df/dx": -6.0}
    code, out, _ = run_cli(capsys, "2**x**2", "x=1.5")  # 2**(x**2)
    v = parse_output(out)
    assert v["f"] == pytest.approx(2**2.25, rel=1e-5)
    assert v["df/dx"] == pytest.approx(2**2.25 * 0.6931471805599453 * 3.0, rel=1e-5)
    code, out, _ = run_cli(capsys, "x * 2**-1 + 1e-3", "x=4")
    assert parse_output(out)["f"] == pytest.approx(2.001)


def test_every_function(capsys):
    code, out, _ = run_cli(
        capsys,
        "exp(a) + log(b) + sqrt(b) + sigmoid(a) + tanh(a) + relu(c) + abs(c)",
        "a=0.5",
        "b=4",
        "c=-2",
    )
    assert code == 0
    v = parse_output(out)
    import math

    s = 1 / (1 + math.exp(-0.5))
    assert v["df/da"] == pytest.approx(math.exp(0.5) + s * (1 - s) + 1 - math.tanh(0.5) ** 2, 1e-5)
    assert v["df/db"] == pytest.approx(1 / 4 + 1 / (2 * 2), rel=1e-5)
    assert v["df/dc"] == pytest.approx(0 + -1)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["(x + y", "x=1", "y=2"], "ends at position 7 where expected ')'"),
        (["x + $", "x=1"], "unexpected character '$' at position 5"),
        (["x * * y", "x=1", "y=2"], "unexpected '*' at position 5"),
        (["2x", "x=1"], "position 2"),
        (["(x))", "x=1"], "unexpected ')' at position 4"),
        (["foo(x)", "x=1"], "unknown function 'foo'"),
        (["exp + x", "x=1"], "exp at position 1 is a function"),
        (["x * y", "x=1"], "missing value for y"),
        (["x", "x=1", "w=2"], "w is not in the expression"),
        (["x", "x=abc"], "'abc' is not a number"),
        (["x", "x"], "expected NAME=NUMBER"),
        (["x", "x=1", "x=2"], "x is given twice"),
        (["", "x=1"], "empty"),
        (["2 * 3"], "no variables"),
        (["log(x)", "x=-1"], "nan"),
        (["x * 10**400", "x=1"], "overflows"),
    ],
)
def test_user_errors_are_one_line_with_exit_status_2(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("chainrule graph: error: ")
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_without_graphviz_the_drawing_is_made_by_matplotlib(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere on PATH
    code, out, err = run_cli(capsys, "x * 2", "x=1", "--out", str(tmp_path / "g.png"))
    assert code == 0, err
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert "graph written to" in err


def test_html_page_is_written_with_the_expression_as_title(capsys, tmp_path):
    page = tmp_path / "neuron.html"
    code, out, err = run_cli(
        capsys, "1/(1 + exp(-(w0*x0 + w1*x1 + w2)))", "w0=2", "x0=-1", "w1=-3", "x1=-2",
        "w2=-3", "--html", str(page),
    )  # fmt: skip
    assert code == 0, err
    text = page.read_text()
    assert "<title>f = 1/(1 + exp(-(w0*x0 + w1*x1 + w2)))</title>" in text
    assert f"graph written to {page}" in err
    # a missing folder is made, as for every file chainrule writes; a failure is one line
    code, _, err = run_cli(capsys, "x * 2", "x=1", "--html", str(tmp_path / "new" / "p.html"))
    assert code == 0 and "<title>f = x * 2</title>" in (tmp_path / "new" / "p.html").read_text()
    code, _, err = run_cli(capsys, "x * 2", "x=1", "--html", str(page / "p.html"))
    assert code == 2 and "File exists" in err and "Traceback" not in err


def test_parser_never_evaluates_python():
    with pytest.raises(ExpressionError):
        parse("__import__('os')")
    with pytest.raises(ExpressionError):
        parse("x.real")
    tree = parse("a*b + a")
    assert variables(tree) == ["a", "b"]


def test_python_dash_m_runs_the_command(tmp_path):
    env = dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-m", "chainrule", "graph", "(x + y) * z", "x=-2", "y=5", "z=-4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert parse_output(done.stdout) == {"f": -12.0, "df/dx": -4.0, "df/dy": -4.0, "df/dz": 3.0}
    bad = subprocess.run(
        [sys.executable, "-m", "chainrule", "graph", "(x + ", "x=1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "malformed expression" in bad.stderr


E15 = math.exp(1.5)


@pytest.mark.parametrize(
    "expression, f, dfdx",
    [
        ("(" * 200 + "x" + ")" * 200, 1.5, 1.0),
        (" + ".join(["x"] * 1000), 1500.0, 1000.0),
        ("- " * 1000 + "x", 1.5, 1.0),
        ("-" * 1001 + "x", -1.5, -1.0),
        ("x*x*x" + " + exp(x)" * 2000, 1.5**3 + 2000 * E15, 3 * 1.5**2 + 2000 * E15),
        ("abs(" * 300 + "x" + ")" * 300, 1.5, 1.0),
        ("1**" * 300 + "x", 1.0, 0.0),
    ],
    ids=[
        "200 parentheses",
        "1000-term sum",
        "1000 unary minuses",
        "1001 minuses",
        "2000 calls",
        "300 nested calls",
        "300 powers",
    ],
)
def test_deep_and_long_expressions_have_no_recursion_limit(capsys, expression, f, dfdx):
    code, out, err = run_cli(capsys, " " + expression, "x=1.5")
    assert code == 0, err
    assert parse_output(out) == pytest.approx({"f": f, "df/dx": dfdx}, rel=1e-6)  # 6 digits


def _random_expression(rng, depth: int = 0) -> str:
    """A chain of binary operators between signed operands, some parenthesised or inside
    exp(...): every pairing of precedence, grouping and unary signs."""
    terms = []
    for i in range(rng.integers(1, 5)):
        if i:
            terms.append(rng.choice(["+", "-", "*", "/", "**"]))
        kind = rng.integers(0, 5) if depth < 2 else 0
        if kind == 3:
            atom = f"({_random_expression(rng, depth + 1)})"
        elif kind == 4:
            atom = f"exp({_random_expression(rng, depth + 1)})"
        else:
            atom = str(rng.choice(["x", "y", "2", "0.5", "3"]))
        terms.append(" ".join(rng.choice(["-", "+"], size=rng.integers(0, 3))) + " " + atom)
    return " ".join(terms)


def test_parser_follows_python_precedence_on_random_expressions():
    from chainrule.cli.graph import evaluate

    rng = np.random.default_rng(0)
    env = {"x": 0.7, "y": 1.3}
    checked = 0
    for _ in range(1500):
        text = _random_expression(rng)
        try:
            expected = eval(text, {"exp": math.exp}, dict(env))  # our own generated text
        except (ZeroDivisionError, OverflowError, TypeError):  # TypeError: exp of a complex
            continue
        if isinstance(expected, complex) or not math.isfinite(expected):
            continue
        with np.errstate(all="ignore"):
            got = evaluate(parse(text), env)
        assert float(got) == pytest.approx(expected, rel=1e-9, abs=1e-12), text
        checked += 1
    assert checked > 1000


def test_status_lines_go_to_stderr_and_quiet_turns_them_off(capsys, tmp_path):
    path = tmp_path / "g.dot"
    code, out, err = run_cli(capsys, "x * 2", "x=1", "--out", str(path))
    assert code == 0 and path.exists()
    assert out == "f = 2\ndf/dx = 2\n"
    assert err == f"graph written to {path}\n"
    code, out, err = run_cli(capsys, "x * 2", "x=1", "--out", str(path), "--quiet")
    assert code == 0 and out == "f = 2\ndf/dx = 2\n" and err == ""


def test_derivatives_at_zero_are_the_limits_or_say_why_they_are_not_finite(capsys):
    code, out, err = run_cli(capsys, "0**x", "x=2")
    assert code == 0 and parse_output(out) == {"f": 0.0, "df/dx": 0.0} and err == ""
    code, out, err = run_cli(capsys, "x**0 + y**x", "x=0", "y=0")
    assert code == 0 and parse_output(out) == {"f": 2.0, "df/dx": 0.0, "df/dy": 0.0}
    code, out, err = run_cli(capsys, "sqrt(x) + y", "x=0", "y=1")
    assert code == 0
    v = parse_output(out)
    assert v["df/dx"] == float("inf") and v["df/dy"] == 1.0
    assert err == "chainrule graph: note: df/dx is inf: the derivative of sqrt at 0 is inf\n"
    code, out, err = run_cli(capsys, "abs(x)**0.5", "x=0", "--quiet")
    assert code == 0 and np.isnan(parse_output(out)["df/dx"])
    assert err == "chainrule graph: note: df/dx is nan: the derivative of ** at 0 ** 0.5 is inf\n"


def test_the_drawing_puts_each_branch_gradient_on_its_edge(capsys, tmp_path):
    path = tmp_path / "fork.dot"
    code, out, _ = run_cli(capsys, "x**2 + exp(x)", "x=1", "--out", str(path))
    assert code == 0 and parse_output(out)["df/dx"] == pytest.approx(4.71828, rel=1e-5)
    red = {
        float(v) for v in re.findall(r'<font color="#c62828">([-\d.]+)</font>', path.read_text())
    }
    assert {2.0, 2.72, 4.72} <= red  # x**2's branch, exp's branch, and their sum at x


def test_the_graph_a_gradient_builds_is_drawn_with_second_derivatives(capsys, tmp_path):
    path = tmp_path / "g.dot"
    code, out, err = run_cli(capsys, "x * x * y", "x=2", "y=3", "--grad", "x", "--out", str(path))
    assert code == 0, err
    values = parse_output(out)
    assert values["f"] == 12.0 and values["df/dx"] == 12.0 and values["df/dy"] == 4.0
    assert values["d2f/dxdx"] == 6.0 and values["d2f/dxdy"] == 4.0  # 2y and 2x
    dot = path.read_text()
    assert 'label="df/dx"' in dot and 'label="df/df"' in dot  # the output and the seed
    # df/dx = 12 leaves the drawn graph, whose own gradient there is 1.
    assert '<font color="#2e7d32">12.00</font><br/><font color="#c62828">1.00</font>' in dot
    code, out, err = run_cli(capsys, "x * x * x", "x=2", "--grad", "x")
    assert parse_output(out)["d2f/dxdx"] == 12.0
    code, out, err = run_cli(capsys, "x * sin(x)", "x=0.5", "--grad", "x")
    expected = 2 * math.cos(0.5) - 0.5 * math.sin(0.5)  # (x sin x)'' = 2 cos x - x sin x
    assert parse_output(out)["d2f/dxdx"] == pytest.approx(expected, rel=1e-5)
    code, out, err = run_cli(capsys, "x * y", "x=2", "y=1", "--grad", "z")
    assert code == 2 and "--grad z: z is not a variable of the expression" in err
