"""The computational-graph engine: Tensor, Function, backward, forward mode and
transformations.

`tensor` (the Tensor), `function` (Function, Context, grad modes), `ops` and
`array_ops` (the primitive Functions), `backward` (the backward pass; `fast_backward`,
the same first-order pass scheduled for speed), `methods` (the Tensor's operators and
`backward`), `forward` (forward mode, `jvp`), `transforms` (`grad`, `vjp`, Jacobians,
Hessians, `gradients`), `tnp` (NumPy functions for rules that run on arrays and
Tensors), `draw` (graph drawings: DOT text, a matplotlib picture, the page that steps
through backprop; `graph_view` reads the graph for all of them); `engine` gathers the
core in one import.
"""

from chainrule.autograd import methods as _methods  # noqa: F401  (gives Tensor its operators)
from chainrule.autograd import tnp
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
from chainrule.autograd.ops import maximum, where
from chainrule.autograd.transforms import (
    grad,
    gradients,
    hessian,
    hvp,
    jacfwd,
    jacrev,
    jvp,
    value_and_grad,
    vjp,
)

__all__ = [
    "Context",
    "Function",
    "Tensor",
    "concatenate",
    "draw_graph",
    "enable_grad",
    "grad",
    "gradients",
    "hessian",
    "hvp",
    "is_grad_enabled",
    "jacfwd",
    "jacrev",
    "jvp",
    "maximum",
    "no_grad",
    "stack",
    "tnp",
    "value_and_grad",
    "vjp",
    "where",
]
