"""Convolutional network architectures from a short spec: widths per stage.

The network for images of shape (H, W, C), channels-last (N, H, W, C) as chainrule's
datasets and ``Preprocessor(flatten=False)`` hold them::

    Permute -> stem -> stage(w1) -> stage(w2) -> ... -> global max pool
        -> [Dropout] -> Linear [-> Scale]

The `Permute` views the images as the (N, C, H, W) that `chainrule.nn`'s image layers
take, without a copy: their Functions read and write channels-last memory, so the images
keep their memory order from the preprocessing to the last convolution.

- stem ``"conv"``: a 3x3 convolution to `stem_width` channels, batch norm, ReLU;
  ``"whiten"``: a frozen 2x2 convolution that whitens the training images' 2x2 patches
  (its filters are the eigenvectors of the patch covariance scaled by the inverse
  square root of their eigenvalues, each also negated, so a ReLU after it loses
  nothing), as in the fast CIFAR-10 recipes (tysam-code's hlb-cifar10, Keller Jordan's
  airbench); it needs the training images to be built.
- a stage: a 3x3 convolution to w channels, 2x2 max pooling, batch norm, ReLU, then
  ``convs_per_stage - 1`` more 3x3 convolution + batch norm + ReLU at width w. Pooling
  right after the first convolution lets the rest of the stage work on a quarter of the
  pixels. Stages stop halving the image once it is a single pixel (an Identity takes
  the pooling's place), so the same spec runs on 32x32 CIFAR-10 images and on 8x8
  digits, with the same layers.
- batch norm without a learned scale by default (the following convolution absorbs any
  scale, and weight decay then acts on the convolutions alone), with a learned shift.

`architecture_flops` counts the multiply-adds, so throughput can be compared across
specs.
"""

from __future__ import annotations

import numpy as np

from chainrule import nn
from chainrule._random import as_generator
from chainrule.autograd.engine import Tensor
from chainrule.nn.functional import conv2d

__all__ = [
    "PatchWhitening",
    "Scale",
    "architecture_flops",
    "build_convnet",
    "patch_whitening_filters",
]

DEFAULT_WIDTHS = (64, 128, 256)
# Images per chunk of the patch statistics of the whitening stem.
WHITENING_CHUNK = 500


def patch_whitening_filters(images, patch: int = 2, eps: float = 5e-4, max_images: int = 10000):
    """Filters (2 * P, C, patch, patch), P = C * patch^2, that whiten the patches of
    `images` (N, H, W, C) float: ``V diag(1 / sqrt(lambda + eps))`` of the eigenvalues
    lambda and eigenvectors V of the patch covariance, and their negatives. Uses up to
    `max_images` evenly spaced images (float64 statistics, summed over chunks of
    images, so memory stays at a chunk's patches)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"patch_whitening_filters: images must be (N, H, W, C), got {images.shape}"
        )
    n, h, w, c = images.shape
    sample = images[:: max(1, n // max_images)]
    d = c * patch * patch
    total, outer, count = np.zeros(d), np.zeros((d, d)), 0
    # The patch rows of 10,000 CIFAR-10 images take 0.9 GB in float64: sum their first
    # and second moments over chunks of images instead of holding them all.
    for start in range(0, len(sample), WHITENING_CHUNK):
        x = sample[start : start + WHITENING_CHUNK].astype(np.float64)
        windows = np.lib.stride_tricks.sliding_window_view(x, (patch, patch), axis=(1, 2))
        # (n, h', w', C, patch, patch) -> rows in the (C, i, j) order of a conv weight
        rows = windows.reshape(-1, d)
        total += rows.sum(axis=0)
        outer += rows.T @ rows
        count += rows.shape[0]
    mean = total / count
    cov = outer / count - np.outer(mean, mean)
    eigvals, eigvecs = np.linalg.eigh(cov)
    filters = (eigvecs / np.sqrt(np.maximum(eigvals, 0.0) + eps)).T
    filters = filters.reshape(-1, c, patch, patch)
    return np.concatenate([filters, -filters])


class PatchWhitening(nn.Module):
    """A frozen convolution (no padding, stride 1): ``weight`` is a buffer, not a
    parameter, so it is saved with the model but never trained or decayed."""

    def __init__(self, filters, dtype=np.float32):
        super().__init__()
        filters = np.ascontiguousarray(filters, dtype=dtype)
        if filters.ndim != 4:
            raise ValueError(f"PatchWhitening: filters must be (F, C, k, k), got {filters.shape}")
        self.register_buffer("weight", filters)
        self.out_channels = filters.shape[0]

    def forward(self, x):
        data = x.data if isinstance(x, Tensor) else x
        return conv2d(x, self.weight.astype(data.dtype, copy=False))

    def extra_repr(self) -> str:
        f, c, k, _ = self.weight.shape
        return f"{c}, {f}, kernel_size={k}, frozen"


class Scale(nn.Module):
    """Multiplies by a fixed number: a smaller scale on the class scores keeps the first
    steps' softmax near uniform without shrinking the last layer's initial weights (and
    with them its learning rate)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x):
        return (x if isinstance(x, Tensor) else Tensor(x)) * self.factor

    def extra_repr(self) -> str:
        return f"{self.factor:g}"


def _conv3x3(c_in, width, init, rng, dtype):
    return nn.Conv2d(
        c_in, width, 3, padding=1, bias=False, init=init, random_state=rng, dtype=dtype
    )


def _stage(c_in, width, side, convs, bn_scale, init, rng, dtype):
    layers = [_conv3x3(c_in, width, init, rng, dtype)]
    # A stage on an image already one pixel wide keeps the pooling's place with an
    # Identity: the layers, and so the names of the parameters, are those of the spec
    # whatever the image size (model files declare them from the hyperparameters).
    if side >= 2:
        layers.append(nn.MaxPool2d(2))
        side //= 2
    else:
        layers.append(nn.Identity())
    layers += [nn.BatchNorm2d(width, scale=bn_scale, dtype=dtype), nn.ReLU()]
    for _ in range(convs - 1):
        layers.append(_conv3x3(width, width, init, rng, dtype))
        layers += [nn.BatchNorm2d(width, scale=bn_scale, dtype=dtype), nn.ReLU()]
    return layers, side


def build_convnet(
    image_shape,
    n_classes: int,
    widths=DEFAULT_WIDTHS,
    convs_per_stage: int = 2,
    stem: str = "conv",
    stem_width: int | None = None,
    whiten_images=None,
    bn_scale: bool = False,
    logit_scale: float = 1.0,
    random_state=None,
    dtype=np.float32,
    whiten_filters=None,
    dropout: float = 0.0,
    init: str = "kaiming",
) -> nn.Sequential:
    """The `nn.Sequential` described in the module docstring, taking images (B, H, W, C).

    image_shape: (H, W, C). widths: channels of each stage. stem: ``"conv"`` (width
    `stem_width`, default half the first stage's) or ``"whiten"`` (needs
    `whiten_images`, (N, H, W, C) preprocessed training images, or `whiten_filters`,
    the (F, C, 2, 2) filters themselves, e.g. those of a saved model). logit_scale: a
    fixed factor on the class scores (`Scale`; 1 leaves it out). dropout: probability
    of a `Dropout` of the pooled features before the Linear layer (0 leaves it out;
    its masks are drawn from `random_state`). init: of the 3x3 convolutions,
    ``"kaiming"`` (He normal) or ``"dirac"`` (He normal with identity filters first,
    `chainrule.nn.init.kaiming_dirac`).
    """
    h, w, c = (int(s) for s in image_shape)
    widths = tuple(int(v) for v in widths)
    if not widths or min(widths) <= 0 or convs_per_stage < 1:
        raise ValueError(f"build_convnet: widths must be positive ints, got {widths!r}")
    rng = as_generator(random_state)
    layers = [nn.Permute(0, 3, 1, 2)]
    side = min(h, w)
    if stem == "whiten":
        if whiten_filters is None and whiten_images is None:
            raise ValueError('build_convnet: stem="whiten" needs whiten_images or whiten_filters')
        if min(h, w) < 2:
            raise ValueError(
                f'build_convnet: stem="whiten" needs images of at least 2x2 pixels, got {h}x{w}'
            )
        if whiten_filters is None:
            whiten_filters = patch_whitening_filters(whiten_images)
        whiten = PatchWhitening(whiten_filters, dtype=dtype)
        layers += [whiten, nn.ReLU()]
        c, side = whiten.out_channels, side - 1
    elif stem == "conv":
        sw = stem_width or max(8, widths[0] // 2)
        layers.append(_conv3x3(c, sw, init, rng, dtype))
        layers += [nn.BatchNorm2d(sw, scale=bn_scale, dtype=dtype), nn.ReLU()]
        c = sw
    else:
        raise ValueError(f'build_convnet: stem must be "conv" or "whiten", got {stem!r}')
    for width in widths:
        stage, side = _stage(c, width, side, convs_per_stage, bn_scale, init, rng, dtype)
        layers += stage
        c = width
    layers.append(nn.GlobalMaxPool2d())
    if dropout > 0:
        layers.append(nn.Dropout(dropout, random_state=rng))
    layers.append(nn.Linear(c, n_classes, random_state=rng, dtype=dtype))
    if logit_scale != 1.0:
        layers.append(Scale(logit_scale))
    return nn.Sequential(*layers)


def architecture_flops(net, image_shape) -> int:
    """Multiply-adds x 2 of the convolutions and linear layers of `net` for one image of
    shape (H, W, C) in a forward pass (training costs about three times that)."""
    h, w, _ = image_shape
    total = 0
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, PatchWhitening)):
            f, c, kh, kw = m.weight.shape
            pad, stride = getattr(m, "padding", (0, 0)), getattr(m, "stride", (1, 1))
            h = (h + 2 * pad[0] - kh) // stride[0] + 1
            w = (w + 2 * pad[1] - kw) // stride[1] + 1
            total += 2 * h * w * f * c * kh * kw
        elif isinstance(m, nn.MaxPool2d):
            h, w = h // 2, w // 2
        elif isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features
    return total
