"""ConvNet architectures from a spec: shapes on 32x32 and 8x8 images, the frozen
patch-whitening stem, the FLOP count, and a few training steps that learn."""

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn, optim
from chainrule.models.convnet_arch import (
    PatchWhitening,
    architecture_flops,
    build_convnet,
    patch_whitening_filters,
)


@pytest.mark.parametrize("stem", ["conv", "whiten"])
@pytest.mark.parametrize("shape", [(32, 32, 3), (8, 8, 1)])
def test_the_same_spec_runs_on_cifar_and_digit_sized_images(stem, shape):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((6, *shape)).astype(np.float32)
    net = build_convnet(shape, 10, (8, 16, 16), stem=stem, whiten_images=images, random_state=0)
    out = net(images)  # channels-last images, as the preprocessing keeps them
    assert out.shape == (6, 10) and out.dtype == np.float32
    pools = sum(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert pools == 3 if shape[0] == 32 else pools == (2 if stem == "whiten" else 3)


def test_patch_whitening_makes_the_patch_covariance_the_identity():
    rng = np.random.default_rng(1)
    mix = rng.standard_normal((3, 3))
    images = (rng.standard_normal((200, 9, 9, 3)) @ mix) + 5.0
    filters = patch_whitening_filters(images, eps=0.0)
    assert filters.shape == (24, 3, 2, 2)
    np.testing.assert_array_equal(filters[12:], -filters[:12])
    out = F.conv2d(images.transpose(0, 3, 1, 2), filters[:12]).data
    rows = out.transpose(0, 2, 3, 1).reshape(-1, 12)
    cov = np.cov(rows, rowvar=False, bias=True)
    np.testing.assert_allclose(cov, np.eye(12), atol=1e-8)


def test_patch_statistics_summed_over_chunks_of_images(monkeypatch):
    import tracemalloc

    from chainrule.models import convnet_arch

    rng = np.random.default_rng(2)
    images = rng.standard_normal((300, 12, 12, 3)) @ rng.standard_normal((3, 3)) + 2.0
    whole = patch_whitening_filters(images)
    monkeypatch.setattr(convnet_arch, "WHITENING_CHUNK", 7)  # 43 chunks, the last of 6
    tracemalloc.start()
    chunked = patch_whitening_filters(images)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the same filters up to the sign of each eigenvector
    signs = np.sign(np.sum(whole * chunked, axis=(1, 2, 3)))
    np.testing.assert_allclose(chunked * signs[:, None, None, None], whole, atol=1e-9)
    patches_of_all = 300 * 11 * 11 * 12 * 8
    assert peak < patches_of_all / 4


def test_whitening_weights_are_a_buffer_not_a_parameter():
    layer = PatchWhitening(np.ones((4, 3, 2, 2)))
    assert layer.parameters() == [] and "weight" in layer.state_dict()
    net = build_convnet((8, 8, 3), 4, (8,), stem="whiten", whiten_images=np.ones((2, 8, 8, 3)))
    assert all(p.requires_grad for p in net.parameters())
    assert not any(p.data.shape == (24, 3, 2, 2) for p in net.parameters())


def test_flops_count_the_convolutions_and_the_linear_layer():
    net = build_convnet((8, 8, 1), 10, (4,), convs_per_stage=2, stem_width=2, random_state=0)
    stem = 2 * 8 * 8 * 2 * 1 * 9
    stage = 2 * 8 * 8 * 4 * 2 * 9 + 2 * 4 * 4 * 4 * 4 * 9
    assert architecture_flops(net, (8, 8, 1)) == stem + stage + 2 * 4 * 10


def test_a_few_steps_fit_a_small_batch():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((32, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 4, 32)
    net = build_convnet((8, 8, 3), 4, (8, 16), random_state=0)
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(net(cr.Tensor(X)), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    assert losses[-1] < 0.2 * losses[0]


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="widths must be positive"):
        build_convnet((8, 8, 1), 10, (8, 0))
    with pytest.raises(ValueError, match="needs whiten_images"):
        build_convnet((8, 8, 1), 10, (8,), stem="whiten")
    with pytest.raises(ValueError, match="stem must be"):
        build_convnet((8, 8, 1), 10, (8,), stem="resnet")


def test_dirac_init_makes_every_3x3_convolution_start_with_identity_filters():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((6, 8, 8, 3)).astype(np.float32)
    kw = dict(stem="whiten", whiten_images=images, random_state=0)
    net = build_convnet((8, 8, 3), 10, (16, 32), init="dirac", **kw)
    plain = build_convnet((8, 8, 3), 10, (16, 32), **kw)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4
    for conv, other in zip(convs, (m for m in plain.modules() if isinstance(m, nn.Conv2d))):
        w = conv.weight.data
        k = min(w.shape[:2])
        np.testing.assert_array_equal(w[:k], nn.init.dirac((k, w.shape[1], 3, 3)))
        np.testing.assert_array_equal(w[k:], other.weight.data[k:])  # the same draws
