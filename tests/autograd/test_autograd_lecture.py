"""The backpropagation lecture's worked examples, to the digits it prints and to the
exact closed forms."""

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import Function, Tensor


def leaf(v, name=None):
    return Tensor(v, requires_grad=True, name=name)


# ------------------------------------------------------------------ f = (x + y) z


def test_simple_example_reverse_mode():
    x, y, z = leaf(-2.0), leaf(5.0), leaf(-4.0)
    q = x + y
    f = q * z
    f.backward()
    assert f.item() == -12.0
    assert x.grad == -4.0 and y.grad == -4.0  # df/dq * dq/dx = z * 1
    assert z.grad == 3.0  # df/dz = q


def test_simple_example_forward_mode_one_input_at_a_time():
    def f(x, y, z):
        return (x + y) * z

    primals = (-2.0, 5.0, -4.0)
    expected = {0: -4.0, 1: -4.0, 2: 3.0}
    for i, g in expected.items():
        tangents = [0.0, 0.0, 0.0]
        tangents[i] = 1.0
        value, tangent = cr.jvp(f, primals, tangents)
        assert value == -12.0 and tangent == g


def test_simple_example_vjp_and_grad():
    f = lambda x, y, z: (x + y) * z  # noqa: E731
    value, vjp_fn = cr.vjp(f, -2.0, 5.0, -4.0)
    assert value == -12.0
    assert vjp_fn(1.0) == (-4.0, -4.0, 3.0)
    assert vjp_fn(2.0) == (-8.0, -8.0, 6.0)  # callable again, linear in the cotangent
    assert cr.grad(f)(-2.0, 5.0, -4.0) == -4.0
    assert cr.grad(f, argnums=(0, 2))(-2.0, 5.0, -4.0) == (-4.0, 3.0)


# ------------------------------------------------------------------ the sigmoid example

W0, X0, W1, X1, W2 = 2.0, -1.0, -3.0, -2.0, -3.0
S = 1 / (1 + math.exp(-1.0))  # w0 x0 + w1 x1 + w2 = 1
DS = (1 - S) * S  # the sigmoid's local gradient
EXACT = {"w0": X0 * DS, "x0": W0 * DS, "w1": X1 * DS, "x1": W1 * DS, "w2": DS}
PRINTED = {"w0": -0.20, "x0": 0.39, "w1": -0.39, "x1": -0.59, "w2": 0.20}


def sigmoid_inputs():
    return {n: leaf(v, n) for n, v in zip(EXACT, (W0, X0, W1, X1, W2))}


def from_primitives(t):
    # The lecture's graph node by node: *, *, +, +, *-1, exp, +1, 1/x.
    dot = t["w0"] * t["x0"] + t["w1"] * t["x1"] + t["w2"]
    return 1 / ((dot * -1).exp() + 1)


def with_sigmoid_node(t):
    return (t["w0"] * t["x0"] + t["w1"] * t["x1"] + t["w2"]).sigmoid()


@pytest.mark.parametrize("build", [from_primitives, with_sigmoid_node])
def test_sigmoid_example(build):
    t = sigmoid_inputs()
    f = build(t)
    f.backward()
    assert round(f.item(), 2) == 0.73
    assert f.item() == pytest.approx(S, rel=1e-15)
    for name in EXACT:
        g = t[name].grad.item()
        assert round(g, 2) == PRINTED[name], name
        assert g == pytest.approx(EXACT[name], rel=1e-14), name


def test_sigmoid_node_and_primitives_agree_in_forward_mode():
    values = (W0, X0, W1, X1, W2)
    for i, name in enumerate(EXACT):
        tangents = np.zeros(5)
        tangents[i] = 1.0
        for build in (from_primitives, with_sigmoid_node):
            _, jv = cr.jvp(
                lambda *ts, build=build: build(dict(zip(EXACT, ts))), values, tuple(tangents)
            )
            assert jv == pytest.approx(EXACT[name], rel=1e-14)


def test_sigmoid_local_gradient_is_one_minus_s_times_s():
    x = leaf(1.0)
    s = x.sigmoid()
    s.backward()
    assert x.grad == pytest.approx((1 - s.item()) * s.item(), rel=1e-15)
    assert round(x.grad.item(), 2) == 0.20


# ------------------------------------------------------------------ gate patterns


def test_add_gate_distributes():
    a, b = leaf(4.0), leaf(-7.0)
    (a + b).backward(np.array(2.0))
    assert a.grad == 2.0 and b.grad == 2.0


def test_mul_gate_swaps():
    a, b = leaf(3.0), leaf(-4.0)
    (a * b).backward(np.array(2.0))
    assert a.grad == -8.0  # upstream times the other input
    assert b.grad == 6.0


def test_copy_gate_adds():
    x = leaf(3.0)
    (x * 2 + x * 4).backward()  # x feeds two operations
    assert x.grad == 6.0
    y = leaf(3.0)
    (y * y).backward()  # twice into the same operation
    assert y.grad == 6.0


def test_max_gate_routes():
    a, b = leaf(4.0), leaf(5.0)
    cr.maximum(a, b).backward(np.array(2.0))
    assert a.grad == 0.0 and b.grad == 2.0
    v = leaf(np.array([1.0, 7.0, 3.0]))
    v.max().backward(np.array(2.0))
    np.testing.assert_array_equal(v.grad, [0.0, 2.0, 0.0])


def test_ties_share_the_gradient_as_documented():
    a, b = leaf(5.0), leaf(5.0)
    cr.maximum(a, b).backward()
    assert a.grad == 0.5 and b.grad == 0.5
    v = leaf(np.array([7.0, 7.0, 3.0]))
    v.max().backward()
    np.testing.assert_array_equal(v.grad, [0.5, 0.5, 0.0])
    r = leaf(np.array([0.0, 1.0]))
    r.relu().backward(np.ones(2))
    np.testing.assert_array_equal(r.grad, [0.0, 1.0])


def test_relu_vector_example():
    x = leaf(np.array([1.0, -2.0, 3.0, -1.0]))
    y = x.relu()
    np.testing.assert_array_equal(y.data, [1.0, 0.0, 3.0, 0.0])
    y.backward(np.array([4.0, -1.0, 5.0, 9.0]))
    np.testing.assert_array_equal(x.grad, [4.0, 0.0, 5.0, 0.0])


# ------------------------------------------------------------------ matrix multiply


def test_matrix_multiply_example():
    x = leaf(np.array([[2.0, 1.0, -3.0], [-3.0, 4.0, 2.0]]))
    w = leaf(np.array([[3.0, 2.0, 1.0, -1.0], [2.0, 1.0, 3.0, 2.0], [3.0, 2.0, 1.0, -2.0]]))
    dy = np.array([[2.0, 3.0, -3.0, 9.0], [-8.0, 1.0, 4.0, 6.0]])
    y = x @ w
    np.testing.assert_array_equal(y.data, [[-1, -1, 2, 6], [5, 2, 11, 7]])
    y.backward(dy)
    np.testing.assert_array_equal(x.grad, [[0, 16, -9], [-24, 9, -30]])  # dL/dy w^T
    np.testing.assert_array_equal(w.grad, x.data.T @ dy)  # x^T dL/dy
    np.testing.assert_array_equal(w.grad, [[28, 3, -18, 0], [-30, 7, 13, 33], [-22, -7, 17, -15]])


# ------------------------------------------------------------------ the Multiply Function


class Multiply(Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        z = x * y
        return z

    @staticmethod
    def backward(ctx, grad_z):
        x, y = ctx.saved_tensors
        grad_x = y * grad_z  # dz/dx * dL/dz
        grad_y = x * grad_z  # dz/dy * dL/dz
        return grad_x, grad_y


def test_the_lectures_multiply_function_as_written():
    x, y = leaf(3.0), leaf(-4.0)
    z = Multiply.apply(x, y)
    assert z.item() == -12.0 and z.grad_fn is Multiply
    z.backward(np.array(2.0))
    assert x.grad == -8.0 and y.grad == 6.0
    a = leaf(np.array([[1.0, 2.0], [3.0, 4.0]]))
    b = Tensor(np.array([10.0, 20.0]))  # broadcast, no gradient wanted
    Multiply.apply(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [[10.0, 20.0], [10.0, 20.0]])
    assert b.grad is None
    assert cr.gradcheck(
        Multiply.apply, [np.array([0.5, -1.5]), np.array([2.0, 3.0])], modes=("rev",)
    )


def test_multiply_without_a_graph_like_the_course_cache():
    ctx = cr.Context()
    z = Multiply.forward(ctx, np.array(3.0), np.array(-4.0))
    assert z == -12.0
    assert Multiply.backward(ctx, np.array(2.0)) == (-8.0, 6.0)
