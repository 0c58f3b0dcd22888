"""chainrule: image classification for robot perception, built from the chain rule up.

The engine (``Tensor``, ``Function``, reverse and forward mode, gradient checks, graph
drawings) is importable from the top level; models, layers, optimizers and datasets
live in ``chainrule.models``, ``chainrule.nn``, ``chainrule.optim`` and
``chainrule.data``, training loops and search in ``chainrule.train``, runs of a model
(settings, fit, evaluation, files) in ``chainrule.experiment``.
"""

from chainrule.autograd import (
    Context,
    Function,
    Tensor,
    concatenate,
    draw_graph,
    enable_grad,
    grad,
    gradients,
    hessian,
    hvp,
    is_grad_enabled,
    jacfwd,
    jacrev,
    jvp,
    maximum,
    no_grad,
    stack,
    value_and_grad,
    vjp,
    where,
)
from chainrule.gradcheck import (
    GradcheckError,
    GradcheckWarning,
    gradcheck,
    gradgradcheck,
    numeric_gradient,
    rel_error,
)

__version__ = "0.1.0"

__all__ = [
    "Context",
    "Function",
    "GradcheckError",
    "GradcheckWarning",
    "Tensor",
    "concatenate",
    "draw_graph",
    "enable_grad",
    "grad",
    "gradcheck",
    "gradgradcheck",
    "gradients",
    "hessian",
    "hvp",
    "is_grad_enabled",
    "jacfwd",
    "jacrev",
    "jvp",
    "maximum",
    "no_grad",
    "numeric_gradient",
    "rel_error",
    "stack",
    "value_and_grad",
    "vjp",
    "where",
]
