"""Weight initialisations, seeded through `random_state`.

Fully connected weights are stored ``(fan_in, fan_out)`` (``out = x @ W``), so ``fan_in =
shape[0]`` and ``fan_out = shape[1]``. Convolution weights are stored as PyTorch's
``(out_channels, in_channels, kh, kw)``: ``fan_in = in_channels * kh * kw`` (the values one
output sees) and ``fan_out = out_channels * kh * kw``. Each function returns a new
C-contiguous array of the requested dtype (float32 by default).

- `kaiming_normal` / `kaiming_uniform` (He et al. 2015): variance ``gain^2 / fan_in``
  with ``gain = sqrt(2)`` for ReLU, so activations keep their scale through deep ReLU
  networks.
- `xavier_normal` / `xavier_uniform` (Glorot and Bengio 2010): variance
  ``2 / (fan_in + fan_out)``, for tanh / sigmoid networks.
- `normal`: ``weight_scale * standard normal``, the course's scaled-normal initialisation.
- `dirac` (PyTorch's ``dirac_``): identity filters, a convolution with "same" padding
  that passes its input channels through; `kaiming_dirac`: He normal filters of which
  the first ``min(out_channels, in_channels)`` are identities, so a deep stack of
  convolutions starts close to passing its input on (the fast CIFAR-10 recipes, such as
  airbench, initialise their convolutions this way) while the other filters still
  break the symmetry.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule._random import as_generator

__all__ = [
    "calculate_gain",
    "dirac",
    "kaiming_dirac",
    "kaiming_normal",
    "kaiming_uniform",
    "normal",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]


def calculate_gain(nonlinearity: str = "relu", negative_slope: float = 0.01) -> float:
    """The gain that keeps activation variance constant for a nonlinearity (PyTorch's
    table): relu sqrt(2), leaky_relu sqrt(2 / (1 + slope^2)), tanh 5/3, linear and
    sigmoid 1."""
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + negative_slope**2))
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity in ("linear", "sigmoid", "identity"):
        return 1.0
    raise ValueError(
        f"unknown nonlinearity {nonlinearity!r}; use relu, leaky_relu, tanh, sigmoid or linear"
    )


def _fans(shape) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 4 and min(shape) > 0:
        field = shape[2] * shape[3]
        return shape[1] * field, shape[0] * field
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(
            "initialisation needs a weight shape (fan_in, fan_out) or (out_channels, "
            f"in_channels, kh, kw), got {shape}"
        )
    return shape[0], shape[1]


def _normal(shape, std, random_state, dtype):
    rng = as_generator(random_state)
    w = rng.standard_normal(tuple(shape), dtype=np.float64)
    w *= std
    return np.ascontiguousarray(w, dtype=dtype)


def _uniform(shape, bound, random_state, dtype):
    rng = as_generator(random_state)
    w = rng.uniform(-bound, bound, size=tuple(shape))
    return np.ascontiguousarray(w, dtype=dtype)


def kaiming_normal(shape, random_state=None, dtype=np.float32, nonlinearity="relu"):
    """He normal: N(0, gain^2 / fan_in), gain sqrt(2) for ReLU. shape (fan_in, fan_out)
    or a convolution's (out_channels, in_channels, kh, kw)."""
    fan_in, _ = _fans(shape)
    return _normal(shape, calculate_gain(nonlinearity) / math.sqrt(fan_in), random_state, dtype)


def kaiming_uniform(shape, random_state=None, dtype=np.float32, nonlinearity="relu"):
    """He uniform: U(-b, b), b = gain * sqrt(3 / fan_in). shape (fan_in, fan_out) or
    (out_channels, in_channels, kh, kw)."""
    fan_in, _ = _fans(shape)
    bound = calculate_gain(nonlinearity) * math.sqrt(3.0 / fan_in)
    return _uniform(shape, bound, random_state, dtype)


def xavier_normal(shape, random_state=None, dtype=np.float32, gain=1.0):
    """Glorot normal: N(0, gain^2 * 2 / (fan_in + fan_out)). shape (fan_in, fan_out)."""
    fan_in, fan_out = _fans(shape)
    return _normal(shape, gain * math.sqrt(2.0 / (fan_in + fan_out)), random_state, dtype)


def xavier_uniform(shape, random_state=None, dtype=np.float32, gain=1.0):
    """Glorot uniform: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return _uniform(shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), random_state, dtype)


def normal(shape, weight_scale=1e-2, random_state=None, dtype=np.float32):
    """Scaled normal: ``weight_scale * N(0, 1)`` (the course's ``weight_scale``)."""
    if not weight_scale >= 0:
        raise ValueError(f"weight_scale must be a non-negative number, got {weight_scale!r}")
    _fans(shape)
    return _normal(shape, weight_scale, random_state, dtype)


def zeros(shape, dtype=np.float32):
    return np.zeros(tuple(shape), dtype=dtype)


def _check_filters(shape) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or min(shape) <= 0:
        raise ValueError(
            f"identity filters need a convolution's weight shape (out_channels, "
            f"in_channels, kh, kw), got {shape}"
        )
    return shape


def dirac(shape, dtype=np.float32):
    """Identity filters (PyTorch's ``dirac_``, one group): zeros but
    ``w[i, i, kh // 2, kw // 2] = 1`` for ``i < min(out_channels, in_channels)``.
    shape (out_channels, in_channels, kh, kw)."""
    out, c_in, kh, kw = _check_filters(shape)
    w = np.zeros((out, c_in, kh, kw), dtype=dtype)
    k = min(out, c_in)
    w[np.arange(k), np.arange(k), kh // 2, kw // 2] = 1
    return w


def kaiming_dirac(shape, random_state=None, dtype=np.float32, nonlinearity="relu"):
    """`kaiming_normal` filters whose first ``min(out_channels, in_channels)`` are
    replaced by identity filters (`dirac`): output channel i < in_channels starts as a
    copy of input channel i. The random draws are those of `kaiming_normal` (the same
    generator state afterwards). shape (out_channels, in_channels, kh, kw)."""
    out, c_in, kh, kw = _check_filters(shape)
    w = kaiming_normal(shape, random_state, dtype, nonlinearity)
    k = min(out, c_in)
    w[:k] = dirac((k, c_in, kh, kw), dtype)
    return w
