"""`chainrule graph`: evaluate an expression, backpropagate, and draw its graph.

    chainrule graph "(x + y) * z" x=-2 y=5 z=-4 --out graph.dot

The expression is read by a small operator-precedence parser (never `eval`; no limit on
nesting or length but memory): numbers
(``3``, ``0.5``, ``1e-3``), variables, ``+ - * / **``, unary minus, parentheses and the
functions exp, log, sqrt, sin, cos, sigmoid, tanh, relu and abs. ``**`` binds tighter
than unary minus and groups to the right, as in Python (``-x**2`` is ``-(x**2)``, ``2**3**2`` is
``2**9``). Each variable becomes a scalar Tensor; the output and every variable's
gradient are printed. With ``--out`` the graph is drawn with values and gradients on its
edges (.dot text, or an .svg/.png/.pdf drawing: by Graphviz's ``dot`` where it is
installed, else by matplotlib); with ``--html`` it becomes a page that steps through the
forward pass node by node and the backward pass gate by gate::

    chainrule graph "1/(1 + exp(-(w0*x0 + w1*x1 + w2)))" w0=2 x0=-1 w1=-3 x1=-2 w2=-3 \\
        --html neuron.html

With ``--grad x`` the drawing is of the graph that computing df/dx itself builds (the
backward pass recording its own operations, from the upstream gradient df/df = 1), with
that gradient's gradients, the second derivatives d2f/dxd., on its edges::

    chainrule graph "x * x * x" x=2 --grad x --out d2.svg     # d2f/dxdx = 6x = 12
"""

from __future__ import annotations

import collections
import math
import re
import sys

import numpy as np

from chainrule._text import escaped
from chainrule.cli import CommandError

FUNCTIONS = ("exp", "log", "sqrt", "sin", "cos", "sigmoid", "tanh", "relu", "abs")

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


# Binary operators: precedence and whether they group to the right. Unary minus sits
# between the products and the power, as in Python: -x**2 is -(x**2), -x*y is (-x)*y.
_BINARY = {"+": (1, False), "-": (1, False), "*": (2, False), "/": (2, False), "**": (4, True)}
_NEG = 3


class Parser:
    """Operator precedence over the grammar

        expr    := term (('+' | '-') term)*
        term    := unary (('*' | '/') unary)*
        unary   := ('-' | '+') unary | power
        power   := primary ('**' unary)?
        primary := NUMBER | NAME | FUNCTION '(' expr ')' | '(' expr ')'

    read with two explicit stacks (operands, and operators with open parentheses), so
    nesting depth and length are limited by memory only, never by Python's recursion
    limit. Produces nested tuples: ("num", value), ("var", name, position),
    ("neg", node), ("bin", op, left, right), ("call", function, node).
    """

    def __init__(self, text: str):
        if not text.strip():
            raise ExpressionError("the expression is empty")
        self.tokens = tokenize(text)
        self.i = 0
        self.operands: list = []
        # ("bin", op), ("neg",), or ("(", function name or None, token) for an open group
        self.operators: list = []

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
        while True:
            self.operand()
            if not self.operator():
                return self.operands.pop()

    def operand(self) -> None:
        """Read prefix signs and open parentheses up to one operand."""
        while True:
            kind, value, pos = self.peek()
            if kind == "op" and value in ("-", "+"):
                self.take()
                if value == "-":
                    self.operators.append(("neg",))
            elif (kind, value) == ("op", "("):
                self.take()
                self.operators.append(("(", None, pos))
            elif kind == "number":
                self.take()
                self.operands.append(("num", float(value)))
                return
            elif kind == "name":
                self.take()
                if self.peek()[:2] == ("op", "("):
                    if value not in FUNCTIONS:
                        raise ExpressionError(
                            f"unknown function {value!r} at position {pos} "
                            f"(functions: {', '.join(FUNCTIONS)})"
                        )
                    self.take()
                    self.operators.append(("(", value, pos))
                    continue
                if value in FUNCTIONS:
                    raise ExpressionError(
                        f"{value} at position {pos} is a function: write {value}(...)"
                    )
                self.operands.append(("var", value, pos))
                return
            else:
                raise self.unexpected("expected a number, a variable, a function or '('")

    def operator(self) -> bool:
        """After an operand: close groups, then read a binary operator (True) or the end
        of the expression (False)."""
        while True:
            kind, value, _ = self.peek()
            if (kind, value) == ("op", ")"):
                self.reduce()
                if not self.operators:
                    raise self.unexpected("expected an operator or the end of the expression")
                _, function, _ = self.operators.pop()
                self.take()
                if function is not None:
                    self.operands.append(("call", function, self.operands.pop()))
            elif kind == "op" and value in _BINARY:
                self.reduce(*_BINARY[value])
                self.take()
                self.operators.append(("bin", value))
                return True
            elif kind == "end":
                self.reduce()
                if self.operators:
                    _, function, _ = self.operators[-1]
                    raise self.unexpected(
                        f"expected ')' to close {function}(" if function else "expected ')'"
                    )
                return False
            else:
                raise self.unexpected("expected an operator or the end of the expression")

    def reduce(self, precedence: int = 0, right: bool = False) -> None:
        """Apply the pending operators that bind before a new binary operator of this
        `precedence` (0: all of them, back to the innermost open parenthesis)."""
        operators, operands = self.operators, self.operands
        while operators and _binds_before(operators[-1], precedence, right):
            top = operators.pop()
            if top[0] == "neg":
                operands.append(("neg", operands.pop()))
            else:
                rhs = operands.pop()
                operands.append(("bin", top[1], operands.pop(), rhs))


def _binds_before(top, precedence: int, right: bool) -> bool:
    """Whether the pending operator `top` applies before a new binary operator."""
    if top[0] == "(":
        return False
    top_precedence = _NEG if top[0] == "neg" else _BINARY[top[1]][0]
    return top_precedence > precedence or (top_precedence == precedence and not right)


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
    "sin": np.sin,
    "cos": np.cos,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda v: max(v, 0.0),
    "abs": abs,
}


def evaluate(node, env: dict):
    """Evaluate a syntax tree; `env` maps variable names to Tensors. Parts without
    variables stay plain numbers (shown inside the operation nodes of the drawing).

    Children before parents, with an explicit stack: no recursion limit on the depth.
    """
    values: list = []
    stack = [(node, False)]
    while stack:
        n, children_done = stack.pop()
        kind = n[0]
        if kind == "num":
            values.append(n[1])
        elif kind == "var":
            values.append(env[n[1]])
        elif not children_done:
            stack.append((n, True))
            if kind == "bin":
                stack.append((n[3], False))
                stack.append((n[2], False))
            else:  # "neg" (operand n[1]) or "call" (argument n[2])
                stack.append((n[-1], False))
        elif kind == "bin":
            b = values.pop()
            values.append(_binary(n[1], values.pop(), b))
        elif kind == "neg":
            values.append(-values.pop())
        else:
            values.append(_call(n[1], values.pop()))
    return values.pop()


def _call(function: str, arg):
    from chainrule import Tensor

    if isinstance(arg, Tensor):
        return getattr(arg, function)()
    return float(_CONSTANT_FUNCTIONS[function](arg))


def _binary(op: str, a, b):
    from chainrule import Tensor

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
        help="draw the graph to FILE: .dot text, or an .svg/.png/.pdf drawing (by Graphviz's "
        "dot when it is installed, else by matplotlib)",
    )
    parser.add_argument(
        "--html",
        metavar="FILE",
        default=None,
        help="write a page that steps through the forward and backward pass (open it in a "
        "browser; FILE#step=end shows every value and gradient)",
    )
    parser.add_argument(
        "--grad",
        metavar="NAME",
        default=None,
        help="draw the graph that computing df/dNAME builds (a backward pass that records "
        "itself), with that gradient's own gradients on its edges: the second derivatives",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no status lines on stderr (results stay)"
    )


def _fmt(v) -> str:
    return f"{float(v):.6g}"


def _check_variables(names: list[str], values: dict) -> None:
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


_SYMBOLS = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Pow": "**", "Neg": "-"}


def _why_not_finite(out, variable) -> str | None:
    """Where the gradient reaching `variable` stops being finite: the operation nearest
    the output that received a finite gradient and sent a non-finite one along a path
    to `variable` (its local derivative is infinite or undefined there). Needs the
    gradients kept by ``backward(retain_graph=True)``."""
    if out._ctx is None:
        return None
    queue, seen = collections.deque([out._ctx]), {id(out._ctx)}
    while queue:  # breadth first: nearest the output first
        ctx = queue.popleft()
        sent = ctx.grad_inputs or ()
        for a, g in zip(ctx.inputs, sent):
            if (
                g is not None
                and not np.all(np.isfinite(g))
                and np.all(np.isfinite(ctx.grad_output))
            ):
                if _depends_on(a, variable):
                    return _describe(ctx, g)
        for a in ctx.inputs:
            if getattr(a, "_ctx", None) is not None and id(a._ctx) not in seen:
                seen.add(id(a._ctx))
                queue.append(a._ctx)
    return None


def _depends_on(t, variable) -> bool:
    stack, seen = [t], set()
    while stack:
        t = stack.pop()
        if t is variable:
            return True
        ctx = getattr(t, "_ctx", None)
        if ctx is not None and id(ctx) not in seen:
            seen.add(id(ctx))
            stack.extend(ctx.inputs)
    return False


def _describe(ctx, g) -> str:
    name = ctx.fn.__name__
    symbol = _SYMBOLS.get(name, name.lower())
    args = [_fmt(getattr(a, "data", a)) for a in ctx.inputs]
    at = f" {symbol} ".join(args) if len(args) == 2 and name in _SYMBOLS else ", ".join(args)
    return f"the derivative of {symbol} at {at} is {_fmt(g)}"


def run(args) -> int:
    import chainrule as cr

    try:
        tree = parse(args.expression)
    except ExpressionError as e:
        raise CommandError(f"malformed expression: {e}") from None
    values = parse_values(args.values)
    names = variables(tree)
    _check_variables(names, values)

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
        if args.grad is None:
            # Keep every intermediate gradient, so the drawing shows them on all edges.
            out.backward(retain_graph=True)
            drawn, firsts = out, {n: env[n].grad for n in names}
        else:
            drawn, firsts = _gradient_graph(out, env, args.grad)

    written = _draw(drawn, args)
    print(f"f = {_fmt(out.item())}")
    for n in names:
        g = firsts[n]
        print(f"df/d{n} = {_fmt(0.0 if g is None else g)}")
    for n in names:
        g = firsts[n]
        if drawn is out and g is not None and not np.isfinite(g):
            why = _why_not_finite(out, env[n])
            note = f"df/d{n} is {_fmt(g)}" + (f": {why}" if why else "")
            print(f"chainrule graph: note: {note}", file=sys.stderr)
    if drawn is not out:
        for n in names:
            g = env[n].grad
            print(f"d2f/d{args.grad}d{n} = {_fmt(0.0 if g is None else g)}")
    if written and not args.quiet:
        print(escaped(f"graph written to {' and '.join(written)}"), file=sys.stderr)
    return 0


def _gradient_graph(out, env, name):
    """(df/d`name`, the first derivatives by name): df/d`name` computed by a backward
    pass that records itself (create_graph), then backpropagated so that its graph's
    edges carry its own gradients; the variables keep those, the second derivatives
    d2f/d`name`dx, in ``.grad``."""
    import chainrule as cr

    if name not in env:
        raise CommandError(
            f"--grad {name}: {name} is not a variable of the expression "
            f"(its variables: {', '.join(env)})"
        )
    leaves = list(env.values())
    firsts = cr.gradients(out, leaves, retain_graph=True, allow_unused=True)
    seed = cr.Tensor(np.ones_like(out.data), name="df/df")  # the upstream gradient, 1
    (g,) = cr.gradients(out, env[name], seed, retain_graph=True, create_graph=True)
    g.name = f"df/d{name}"
    if g.requires_grad:
        g.backward(retain_graph=True)
    return g, dict(zip(env, firsts))


def _draw(out, args) -> list[str]:
    """Write the drawing (``--out``) and the stepping page (``--html``); their names."""
    import chainrule as cr

    title = f"f = {args.expression}"
    written = []
    try:
        if args.out is not None:
            cr.draw_graph(out, args.out, title=title)
            written.append(args.out)
        if args.html is not None:
            cr.draw_graph(out, args.html, format="html", title=title)
            written.append(args.html)
    except (RuntimeError, ValueError, OSError) as e:
        raise CommandError(str(e)) from None
    return written
