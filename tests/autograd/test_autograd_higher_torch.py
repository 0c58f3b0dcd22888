"""Second derivatives against PyTorch in float64: a Hessian-vector product of a
network's loss, a WGAN-GP gradient penalty, a double backward through conv2d and max
pooling, and one MAML step. Compared with PyTorch's numbers recorded by
tests/fixtures/record_higher_order_references.py on every run, and, where PyTorch is
installed, with a fresh recording."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import Tensor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RTOL = 1e-10


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURES / "higher_order_torch_references.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _params(ref, part, n=4):
    return [ref[f"{part}/p{i}"] for i in range(n)]


def _net(x, params):
    w1, b1, w2, b2 = params
    return F.linear(F.linear(x, w1, b1).tanh(), w2, b2)


def test_hessian_vector_product_of_a_network_loss(ref):
    x, y = ref["hvp/x"], ref["hvp/y"]
    params = tuple(_params(ref, "hvp"))
    vs = tuple(ref[f"hvp/v{i}"] for i in range(4))

    def loss(*ps):
        return F.cross_entropy(_net(x, ps), y)

    value, hv = cr.hvp(loss, params, vs)
    np.testing.assert_allclose(value, ref["hvp/loss"], rtol=RTOL)
    for i, h in enumerate(hv):
        np.testing.assert_allclose(h, ref[f"hvp/hv{i}"], rtol=RTOL, atol=1e-14)
    # The same product by reverse over reverse: the gradient of <grad, v>.
    ts = [Tensor(p, requires_grad=True) for p in params]
    grads = cr.gradients(loss(*ts), ts, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vs))
    for i, h in enumerate(cr.gradients(dot, ts)):
        np.testing.assert_allclose(h, ref[f"hvp/hv{i}"], rtol=RTOL, atol=1e-14)
        np.testing.assert_allclose(grads[i].data, ref[f"hvp/g{i}"], rtol=RTOL, atol=1e-14)


def _critic(x, params):
    w1, b1, w2, b2 = params
    return F.linear(F.leaky_relu(F.linear(x, w1, b1), 0.2), w2, b2)


def test_wgan_gp_gradient_penalty_through_create_graph(ref):
    real, fake, eps, lam = ref["wgan/real"], ref["wgan/fake"], ref["wgan/eps"], ref["wgan/lam"]
    params = [Tensor(p, requires_grad=True) for p in _params(ref, "wgan")]
    xhat = Tensor(eps * real + (1 - eps) * fake, requires_grad=True)
    (gx,) = cr.gradients(_critic(xhat, params).sum(), xhat, create_graph=True)
    penalty = (((gx * gx).sum(axis=1).sqrt() - 1) ** 2).mean()
    loss = _critic(fake, params).mean() - _critic(real, params).mean() + float(lam) * penalty
    loss.backward()
    np.testing.assert_allclose(penalty.data, ref["wgan/penalty"], rtol=RTOL)
    np.testing.assert_allclose(loss.data, ref["wgan/loss"], rtol=RTOL)
    for i, p in enumerate(params):
        np.testing.assert_allclose(p.grad, ref[f"wgan/g{i}"], rtol=RTOL, atol=1e-14)


def test_double_backward_through_conv2d_and_max_pooling(ref):
    x = Tensor(ref["conv/x"], requires_grad=True)
    w = Tensor(ref["conv/w"], requires_grad=True)
    y = F.conv2d(x, w, ref["conv/b"], stride=1, padding=1)
    f = (F.max_pool2d(y.tanh(), 2, 2) ** 2).sum()
    gx, gw = cr.gradients(f, (x, w), create_graph=True)
    s = (gx * ref["conv/vx"]).sum() + (gw * ref["conv/vw"]).sum()
    hx, hw = cr.gradients(s, (x, w))
    np.testing.assert_allclose(f.data, ref["conv/f"], rtol=RTOL)
    for ours, key in ((gx.data, "gx"), (gw.data, "gw"), (hx, "hx"), (hw, "hw")):
        np.testing.assert_allclose(ours, ref[f"conv/{key}"], rtol=1e-9, atol=1e-12, err_msg=key)


def test_one_maml_step(ref):
    xs, ys, xq, yq = ref["maml/xs"], ref["maml/ys"], ref["maml/xq"], ref["maml/yq"]
    alpha = float(ref["maml/alpha"])
    params = [Tensor(p, requires_grad=True) for p in _params(ref, "maml")]

    def mse(x, y, ps):
        r = _net(x, ps) - y
        return (r * r).mean()

    grads = cr.gradients(mse(xs, ys, params), params, create_graph=True)
    adapted = [p - alpha * g for p, g in zip(params, grads)]
    query = mse(xq, yq, adapted)
    meta = cr.gradients(query, params)
    np.testing.assert_allclose(query.data, ref["maml/query"], rtol=RTOL)
    for i, g in enumerate(meta):
        np.testing.assert_allclose(g, ref[f"maml/g{i}"], rtol=RTOL, atol=1e-14)
    # The same step written with the transformations: grad of a function calling grad.
    def outer(*ps):
        inner = cr.grad(lambda *qs: mse(xs, ys, qs), argnums=tuple(range(4)))(*ps)
        return mse(xq, yq, [p - alpha * g for p, g in zip(ps, inner)])

    for i, g in enumerate(cr.grad(outer, argnums=tuple(range(4)))(*_params(ref, "maml"))):
        np.testing.assert_allclose(g, ref[f"maml/g{i}"], rtol=RTOL, atol=1e-14)


def test_recorded_references_are_what_the_script_records_now(ref):
    pytest.importorskip("torch")
    path = FIXTURES / "record_higher_order_references.py"
    spec = importlib.util.spec_from_file_location("record_higher_order_references", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = module.record()
    assert sorted(fresh) == sorted(ref)
    for key, value in fresh.items():
        if key != "torch_version":
            np.testing.assert_allclose(ref[key], value, rtol=1e-12, atol=1e-15, err_msg=key)
