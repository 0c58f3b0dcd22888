"""`chainrule graph`: evaluate an expression, backpropagate, and draw its graph.

    chainrule graph "(x + y) * z" x=-2 y=5 z=-4 --out graph.dot

The expression is read by a small recursive-descent parser (never `eval`): numbers
(``3``, ``0.5``, ``1e-3``), variables, ``+ - * / **``, unary minus, parentheses and the
functions exp, log, sqrt, sigmoid, tanh, relu and abs. ``**`` binds tighter than unary
minus and groups to the right, as in Python (``-x**2`` is ``-(x**2)``, ``2**3**2`` is
``2**9``). Each variable becomes a scalar Tensor; the output and every variable's
gradient are printed, and with ``--out`` the graph is drawn with values and gradients
on its edges (.dot text, or .svg/.png/.pdf through Graphviz's ``dot``).
"""

from __future__ import annotations

import math
import re

import numpy as np

from chainrule.cli import CommandError

FUNCTIONS = ("exp", "log", "sqrt", "sigmoid", "tanh", "relu", "abs")

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/()])"
    r")"
)


class ExpressionError(ValueError):
    """A malformed expression; the message says where."""


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """Split `text` into (kind, text, position) tokens; kind is number, name, op or end.
    Positions are 1-based character columns."""
    tokens = []
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(f"unexpected character {text[pos]!r} at position {pos + 1}")
        kind = m.lastgroup
        start = m.start(kind)
        value = m.group(kind)
        if kind == "number" and m.end() < n and (text[m.end()].isalpha() or text[m.end()] == "_"):
            raise ExpressionError(
                f"unexpected {text[m.end()]!r} after the number {value} at position {m.end() + 1}"
            )
        tokens.append((kind, value, start + 1))
        pos = m.end()
    tokens.append(("end", "", n + 1))
    return tokens


class Parser:
    """Recursive descent over the grammar

        expr    := term (('+' | '-') term)*
        term    := unary (('*' | '/') unary)*
        unary   := ('-' | '+') unary | power
        power   := primary ('**' unary)?
        primary := NUMBER | NAME | FUNCTION '(' expr ')' | '(' expr ')'

    producing nested tuples: ("num", value), ("var", name), ("neg", node),
    ("bin", op, left, right), ("call", function, node).
    """

    def __init__(self, text: str):
        if not text.strip():
            raise ExpressionError("the expression is empty")
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self):
        return self.tokens[self.i]

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def unexpected(self, expected: str):
        kind, value, pos = self.peek()
        if kind == "end":
            return ExpressionError(f"the expression ends at position {pos} where {expected}")
        return ExpressionError(f"unexpected {value!r} at position {pos}: {expected}")

    def parse(self):
        node = self.expr()
        if self.peek()[0] != "end":
            raise self.unexpected("expected an operator or the end of the expression")
        return node

    def expr(self):
        node = self.term()
        while self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            op = self.take()[1]
            node = ("bin", op, node, self.term())
        return node

    def term(self):
        node = self.unary()
        while self.peek()[1] in ("*", "/") and self.peek()[0] == "op":
            op = self.take()[1]
            node = ("bin", op, node, self.unary())
        return node

    def unary(self):
        kind, value, _ = self.peek()
        if kind == "op" and value in ("-", "+"):
            self.take()
            operand = self.unary()
            return ("neg", operand) if value == "-" else operand
        return self.power()

    def power(self):
        base = self.primary()
        if self.peek()[:2] == ("op", "**"):
            self.take()
            return ("bin", "**", base, self.unary())
        return base

    def primary(self):
        kind, value, pos = self.peek()
        if kind == "number":
            self.take()
            return ("num", float(value))
        if kind == "name":
            self.take()
            if self.peek()[:2] == ("op", "("):
                if value not in FUNCTIONS:
                    raise ExpressionError(
                        f"unknown function {value!r} at position {pos} "
                        f"(functions: {', '.join(FUNCTIONS)})"
                    )
                self.take()
                arg = self.expr()
                if self.peek()[:2] != ("op", ")"):
                    raise self.unexpected(f"expected ')' to close {value}(")
                self.take()
                return ("call", value, arg)
            if value in FUNCTIONS:
                raise ExpressionError(
                    f"{value} at position {pos} is a function: write {value}(...)"
                )
            return ("var", value, pos)
        if (kind, value) == ("op", "("):
            self.take()
            node = self.expr()
            if self.peek()[:2] != ("op", ")"):
                raise self.unexpected("expected ')'")
            self.take()
            return node
        raise self.unexpected("expected a number, a variable, a function or '('")


def parse(text: str):
    """The syntax tree of `text` (see `Parser`); raises ExpressionError if malformed."""
    return Parser(text).parse()


def variables(node) -> list[str]:
    """Variable names of a syntax tree, in order of first appearance."""
    found: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if n[0] == "var":
            if n[1] not in found:
                found.append(n[1])
        elif n[0] == "neg":
            stack.append(n[1])
        elif n[0] == "call":
            stack.append(n[2])
        elif n[0] == "bin":
            stack.append(n[3])
            stack.append(n[2])
    return found


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


_CONSTANT_FUNCTIONS = {
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda v: max(v, 0.0),
    "abs": abs,
}


def evaluate(node, env: dict):
    """Evaluate a syntax tree; `env` maps variable names to Tensors. Parts without
    variables stay plain numbers (shown inside the operation nodes of the drawing)."""
    from chainrule import Tensor

    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "var":
        return env[node[1]]
    if kind == "neg":
        return -evaluate(node[1], env)
    if kind == "call":
        arg = evaluate(node[2], env)
        if isinstance(arg, Tensor):
            return getattr(arg, node[1])()
        return float(_CONSTANT_FUNCTIONS[node[1]](arg))
    _, op, left, right = node
    a = evaluate(left, env)
    b = evaluate(right, env)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if not isinstance(a, Tensor) and not isinstance(b, Tensor) and b == 0:
            return float("nan")
        return a / b
    return a**b


def parse_values(items: list[str]) -> dict[str, float]:
    """NAME=NUMBER arguments as a dict; raises CommandError on anything else."""
    values: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise CommandError(f"bad argument {item!r}: expected NAME=NUMBER, e.g. x=-2")
        try:
            value = float(text)
        except ValueError:
            raise CommandError(f"bad value for {name}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise CommandError(f"bad value for {name}: {text!r} is not a finite number")
        if name in values:
            raise CommandError(f"{name} is given twice")
        values[name] = value
    return values


def add_arguments(parser) -> None:
    parser.add_argument(
        "expression",
        help='the expression, e.g. "(x + y) * z" (one starting with "-" goes after "--")',
    )
    parser.add_argument(
        "values", nargs="*", metavar="NAME=VALUE", help="a value for every variable, e.g. x=-2"
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help="draw the graph to FILE: .dot text, or .svg/.png/.pdf with Graphviz's dot",
    )


def _fmt(v) -> str:
    return f"{float(v):.6g}"


def run(args) -> int:
    import chainrule as cr

    try:
        tree = parse(args.expression)
    except ExpressionError as e:
        raise CommandError(f"malformed expression: {e}") from None
    values = parse_values(args.values)
    names = variables(tree)
    if not names:
        raise CommandError("the expression has no variables: nothing to differentiate")
    missing = [n for n in names if n not in values]
    if missing:
        raise CommandError(
            f"missing value for {', '.join(missing)}: give "
            + ("it" if len(missing) == 1 else "them")
            + " as NAME=NUMBER, e.g. "
            + " ".join(f"{n}=1" for n in missing)
        )
    extra = [n for n in values if n not in names]
    if extra:
        raise CommandError(
            f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not in the expression "
            f"(its variables: {', '.join(names)})"
        )

    env = {n: cr.Tensor(values[n], requires_grad=True, name=n) for n in names}
    with np.errstate(all="ignore"):
        try:
            out = evaluate(tree, env)
        except OverflowError:
            raise CommandError("cannot evaluate the expression: a number overflows") from None
        except ZeroDivisionError as e:
            raise CommandError(f"cannot evaluate the expression: {e}") from None
        if not isinstance(out, cr.Tensor) or not out.requires_grad:
            raise CommandError("the expression does not depend on its variables")
        if not np.isfinite(out.item()):
            raise CommandError(
                f"the expression is {out.item()} at these values (outside the domain of "
                "log, sqrt, a division by zero, or an overflow)"
            )
        out.name = "f"
        # Keep every intermediate gradient, so the drawing shows them on all edges.
        out.backward(retain_graph=True)

    if args.out is not None:
        try:
            cr.draw_graph(out, args.out)
        except (RuntimeError, ValueError, OSError) as e:
            raise CommandError(str(e)) from None
    print(f"f = {_fmt(out.item())}")
    for n in names:
        g = env[n].grad
        print(f"df/d{n} = {_fmt(0.0 if g is None else g)}")
    if args.out is not None:
        print(f"graph written to {args.out}")
    return 0
