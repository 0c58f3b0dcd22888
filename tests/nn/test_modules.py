"""Modules: parameter registration, modes, state dicts, PyTorch agreement (live where
it is installed, and its recorded values on every run), initialisations, errors."""

import io
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn
from chainrule.nn import init


def small_net(seed=0):
    return nn.Sequential(
        nn.Linear(4, 6, random_state=seed),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Dropout(0.5, random_state=seed),
        nn.Linear(6, 3, random_state=seed + 1),
    )


class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(3, 2, random_state=0)
        self.scale = nn.Parameter(np.ones(2, dtype=np.float32))
        self.head = nn.Sequential(nn.Tanh(), nn.Linear(2, 1, bias=False, random_state=1))
        self.note = "not a parameter"

    def forward(self, x):
        return self.head(self.encoder(x) * self.scale)


def test_named_parameters_follow_attribute_registration():
    m = TwoBranch()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["scale", "encoder.weight", "encoder.bias", "head.1.weight"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in m.parameters())
    assert m.num_parameters() == 2 + 3 * 2 + 2 + 2
    assert m.note == "not a parameter"
    # Re-assigning a registered name with a plain value unregisters it.
    m.scale = None
    assert [n for n, _ in m.named_parameters()][0] == "encoder.weight"
    assert m.scale is None


def test_shared_parameter_listed_once():
    m = nn.Module()
    lin = nn.Linear(2, 2, random_state=0)
    m.a = lin
    m.b = lin
    assert len(m.parameters()) == 2


def test_module_without_super_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match="super"):
        Broken()


def test_sequential_gradients_reach_every_parameter_in_float32():
    net = small_net()
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    loss = F.cross_entropy(net(x), np.arange(8) % 3)
    assert loss.dtype == np.float32
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.dtype == np.float32, name
        assert np.any(p.grad != 0), name
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_sequential_fused_linear_relu_equals_layer_by_layer():
    net = nn.Sequential(
        nn.Linear(5, 8, random_state=0), nn.ReLU(), nn.Linear(8, 2, random_state=1)
    ).to(np.float64)
    x = np.random.default_rng(1).standard_normal((6, 5))
    out = net(x)
    out.sum().backward()
    grads = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()
    h = x
    for layer in net:
        h = layer(h)
    h.sum().backward()
    np.testing.assert_allclose(out.data, h.data, rtol=1e-14)
    for g, p in zip(grads, net.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-14)


def test_train_eval_switch_dropout_and_batch_norm():
    net = small_net()
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    assert net.training and net[3].training
    net.eval()
    assert not any(m.training for m in net.modules())
    a, b = net(x).data, net(x).data
    np.testing.assert_array_equal(a, b)  # deterministic: no dropout, running stats
    np.testing.assert_array_equal(net[1].running_mean, 0)  # eval does not update stats
    net.train()
    c = net(x).data
    assert not np.allclose(a, c)
    assert np.any(net[1].running_mean != 0)


def test_state_dict_round_trip_with_running_stats_through_npz():
    net = small_net(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        net(rng.standard_normal((10, 4)).astype(np.float32))
    state = net.state_dict()
    assert set(state) == {
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "4.weight",
        "4.bias",
    }
    assert state["0.weight"].shape == (4, 6)  # (in, out)
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}

    other = small_net(seed=5)
    w_before = other[0].weight
    data_before = other[0].weight.data
    other.load_state_dict(loaded)
    assert other[0].weight is w_before and other[0].weight.data is data_before  # in place
    x = rng.standard_normal((7, 4)).astype(np.float32)
    net.eval()
    other.eval()
    np.testing.assert_array_equal(net(x).data, other(x).data)


def test_state_dict_is_a_copy():
    net = small_net()
    state = net.state_dict()
    state["0.weight"][:] = 123.0
    state["1.running_var"][:] = -1.0
    assert not np.any(net[0].weight.data == 123.0)
    assert np.all(net[1].running_var == 1.0)


def test_load_state_dict_errors_name_keys_and_shapes():
    net = small_net()
    state = net.state_dict()
    before = net[0].weight.data.copy()

    bad = dict(state)
    del bad["1.running_mean"]
    bad["extra.weight"] = np.zeros(2)
    bad["0.weight"] = np.zeros((6, 4)) + 7
    with pytest.raises(ValueError) as e:
        net.load_state_dict(bad)
    msg = str(e.value)
    assert "missing keys: 1.running_mean" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "0.weight: shape (6, 4)" in msg
    np.testing.assert_array_equal(net[0].weight.data, before)  # nothing was changed

    partial = {"0.bias": np.full(6, 2.0)}
    net.load_state_dict(partial, strict=False)
    np.testing.assert_array_equal(net[0].bias.data, 2.0)
    with pytest.raises(TypeError):
        net.load_state_dict([("0.bias", np.zeros(6))])


def test_to_float64_converts_parameters_and_buffers():
    net = small_net().to(np.float64)
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net[1].running_mean.dtype == np.float64
    out = net(np.ones((4, 4)))
    assert out.dtype == np.float64
    with pytest.raises(TypeError):
        net.to(np.int32)


def test_parameter_is_a_tensor_that_flows_through_functions():
    p = nn.Parameter(np.arange(3, dtype=np.int64))
    assert isinstance(p, cr.Tensor) and p.dtype == np.float32 and p.requires_grad
    (p * p).sum().backward()
    np.testing.assert_array_equal(p.grad, [0.0, 2.0, 4.0])
    assert repr(p).startswith("Parameter(")


def test_activation_modules():
    x = np.linspace(-3, 3, 13).reshape(1, 13)
    np.testing.assert_allclose(nn.ReLU()(x).data, np.maximum(x, 0))
    np.testing.assert_allclose(nn.LeakyReLU(0.2)(x).data, np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(nn.Tanh()(x).data, np.tanh(x))
    np.testing.assert_allclose(nn.Sigmoid()(x).data, 1 / (1 + np.exp(-x)))
    assert nn.Flatten()(np.zeros((2, 3, 4, 5))).shape == (2, 60)
    np.testing.assert_array_equal(nn.Identity()(x).data, x)


def test_dropout_module_reproducible_and_off_in_eval():
    x = np.ones((30, 30), dtype=np.float32)
    a = nn.Dropout(0.5, random_state=3)(x).data
    b = nn.Dropout(0.5, random_state=3)(x).data
    np.testing.assert_array_equal(a, b)
    d = nn.Dropout(0.5, random_state=3)
    d.eval()
    np.testing.assert_array_equal(d(x).data, x)
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(-0.1)


def test_batchnorm_module_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(5, momentum=0.2)
    tbn = torch.nn.BatchNorm1d(5, momentum=0.2)
    for _ in range(3):
        x = (rng.standard_normal((12, 5)) * 2 + 1).astype(np.float32)
        np.testing.assert_allclose(
            bn(x).data, tbn(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5
        )
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-5)
    bn.eval()
    tbn.eval()
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(
        bn(x).data, tbn(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match=r"expects input \(N, 5\)"):
        bn(np.zeros((4, 3), dtype=np.float32))


def test_linear_module_matches_torch_with_transposed_weight():
    torch = pytest.importorskip("torch")
    lin = nn.Linear(4, 3, random_state=0)
    lin.bias.data[:] = [0.1, -0.2, 0.3]
    tl = torch.nn.Linear(4, 3)
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(lin.weight.data.T.copy()))
        tl.bias.copy_(torch.from_numpy(lin.bias.data))
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(
        lin(x).data, tl(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6
    )


# tests/fixtures/record_torch_references.py ran PyTorch's BatchNorm1d and Linear once, in
# float32 as above and in float64 for tight tolerances; these check against that record.


@pytest.fixture(scope="module")
def recorded():
    path = Path(__file__).resolve().parents[1] / "fixtures" / "torch_modules.npz"
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize(
    "dtype, rtol, atol", [(np.float32, 1e-4, 1e-5), (np.float64, 1e-10, 1e-12)]
)
def test_batchnorm_module_matches_recorded_torch(recorded, dtype, rtol, atol):
    key = f"bn.{np.dtype(dtype).name}"
    bn = nn.BatchNorm1d(5, momentum=0.2).to(dtype)
    for i in range(3):
        out = bn(recorded[f"{key}.x{i}"]).data
        assert out.dtype == dtype
        np.testing.assert_allclose(out, recorded[f"{key}.out{i}"], rtol=rtol, atol=atol)
    stats_rtol = max(rtol / 10, 1e-12)
    np.testing.assert_allclose(bn.running_mean, recorded[f"{key}.running_mean"], rtol=stats_rtol)
    np.testing.assert_allclose(bn.running_var, recorded[f"{key}.running_var"], rtol=stats_rtol)
    bn.eval()
    out = bn(recorded[f"{key}.x_eval"]).data
    np.testing.assert_allclose(out, recorded[f"{key}.out_eval"], rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype, rtol, atol", [(np.float32, 1e-5, 1e-6), (np.float64, 1e-12, 0)])
def test_linear_module_matches_recorded_torch_with_transposed_weight(recorded, dtype, rtol, atol):
    key = f"linear.{np.dtype(dtype).name}"
    lin = nn.Linear(4, 3, random_state=0).to(dtype)
    lin.weight.data[...] = recorded["linear.W"]
    lin.bias.data[...] = recorded["linear.b"]
    out = lin(recorded["linear.x"].astype(dtype))
    out.backward(recorded["linear.upstream"].astype(dtype))
    np.testing.assert_allclose(out.data, recorded[f"{key}.out"], rtol=rtol, atol=atol)
    # PyTorch stores the weight (out, in); ours is (in, out), so its gradient is transposed
    want = recorded[f"{key}.weight_grad_torch_layout"].T
    np.testing.assert_allclose(lin.weight.grad, want, rtol=rtol, atol=atol)
    np.testing.assert_allclose(lin.bias.grad, recorded[f"{key}.bias_grad"], rtol=rtol, atol=atol)


# ----------------------------------------------------------------- initialisation


@pytest.mark.parametrize(
    "kind, std",
    [
        ("kaiming", np.sqrt(2 / 400)),
        ("kaiming_uniform", np.sqrt(2 / 400)),
        ("xavier", np.sqrt(2 / 700)),
        ("xavier_uniform", np.sqrt(2 / 700)),
    ],
)
def test_linear_init_scales(kind, std):
    w = nn.Linear(400, 300, init=kind, random_state=0).weight.data
    assert w.shape == (400, 300) and w.dtype == np.float32
    assert abs(w.std() / std - 1) < 0.02
    assert abs(w.mean()) < 0.05 * std
    if "uniform" in kind:
        assert np.abs(w).max() <= std * np.sqrt(3) * (1 + 1e-6)


def test_normal_init_weight_scale_and_seeding():
    a = nn.Linear(300, 200, init="normal", weight_scale=1e-3, random_state=1).weight.data
    b = nn.Linear(300, 200, init="normal", weight_scale=1e-3, random_state=1).weight.data
    c = nn.Linear(300, 200, init="normal", weight_scale=1e-3, random_state=2).weight.data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(a.std() / 1e-3 - 1) < 0.02
    np.testing.assert_array_equal(nn.Linear(3, 2).bias.data, 0)
    g = np.random.default_rng(0)
    w1 = init.kaiming_normal((3, 4), g)
    w2 = init.kaiming_normal((3, 4), g)
    assert not np.array_equal(w1, w2)  # a Generator advances


def test_init_errors():
    with pytest.raises(ValueError, match="unknown init"):
        nn.Linear(3, 2, init="orthogonal")
    with pytest.raises(ValueError, match="weight_scale"):
        nn.Linear(3, 2, init="kaiming", weight_scale=0.1)
    with pytest.raises(ValueError, match="positive int"):
        nn.Linear(0, 2)
    with pytest.raises(TypeError, match="random_state"):
        nn.Linear(3, 2, random_state="seed")
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm1d(0)
    with pytest.raises(TypeError, match="Modules"):
        nn.Sequential(nn.ReLU(), "relu")


def test_plain_float64_data_runs_in_the_network_dtype():
    net = nn.Sequential(nn.Linear(4, 3, random_state=0), nn.ReLU(), nn.Linear(3, 2))
    x64 = np.random.default_rng(0).standard_normal((5, 4))
    out = net(x64)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, net(x64.astype(np.float32)).data)
    assert nn.Linear(4, 3)(np.ones((2, 4), dtype=np.int64)).dtype == np.float32
    # a Tensor input is not converted
    assert nn.Linear(4, 3)(cr.Tensor(x64)).dtype == np.float64
