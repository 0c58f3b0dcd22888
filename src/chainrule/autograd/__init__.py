"""The computational-graph engine: Tensor, Function, backward and forward mode."""

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
from chainrule.autograd.ops import concatenate, maximum, stack, where

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
