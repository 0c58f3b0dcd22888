import numpy as np
import pytest

import chainrule as cr
from chainrule import Function, GradcheckError, gradcheck, numeric_gradient, rel_error


def test_rel_error_is_the_elementwise_worst_case():
    assert rel_error(1.0, 1.0) == 0.0
    assert rel_error(0.0, 0.0) == 0.0
    assert rel_error(1.0, 3.0) == pytest.approx(0.5)
    # The worst entry decides; the 1e-8 floor keeps tiny values from dividing by zero.
    assert rel_error([1.0, 10.0], [1.0, 12.0]) == pytest.approx(2 / 22)
    assert rel_error([1e-12], [0.0]) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="shapes"):
        rel_error(np.zeros(2), np.zeros(3))


def test_numeric_gradient_of_a_scalar_function():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    g = numeric_gradient(lambda a: np.sum(a**3), x)
    np.testing.assert_allclose(g, 3 * x**2, rtol=1e-8)
    np.testing.assert_array_equal(x, [[1.0, -2.0], [0.5, 3.0]])  # restored


def test_numeric_gradient_vector_output_is_upstream_times_jacobian():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 3))
    u = rng.standard_normal(4)
    x = rng.standard_normal(3)
    g = numeric_gradient(lambda a: A @ a, x, upstream=u)
    np.testing.assert_allclose(g, A.T @ u, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="upstream"):
        numeric_gradient(lambda a: A @ a, x)
    with pytest.raises(ValueError, match="upstream has shape"):
        numeric_gradient(lambda a: A @ a, x, upstream=np.ones(5))


def test_numeric_gradient_perturbs_the_array_a_closure_reads():
    W = np.array([2.0, -1.0, 0.5])

    def loss(_):  # cs231n style: ignores its argument, reads W
        return float(np.sum(np.exp(W)))

    g = numeric_gradient(loss, W)
    np.testing.assert_allclose(g, np.exp(W), rtol=1e-8)


def test_numeric_gradient_copies_non_float64_input():
    x = [1, 2, 3]
    g = numeric_gradient(lambda a: np.sum(a * a), x)
    assert g.dtype == np.float64
    np.testing.assert_allclose(g, [2.0, 4.0, 6.0], rtol=1e-8)


def test_gradcheck_passes_for_correct_functions_with_closures():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3))
    W = rng.standard_normal((3, 4))
    y = np.array([0, 3, 1, 1, 2])  # labels: not differentiable, bound by the closure
    rows = np.arange(5)

    def loss(x, W):
        return -(x @ W).log_softmax(axis=1)[rows, y].mean()

    assert gradcheck(loss, [x, W]) is True
    assert gradcheck(lambda x: (x * x).sigmoid(), x, modes=("fwd",)) is True


class _Square(Function):
    """x**2 with a deliberately wrong reverse rule (and a configurable forward rule)."""

    jvp_scale = 2.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2.1 * x * g

    @classmethod
    def jvp(cls, ctx, t):
        (x,) = ctx.saved_tensors
        return cls.jvp_scale * x * t


def test_gradcheck_names_the_input_and_the_error():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    with pytest.raises(GradcheckError, match=r"input 1 .*rev mode.*relative error") as info:
        gradcheck(lambda a, b: a * _Square.apply(b), [a, b])
    err = info.value
    assert isinstance(err, AssertionError)
    assert err.input_index == 1
    assert err.check == "rev vs numeric"
    assert err.error > 1e-3
    # Forward mode alone is right for this function.
    assert gradcheck(lambda a, b: a * _Square.apply(b), [a, b], modes=("fwd",))


def test_gradcheck_catches_a_wrong_forward_rule():
    class WrongJvp(_Square):
        jvp_scale = 2.5

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = np.array([0.3, -1.2])
    assert gradcheck(WrongJvp.apply, [x], modes=("rev",))
    with pytest.raises(GradcheckError, match="input 0 .*fwd mode") as info:
        gradcheck(WrongJvp.apply, [x])
    assert info.value.check == "fwd vs numeric"


class _MultiplyWithoutJvp(Function):
    """The engine page's Multiply: forward and backward only (jvp is optional)."""

    grad_scale = 1.0

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @classmethod
    def backward(cls, ctx, grad_z):
        x, y = ctx.saved_tensors
        return cls.grad_scale * y * grad_z, x * grad_z


def test_a_function_without_jvp_is_checked_in_reverse_mode_and_says_so():
    a, b = np.array([0.5, -1.5, 2.0]), np.array([3.0, 0.25, -1.0])
    with pytest.warns(cr.GradcheckWarning, match=r"_MultiplyWithoutJvp has no forward-mode rule"
                      r".*reverse mode against finite differences only"):  # fmt: skip
        assert gradcheck(lambda x, y: _MultiplyWithoutJvp.apply(x, y).sum(), [a, b])

    class WrongBackward(_MultiplyWithoutJvp):
        grad_scale = 1.5

    # reverse mode is still checked: a wrong backward fails, naming the input
    with pytest.warns(cr.GradcheckWarning), pytest.raises(GradcheckError, match="input 0"):
        gradcheck(lambda x, y: WrongBackward.apply(x, y), [a, b])
    # forward mode asked for explicitly: the missing rule is an error that names it
    for modes in (("fwd",), ("rev", "fwd")):
        with pytest.raises(NotImplementedError, match="define _MultiplyWithoutJvp.jvp"):
            gradcheck(lambda x, y: _MultiplyWithoutJvp.apply(x, y), [a, b], modes=modes)


def test_gradcheck_rejects_bad_arguments():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda x: x * 2, [np.ones(3, dtype=np.float32)])
    with pytest.raises(ValueError, match="modes"):
        gradcheck(lambda x: x * 2, [np.ones(3)], modes=("backward",))
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda x: 3.0, [np.ones(3)])
    with np.errstate(invalid="ignore"), pytest.raises(ValueError, match="NaN"):
        gradcheck(lambda x: x.log(), [-np.ones(2)])


def test_gradcheck_is_exported():
    assert cr.gradcheck is gradcheck and cr.numeric_gradient is numeric_gradient


@pytest.mark.parametrize("h", [0.0, -1e-6, float("nan")])
def test_numeric_gradient_refuses_a_step_that_is_not_positive(h):
    with pytest.raises(ValueError, match=r"h must be a positive step"):
        numeric_gradient(lambda a: np.sum(a * a), np.ones(2), h=h)
    with pytest.raises(ValueError, match=r"eps must be a positive step"):
        gradcheck(lambda x: x * 2, [np.ones(2)], eps=h)


class _RecordedSquare(Function):
    """x**2 whose backward runs on Tensors; with `constant_x` it reads x as a constant
    (a rule that is right in first order and wrong in second)."""

    differentiable_backward = True
    constant_x = False

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @classmethod
    def backward(cls, ctx, g):
        (x,) = ctx.saved_tensors
        if cls.constant_x:
            x = x.data if isinstance(x, cr.Tensor) else x
        return 2 * x * g


def test_gradgradcheck_checks_second_derivatives_and_catches_a_wrong_one():
    from chainrule import gradgradcheck

    x = np.array([0.3, -1.2, 2.0])
    assert gradgradcheck(_RecordedSquare.apply, [x], modes=("rev",))

    class ConstantInRule(_RecordedSquare):
        constant_x = True

    assert gradcheck(ConstantInRule.apply, [x], modes=("rev",))  # first order is right
    with pytest.raises(GradcheckError, match="input 0 .*rev mode") as info:
        gradgradcheck(ConstantInRule.apply, [x], modes=("rev",))
    assert info.value.input_index == 0
    assert gradgradcheck(lambda a, b: (a * b).tanh(), [x, x[::-1].copy()])


def test_gradgradcheck_of_a_first_order_function_names_it():
    from chainrule import gradgradcheck

    with pytest.raises(RuntimeError, match=r"^_Square\.backward works on arrays"):
        gradgradcheck(_Square.apply, [np.array([0.5, 2.0])], modes=("rev",))
