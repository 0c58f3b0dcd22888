"""The computational-graph engine: Tensor, Function, backward and forward mode.

`tensor` (the Tensor), `function` (Function, Context, grad modes), `backward` (the
backward pass), `ops` and `array_ops` (the primitive Functions), `methods` (the Tensor's
operators), `forward` (jvp, vjp, grad), `draw` (graph drawings: DOT text, a matplotlib
picture, the page that steps through backprop; `graph_view` reads the graph for all of
them); `engine` gathers the core in one import.
"""

from chainrule.autograd import methods as _methods  # noqa: F401  (gives Tensor its operators)
from chainrule.autograd.array_ops import concatenate, stack
from chainrule.autograd.draw import draw_graph
from chainrule.autograd.engine import (
    Context,
    Function,
    Tensor,
    enable_grad,
    is_grad_enabled,
    no_grad,
)
from chainrule.autograd.forward import grad, jvp, vjp
from chainrule.autograd.ops import maximum, where

__all__ = [
    "Context",
    "Function",
    "Tensor",
    "concatenate",
    "draw_graph",
    "enable_grad",
    "grad",
    "is_grad_enabled",
    "jvp",
    "maximum",
    "no_grad",
    "stack",
    "vjp",
    "where",
]
