"""Convolutional layers as modules: `Conv2d`, `BatchNorm2d`, pooling, residual blocks.

Images are NCHW and weights follow PyTorch's layout and attribute names (``weight``
(F, C, kh, kw), ``bias``, ``kernel_size``, ``stride``, ``padding``, ``running_mean``,
``running_var``, ``eps``, ``momentum``), so a state dict maps one to one onto PyTorch's
and onto an ONNX graph. The Functions store their outputs channels-last (see
`chainrule.nn.functional.conv`); `RowsToImages` turns the flat rows chainrule's
datasets hold into images without a copy.

A `BatchNorm2d` directly followed by a `ReLU` in a `Sequential` runs as one fused
Function (same values and gradients, one array and one pass fewer).
"""

from __future__ import annotations

import numbers

import numpy as np

from chainrule.autograd.engine import Tensor
from chainrule.nn import init as _init
from chainrule.nn.functional import conv as _conv
from chainrule.nn.functional import norm as _norm
from chainrule.nn.functional import pool as _pool
from chainrule.nn.modules import Module, Parameter, _input_like, _learned

__all__ = [
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "MaxPool2d",
    "Residual",
    "RowsToImages",
]

_CONV_INITS = {
    "kaiming": _init.kaiming_normal,
    "kaiming_uniform": _init.kaiming_uniform,
    "xavier": _init.xavier_normal,
    "xavier_uniform": _init.xavier_uniform,
    "dirac": _init.kaiming_dirac,
}


def _positive_int(owner, what, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
        raise ValueError(f"{owner}: {what} must be a positive int, got {v!r}")
    return int(v)


class Conv2d(Module):
    """2-D convolution layer: x (N, in_channels, H, W) -> (N, out_channels, Ho, Wo).

    weight: (out_channels, in_channels, kh, kw), bias: (out_channels,) (None with
    ``bias=False``, as before a batch norm, whose mean subtraction would cancel it).
    kernel_size, stride, padding: an int or a pair. init: ``"kaiming"`` (He normal with
    fan_in = in_channels * kh * kw, for ReLU networks; the default), ``"kaiming_uniform"``,
    ``"xavier"``, ``"xavier_uniform"`` or ``"dirac"`` (He normal, the first
    ``min(out_channels, in_channels)`` filters identities: `chainrule.nn.init.kaiming_dirac`);
    biases start at zero. A plain array input is
    converted to the weight's dtype.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        bias: bool = True,
        init: str = "kaiming",
        random_state=None,
        dtype=np.float32,
    ):
        super().__init__()
        self.in_channels = _positive_int("Conv2d", "in_channels", in_channels)
        self.out_channels = _positive_int("Conv2d", "out_channels", out_channels)
        self.kernel_size = _conv._pair("Conv2d: kernel_size", kernel_size, 1)
        self.stride = _conv._pair("Conv2d: stride", stride, 1)
        self.padding = _conv._pair("Conv2d: padding", padding, 0)
        if init not in _CONV_INITS:
            raise ValueError(
                f"Conv2d: unknown init {init!r}; choose one of {', '.join(_CONV_INITS)}"
            )
        self.init = init
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.weight = Parameter(_CONV_INITS[init](shape, random_state, dtype))
        if bias:
            self.bias = Parameter(np.zeros(self.out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        x = _input_like(x, self.weight)
        return _conv.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )


class BatchNorm2d(Module):
    """Batch normalization of (N, num_features, H, W) images per channel over N, H, W.

    Parameters ``weight`` (gamma, ones; None with ``scale=False``) and ``bias`` (beta,
    zeros; None with ``shift=False``); buffers ``running_mean`` (zeros) and
    ``running_var`` (ones), updated in training with ``running = (1 - momentum) *
    running + momentum * batch`` (unbiased variance, as PyTorch) and used in evaluation.
    ``scale=False`` leaves gamma out (fixed at 1): a following convolution can absorb
    any scale, and a ReLU network then has one parameter fewer per channel to decay.
    The switches are those of `BatchNorm1d`.
    """

    def __init__(
        self,
        num_features: int,
        momentum: float = 0.1,
        eps: float = 1e-5,
        scale: bool = True,
        shift: bool = True,
        dtype=np.float32,
    ):
        super().__init__()
        self.num_features = _positive_int("BatchNorm2d", "num_features", num_features)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm2d: momentum must be in [0, 1], got {momentum!r}")
        if not eps > 0:
            raise ValueError(f"BatchNorm2d: eps must be positive, got {eps!r}")
        self.momentum = float(momentum)
        self.eps = float(eps)
        _learned(self, num_features, scale, shift, dtype)
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))

    def _apply(self, x, relu):
        xd = x.data if isinstance(x, Tensor) else np.asarray(x)
        if xd.ndim != 4 or xd.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d({self.num_features}) expects input (N, {self.num_features}, H, W), "
                f"got shape {xd.shape}"
            )
        return _norm.batch_norm2d(
            _input_like(x, self.running_mean),
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.training,
            self.momentum,
            self.eps,
            relu,
        )

    def forward(self, x):
        return self._apply(x, False)

    def forward_relu(self, x):
        """``relu(self(x))`` as one fused Function."""
        return self._apply(x, True)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, momentum={self.momentum}, eps={self.eps}, "
            f"scale={self.weight is not None}, shift={self.bias is not None}"
        )


class _WindowPool(Module):
    _fn = None

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _conv._pair(f"{name}: kernel_size", kernel_size, 1)
        self.stride = (
            self.kernel_size if stride is None else _conv._pair(f"{name}: stride", stride, 1)
        )

    def forward(self, x):
        return type(self)._fn(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_WindowPool):
    """Max pooling over kernel_size windows moved by stride (default: the kernel size).
    (N, C, H, W) -> (N, C, Ho, Wo); at ties the gradient goes to the first maximum in
    row-major window order."""

    _fn = staticmethod(_pool.max_pool2d)


class AvgPool2d(_WindowPool):
    """Average pooling over kernel_size windows moved by stride (default: the kernel
    size). (N, C, H, W) -> (N, C, Ho, Wo)."""

    _fn = staticmethod(_pool.avg_pool2d)


class GlobalAvgPool2d(Module):
    """Mean of each channel over all pixels: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        return _pool.global_avg_pool2d(x)


class GlobalMaxPool2d(Module):
    """Maximum of each channel over all pixels: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        return _pool.global_max_pool2d(x)


class Residual(Module):
    """``x + body(x)``: a residual connection around `body` (a module whose output has
    x's shape). The gradient reaches x along both paths and adds up."""

    def __init__(self, body: Module):
        super().__init__()
        if not isinstance(body, Module):
            raise TypeError(f"Residual wraps a Module, got {type(body).__name__}")
        self.body = body

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        return x + self.body(x)


class RowsToImages(Module):
    """Rows (N, H*W*C) of flattened images -> images (N, C, H, W), a view, no copy.

    order ``"hwc"`` (the default): each row is ``image.ravel()`` of an (H, W, C) image,
    as chainrule's datasets and `Preprocessor` flatten them; the images come out
    channels-last, the layout the convolutions work in. ``"chw"``: rows of (C, H, W)
    images, as PyTorch flattens them.
    """

    def __init__(self, height: int, width: int, channels: int, order: str = "hwc"):
        super().__init__()
        self.height = _positive_int("RowsToImages", "height", height)
        self.width = _positive_int("RowsToImages", "width", width)
        self.channels = _positive_int("RowsToImages", "channels", channels)
        if order not in ("hwc", "chw"):
            raise ValueError(f'RowsToImages: order must be "hwc" or "chw", got {order!r}')
        self.order = order

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        h, w, c = self.height, self.width, self.channels
        if x.ndim != 2 or x.shape[1] != h * w * c:
            raise ValueError(
                f"RowsToImages({h}, {w}, {c}) expects rows (N, {h * w * c}), got shape {x.shape}"
            )
        if self.order == "chw":
            return x.reshape(x.shape[0], c, h, w)
        return x.reshape(x.shape[0], h, w, c).transpose(0, 3, 1, 2)

    def extra_repr(self) -> str:
        h, w, c = self.height, self.width, self.channels
        return f"height={h}, width={w}, channels={c}, order={self.order}"
