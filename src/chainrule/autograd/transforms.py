"""Function transformations in JAX's conventions, and `gradients` in PyTorch's.

- `grad`, `value_and_grad`: the gradient of a function returning one number;
- `vjp`: the function's value and a function pulling cotangents back (reverse mode);
- `jvp` (from `chainrule.autograd.forward`): tangents pushed forward;
- `jacrev`, `jacfwd`: whole Jacobians, row by row (reverse) or column by column
  (forward), of shape ``output.shape + input.shape``;
- `hessian` (forward over reverse, ``jacfwd(jacrev(f))``) and `hvp`, a Hessian-vector
  product in one forward-over-reverse pass;
- `gradients(outputs, inputs, ...)`: PyTorch's ``torch.autograd.grad`` on Tensors.

The functions transformed take Tensors and return Tensors. Called on numbers or arrays, a
transformation returns arrays; called inside another transformation (a Tensor among its
arguments, a forward-mode level active, or a function that closes over a Tensor that
requires grad) it returns Tensors that carry the graph, so that the outer one can
differentiate them: ``grad(grad(f))``, ``jacfwd(jacrev(f))``, ``jvp(grad(f), ...)``.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.array_ops import stack
from chainrule.autograd.backward import run_backward
from chainrule.autograd.forward import depends_on_outer, enter, is_nested, jvp, running
from chainrule.autograd.function import enable_grad
from chainrule.autograd.tensor import Tensor

__all__ = [
    "gradients",
    "grad",
    "hessian",
    "hvp",
    "jacfwd",
    "jacrev",
    "jvp",
    "value_and_grad",
    "vjp",
]


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _check_tensors(values, what: str, name: str) -> tuple:
    values = _as_tuple(values)
    for i, v in enumerate(values):
        if not isinstance(v, Tensor):
            raise TypeError(f"{name}: {what} {i} must be a Tensor, got {type(v).__name__}")
    return values


def _seed(out: Tensor, g, create_graph: bool, name: str):
    """The upstream gradient for output `out`: `g` (1 for a single number when None)
    as an array, or as a Tensor when the pass records its gradients."""
    if g is None:
        if out.size != 1:
            raise RuntimeError(
                f"{name}: an output of shape {out.shape} needs a gradient of that shape "
                "(grad_outputs)"
            )
        g = np.ones(out.shape, dtype=out.dtype)
    if isinstance(g, Tensor):
        if tuple(g.shape) != out.shape:
            raise ValueError(
                f"{name}: a gradient of shape {g.shape} for an output of shape {out.shape}"
            )
        return g if create_graph else np.array(g.data)
    g = np.array(g, dtype=out.dtype)
    if g.shape != out.shape:
        raise ValueError(
            f"{name}: a gradient of shape {g.shape} for an output of shape {out.shape}"
        )
    return Tensor(g) if create_graph else g


def gradients(
    outputs,
    inputs,
    grad_outputs=None,
    *,
    retain_graph=None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple:
    """The gradients of `outputs` with respect to `inputs`, as PyTorch's
    ``torch.autograd.grad``: the sum over the outputs of ``grad_output * d output /
    d input``, for each input.

    outputs, inputs : a Tensor or a sequence of Tensors.
    grad_outputs : the upstream gradient of each output (None: 1, for outputs that are a
        single number); arrays or Tensors of the outputs' shapes.
    retain_graph : keep the graph for another backward pass (default: `create_graph`).
    create_graph : record the gradients' own graph: they are Tensors that can be
        differentiated again (a gradient penalty, a meta-learning step, a Hessian).
        Otherwise they are arrays.
    allow_unused : give None for an input no output depends on (otherwise an error).

    Returns a tuple with one gradient per input. No ``.grad`` changes.
    """
    outputs = _check_tensors(outputs, "output", "gradients")
    inputs = _check_tensors(inputs, "input", "gradients")
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    elif len(outputs) > 1 or isinstance(grad_outputs, (tuple, list)):
        grad_outputs = tuple(grad_outputs)
    else:
        grad_outputs = (grad_outputs,)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"gradients: {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for i, o in enumerate(outputs):
        if not o.requires_grad:
            raise RuntimeError(
                f"gradients: output {i} does not require grad (no input of its computation "
                "has requires_grad=True)"
            )
    seeds = [_seed(o, g, create_graph, "gradients") for o, g in zip(outputs, grad_outputs)]
    keep = create_graph if retain_graph is None else retain_graph
    found = run_backward(outputs, seeds, inputs, retain_graph=keep, create_graph=create_graph)
    result = []
    for i, (x, g) in enumerate(zip(inputs, found)):
        if g is None and not allow_unused:
            raise RuntimeError(
                f"gradients: input {i} (shape {x.shape}) is not used in the computation of "
                "the outputs; pass allow_unused=True to get None for it"
            )
        if g is not None:
            g = _owned(g, create_graph)
        result.append(g)
    return tuple(result)


def _owned(g, as_tensor: bool):
    if as_tensor:
        return g if isinstance(g, Tensor) else Tensor(g)
    return np.array(g)


# ---------------------------------------------------------------- reverse mode


def _argnums(argnums, nargs: int, name: str) -> tuple:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in nums:
        if not -nargs <= n < nargs:
            raise ValueError(f"{name}: argnums {n} out of range for {nargs} arguments")
    return tuple(n % nargs for n in nums)


def _inputs(args, nums) -> list:
    """The Tensors a transformed function is called with: a node of its own, requiring
    grad, for each differentiated argument; the others as Tensors (constants)."""
    return [
        enter(a, requires_grad=True) if i in nums else (a if isinstance(a, Tensor) else Tensor(a))
        for i, a in enumerate(args)
    ]


def _run(fn, args, nums, has_aux: bool, name: str):
    """Call `fn` on the inputs for `args`; returns (inputs, output, aux, nested)."""
    xs = _inputs(args, nums)
    with enable_grad(), running(xs):
        result = fn(*xs)
    aux = None
    if has_aux:
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise TypeError(f"{name}: with has_aux=True, fn must return a pair (output, aux)")
        result, aux = result
    wrt = [xs[n] for n in nums]
    outs = _as_tuple(result)
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"{name}: fn must return a Tensor, got {type(o).__name__}")
    nested = is_nested(args) or depends_on_outer(outs, wrt)
    return wrt, result, aux, nested


def _backward_to(outs, seeds, wrt, create: bool, retain: bool) -> list:
    """Gradients of `outs` (with upstream `seeds`) w.r.t. `wrt`, zeros where none."""
    roots = [(o, s) for o, s in zip(outs, seeds) if o.requires_grad]
    found = [None] * len(wrt)
    if roots:
        found = run_backward(
            [o for o, _ in roots],
            [s for _, s in roots],
            wrt,
            retain_graph=retain,
            create_graph=create,
        )
    return [
        _owned(np.zeros(x.shape, dtype=x.dtype) if g is None else g, create)
        for x, g in zip(wrt, found)
    ]


def _plain(tree, keep: bool):
    """`tree` (a Tensor, or tuples of them) as arrays unless `keep`."""
    if isinstance(tree, (tuple, list)):
        return type(tree)(_plain(v, keep) for v in tree)
    if isinstance(tree, Tensor) and not keep:
        return tree.data
    return tree


def value_and_grad(fn, argnums=0, has_aux: bool = False):
    """A function returning ``(fn(*args), gradient)`` (JAX's ``jax.value_and_grad``).

    `fn` returns a single number (a Tensor of one element); with ``has_aux=True`` it
    returns ``(number, aux)`` and the result is ``((value, aux), gradient)``. The
    gradient is taken with respect to argument `argnums` (an int), or is a tuple of
    gradients for a tuple of argnums, each shaped like its argument.
    """

    def value_and_grad_fn(*args):
        nums = _argnums(argnums, len(args), "grad")
        wrt, out, aux, nested = _run(fn, args, nums, has_aux, "grad")
        if out.size != 1:
            raise ValueError(
                f"grad: fn must return a single number, got shape {out.shape}; use vjp or jacrev"
            )
        seed = _seed(out, None, nested, "grad")
        grads = _backward_to([out], [seed], wrt, nested, retain=nested)
        grads = grads[0] if isinstance(argnums, int) else tuple(grads)
        value = _plain(out, nested)
        if has_aux:
            return (value, _plain(aux, nested)), grads
        return value, grads

    return value_and_grad_fn


def grad(fn, argnums=0, has_aux: bool = False):
    """A function computing the gradient of `fn`, which returns a single number (JAX's
    ``jax.grad``): ``grad(f)(x, y)`` is df/dx; ``grad(f, argnums=(0, 1))(x, y)`` is
    (df/dx, df/dy); with ``has_aux=True``, `fn` returns ``(number, aux)`` and the result
    is ``(gradient, aux)``. Nested, ``grad(grad(f))`` is the second derivative.
    """
    vg = value_and_grad(fn, argnums, has_aux)

    def grad_fn(*args):
        value, grads = vg(*args)
        return (grads, value[1]) if has_aux else grads

    return grad_fn


def vjp(fn, *primals, has_aux: bool = False):
    """``out, vjp_fn = vjp(fn, x, y)`` (JAX's ``jax.vjp``): the value of `fn` and a function
    pulling a cotangent back.

    ``vjp_fn(cotangent)`` returns the gradients of ``sum(cotangent * fn(x, y))`` with
    respect to each primal, as a tuple. It can be called any number of times. When `fn`
    returns a tuple of Tensors, the cotangent is a tuple of the same shapes. With
    ``has_aux=True`` `fn` returns ``(output, aux)`` and ``(out, vjp_fn, aux)`` is returned.
    """
    wrt, out, aux, nested = _run(fn, primals, tuple(range(len(primals))), has_aux, "vjp")
    outs = _as_tuple(out)

    def vjp_fn(cotangent):
        cts = _as_tuple(cotangent) if isinstance(out, (tuple, list)) else (cotangent,)
        if len(cts) != len(outs):
            raise ValueError(f"vjp: {len(cts)} cotangents for {len(outs)} outputs")
        create = nested or any(isinstance(c, Tensor) for c in cts)
        seeds = []
        for o, c in zip(outs, cts):
            if tuple(np.shape(c)) != o.shape:
                raise ValueError(
                    f"vjp: cotangent has shape {tuple(np.shape(c))} but the output has shape "
                    f"{o.shape}"
                )
            seeds.append(_seed(o, c, create, "vjp"))
        return tuple(_backward_to(outs, seeds, wrt, create, retain=True))

    value = _plain(out, nested)
    return (value, vjp_fn, _plain(aux, nested)) if has_aux else (value, vjp_fn)


# ---------------------------------------------------------------- Jacobians


def _stacked(columns: list, shape: tuple, keep: bool):
    """Rows or columns of a Jacobian joined into one array (or Tensor) of `shape`."""
    if keep:
        return stack([c if isinstance(c, Tensor) else Tensor(c) for c in columns]).reshape(shape)
    return np.stack([np.asarray(c) for c in columns]).reshape(shape)


def jacrev(fn, argnums=0):
    """A function computing the Jacobian of `fn` row by row in reverse mode (JAX's
    ``jax.jacrev``): one backward pass per output entry.

    The Jacobian of an output of shape ``out`` with respect to an argument of shape
    ``in`` has shape ``out + in``; a tuple of argnums gives a tuple of them, and an `fn`
    returning a tuple gives a tuple (per output) of those.
    """

    def jacrev_fn(*args):
        nums = _argnums(argnums, len(args), "jacrev")
        wrt, out, _, nested = _run(fn, args, nums, False, "jacrev")
        per_output = []
        for o in _as_tuple(out):
            rows = []
            for i in range(o.size):
                seed = np.zeros(o.size, dtype=o.dtype)
                seed[i] = 1
                seed = _seed(o, seed.reshape(o.shape), nested, "jacrev")
                rows.append(_backward_to([o], [seed], wrt, nested, retain=True))
            jac = tuple(
                _stacked([r[k] for r in rows], o.shape + x.shape, nested)
                if rows
                else _empty_jacobian(o, x, nested)
                for k, x in enumerate(wrt)
            )
            per_output.append(jac[0] if isinstance(argnums, int) else jac)
        return tuple(per_output) if isinstance(out, (tuple, list)) else per_output[0]

    return jacrev_fn


def _empty_jacobian(o, x, keep: bool):
    z = np.zeros(o.shape + x.shape, dtype=x.dtype)
    return Tensor(z) if keep else z


def jacfwd(fn, argnums=0):
    """A function computing the Jacobian of `fn` column by column in forward mode (JAX's
    ``jax.jacfwd``): one forward pass per input entry. Shapes as in `jacrev`."""

    def jacfwd_fn(*args):
        nums = _argnums(argnums, len(args), "jacfwd")
        nested = is_nested(args)

        def of_differentiated(*ys):
            xs = [a if isinstance(a, Tensor) else Tensor(a) for a in args]
            for n, y in zip(nums, ys):
                xs[n] = y
            return fn(*xs)

        primals = tuple(args[n] for n in nums)
        shapes = [np.shape(a.data if isinstance(a, Tensor) else a) for a in primals]
        jacs = []  # per argument: (value, columns)
        returns_tuple = False
        for k, shape in enumerate(shapes):
            columns = []
            value = None
            for j in range(int(np.prod(shape))):
                tangents = [np.zeros(s) for s in shapes]
                tangents[k].reshape(-1)[j] = 1
                value, column = jvp(of_differentiated, primals, tuple(tangents))
                returns_tuple = isinstance(value, tuple)
                columns.append(_as_tuple(column))
            if value is None:  # an empty argument: its Jacobian is empty
                value = of_differentiated(*(enter(p) for p in primals))
                returns_tuple = isinstance(value, (tuple, list))
            jacs.append((_as_tuple(value), columns))
        return _jacfwd_result(jacs, shapes, argnums, nested, returns_tuple)

    return jacfwd_fn


def _jacfwd_result(jacs, shapes, argnums, nested, returns_tuple: bool):
    """Columns of jvps -> per output, per argument, arrays of shape out + in."""
    values = jacs[0][0]
    per_output = []
    for i, v in enumerate(values):
        keep = nested or isinstance(v, Tensor)
        vshape = tuple(np.shape(v.data if isinstance(v, Tensor) else v))
        jac = []
        for (_, columns), shape in zip(jacs, shapes):
            if not columns:
                z = np.zeros(vshape + tuple(shape))
                jac.append(Tensor(z) if keep else z)
                continue
            cols = [c[i] for c in columns]
            full = _stacked(cols, (len(cols),) + vshape, keep)
            # columns first -> move the input axis to the end, then unflatten it
            axes = tuple(range(1, len(vshape) + 1)) + (0,)
            full = full.transpose(axes).reshape(vshape + tuple(shape))
            jac.append(full)
        per_output.append(jac[0] if isinstance(argnums, int) else tuple(jac))
    return tuple(per_output) if returns_tuple else per_output[0]


def hessian(fn, argnums=0):
    """A function computing the Hessian of `fn` (a single number) as JAX's
    ``jax.hessian``: ``jacfwd(jacrev(fn, argnums), argnums)``, forward over reverse.
    For an argument of shape ``s`` it has shape ``s + s``; for a tuple of argnums it is
    the tuple of tuples of blocks ``H[i][j]``."""
    return jacfwd(jacrev(fn, argnums), argnums)


def hvp(fn, primals, tangents):
    """``(fn(*primals), H @ tangents)``: the Hessian of `fn` (a single number) times a
    vector, in one forward-over-reverse pass (the tangents pushed through the gradient's
    computation, Pearlmutter's trick), without forming H.

    primals, tangents : one array per argument (or a tuple of them). With several
    arguments the product is a tuple, one entry per argument:
    ``sum_j H_ij @ tangents[j]``.
    """
    primals = _as_tuple(primals)
    tangents = _as_tuple(tangents)
    n = len(primals)
    vg = value_and_grad(fn, argnums=tuple(range(n)))

    def flat(*xs):
        value, grads = vg(*xs)
        return (value, *grads)

    out, out_tangents = jvp(flat, primals, tangents)
    products = out_tangents[1:]
    return out[0], (products[0] if n == 1 else tuple(products))
