import os
import subprocess
import sys

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


def test_missing_graphviz_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere on PATH
    code, out, err = run_cli(capsys, "x * 2", "x=1", "--out", str(tmp_path / "g.svg"))
    assert code == 2
    assert "Graphviz's `dot` program is not installed" in err and "apt-get install graphviz" in err


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
