"""Forward mode (jvp), vjp and grad."""

import numpy as np
import pytest

import chainrule as cr
from chainrule import Function


def test_jvp_of_the_matrix_multiply_example_is_the_directional_derivative():
    x = np.array([[2.0, 1.0, -3.0], [-3.0, 4.0, 2.0]])
    w = np.array([[3.0, 2.0, 1.0, -1.0], [2.0, 1.0, 3.0, 2.0], [3.0, 2.0, 1.0, -2.0]])
    tx = np.arange(6.0).reshape(2, 3)
    tw = np.ones((3, 4))
    y, ty = cr.jvp(lambda a, b: a @ b, (x, w), (tx, tw))
    np.testing.assert_array_equal(y, x @ w)
    np.testing.assert_array_equal(ty, tx @ w + x @ tw)  # product rule, exactly


def test_jvp_tuples_constants_and_independent_outputs():
    def f(a, b):
        return a * b, (a * 0 + 1).exp()

    (p, q), (tp, tq) = cr.jvp(f, (np.array([1.0, 2.0]), 3.0), (np.array([1.0, 0.0]), 0.0))
    np.testing.assert_array_equal(p, [3.0, 6.0])
    np.testing.assert_array_equal(tp, [3.0, 0.0])
    np.testing.assert_array_equal(tq, [0.0, 0.0])
    value, tangent = cr.jvp(lambda a: cr.Tensor(np.ones(2)) * 5, (1.0,), (1.0,))
    np.testing.assert_array_equal(tangent, [0.0, 0.0])  # does not depend on the input


def test_jvp_errors():
    with pytest.raises(ValueError, match="2 primals but 1 tangents"):
        cr.jvp(lambda a, b: a * b, (1.0, 2.0), (1.0,))
    with pytest.raises(ValueError, match=r"tangent 0 has shape \(3,\)"):
        cr.jvp(lambda a: a * 2, (np.ones(2),), (np.ones(3),))

    class NoForwardRule(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return 2 * g

    with pytest.raises(NotImplementedError, match="NoForwardRule has no forward-mode rule"):
        cr.jvp(NoForwardRule.apply, (1.0,), (1.0,))


def test_jvp_needs_no_reverse_pass():
    # A Function whose backward fails: forward mode must not call it.
    class ForwardOnly(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a**3

        @staticmethod
        def backward(ctx, g):
            raise AssertionError("backward called in forward mode")

        @staticmethod
        def jvp(ctx, t):
            (a,) = ctx.saved_tensors
            return 3 * a**2 * t

    value, tangent = cr.jvp(lambda a: ForwardOnly.apply(a).exp(), (2.0,), (0.5,))
    assert value == pytest.approx(np.exp(8.0))
    assert tangent == pytest.approx(np.exp(8.0) * 12 * 0.5)


def test_vjp_is_the_transpose_of_jvp():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3, 4))

    def f(x):
        return (cr.Tensor(A) @ x).tanh()

    x = rng.standard_normal(4)
    u, v = rng.standard_normal(3), rng.standard_normal(4)
    _, vjp_fn = cr.vjp(f, x)
    (uJ,) = vjp_fn(u)
    _, Jv = cr.jvp(f, (x,), (v,))
    assert np.dot(uJ, v) == pytest.approx(np.dot(u, Jv), rel=1e-12)
    with pytest.raises(ValueError, match="cotangent has shape"):
        vjp_fn(np.ones(4))


def test_grad_with_argnums():
    def f(x, y):
        return (x * y + x**2).sum()

    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    np.testing.assert_array_equal(cr.grad(f)(x, y), y + 2 * x)
    gx, gy = cr.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, y + 2 * x)
    np.testing.assert_array_equal(gy, x)
    np.testing.assert_array_equal(cr.grad(f, argnums=1)(x, y), x)
    with pytest.raises(ValueError, match="single number"):
        cr.grad(lambda a: a * 2)(x)
    with pytest.raises(ValueError, match="argnums 2 out of range"):
        cr.grad(f, argnums=2)(x, y)
    assert cr.grad(lambda a, b: b.sum(), argnums=0)(x, y).tolist() == [0.0, 0.0]
