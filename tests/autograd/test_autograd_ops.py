"""One harness for every differentiable operation.

Each row of CASES names an operation, a callable building it from Tensors, and a
hypothesis strategy drawing its float64 inputs (shapes with broadcasting, values in the
operation's domain and away from its kinks). Every row is checked the same ways:

- reverse mode against numeric gradients (the full gradient u^T J, entry by entry),
- forward mode against numeric gradients and against reverse mode: the number u^T J v
  computed three ways along random directions (`chainrule.gradcheck`),
- the adjoint identity ``<t, vjp(c)> = <jvp(t), c>``, to rounding error,
- second derivatives (`chainrule.gradgradcheck`): the gradient recorded on Tensors
  equals the first-order one, and its derivatives with respect to the inputs and to the
  upstream gradient, reverse over reverse and forward over reverse, match finite
  differences of the gradient,
- float32 in, float32 out: value, gradients and tangents.

A new Function is checked by adding one row. A row may name the kernel its
convolutions run (``kernel="winograd"``): every check of that row then runs with the
F(2x2, 3x3) kernels taking each convolution they can compute, whatever its channels and
size (and fails if none did), so that their derivatives of every order are checked on
inputs small enough for entry-by-entry finite differences.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import Context, Tensor, gradcheck, gradgradcheck, jvp, numeric_gradient, vjp
from chainrule.autograd import tnp
from chainrule.autograd.array_ops import Identity
from chainrule.nn.functional import conv as C
from chainrule.nn.functional import pool as P
from chainrule.nn.functional import winograd

TOL = 1e-7
TOL2 = 1e-6  # second derivatives: finite differences of a gradient

# ------------------------------------------------------------------ value domains

# Anywhere in a modest range (the smooth functions).
ANY = st.floats(-3, 3, allow_nan=False, allow_subnormal=False)
# Positive: log, sqrt, the base of a**b.
POSITIVE = st.floats(0.2, 3)
# Away from 0 by at least 0.2: divisors, relu and abs (their kink is at 0).
NONZERO = st.tuples(st.sampled_from([-1.0, 1.0]), st.floats(0.2, 3)).map(lambda t: t[0] * t[1])
# A grid k/100 + 0.003: entries of one array can be made distinct (max), and never equal
# to a number on the grid k/100 (clip bounds, the other side of maximum), so no
# finite-difference step crosses a tie.
GRID = st.integers(-300, 300).map(lambda k: k / 100 + 0.003)
GRID_OFF = st.integers(-300, 300).map(lambda k: k / 100)

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
SHAPES_1D_UP = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def _arrays(shape, elements, unique=False):
    return hnp.arrays(np.float64, shape, elements=elements, unique=unique)


def one(elements=ANY, shapes=SHAPES, unique=False):
    """One input."""
    return shapes.flatmap(lambda s: st.tuples(_arrays(s, elements, unique))).map(lambda a: (a, {}))


def two(first=ANY, second=ANY):
    """Two inputs whose shapes broadcast together."""
    shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4)
    return shapes.flatmap(
        lambda bs: st.tuples(
            _arrays(bs.input_shapes[0], first), _arrays(bs.input_shapes[1], second)
        )
    ).map(lambda a: (a, {}))


def matmul_pairs():
    """Operands of a @ b: 1-D, 2-D and batched with broadcast batch dimensions."""
    shapes = hnp.mutually_broadcastable_shapes(
        signature=np.matmul.signature, max_dims=2, max_side=3
    )
    return shapes.flatmap(
        lambda bs: st.tuples(_arrays(bs.input_shapes[0], ANY), _arrays(bs.input_shapes[1], ANY))
    ).map(lambda a: (a, {}))


def with_axis(elements=ANY, unique=False, tuple_axes=True):
    """One input and reduction arguments: axis None, an int (maybe negative) or a tuple."""

    def params(x):
        nd = x.ndim
        axes = [st.none()]
        if nd:
            axes.append(st.integers(-nd, nd - 1))
            if tuple_axes:
                axes.append(st.lists(st.integers(0, nd - 1), unique=True, max_size=nd).map(tuple))
        return st.fixed_dictionaries({"axis": st.one_of(axes), "keepdims": st.booleans()}).map(
            lambda p: ((x,), p)
        )

    return SHAPES.flatmap(lambda s: _arrays(s, elements, unique)).flatmap(params)


def with_one_axis(elements=ANY):
    """One input of at least one dimension and one axis (softmax, log_softmax)."""
    return SHAPES_1D_UP.flatmap(lambda s: _arrays(s, elements)).flatmap(
        lambda x: st.integers(-x.ndim, x.ndim - 1).map(lambda ax: ((x,), {"axis": ax}))
    )


def with_permutation():
    return SHAPES.flatmap(lambda s: _arrays(s, ANY)).flatmap(
        lambda x: st.permutations(range(x.ndim)).map(lambda p: ((x,), {"axes": tuple(p)}))
    )


def with_index():
    """A first axis and an index along it: a slice, an int, or an int array with repeats."""

    def params(x):
        n = x.shape[0]
        index = st.one_of(
            st.integers(-n, n - 1),
            st.builds(slice, st.none() | st.integers(0, n), st.none(), st.sampled_from([1, 2, -1])),
            hnp.arrays(np.intp, st.integers(1, 6), elements=st.integers(-n, n - 1)),
        )
        return index.map(lambda i: ((x,), {"index": i}))

    return SHAPES_1D_UP.flatmap(lambda s: _arrays(s, ANY)).flatmap(params)


def with_pick():
    """A 2-D input and one column per row (the label pick of a classification loss)."""

    def params(x):
        n, c = x.shape
        cols = hnp.arrays(np.intp, n, elements=st.integers(0, c - 1))
        return cols.map(lambda y: ((x,), {"rows": np.arange(n), "cols": y}))

    return (
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=4)
        .flatmap(lambda s: _arrays(s, ANY))
        .flatmap(params)
    )


def several(axis_new=False):
    """Two or three inputs joined along an axis (concatenate, stack)."""

    def build(shape_count_axis):
        shape, count, axis = shape_count_axis
        arrays = []
        for i in range(count):
            s = list(shape)
            if not axis_new:
                s[axis] = i + 1  # different sizes along the joined axis
            arrays.append(_arrays(tuple(s), ANY))
        return st.tuples(*arrays).map(lambda a: (a, {"axis": axis}))

    return SHAPES_1D_UP.flatmap(
        lambda s: st.tuples(
            st.just(s),
            st.integers(2, 3),
            st.integers(0, len(s)) if axis_new else st.integers(0, len(s) - 1),
        )
    ).flatmap(build)


def images(n=(1, 2), c=(1, 3), side=(1, 6)):
    """Sizes of a batch of images: N, C, H, W."""
    return st.tuples(st.integers(*n), st.integers(*c), st.integers(*side), st.integers(*side))


def conv_inputs(bias=True, winograd=False):
    """x (N, C, H, W), weight (F, C, kh, kw)[, bias (F,)] and stride, padding pairs: odd
    sizes, rectangular kernels, strides up to 3, padding up to 2 (also past kernel - 1).
    With `winograd`, the geometry F(2x2, 3x3) computes: a 3x3 kernel, stride 1, sides
    up to 7 (whole and partial 2x2 output tiles)."""
    pairs = st.tuples(st.integers(1, 3), st.integers(1, 3))
    kernel, stride = (st.just((3, 3)), st.just((1, 1))) if winograd else (pairs, pairs)
    geometry = st.tuples(
        images(side=(1, 7) if winograd else (1, 6)),
        st.integers(1, 3),
        kernel,
        stride,
        st.tuples(st.integers(0, 2), st.integers(0, 2)),
    ).filter(lambda g: g[2][0] <= g[0][2] + 2 * g[4][0] and g[2][1] <= g[0][3] + 2 * g[4][1])

    def arrays(g):
        (n, c, h, w), f, k, stride, padding = g
        shapes = [(n, c, h, w), (f, c, *k)] + ([(f,)] if bias else [])
        return st.tuples(*(_arrays(s, ANY) for s in shapes)).map(
            lambda a: (a, {"stride": stride, "padding": padding})
        )

    return geometry.flatmap(arrays)


def pool_inputs(elements=GRID):
    """x (N, C, H, W) with distinct values (no ties in a window) and kernel_size, stride
    pairs, windows overlapping (stride < kernel) or not."""
    geometry = st.tuples(
        images(),
        st.tuples(st.integers(1, 3), st.integers(1, 3)),
        st.tuples(st.integers(1, 3), st.integers(1, 3)),
    ).filter(lambda g: g[1][0] <= g[0][2] and g[1][1] <= g[0][3])
    return geometry.flatmap(
        lambda g: _arrays(g[0], elements, unique=True).map(
            lambda x: ((x,), {"kernel_size": g[1], "stride": g[2]})
        )
    )


def _bn_margin(x, gamma, beta, margin=1e-3):
    """Whether every output of batch norm (training, eps 1e-5) is away from ReLU's kink."""
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    out = gamma[:, None, None] * (x - mean) / np.sqrt(var + 1e-5) + beta[:, None, None]
    return bool(np.all(np.abs(out) > margin))


def batch_norm_inputs(relu=False):
    """x (N, C, H, W) with distinct values (some spread in every channel) and gamma, beta
    (C,); with relu, only inputs whose normalised values stay away from 0.

    Every channel has at least 3 values: with 2, the normalised values are +-1 whatever
    x is, the gradient with respect to x comes from eps alone (about 1e-3 of the
    output's size), and finite differences cannot resolve it to TOL."""
    sizes = images(side=(1, 4)).filter(lambda s: s[0] * s[2] * s[3] >= 3)
    drawn = sizes.flatmap(
        lambda s: st.tuples(
            _arrays(s, GRID, unique=True), _arrays(s[1], NONZERO), _arrays(s[1], ANY)
        )
    )
    if relu:
        drawn = drawn.filter(lambda a: _bn_margin(*a))
    return drawn.map(lambda a: (a, {}))


def batch_norm_eval_inputs():
    """x, gamma, beta and running statistics (constants) for batch norm in evaluation."""
    return (
        images()
        .flatmap(
            lambda s: st.tuples(
                st.tuples(_arrays(s, ANY), _arrays(s[1], NONZERO), _arrays(s[1], ANY)),
                _arrays(s[1], ANY),
                _arrays(s[1], POSITIVE),
            )
        )
        .map(lambda t: (t[0], {"running_mean": t[1], "running_var": t[2]}))
    )


def _checker(shape):
    return (np.arange(int(np.prod(shape))).reshape(shape) % 3) == 0


def rows(n=(2, 4), d=(1, 4), elements=ANY, unique=False):
    """Sizes (N, D) and an array of them."""
    return st.tuples(st.integers(*n), st.integers(*d)).flatmap(
        lambda s: _arrays(s, elements, unique)
    )


def linear_inputs(margin=None):
    """x (N, D), W (D, M), b (M,); with a margin, only those whose x W + b stays that far
    from 0 (ReLU's kink)."""
    drawn = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)).flatmap(
        lambda s: st.tuples(
            _arrays((s[0], s[1]), ANY), _arrays((s[1], s[2]), ANY), _arrays(s[2], ANY)
        )
    )
    if margin is not None:
        drawn = drawn.filter(lambda a: np.all(np.abs(a[0] @ a[1] + a[2]) > margin))
    return drawn.map(lambda a: (a, {}))


def batch_norm_rows(training=True):
    """x (N, D) (distinct values, N >= 3 in training: see `batch_norm_inputs`; N >= 2 in
    evaluation), gamma, beta (D,); running statistics in evaluation."""
    sizes = st.tuples(st.integers(3 if training else 2, 4), st.integers(1, 3))
    drawn = sizes.flatmap(
        lambda s: st.tuples(
            _arrays(s, GRID, unique=True), _arrays(s[1], NONZERO), _arrays(s[1], ANY)
        )
    )
    if training:
        return drawn.map(lambda a: (a, {}))
    return drawn.flatmap(
        lambda a: st.tuples(_arrays(a[1].shape, ANY), _arrays(a[1].shape, POSITIVE)).map(
            lambda r: (a, {"running_mean": r[0], "running_var": r[1]})
        )
    )


def _margins_away_from_zero(scores, y, margin=1e-2):
    n = scores.shape[0]
    m = scores - scores[np.arange(n), y][:, None] + 1
    m[np.arange(n), y] = 1.0
    return bool(np.all(np.abs(m) > margin))


def scores_and_labels(svm=False):
    """Class scores (N, C) and labels y (N,) (for the SVM, with no margin near its kink)."""
    drawn = st.tuples(st.integers(1, 4), st.integers(2, 4)).flatmap(
        lambda s: st.tuples(
            _arrays(s, ANY), hnp.arrays(np.intp, s[0], elements=st.integers(0, s[1] - 1))
        )
    )
    if svm:
        drawn = drawn.filter(lambda a: _margins_away_from_zero(*a))
    return drawn.map(lambda a: ((a[0],), {"y": a[1]}))


def conv_gradient_inputs(weight_grad=False, winograd=False):
    """For the gradients of a convolution: (g, weight) or (x, g), with the convolution's
    geometry (`conv_inputs`'); g has the output's shape."""

    def arrays(drawn):
        (xs, ws), kw = drawn[0], drawn[1]
        out_shape = tuple(np.shape(F.conv2d(np.zeros(xs), np.zeros(ws), **kw)))
        shapes = (xs, out_shape) if weight_grad else (out_shape, ws)
        shape_kw = {"w_shape": ws} if weight_grad else {"x_shape": xs}
        return st.tuples(*(_arrays(s, ANY) for s in shapes)).map(
            lambda a: (a, {**kw, **shape_kw})
        )

    shapes = conv_inputs(bias=False, winograd=winograd).map(
        lambda a: ((a[0][0].shape, a[0][1].shape), a[1])
    )
    return shapes.flatmap(arrays)


def window_inputs(pool, spread=False):
    """For a pool's routing: images x (or, with `spread`, a gradient g of the pool's
    output shape) and the window the pool found on other, fixed images."""

    def params(drawn):
        (x,), kw = drawn
        ctx = Context()
        pool.forward(ctx, x, C._pair("k", kw["kernel_size"], 1), C._pair("s", kw["stride"], 1))
        window = ctx.window
        where = ctx.saved_tensors[0] if ctx.saved_tensors else None
        shape = x.shape
        if spread:
            n, _, _, c = window[0]
            ho, wo = window[3][:2]
            shape = (n, c, ho, wo)
        return _arrays(shape, ANY).map(lambda a: ((a,), {"where": where, "window": window}))

    return pool_inputs().flatmap(params)


def global_inputs(spread=False):
    """Images x (or their channel values g (N, C) with `spread`), and the pixels of the
    maxima of other, fixed images with distinct values."""

    def params(x):
        where = _nhwc_rows(x).argmax(axis=1)[:, None, :]
        shape = x.shape[:2] if spread else x.shape
        return _arrays(shape, ANY).map(lambda a: ((a,), {"where": where, "shape": x.shape}))

    return images().flatmap(lambda s: _arrays(s, GRID, unique=True)).flatmap(params)


def _nhwc_rows(x):
    n, c, h, w = x.shape
    return x.transpose(0, 2, 3, 1).reshape(n, h * w, c)


def index_add_inputs():
    """g and the index of a pick with repeats, for ``zeros(shape)`` with g added there."""
    return with_index().map(
        lambda a: ((np.asarray(a[0][0][a[1]["index"]]),), {"shape": a[0][0].shape, **a[1]})
    )


def conv_input_grad(g, w, x_shape, stride, padding):
    return C.ConvInputGrad.apply(g, w, x_shape, C._pair("s", stride, 1), C._pair("p", padding, 0))


def conv_weight_grad(x, g, w_shape, stride, padding):
    return C.ConvWeightGrad.apply(x, g, w_shape, C._pair("s", stride, 1), C._pair("p", padding, 0))


# ------------------------------------------------------------------ kernels


@contextmanager
def winograd_runs():
    """Counts the runs of the Winograd kernels (forward, and the backward that the
    gradients' Functions run as their forward) inside the block: yields the list of the
    kernels' names, one per run."""
    runs = []

    def counted(kernel):
        def run(*args, **kwargs):
            runs.append(kernel.__name__)
            return kernel(*args, **kwargs)

        return run

    with pytest.MonkeyPatch.context() as mp:
        for name in ("winograd_conv", "winograd_backward"):
            mp.setattr(winograd, name, counted(getattr(winograd, name)))
        yield runs


def _winograd_computes(x_shape, w_shape, stride, padding):
    """Whether F(2x2, 3x3) computes the convolution, whatever it costs."""
    return tuple(w_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and max(padding) <= 2


@contextmanager
def on_kernel(case):
    """The case's convolutions on the kernel it names (none: as chosen for speed)."""
    if case.kernel is None:
        yield
        return
    assert case.kernel == "winograd", case.kernel
    with pytest.MonkeyPatch.context() as mp, winograd_runs() as runs:
        mp.setattr(winograd, "pays", _winograd_computes)
        yield
    assert runs, f"{case.name}: no convolution ran the Winograd kernels"


# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable  # (*tensors, **params) -> Tensor
    inputs: st.SearchStrategy  # draws (tuple of float64 arrays, params dict)
    kernel: str | None = None  # the convolutions' kernel (see `on_kernel`)

    def __repr__(self):
        return self.name


# fmt: off
CASES = [
    Case("add", lambda a, b: a + b, two()),
    Case("add_number", lambda a: 2.5 + a, one()),
    Case("sub", lambda a, b: a - b, two()),
    Case("rsub_number", lambda a: 1.0 - a, one()),
    Case("neg", lambda a: -a, one()),
    Case("mul", lambda a, b: a * b, two()),
    Case("mul_constant", lambda a: np.array([0.5, -2], a.dtype) * a, one(shapes=st.just((3, 2)))),
    Case("div", lambda a, b: a / b, two(ANY, NONZERO)),
    Case("rdiv_number", lambda a: 1.0 / a, one(NONZERO)),
    Case("pow", lambda a, b: a**b, two(POSITIVE, ANY)),
    Case("pow_number", lambda a: a**3, one()),
    Case("rpow_number", lambda a: 2.0**a, one()),
    Case("matmul", lambda a, b: a @ b, matmul_pairs()),
    Case("exp", lambda a: a.exp(), one()),
    Case("log", lambda a: a.log(), one(POSITIVE)),
    Case("sqrt", lambda a: a.sqrt(), one(POSITIVE)),
    Case("sigmoid", lambda a: a.sigmoid(), one()),
    Case("sin", lambda a: a.sin(), one()),
    Case("cos", lambda a: a.cos(), one()),
    Case("tanh", lambda a: a.tanh(), one()),
    Case("relu", lambda a: a.relu(), one(NONZERO)),
    Case("abs", lambda a: a.abs(), one(NONZERO)),
    Case("clip", lambda a: a.clip(-0.5, 0.5), one(GRID)),
    Case("clip_low_only", lambda a: a.clip(0.25, None), one(GRID)),
    Case("maximum", lambda a, b: cr.maximum(a, b), two(GRID, GRID_OFF)),
    Case("where", lambda a, b: cr.where(_checker(np.broadcast_shapes(a.shape, b.shape)), a, b), two()),  # noqa: E501
    Case("sum", lambda a, axis, keepdims: a.sum(axis, keepdims), with_axis()),
    Case("mean", lambda a, axis, keepdims: a.mean(axis, keepdims), with_axis()),
    Case("max", lambda a, axis, keepdims: a.max(axis, keepdims), with_axis(GRID, unique=True)),
    Case("softmax", lambda a, axis: a.softmax(axis), with_one_axis()),
    Case("log_softmax", lambda a, axis: a.log_softmax(axis), with_one_axis()),
    Case("reshape", lambda a: a.reshape(-1, 1), one()),
    Case("flatten", lambda a: a.flatten(), one()),
    Case("transpose", lambda a, axes: a.transpose(axes), with_permutation()),
    Case("T", lambda a: a.T, one()),
    Case("getitem", lambda a, index: a[index], with_index()),
    Case("getitem_pick", lambda a, rows, cols: a[rows, cols], with_pick()),
    Case("getitem_mask", lambda a: a[a.data > 0], one(NONZERO, shapes=SHAPES_1D_UP)),
    Case("concatenate", lambda *ts, axis: cr.concatenate(ts, axis), several()),
    Case("stack", lambda *ts, axis: cr.stack(ts, axis), several(axis_new=True)),
    Case("conv2d", F.conv2d, conv_inputs()),
    Case("conv2d_no_bias", F.conv2d, conv_inputs(bias=False)),
    Case("max_pool2d", F.max_pool2d, pool_inputs()),
    Case("avg_pool2d", F.avg_pool2d, pool_inputs(ANY)),
    Case("global_avg_pool2d", F.global_avg_pool2d, one(shapes=images().map(tuple))),
    Case("global_max_pool2d", F.global_max_pool2d, one(GRID, images().map(tuple), unique=True)),
    Case("batch_norm2d", lambda x, g, b: F.batch_norm2d(x, g, b), batch_norm_inputs()),
    Case("batch_norm2d_relu", lambda x, g, b: F.batch_norm2d(x, g, b, relu=True), batch_norm_inputs(relu=True)),  # noqa: E501
    Case("batch_norm2d_eval", lambda x, g, b, **rs: F.batch_norm2d(x, g, b, training=False, **rs), batch_norm_eval_inputs()),  # noqa: E501
    Case("linear", F.linear, linear_inputs()),
    Case("linear_relu", F.linear_relu, linear_inputs(margin=1e-2)),
    Case("leaky_relu", lambda a: F.leaky_relu(a, 0.1), one(NONZERO)),
    Case("dropout", lambda a: F.dropout(a, 0.5, rng=3), one()),
    Case("batch_norm", lambda x, g, b: F.batch_norm(x, g, b), batch_norm_rows()),
    Case("batch_norm_eval", lambda x, g, b, **rs: F.batch_norm(x, g, b, training=False, **rs), batch_norm_rows(training=False)),  # noqa: E501
    Case("cross_entropy", F.cross_entropy, scores_and_labels()),
    Case("cross_entropy_smoothed", lambda s, y: F.cross_entropy(s, y, 0.2), scores_and_labels()),
    Case("svm_loss", F.svm_loss, scores_and_labels(svm=True)),
    Case("l2_penalty", lambda a, b: F.l2_penalty([a, b], 0.3), two()),
    Case("conv2d_input_grad", conv_input_grad, conv_gradient_inputs()),
    Case("conv2d_weight_grad", conv_weight_grad, conv_gradient_inputs(weight_grad=True)),
    Case("conv2d_winograd", F.conv2d, conv_inputs(winograd=True), kernel="winograd"),
    Case("conv2d_input_grad_winograd", conv_input_grad, conv_gradient_inputs(winograd=True), kernel="winograd"),  # noqa: E501
    Case("conv2d_weight_grad_winograd", conv_weight_grad, conv_gradient_inputs(weight_grad=True, winograd=True), kernel="winograd"),  # noqa: E501
    Case("max_pool_gather", lambda x, where, window: P.MaxPoolGather.apply(x, where, window), window_inputs(P.MaxPool2d)),  # noqa: E501
    Case("max_pool_scatter", lambda g, where, window: P.MaxPoolScatter.apply(g, where, window), window_inputs(P.MaxPool2d, spread=True)),  # noqa: E501
    Case("avg_pool_spread", lambda g, where, window: P.AvgPoolSpread.apply(g, window), window_inputs(P.AvgPool2d, spread=True)),  # noqa: E501
    Case("global_avg_spread", lambda g, where, shape: P.GlobalAvgSpread.apply(g, shape), global_inputs(spread=True)),  # noqa: E501
    Case("global_max_gather", lambda x, where, shape: P.GlobalMaxGather.apply(x, where), global_inputs()),  # noqa: E501
    Case("global_max_scatter", lambda g, where, shape: P.GlobalMaxScatter.apply(g, where, shape), global_inputs(spread=True)),  # noqa: E501
    Case("index_add", lambda g, shape, index: tnp.index_add(g, shape, index), index_add_inputs()),
    Case("broadcast_to", lambda a: tnp.broadcast_to(a, (2, *a.shape)), one()),
    Case("identity", Identity.apply, one()),
    # To long double and back: exact both ways (x86's 80-bit float holds every float64).
    Case("cast", lambda a: tnp.astype(tnp.astype(a, np.longdouble), a.dtype), one()),
]
# fmt: on

HARNESS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


H = 1e-6


def _fd_error(exact, numeric, u, fx):
    """Worst |exact - numeric| relative to the gradient's largest entry (so entries that
    should be 0 are judged on the gradient's scale), after allowing for the error of
    the centered difference itself: rounding of f amplified by 1/h, and the O(h^2)
    truncation term."""
    a = np.asarray(exact, dtype=np.float64)
    b = np.asarray(numeric, dtype=np.float64)
    if a.size == 0:
        return 0.0
    noise = 10 * np.finfo(np.float64).eps * float(np.sum(np.abs(u * fx))) / H + 100 * H**2
    diff = max(0.0, float(np.max(np.abs(a - b))) - noise)
    return diff / max(1e-8, float(np.max(np.abs(a) + np.abs(b))))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@HARNESS
@given(data=st.data())
def test_gradients_match_numeric_in_both_modes(case, data):
    with on_kernel(case):
        arrays, params = data.draw(case.inputs, label="inputs")
        fn = lambda *ts: case.build(*ts, **params)  # noqa: E731

        # Reverse mode against finite differences, the whole gradient u^T J of each input.
        tensors = [Tensor(a, requires_grad=True) for a in arrays]
        out = fn(*tensors)
        assert out.dtype == np.float64
        rng = np.random.default_rng(0)
        u = rng.standard_normal(out.shape)
        out.backward(u)
        for i, (t, a) in enumerate(zip(tensors, arrays)):
            assert t.grad is not None and t.grad.shape == a.shape

            def f_i(x, i=i):
                xs = list(arrays)
                xs[i] = x
                with cr.no_grad():
                    return fn(*(Tensor(v) for v in xs)).data

            num = numeric_gradient(f_i, a.copy(), upstream=u, h=H)
            err = _fd_error(t.grad, num, u, out.data)
            assert err < TOL, f"{case.name}: input {i}: reverse vs numeric error {err:.2e}"

        # Forward mode against finite differences and reverse mode: u^T J v three ways.
        assert gradcheck(fn, arrays, modes=("rev", "fwd"), tol=TOL, random_state=1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_float32_stays_float32(case, data):
    with on_kernel(case):
        arrays, params = data.draw(case.inputs, label="inputs")
        arrays32 = [a.astype(np.float32) for a in arrays]
        # Constants of the computation (batch norm's running statistics) in the same dtype.
        params = {
            k: v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v
            for k, v in params.items()
        }
        tensors = [Tensor(a, requires_grad=True) for a in arrays32]
        out = case.build(*tensors, **params)
        assert out.dtype == np.float32, f"{case.name} forward gave {out.dtype}"
        out.backward(np.ones(out.shape, dtype=np.float32))
        for t in tensors:
            assert t.grad.dtype == np.float32, f"{case.name} gradient has dtype {t.grad.dtype}"
        _, tangent = jvp(lambda *ts: case.build(*ts, **params), arrays32, arrays32)
        assert tangent.dtype == np.float32, f"{case.name} tangent has dtype {tangent.dtype}"


def _dot(a, b) -> float:
    return float(np.sum(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_adjoint_identity_holds_to_rounding(case, data):
    """<t, vjp(c)> = <jvp(t), c>: reverse mode is the transpose of forward mode."""
    with on_kernel(case):
        arrays, params = data.draw(case.inputs, label="inputs")
        fn = lambda *ts: case.build(*ts, **params)  # noqa: E731
        rng = np.random.default_rng(5)
        out, pull = vjp(fn, *arrays)
        c = rng.standard_normal(np.shape(out))
        t = [rng.standard_normal(a.shape) for a in arrays]
        _, jt = jvp(fn, tuple(arrays), tuple(t))
        back = pull(c)
        lhs = sum(_dot(ti, gi) for ti, gi in zip(t, back))
        rhs = _dot(jt, c)
        scale = sum(np.sum(np.abs(ti * gi)) for ti, gi in zip(t, back)) + np.sum(np.abs(jt * c))
        assert abs(lhs - rhs) <= 1e-12 * max(scale, 1e-300), (lhs, rhs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_second_derivatives_match_numeric_in_both_modes(case, data):
    with on_kernel(case):
        arrays, params = data.draw(case.inputs, label="inputs")
        fn = lambda *ts: case.build(*ts, **params)  # noqa: E731
        assert gradgradcheck(fn, arrays, modes=("rev", "fwd"), tol=TOL2, random_state=2)


WIDE = {  # a layer that takes the Winograd kernels as chosen for speed: 64 -> 128, 8x8
    "conv2d": (lambda x, w: F.conv2d(x, w, padding=1), [(2, 64, 8, 8), (128, 64, 3, 3)]),
    "input_grad": (
        lambda g, w: conv_input_grad(g, w, (2, 64, 8, 8), 1, 1),
        [(2, 128, 8, 8), (128, 64, 3, 3)],
    ),
    "weight_grad": (
        lambda x, g: conv_weight_grad(x, g, (128, 64, 3, 3), 1, 1),
        [(2, 64, 8, 8), (2, 128, 8, 8)],
    ),
}


@pytest.mark.parametrize("name", WIDE)
def test_a_layer_wide_enough_for_winograd_has_its_derivatives_checked_on_it(name):
    """No threshold changed: the convolution's forward and both gradients run the
    Winograd kernels at this size, and there the first and second derivatives (both
    modes, against finite differences in float64 along random directions) and the
    adjoint identity hold."""
    assert C.conv_kernel((2, 8, 8, 64), (128, 64, 3, 3), (1, 1), (1, 1)) == "winograd"
    fn, shapes = WIDE[name]
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(s) / np.sqrt(s[1] * 9) for s in shapes]
    with winograd_runs() as runs:
        out, pull = vjp(fn, *arrays)
        c = rng.standard_normal(out.shape)
        t = [rng.standard_normal(a.shape) for a in arrays]
        _, jt = jvp(fn, tuple(arrays), tuple(t))
        back = pull(c)
        assert gradcheck(fn, arrays, modes=("rev", "fwd"), tol=TOL, random_state=1)
        assert gradgradcheck(fn, arrays, modes=("rev", "fwd"), tol=TOL2, random_state=2)
    assert "winograd_conv" in runs and "winograd_backward" in runs
    lhs = sum(_dot(ti, gi) for ti, gi in zip(t, back))
    scale = sum(np.sum(np.abs(ti * gi)) for ti, gi in zip(t, back)) + np.sum(np.abs(jt * c))
    assert abs(lhs - _dot(jt, c)) <= 1e-12 * scale
