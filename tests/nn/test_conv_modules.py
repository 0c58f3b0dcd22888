"""Convolutional modules: a small network against PyTorch (recorded and live), layer
attributes and state dicts named as PyTorch's, Kaiming initialisation of convolution
weights, the fused batch norm + ReLU in a Sequential, residual blocks, rows to images."""

from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn

REFERENCES = Path(__file__).resolve().parents[1] / "fixtures" / "conv_torch_references.npz"


def small_net(dtype=np.float64):
    """The network of tests/fixtures/record_conv_references.py, in chainrule modules."""
    body = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1, bias=False, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype)
    )
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, dtype=dtype),
        nn.BatchNorm2d(4, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Residual(body),
        nn.GlobalAvgPool2d(),
        nn.Linear(4, 5, dtype=dtype),
    )


# PyTorch's state dict keys -> this network's (its Linear weight is stored transposed)
KEYS = {
    "0": "0",
    "1": "1",
    "4.0": "4.body.0",
    "4.1": "4.body.1",
    "7": "6",
}


def _ours(key):
    head, name = key.rsplit(".", 1)
    return f"{KEYS[head]}.{name}"


def _load_torch_state(net, state):
    ours = {}
    for k, v in state.items():
        ours[_ours(k)] = v.T if k == "7.weight" else v
    net.load_state_dict(ours)


def test_small_network_matches_recorded_torch():
    with np.load(REFERENCES, allow_pickle=False) as f:
        ref = {k: f[k] for k in f.files}
    net = small_net()
    _load_torch_state(
        net, {k[len("net/state/") :]: v for k, v in ref.items() if k.startswith("net/state/")}
    )
    scores = net(ref["net/x"])
    loss = F.cross_entropy(scores, ref["net/y"])
    loss.backward()
    np.testing.assert_allclose(scores.data, ref["net/scores"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss.data, ref["net/loss"], rtol=1e-12)
    params = dict(net.named_parameters())
    grads = {k[len("net/grad/") :]: v for k, v in ref.items() if k.startswith("net/grad/")}
    assert len(grads) == len(params) == 9
    for k, g in grads.items():
        mine = params[_ours(k)].grad
        np.testing.assert_allclose(mine, g.T if k == "7.weight" else g, rtol=1e-9, atol=1e-12)
    buffers = dict(net.named_buffers())
    for k, v in ref.items():
        if k.startswith("net/after/"):
            np.testing.assert_allclose(buffers[_ours(k[len("net/after/") :])], v, rtol=1e-12)


def test_small_network_matches_live_torch_in_float32():
    torch = pytest.importorskip("torch")
    tn = torch.nn
    torch.manual_seed(1)
    body = tn.Sequential(tn.Conv2d(4, 4, 3, padding=1, bias=False), tn.BatchNorm2d(4))
    tnet = tn.Sequential(
        tn.Conv2d(3, 4, 3, padding=1),
        tn.BatchNorm2d(4),
        tn.ReLU(),
        tn.MaxPool2d(2),
        body,
        tn.AdaptiveAvgPool2d(1),
        tn.Flatten(),
        tn.Linear(4, 5),
    )
    net = small_net(np.float32)
    state = {k: v.numpy() for k, v in tnet.state_dict().items() if "num_batches" not in k}
    _load_torch_state(net, state)
    x = np.random.default_rng(0).standard_normal((8, 3, 10, 10), dtype=np.float32)
    h = tnet[:4](torch.tensor(x))
    expected = tnet[5:](h + body(h))
    expected.sum().backward()
    out = net(x)
    out.sum().backward()
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        net[0].weight.grad, tnet[0].weight.grad.numpy(), rtol=1e-3, atol=1e-4
    )


def test_layer_attributes_and_state_dict_follow_pytorch_names():
    conv = nn.Conv2d(3, 8, (3, 5), stride=2, padding=(1, 2), random_state=0)
    assert conv.weight.shape == (8, 3, 3, 5) and conv.bias.shape == (8,)
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 5), (2, 2), (1, 2))
    assert conv.weight.dtype == np.float32 and not conv.bias.data.any()
    assert nn.Conv2d(3, 8, 3, bias=False).bias is None
    bn = nn.BatchNorm2d(8)
    assert sorted(bn.state_dict()) == ["bias", "running_mean", "running_var", "weight"]
    assert (bn.eps, bn.momentum) == (1e-5, 0.1)
    no_scale = nn.BatchNorm2d(8, scale=False)
    assert no_scale.weight is None and sorted(no_scale.state_dict()) == [
        "bias",
        "running_mean",
        "running_var",
    ]
    pool = nn.MaxPool2d(3, stride=2)
    assert (pool.kernel_size, pool.stride) == ((3, 3), (2, 2))
    assert nn.AvgPool2d(2).stride == (2, 2)
    assert "kernel_size=(3, 5)" in repr(conv)


def test_conv_weights_get_kaiming_initialisation_from_the_receptive_field():
    conv = nn.Conv2d(16, 32, 3, random_state=0, dtype=np.float64)
    fan_in = 16 * 3 * 3
    assert conv.weight.data.std() == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.05)
    assert abs(conv.weight.data.mean()) < 0.01
    w = cr.nn.init.kaiming_uniform((32, 16, 3, 3), random_state=0, dtype=np.float64)
    assert np.abs(w).max() <= np.sqrt(2.0) * np.sqrt(3.0 / fan_in)
    assert np.abs(w).max() > 0.95 * np.sqrt(2.0) * np.sqrt(3.0 / fan_in)
    wx = cr.nn.init.xavier_normal((32, 16, 3, 3), random_state=0, dtype=np.float64)
    assert wx.std() == pytest.approx(np.sqrt(2.0 / (fan_in + 32 * 9)), rel=0.05)
    a = nn.Conv2d(3, 4, 3, random_state=7).weight.data
    np.testing.assert_array_equal(a, nn.Conv2d(3, 4, 3, random_state=7).weight.data)
    with pytest.raises(ValueError, match="unknown init"):
        nn.Conv2d(3, 4, 3, init="orthogonal")


def test_batch_norm_then_relu_runs_as_one_function_with_the_same_result():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5, 5))
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    bn.weight.data[:] = [1.0, -2.0, 0.5]
    fused = nn.Sequential(bn, nn.ReLU())
    out = fused(cr.Tensor(x, requires_grad=True))
    assert out._ctx.fn is F.BatchNorm2d  # no separate ReLU in the graph
    xt = cr.Tensor(x, requires_grad=True)
    plain = F.relu(bn(xt))
    np.testing.assert_allclose(out.data, plain.data, rtol=1e-14, atol=1e-15)
    plain.sum().backward()
    g_plain = (xt.grad.copy(), bn.weight.grad.copy())
    bn.zero_grad()
    xf = cr.Tensor(x, requires_grad=True)
    fused(xf).sum().backward()
    np.testing.assert_allclose(xf.grad, g_plain[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bn.weight.grad, g_plain[1], rtol=1e-12, atol=1e-14)


def test_batch_norm_module_train_and_eval():
    rng = np.random.default_rng(1)
    x = 2.0 + 3.0 * rng.standard_normal((8, 2, 4, 4))
    bn = nn.BatchNorm2d(2, momentum=0.5, dtype=np.float64)
    out = bn(x).data
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean, 0.5 * x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(bn.running_var, 0.5 + 0.5 * x.var(axis=(0, 2, 3), ddof=1))
    bn.eval()
    expected = (x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + 1e-5)
    np.testing.assert_allclose(bn(x).data, expected)
    with pytest.raises(ValueError, match=r"expects input \(N, 2, H, W\)"):
        bn(x[:, :1])


def test_residual_adds_the_input_and_its_gradient():
    conv = nn.Conv2d(2, 2, 3, padding=1, random_state=0, dtype=np.float64)
    block = nn.Residual(conv)
    x = cr.Tensor(np.random.default_rng(0).standard_normal((2, 2, 4, 4)), requires_grad=True)
    out = block(x)
    np.testing.assert_allclose(out.data, x.data + conv(x.data).data)
    out.sum().backward()
    x2 = cr.Tensor(x.data, requires_grad=True)
    F.conv2d(x2, conv.weight.data, conv.bias.data, 1, 1).sum().backward()
    np.testing.assert_allclose(x.grad, 1.0 + x2.grad)
    with pytest.raises(TypeError, match="wraps a Module"):
        nn.Residual(lambda t: t)


def test_rows_to_images_is_a_view_in_hwc_order():
    images = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3)  # N, H, W, C
    rows = images.reshape(2, -1)
    out = nn.RowsToImages(4, 3, 3)(rows)
    assert out.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(out.data, images.transpose(0, 3, 1, 2))
    assert np.shares_memory(out.data, rows)
    with pytest.raises(ValueError, match=r"expects rows \(N, 36\)"):
        nn.RowsToImages(4, 3, 3)(rows[:, :-1])
    chw = images.transpose(0, 3, 1, 2).reshape(2, -1)
    out = nn.RowsToImages(4, 3, 3, order="chw")(chw)
    np.testing.assert_array_equal(out.data, images.transpose(0, 3, 1, 2))
    assert np.shares_memory(out.data, chw)
    with pytest.raises(ValueError, match="order must be"):
        nn.RowsToImages(4, 3, 3, order="whc")


def test_permute_hands_channels_last_images_to_the_image_layers_without_a_copy():
    images = np.arange(2 * 4 * 3 * 3, dtype=np.float64).reshape(2, 4, 3, 3)  # N, H, W, C
    x = cr.Tensor(images, requires_grad=True)
    out = nn.Permute(0, 3, 1, 2)(x)
    assert out.shape == (2, 3, 4, 3) and np.shares_memory(out.data, images)
    np.testing.assert_array_equal(out.data, images.transpose(0, 3, 1, 2))
    # the same result as the rows of these images through RowsToImages
    rows = nn.RowsToImages(4, 3, 3)(images.reshape(2, -1))
    np.testing.assert_array_equal(out.data, rows.data)
    conv = nn.Conv2d(3, 2, 3, padding=1, random_state=0, dtype=np.float64)
    conv(out).sum().backward()  # the gradient reaches the images in their own layout
    assert x.grad.shape == images.shape
    with pytest.raises(ValueError, match=r"Permute\(0, 3, 1, 2\) expects 4-D input"):
        nn.Permute(0, 3, 1, 2)(images[0])
    with pytest.raises(ValueError, match="a permutation of 0..n-1"):
        nn.Permute(0, 3, 1)


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (6, 4)), (nn.BatchNorm2d, (6, 4, 3, 2))])
def test_both_batch_norms_take_the_same_switches(cls, shape):
    # scale= learns gamma, shift= learns beta; both off is PyTorch's affine=False.
    x = np.random.default_rng(0).normal(size=shape)
    for scale, shift in [(True, True), (False, True), (True, False), (False, False)]:
        bn = cls(4, scale=scale, shift=shift, dtype=np.float64)
        learned = sorted(name for name, _ in bn.named_parameters())
        assert learned == [n for n, on in (("bias", shift), ("weight", scale)) if on]
        assert f"scale={scale}, shift={shift}" in repr(bn)
        out = bn(x).data
        axes = (0,) if len(shape) == 2 else (0, 2, 3)
        np.testing.assert_allclose(out.mean(axis=axes), 0.0, atol=1e-12)  # gamma 1, beta 0


def test_modules_run_in_float64_after_to_and_accept_plain_arrays():
    net = small_net(np.float32).to(np.float64)
    x = np.random.default_rng(2).standard_normal((3, 3, 6, 6)).astype(np.float32)
    out = net(x)
    assert out.dtype == np.float64 and out.shape == (3, 5)
    net.eval()
    assert net(x).dtype == np.float64


def test_a_channel_mismatch_names_the_layer_input():
    with pytest.raises(ValueError, match="x has 4 channels but weight"):
        nn.Conv2d(3, 2, 3)(np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        nn.Conv2d(0, 2, 3)
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        nn.Conv2d(1, 2, 0)
