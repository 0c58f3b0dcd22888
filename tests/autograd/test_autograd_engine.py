"""The backward pass and the Tensor: order, accumulation, release, modes, dtypes, errors."""

import numpy as np
import pytest

import chainrule as cr
from chainrule import Function, Tensor
from chainrule.autograd import Context, ops


def leaf(v, **kw):
    return Tensor(v, requires_grad=True, **kw)


def test_deep_chain_of_100000_operations():
    x = leaf(0.5)
    y = x
    for _ in range(50_000):
        y = y * 1.0
        y = y + 1.0
    y.backward()
    assert y.item() == 50_000.5
    assert x.grad == 1.0
    assert len(cr.draw_graph(y)) > 0  # drawing walks the same depth without recursion


def test_gradients_accumulate_across_backward_calls_until_zero_grad():
    w = leaf(np.array([1.0, 2.0]))
    (w * 3).sum().backward()
    (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad, [3 + 2, 3 + 4])
    w.zero_grad()
    assert w.grad is None
    (w * 3).sum().backward()
    np.testing.assert_array_equal(w.grad, [3, 3])


def test_retain_graph_allows_a_second_backward_and_release_forbids_it():
    x = leaf(2.0)
    y = (x * x).exp()
    y.backward(retain_graph=True)
    first = x.grad.copy()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * first)
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()
    assert y.grad_fn is not None and not y.is_leaf


def test_backward_releases_what_forward_saved_and_set_on_the_context():
    x = leaf(np.array([1.0, -2.0, 3.0]))
    s = x.sum(axis=0)  # Sum keeps its axis and shape as attributes of its context
    y = s * s  # a binary operator keeps its operands in saved_tensors only
    assert vars(s._ctx) and not vars(y._ctx) and y._ctx.saved_tensors
    y.backward()
    for ctx in (s._ctx, y._ctx):
        assert isinstance(ctx, Context)
        assert ctx.released and not vars(ctx)
        assert ctx.fn is not None and ctx.inputs  # the graph can still be drawn
    np.testing.assert_array_equal(x.grad, [4.0, 4.0, 4.0])


def test_intermediate_gradients_only_when_kept():
    x = leaf(3.0)
    q = x * 2
    f = q * q
    f.backward()
    assert q.grad is None and x.grad == 24.0
    x2 = leaf(3.0)
    q2 = (x2 * 2).retain_grad()
    (q2 * q2).backward()
    assert q2.grad == 12.0 and isinstance(q2.grad, np.ndarray)


def test_no_grad_records_nothing():
    w = leaf(np.ones(3))
    with cr.no_grad():
        y = w * 2
        with cr.enable_grad():
            z = w * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()

    @cr.no_grad()
    def update(p):
        return p - 0.1

    assert not update(w).requires_grad
    assert cr.is_grad_enabled()


def test_float32_stays_float32_for_scalars_and_arrays():
    for v in (np.float32(1.5), np.ones((2, 3), dtype=np.float32)):
        x = leaf(v)
        y = ((x * 2.0 + 1.0) / 3.0 - 0.5) ** 2
        y = (y.exp() + y.sigmoid() + y.tanh() + y.relu() + y.sqrt()).log()
        assert y.dtype == np.float32
        y.sum().backward()
        assert x.grad.dtype == np.float32
    assert Tensor(2).dtype == np.float64 and Tensor(2.0).dtype == np.float64
    assert Tensor([1, 2]).dtype == np.float64
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.array(["a"]))


def test_data_of_a_scalar_is_an_ndarray_that_later_operations_see():
    t = leaf(2.0)
    assert isinstance(t.data, np.ndarray) and t.data.shape == ()
    y = t * 3
    assert isinstance(y.data, np.ndarray) and y.item() == 6.0
    t.data[...] = 5.0
    assert (t * 3).item() == 15.0
    assert np.asarray(t) is t.data and t.numpy() is t.data
    t.data = np.array(7.0)
    assert (t + 0).item() == 7.0


def test_user_functions_get_arrays_and_needs_input_grad():
    seen = {}

    class Probe(Function):
        @staticmethod
        def forward(ctx, a, b):
            seen["types"] = (type(a), type(b))
            seen["needs"] = list(ctx.needs_input_grad)
            return a * b

        @staticmethod
        def backward(ctx, g):
            seen["g"] = type(g)
            return g, None

    a = leaf(2.0)
    b = Tensor(3.0)
    Probe.apply(a * 1, b).backward()
    assert seen == {"types": (np.ndarray, np.ndarray), "needs": [True, False], "g": np.ndarray}
    assert a.grad == 1.0


def test_leaves_own_their_gradients():
    a, b = leaf(np.ones(2)), leaf(np.ones(2))
    (a + b).sum().backward()  # the add gate hands the same array to both
    a.grad += 1
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])
    c = leaf(np.ones((2, 2)))
    c.T.sum().backward()  # a transposed view
    assert c.grad.base is None


def test_output_used_by_an_operation_outside_this_backward():
    x = leaf(2.0)
    h = x * 2
    loss1 = h * 3
    loss2 = h * 4  # consumes h but is never backpropagated  # noqa: F841
    loss1.backward()
    assert x.grad == 6.0


def test_chain_with_a_side_output_at_every_step():
    x = leaf(1.5)
    hs, outs = [x], []
    for _ in range(2000):
        hs.append(hs[-1] * 1.001)
        outs.append(hs[-1] * 2)
    outs[999].backward()
    assert x.grad == pytest.approx(2 * 1.001**1000, rel=1e-12)


def test_a_none_gradient_still_lets_the_other_paths_through():
    class NoGradForFirst(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return None, g

    x = leaf(1.0)
    h = x * 3
    out = NoGradForFirst.apply(h, x) + h * 2
    out.backward()
    assert x.grad == 1.0 + 6.0


def test_indexing_with_repeated_indices_adds_up():
    x = leaf(np.array([1.0, 2.0, 3.0]))
    x[np.array([0, 0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0])
    y = leaf(np.array([1.0, 2.0, 3.0]))
    y[np.array([-1, 2])].sum().backward()  # -1 and 2 are the same entry
    np.testing.assert_array_equal(y.grad, [0.0, 0.0, 2.0])
    s = leaf(np.arange(12.0).reshape(4, 3))
    picked = s[np.arange(4), np.array([2, 0, 2, 1])]
    picked.backward(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(s.grad, [[0, 0, 1], [2, 0, 0], [0, 0, 3], [0, 4, 0]])
    r = leaf(np.ones((3, 2)))
    r[np.array([1, 1]), np.array([0, 0])].sum().backward()
    np.testing.assert_array_equal(r.grad, [[0, 0], [2, 0], [0, 0]])


def test_softmax_and_log_softmax_are_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [3.0, 1e4, 1e4]])
    x = leaf(logits)
    p = x.softmax(axis=1)
    lp = x.log_softmax(axis=1)
    np.testing.assert_allclose(p.data, [[1, 0, 0], [0, 0.5, 0.5]], atol=1e-300)
    np.testing.assert_allclose(lp.data[0], [0, -1e4, -2e4])
    np.testing.assert_allclose(lp.data[1, 1:], [-np.log(2)] * 2)
    (lp[:, 0].sum() + (p * p).sum()).backward()
    assert np.all(np.isfinite(x.grad))
    # Shift invariance: the gradient at x + 1e4 equals the gradient at x.
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 5))
    u = rng.standard_normal((3, 5))
    grads = []
    for shift in (0.0, 1e4):
        t = leaf(base + shift)
        (t.log_softmax(axis=1) * u).sum().backward()
        grads.append(t.grad)
    np.testing.assert_allclose(grads[1], grads[0], atol=1e-12)
    assert cr.gradcheck(lambda t: t.softmax(axis=0), [base + 1e4], tol=1e-6)


def test_bad_input_gets_clear_errors():
    a, b = leaf(np.ones(3)), leaf(np.ones(4))
    with pytest.raises(ValueError, match=r"add: shapes \(3,\) and \(4,\) cannot be broadcast"):
        a + b
    with pytest.raises(ValueError, match=r"matmul: .*inner dimensions 3 != 2"):
        leaf(np.ones((2, 3))) @ leaf(np.ones((2, 2)))
    with pytest.raises(ValueError, match="cannot reshape"):
        a.reshape(2, 2)
    with pytest.raises(RuntimeError, match=r"non-scalar output of shape \(3,\)"):
        (a * 2).backward()
    with pytest.raises(ValueError, match=r"grad has shape \(2,\) but the output has shape \(3,\)"):
        (a * 2).backward(np.ones(2))
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(1.0).backward()


def test_broken_backward_rules_are_named():
    class TooMany(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return g, g

    class WrongShape(Function):
        @staticmethod
        def forward(ctx, a):
            return a.sum()

        @staticmethod
        def backward(ctx, g):
            return np.ones(5)

    with pytest.raises(RuntimeError, match="TooMany.backward returned 2 gradients for 1 inputs"):
        TooMany.apply(leaf(np.ones(2))).sum().backward()
    with pytest.raises(RuntimeError, match=r"WrongShape.backward returned a gradient of shape"):
        WrongShape.apply(leaf(np.ones(3))).backward()


def test_numpy_arrays_and_numbers_on_either_side():
    x = leaf(np.array([1.0, 2.0]))
    y = np.array([3.0, 4.0]) * x + 1 - x / 2 + 2**x + x**2 - np.array([1.0, 1.0]) @ x
    assert isinstance(y, Tensor)
    y.sum().backward()
    expected = np.array([3.0, 4.0]) - 0.5 + 2**x.data * np.log(2) + 2 * x.data - 2
    np.testing.assert_allclose(x.grad, expected)
    assert (np.float64(2.0) * x).grad_fn is not None


def _custom(forward, backward, name):
    return type(
        name, (Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)}
    )


def test_a_gradient_of_the_wrong_shape_is_an_error_naming_the_function_and_both_shapes():
    # (4, 3) for a (3,) input whose output is (3,): nothing was broadcast, nothing to sum.
    Double = _custom(lambda ctx, x: 2 * x, lambda ctx, g: np.full((4, 3), 2.0), "Double")
    x = leaf(np.ones(3))
    with pytest.raises(RuntimeError, match=r"Double\.backward .* shape \(4, 3\) .* shape \(3,\)"):
        Double.apply(x).sum().backward()
    assert x.grad is None
    # A length-1 axis that forward did not broadcast either (the output is (1, 3)).
    Same = _custom(lambda ctx, x: x + 0, lambda ctx, g: np.ones((5, 3)), "Same")
    with pytest.raises(RuntimeError, match=r"Same\.backward .*\(5, 3\).*\(1, 3\)"):
        Same.apply(leaf(np.ones((1, 3)))).sum().backward()


def test_a_gradient_shaped_like_the_broadcast_is_summed_back():
    # Forward broadcast a (3,) and a (4, 1) input to (4, 3): their gradients may come
    # back shaped (4, 3) and are summed over the broadcast axes.
    Plus = _custom(lambda ctx, a, b: a + b, lambda ctx, g: (g, 2 * g), "Plus")
    a, b = leaf(np.zeros(3)), leaf(np.zeros((4, 1)))
    Plus.apply(a, b).backward(np.ones((4, 3)))
    np.testing.assert_array_equal(a.grad, [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(b.grad, [[6.0], [6.0], [6.0], [6.0]])
    c = leaf(np.zeros((4, 3)))
    Plus.apply(a, c).sum().backward()  # (4, 3) for the (4, 3) input: as it is
    np.testing.assert_array_equal(c.grad, np.full((4, 3), 2.0))


def test_a_forward_returning_integers_gives_a_float_tensor_and_other_dtypes_are_refused():
    Count = _custom(lambda ctx, x: np.arange(3) + (x > 0), lambda ctx, g: g * 0, "Count")
    y = Count.apply(leaf(np.array([1.0, -1.0, 2.0])))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y.data, [1.0, 1.0, 3.0])
    assert cr.where(np.array([True, False]), 1, 0).dtype == np.float64  # constants only
    assert Count.apply(Tensor(np.ones(3))).dtype == np.float64  # not recorded: same rule
    Complex = _custom(lambda ctx, x: x * 1j, lambda ctx, g: g, "Complex")
    with pytest.raises(TypeError, match=r"Complex\.forward returned .*complex128.*floating"):
        Complex.apply(leaf(np.ones(2)))


def test_zero_to_a_power_has_the_derivatives_of_its_limits():
    # 0**b is 0 for b > 0 and 1 at b = 0, so d/db is 0 there (PyTorch gives the same:
    # [0, 0, -inf] for b = [2, 0, -1]); a**0 is 1 for every a, so d/da is 0 at a = 0.
    b = leaf(np.array([2.0, 0.0, -1.0]))
    with np.errstate(divide="ignore"):
        (Tensor(0.0) ** b).sum().backward()
    np.testing.assert_array_equal(b.grad, [0.0, 0.0, -np.inf])
    a = leaf(0.0)
    (a**0.0).backward()
    assert a.grad == 0.0
    a2 = leaf(np.array([0.0, 4.0]))
    with np.errstate(divide="ignore"):
        (a2**0.5).sum().backward()
    np.testing.assert_array_equal(a2.grad, [np.inf, 0.25])
    x = leaf(2.0)
    _, tangent = cr.jvp(lambda e: 0.0**e, (2.0,), (1.0,))
    assert tangent == 0.0
    (0.0**x).backward()
    assert x.grad == 0.0


# ------------------------------------------------------------------ the speed paths


def _with_a_constant(cls):
    """`cls` taking one more, constant argument: `Function.apply` then runs its general
    steps (a loop over the arguments), where ``cls.apply`` of two takes `apply2`."""

    def forward(ctx, a, b, _c):
        return cls.forward(ctx, a, b)

    def backward(ctx, g):  # cls's rule, seeing its own two arguments
        return (*cls.backward(ops._Wanted(ctx, ctx.needs_input_grad[:2]), g), None)

    return type(
        f"{cls.__name__}WithConstant",
        (Function,),
        {
            "scalar_inputs": cls.scalar_inputs,
            "forward": staticmethod(forward),
            "backward": staticmethod(backward),
        },
    )


_OPERANDS = {
    "leaf": lambda: leaf(1.5),
    "leaf32": lambda: leaf(np.float32(-0.5)),
    "constant": lambda: Tensor(2.0),
    "result": lambda: ops.Exp.apply(leaf(0.25)),
    "int": lambda: 3,
    "np.float32": lambda: np.float32(0.75),
    "vector leaf": lambda: leaf(np.array([0.5, 2.0, -1.0])),
    "vector array": lambda: np.array([1.0, -3.0, 0.5]),
    "0-d array leaf": lambda: leaf(np.array(1.25)),
}


def _state(out, operands):
    """Everything an operation leaves behind: its value, its record, the consumer
    counts of its inputs, and the gradients a backward pass gives its leaves."""
    d = out._data
    state = [type(d), d.dtype, np.asarray(d).tobytes(), out.requires_grad]
    ctx = out._ctx
    if ctx is not None:
        state += [
            ctx.needs_input_grad[:2],
            dict(vars(ctx)),
            [(type(v), np.asarray(v).tobytes()) for v in ctx.saved_tensors],
            [t._ctx._consumers for t in operands if isinstance(t, Tensor) and t._ctx],
        ]
        out.backward(np.ones(out.shape, dtype=out.dtype))
        state += [
            (type(t.grad), t.grad.dtype, t.grad.tobytes())
            for t in operands
            if isinstance(t, Tensor) and t.requires_grad and t.is_leaf
        ]
    return state


@pytest.mark.parametrize("cls", [ops.Add, ops.Sub, ops.Mul, ops.Div, ops.Pow, ops.Maximum])
def test_apply_of_two_arguments_gives_exactly_what_the_general_steps_give(cls):
    general = _with_a_constant(cls)
    checked = 0
    for ka in _OPERANDS:
        for kb in _OPERANDS:
            outcomes = []
            for apply in (cls.apply, lambda a, b: general.apply(a, b, None)):
                a, b = _OPERANDS[ka](), _OPERANDS[kb]()
                if not (isinstance(a, Tensor) or isinstance(b, Tensor)):
                    break
                with np.errstate(all="ignore"):
                    try:
                        outcomes.append(_state(apply(a, b), (a, b)))
                    except Exception as e:  # the same error on both paths
                        outcomes.append(["error", type(e), str(e)])
            if outcomes:
                assert outcomes[0] == outcomes[1], (ka, kb)
                checked += outcomes[0][0] != "error"
    assert checked >= 40
    assert cr.Tensor.__mul__ is ops.Mul.apply2 and cls.apply2.__qualname__.startswith(cls.__name__)


def _integer_network(make):
    """A small network of scalar operations on small integers (every sum exact, in any
    order): forks, ReLU, division by powers of two, an output used by an operation
    outside the backward pass, a Function sending None to one input."""

    class NoGradForFirst(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return None, g

    ws = [make(float(v), True) for v in (3, -2, 1, 4, -1, 2, 5, -3)]
    xs = [make(float(v), False) for v in (1, 2, -1, 3)]
    hidden = []
    for k in range(4):
        act = ws[k]
        for w, x in zip(ws[k : k + 4], xs):
            act = act + w * x
        hidden.append(act.relu())
    side = hidden[1] * 7  # never backpropagated: a consumer outside the pass  # noqa: F841
    out = hidden[0] * 0.5
    for h in hidden[1:]:
        out = out + h * h - h / 4
    out = NoGradForFirst.apply(out, ws[0] * ws[1]) + out * 2
    return out, ws


def test_the_fast_first_order_pass_gives_the_plain_passs_gradients():
    from chainrule.autograd.backward import run_backward

    grads = []
    for fast in (True, False):
        out, ws = _integer_network(lambda v, g: Tensor(v, requires_grad=g))
        if fast:
            out.backward()
        else:
            run_backward([out], [np.ones(())])
        grads.append([None if w.grad is None else w.grad.tobytes() for w in ws])
        assert out._ctx.released
    assert grads[0] == grads[1]
    assert len({g for g in grads[0]}) > 3
    # Arrays with broadcasting, float32, and random values: the same to rounding.
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    results = []
    for fast in (True, False):
        tw, tb = leaf(W), leaf(b)
        h = (Tensor(x) @ tw + tb).tanh()
        loss = (h * h).sum() + (h.sum(axis=0) * tb).sum()
        if fast:
            loss.backward()
        else:
            run_backward([loss], [np.ones((), np.float32)])
        results.append((tw.grad, tb.grad))
    for f, p in zip(*results):
        assert f.dtype == p.dtype == np.float32
        np.testing.assert_allclose(f, p, rtol=1e-6)
