"""The core of the engine in one import: `Tensor`, `Function`, `Context`, grad modes.

The pieces live in their own modules, each below the next:

- `chainrule.autograd.tensor`: `Tensor`;
- `chainrule.autograd.function`: `Function` and `Context` (making and recording the
  results of operations), `no_grad`, `enable_grad`;
- `chainrule.autograd.ops` and `chainrule.autograd.array_ops`: the primitive Functions;
- `chainrule.autograd.backward`: the backward pass (`run_backward`);
- `chainrule.autograd.methods`: the Tensor's operators, methods and `backward`.

``from chainrule.autograd.engine import Function, Tensor`` is the import for code that
defines new Functions (as `chainrule.nn.functional` does).
"""

from chainrule.autograd import methods as _methods  # noqa: F401  (gives Tensor its methods)
from chainrule.autograd.backward import run_backward
from chainrule.autograd.function import (
    Context,
    Function,
    enable_grad,
    is_grad_enabled,
    no_grad,
)
from chainrule.autograd.tensor import Tensor

__all__ = [
    "Context",
    "Function",
    "Tensor",
    "enable_grad",
    "is_grad_enabled",
    "no_grad",
    "run_backward",
]
