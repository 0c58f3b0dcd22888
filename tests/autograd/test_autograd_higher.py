"""Derivatives of derivatives: closed forms, the transformations' conventions and
nesting, create_graph, and first-order Functions that say so when differentiated twice."""

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import Function, Tensor
from chainrule.autograd import tnp


def leaf(v):
    return Tensor(v, requires_grad=True)


# ------------------------------------------------------------------ closed forms


def rosenbrock(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def rosenbrock_hessian(x):
    n = len(x)
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        h[i + 1, i + 1] += 200
        h[i, i + 1] = h[i + 1, i] = -400 * x[i]
    return h


JACOBIAN_PAIRS = [
    ("jacfwd(jacrev)", lambda f: cr.jacfwd(cr.jacrev(f))),
    ("jacrev(jacrev)", lambda f: cr.jacrev(cr.jacrev(f))),
    ("jacrev(jacfwd)", lambda f: cr.jacrev(cr.jacfwd(f))),
    ("jacfwd(jacfwd)", lambda f: cr.jacfwd(cr.jacfwd(f))),
    ("hessian", cr.hessian),
]


@pytest.mark.parametrize("name, make", JACOBIAN_PAIRS, ids=[p[0] for p in JACOBIAN_PAIRS])
def test_rosenbrock_hessian_matches_its_formula_for_every_composition(name, make):
    x = np.array([-1.2, 1.0, 0.5, 2.0])
    h = make(rosenbrock)(x)
    assert isinstance(h, np.ndarray) and h.shape == (4, 4)
    np.testing.assert_allclose(h, rosenbrock_hessian(x), rtol=1e-13, atol=1e-12)
    np.testing.assert_array_equal(h, h.T)


def test_softmax_cross_entropy_hessian_is_diag_p_minus_p_p_transposed():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(5) * 2
    y = np.array([3])
    h = cr.hessian(lambda t: F.cross_entropy(t.reshape(1, 5), y))(s)
    p = np.exp(s - s.max())
    p /= p.sum()
    np.testing.assert_allclose(h, np.diag(p) - np.outer(p, p), rtol=1e-12, atol=1e-15)
    # The same through the primitives (log_softmax, indexing, mean).
    h2 = cr.hessian(lambda t: -t.log_softmax()[3])(s)
    np.testing.assert_allclose(h2, h, rtol=1e-12, atol=1e-15)


def test_tanh_to_the_fourth_derivative():
    x = np.linspace(-2, 2, 7)
    t = np.tanh(x)
    d1 = 1 - t**2
    closed = [t, d1, -2 * t * d1, -2 * d1 * (1 - 3 * t**2), 8 * t * d1 * (2 - 3 * t**2)]
    # Elementwise: the derivative of d at each entry is the gradient of sum(d(v)).
    derivatives = [lambda v: v.tanh()]
    for _ in range(4):
        derivatives.append(lambda v, d=derivatives[-1]: cr.grad(lambda u: d(u).sum())(v))
    for order, d in enumerate(derivatives):
        value = d(x) if order else d(Tensor(x)).data
        np.testing.assert_allclose(value, closed[order], rtol=1e-12, atol=1e-15)
    # Forward over forward: nested jvp gives the second derivative too.
    ones = np.ones(7)
    _, second = cr.jvp(lambda v: cr.jvp(lambda u: u.tanh(), (v,), (ones,))[1], (x,), (ones,))
    np.testing.assert_allclose(second, closed[2], rtol=1e-12, atol=1e-15)


def test_x_cubed_to_every_order():
    f = lambda x: x * x * x  # noqa: E731
    assert cr.grad(f)(2.0) == 12.0
    assert cr.grad(cr.grad(f))(2.0) == 12.0
    assert cr.grad(cr.grad(cr.grad(f)))(2.0) == 6.0
    assert cr.grad(cr.grad(cr.grad(cr.grad(f))))(2.0) == 0.0
    x = leaf(2.0)
    y = x * x * x
    y.backward(create_graph=True)
    assert isinstance(x.grad, Tensor) and x.grad.item() == 12.0
    (d2,) = cr.gradients(x.grad, x)
    assert d2 == 12.0


def test_jacobians_have_output_shape_then_input_shape_and_agree():
    rng = np.random.default_rng(1)

    def f(x, y):
        return (x * y.sum()).tanh()

    x, y = rng.standard_normal(3), rng.standard_normal((2, 2))
    for jac in (cr.jacrev, cr.jacfwd):
        jx, jy = jac(f, argnums=(0, 1))(x, y)
        assert jx.shape == (3, 3) and jy.shape == (3, 2, 2)
    np.testing.assert_allclose(cr.jacrev(f, 1)(x, y), cr.jacfwd(f, 1)(x, y), rtol=1e-13)
    s = y.sum()
    np.testing.assert_allclose(cr.jacrev(f)(x, y), np.diag((1 - np.tanh(x * s) ** 2) * s))


def test_hvp_is_the_hessian_times_the_vector():
    rng = np.random.default_rng(2)
    x, v = rng.standard_normal(4), rng.standard_normal(4)
    value, hv = cr.hvp(rosenbrock, x, v)
    assert value == pytest.approx(rosenbrock(Tensor(x)).item())
    np.testing.assert_allclose(hv, rosenbrock_hessian(x) @ v, rtol=1e-12)
    # Several arguments: one product per argument, sum_j H_ij v_j.
    w, u = rng.standard_normal(3), rng.standard_normal(3)
    f = lambda a, b: (a.sum() * (b * b).sum()).exp() * 0.1  # noqa: E731
    _, (ha, hb) = cr.hvp(f, (x, w), (v, u))
    h = cr.hessian(f, argnums=(0, 1))(x, w)
    np.testing.assert_allclose(ha, h[0][0] @ v + h[0][1] @ u, rtol=1e-12)
    np.testing.assert_allclose(hb, h[1][0] @ v + h[1][1] @ u, rtol=1e-12)


# ------------------------------------------------------------------ nesting


def test_no_perturbation_confusion():
    # d/dx [x * (d/dy (x * y))] = d/dx x^2 = 2x: the inner gradient is x, not 0 or 2x.
    assert cr.grad(lambda x: x * cr.grad(lambda y: x * y)(3.0))(2.0) == 4.0
    # Forward mode inside forward mode keeps the two tangents apart.
    f = lambda x: cr.jvp(lambda y: x * y, (3.0,), (1.0,))[1] * x  # noqa: E731
    assert cr.jvp(f, (2.0,), (1.0,))[1] == 4.0


def test_transformations_return_arrays_on_arrays_and_tensors_inside_others():
    f = lambda x: (x**3).sum()  # noqa: E731
    x = np.array([1.0, 2.0])
    assert isinstance(cr.grad(f)(x), np.ndarray)
    seen = {}

    def outer(t):
        g = cr.grad(f)(t)
        seen["inner"] = g
        return (g * g).sum()

    np.testing.assert_allclose(cr.grad(outer)(x), 2 * 3 * x**2 * 6 * x)
    assert isinstance(seen["inner"], Tensor)
    # grad of a function calling vjp inside.
    def pulled(t):
        _, pull = cr.vjp(lambda u: u.tanh(), t)
        return pull(np.ones(2))[0].sum()

    np.testing.assert_allclose(cr.grad(pulled)(x), -2 * np.tanh(x) * (1 - np.tanh(x) ** 2))
    # jvp of grad: forward over reverse.
    _, t = cr.jvp(cr.grad(f), (x,), (np.ones(2),))
    np.testing.assert_allclose(t, 6 * x)


def test_value_and_grad_and_aux():
    f = lambda x: ((x**2).sum(), x.mean())  # noqa: E731
    (value, aux), g = cr.value_and_grad(f, has_aux=True)(np.array([1.0, 3.0]))
    assert value == 10.0 and aux == 2.0
    np.testing.assert_array_equal(g, [2.0, 6.0])
    g, aux = cr.grad(f, has_aux=True)(np.array([1.0, 3.0]))
    assert aux == 2.0
    with pytest.raises(TypeError, match="pair"):
        cr.grad(lambda x: x.sum(), has_aux=True)(np.ones(2))


def test_a_function_closing_over_a_tensor_that_requires_grad_keeps_its_graph():
    w = leaf(np.array([1.0, 2.0]))
    g = cr.grad(lambda x: (x * w).sum() ** 2)(np.array([3.0, 4.0]))
    assert isinstance(g, Tensor)  # it depends on w: an array would lose that
    g.sum().backward()  # g = 2 (x.w) w, so d sum(g) / dw = 2 x sum(w) + 2 (x.w)
    np.testing.assert_allclose(w.grad, 2 * np.array([3.0, 4.0]) * 3 + 2 * 11.0)


# ------------------------------------------------------------------ gradients and backward


def test_gradients_as_pytorch():
    x, y = leaf(np.array([1.0, 2.0])), leaf(3.0)
    out = (x * y).sum()
    gx, gy = cr.gradients(out, (x, y), retain_graph=True)
    np.testing.assert_array_equal(gx, [3.0, 3.0])
    assert gy == 3.0 and x.grad is None and y.grad is None
    z = leaf(1.0)
    with pytest.raises(RuntimeError, match="input 1 .*not used.*allow_unused"):
        cr.gradients(out, (x, z), retain_graph=True)
    assert cr.gradients(out, (x, z), allow_unused=True)[1] is None
    (gx,) = cr.gradients(x * 2, x, grad_outputs=np.array([1.0, -1.0]))
    np.testing.assert_array_equal(gx, [2.0, -2.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        cr.gradients(Tensor(1.0) * 2, x)


def test_gradient_with_respect_to_an_intermediate_value_and_the_leaves_below_it():
    x = leaf(2.0)
    h = x * x
    out = h * 3 + x
    gh, gx = cr.gradients(out, (h, x))
    assert gh == 3.0 and gx == 3 * 2 * 2.0 + 1


def test_create_graph_keeps_the_graph_and_differentiates_the_incoming_gradient():
    x = leaf(np.array([0.5, -1.0]))
    u = leaf(np.array([2.0, 3.0]))
    (g,) = cr.gradients(x.tanh(), x, grad_outputs=u, create_graph=True)
    np.testing.assert_allclose(g.data, u.data * (1 - np.tanh(x.data) ** 2))
    du, dx = cr.gradients(g.sum(), (u, x))
    np.testing.assert_allclose(du, 1 - np.tanh(x.data) ** 2)
    np.testing.assert_allclose(dx, u.data * -2 * np.tanh(x.data) * (1 - np.tanh(x.data) ** 2))


def test_a_long_chain_runs_the_plain_pass_and_create_graph_without_recursion():
    x = leaf(0.5)
    y = x * x
    for _ in range(50_000):
        y = y * 1.0
        y = y + 1.0
    y.backward(retain_graph=True)  # the plain pass
    assert x.grad == 1.0
    (g,) = cr.gradients(y, x, create_graph=True)
    assert g.item() == 1.0 and g.requires_grad
    assert cr.gradients(g, x)[0] == 2.0


# ------------------------------------------------------------------ first-order Functions


class Cube(Function):
    """x**3 written the lecture's way: backward on arrays."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * np.square(x) * g


class TensorCube(Cube):
    """The same, twice differentiable: its backward written with Tensor operations."""

    differentiable_backward = True

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


def test_a_first_order_function_works_once_and_says_so_when_differentiated_twice():
    assert cr.grad(Cube.apply)(2.0) == 12.0
    x = leaf(2.0)
    Cube.apply(x).backward()
    assert x.grad == 12.0
    expected = (
        r"^Cube\.backward works on arrays, so the gradient it computes cannot be "
        r"differentiated again; to make Cube twice differentiable, write its backward "
        r"with Tensor operations \(see chainrule\.autograd\.tnp\) and set "
        r"Cube\.differentiable_backward = True$"
    )
    with pytest.raises(RuntimeError, match=expected):
        cr.grad(cr.grad(Cube.apply))(2.0)
    y = leaf(2.0)
    Cube.apply(y).backward(create_graph=True)  # the gradient itself is fine...
    assert y.grad.item() == 12.0
    with pytest.raises(RuntimeError, match=r"^Cube\.backward works on arrays"):
        y.grad.backward()  # ...differentiating it again is the error, not a silent 0
    with pytest.raises(RuntimeError, match=r"^Cube\.backward works on arrays"):
        cr.jacrev(cr.jacrev(lambda v: Cube.apply(v).sum()))(np.ones(2))
    with pytest.raises(NotImplementedError, match="Cube has no forward-mode rule"):
        cr.hessian(lambda v: Cube.apply(v).sum())(np.ones(2))  # forward over reverse
    assert cr.grad(cr.grad(TensorCube.apply))(2.0) == 12.0
    assert cr.grad(cr.grad(cr.grad(TensorCube.apply)))(2.0) == 6.0


def test_tnp_dispatches_numpy_on_arrays_and_records_on_tensors():
    a = np.array([0.5, -1.0])
    assert isinstance(tnp.exp(a), np.ndarray)
    np.testing.assert_array_equal(tnp.where(a > 0, a, 0 * a), [0.5, 0.0])
    t = leaf(a)
    out = tnp.exp(t)
    assert isinstance(out, Tensor) and out.grad_fn.__name__ == "Exp"
    assert tnp.is_tensor(t) and not tnp.is_tensor(a) and tnp.value(t) is t.data


# ------------------------------------------------------------------ the example


def _example(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inverse_kinematics_example_reaches_its_target_and_the_rosenbrock_minimum(tmp_path):
    ik = _example("inverse_kinematics")
    q = np.array([0.3, 0.4, 0.2])
    # jacfwd of the forward kinematics against its closed form.
    angles = np.cumsum(q)
    closed = np.array(
        [
            [-(ik.LINKS[i:] * np.sin(angles[i:])).sum() for i in range(3)],
            [(ik.LINKS[i:] * np.cos(angles[i:])).sum() for i in range(3)],
        ]
    )
    np.testing.assert_allclose(cr.jacfwd(ik.gripper)(q), closed, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(cr.jacrev(ik.gripper)(q), closed, rtol=1e-14, atol=1e-15)
    target = np.array([1.2, 0.9])
    q, distances = ik.reach(target, q)
    assert distances[-1] < 1e-10 and len(distances) <= 12
    np.testing.assert_allclose(ik.gripper(Tensor(q)).data, target, atol=1e-10)
    path = ik.newton(ik.rosenbrock, [-1.2, 1.0])
    np.testing.assert_allclose(path[-1], [1.0, 1.0], atol=1e-12)
    assert len(path) <= 10
    out = tmp_path / "arm.png"
    assert ik.main(["--out", str(out)]) == 0 and out.stat().st_size > 1000


def test_an_optimizer_steps_on_gradients_kept_with_their_graph():
    from chainrule import optim

    w = leaf(np.array([1.0, -2.0]))
    opt = optim.SGD([w], lr=0.1)
    (w * w).sum().backward(create_graph=True)
    assert isinstance(w.grad, Tensor)
    assert optim.clip_grad_norm([w], 100.0) == pytest.approx(np.sqrt(20.0))
    opt.step()
    np.testing.assert_allclose(w.data, [0.8, -1.6])
