"""Layers as modules: small objects that hold parameters and apply fused Functions.

A `Module` finds its parameters by attribute assignment: ``self.weight =
Parameter(...)`` registers a parameter, ``self.fc = Linear(...)`` a submodule, and
``self.register_buffer("running_mean", array)`` a non-learned array that belongs to the
state (batch-norm running statistics). Names are dotted paths (``"0.weight"``,
``"fc.bias"``), the same in `named_parameters` and `state_dict`.

Weights of `Linear` are stored ``(in_features, out_features)`` as in the course
(``out = x @ W + b``); PyTorch stores the transpose.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np

from chainrule._random import as_generator
from chainrule.autograd import ops as _ops
from chainrule.autograd.engine import Tensor
from chainrule.nn import init as _init
from chainrule.nn.functional import layers as F

__all__ = [
    "BatchNorm1d",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "Module",
    "Parameter",
    "Permute",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
]


class Parameter(Tensor):
    """A Tensor that is a learned parameter of a Module (``requires_grad=True``).

    Floating arrays keep their dtype; the data is made C-contiguous so optimizers can
    update it in place through flat views.
    """

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True, name: str | None = None):
        if isinstance(data, Tensor):
            data = data.data
        arr = np.asarray(data)
        if arr.dtype.kind != "f":
            arr = arr.astype(np.float32)
        super().__init__(np.ascontiguousarray(arr), requires_grad=requires_grad, name=name)

    def __repr__(self) -> str:
        return "Parameter" + super().__repr__()[len("Tensor") :]


class Module:
    """Base class of layers and networks.

    Subclasses call ``super().__init__()`` first, assign Parameters, submodules and
    buffers as attributes, and define ``forward(x)``; calling the module runs forward.
    ``training`` (set by `train` / `eval` for the whole tree) switches dropout and batch
    norm between their training and evaluation behaviour.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                "assigning attributes"
            )
        params, bufs, mods = self._parameters, self._buffers, self._modules
        for d in (params, bufs, mods):
            d.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
            self.__dict__.pop(name, None)
        elif isinstance(value, Module):
            mods[name] = value
            self.__dict__.pop(name, None)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails: parameters, buffers and submodules.
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if key in d and name in d[key]:
                return d[key][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for key in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__[key]:
                del self.__dict__[key][name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array) -> None:
        """Register a non-learned array (e.g. running statistics) that is part of the
        state: saved by `state_dict`, restored in place by `load_state_dict`."""
        if not isinstance(array, np.ndarray):
            raise TypeError(f"buffer {name!r} must be a numpy array, got {type(array).__name__}")
        self.__dict__.pop(name, None)
        for d in (self._parameters, self._modules):
            d.pop(name, None)
        self._buffers[name] = array

    def register_parameter(self, name: str, param) -> None:
        if param is not None and not isinstance(param, Parameter):
            param = Parameter(param)
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    # ------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every submodule, depth first, with dotted names."""
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) for every parameter of the tree, each once."""
        seen = set()
        for mname, m in self.named_modules():
            for pname, p in m._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for mname, m in self.named_modules():
            for bname, b in m._buffers.items():
                yield (f"{mname}.{bname}" if mname else bname), b

    def num_parameters(self) -> int:
        return sum(p.data.size for p in self.parameters())

    # ------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> Module:
        """Training mode for this module and all submodules (dropout on, batch statistics)."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Evaluation mode (dropout off, running statistics in batch norm)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget the gradients of all parameters (``.grad = None``)."""
        for p in self.parameters():
            p._grad = None

    def to(self, dtype) -> Module:
        """Convert every parameter and floating buffer to `dtype` (e.g. float64 for a
        gradient check), in place; gradients are dropped."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Module.to: dtype must be a float dtype, got {dtype}")
        for m in self.modules():
            for p in m._parameters.values():
                p.data = np.ascontiguousarray(p.data, dtype=dtype)
                p._grad = None
            for name, b in m._buffers.items():
                if b.dtype.kind == "f":
                    m._buffers[name] = b.astype(dtype)
        return self

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters and buffers, keyed by dotted name (arrays only, so
        the state can be written to an .npz without pickle)."""
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        for name, b in self.named_buffers():
            state[name] = b.copy()
        return state

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays from `state` into the parameters and buffers, in place (keeping
        each array's dtype, so references held by optimizers stay valid).

        Raises ValueError naming missing keys, unexpected keys (with ``strict=True``)
        and shape mismatches; nothing is changed if any check fails.
        """
        if not hasattr(state, "keys"):
            raise TypeError(f"load_state_dict expects a mapping of arrays, got {type(state)}")
        targets = {name: p.data for name, p in self.named_parameters()}
        targets.update(dict(self.named_buffers()))
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state.keys() if k not in targets]
        problems = []
        if missing and strict:
            problems.append(f"missing keys: {', '.join(missing)}")
        if unexpected and strict:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        values = {}
        for k, dest in targets.items():
            if k not in state:
                continue
            v = np.asarray(state[k])
            if v.shape != dest.shape:
                problems.append(f"{k}: shape {v.shape} in the state, {dest.shape} in the model")
            elif v.dtype.kind not in "fiub":
                problems.append(f"{k}: dtype {v.dtype} is not numeric")
            else:
                values[k] = v
        if problems:
            raise ValueError(
                f"cannot load state into {type(self).__name__}: " + "; ".join(problems)
            )
        for k, v in values.items():
            np.copyto(targets[k], v, casting="unsafe")

    # ------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, m in self._modules.items():
                sub = repr(m).replace("\n", "\n  ")
                lines.append(f"\n  ({name}): {sub}")
            lines.append("\n)")
        else:
            lines.append(")")
        return "".join(lines)


# ---------------------------------------------------------------- layers


def _input_like(x, weight):
    """Plain-array input (data, not differentiated) in the dtype of `weight` (a Parameter
    or an array): float64 or integer data meeting float32 weights would otherwise make
    every product float64."""
    if isinstance(x, Tensor):
        return x
    x = np.asarray(x)
    if x.dtype != weight.dtype and x.dtype.kind in "fiub":
        x = x.astype(weight.dtype)
    return x


_INITS = ("kaiming", "kaiming_uniform", "xavier", "xavier_uniform", "normal")


class Linear(Module):
    """Fully connected layer ``out = x @ weight + bias``.

    weight: (in_features, out_features), bias: (out_features,), both of `dtype`
    (float32 by default). x: (N, in_features) -> (N, out_features). A plain array
    input is converted to the weight's dtype (float64 data into a float32 network is
    computed in float32); a Tensor input is used as it is.

    init: ``"kaiming"`` (He normal, for ReLU networks; the default),
    ``"kaiming_uniform"``, ``"xavier"`` (Glorot normal), ``"xavier_uniform"`` or
    ``"normal"`` (``weight_scale * N(0, 1)``; weight_scale defaults to 1e-2). A given
    `weight_scale` with another init is an error. Biases start at zero.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str = "kaiming",
        weight_scale: float | None = None,
        random_state=None,
        dtype=np.float32,
    ):
        super().__init__()
        for what, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
                raise ValueError(f"Linear: {what} must be a positive int, got {v!r}")
        if init not in _INITS:
            raise ValueError(f"Linear: unknown init {init!r}; choose one of {', '.join(_INITS)}")
        if weight_scale is not None and init != "normal":
            raise ValueError('Linear: weight_scale applies to init="normal" only')
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.init = init
        shape = (self.in_features, self.out_features)
        if init == "kaiming":
            w = _init.kaiming_normal(shape, random_state, dtype)
        elif init == "kaiming_uniform":
            w = _init.kaiming_uniform(shape, random_state, dtype)
        elif init == "xavier":
            w = _init.xavier_normal(shape, random_state, dtype)
        elif init == "xavier_uniform":
            w = _init.xavier_uniform(shape, random_state, dtype)
        else:
            w = _init.normal(
                shape, 1e-2 if weight_scale is None else weight_scale, random_state, dtype
            )
        self.weight = Parameter(w)
        if bias:
            self.bias = Parameter(np.zeros(self.out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.linear(_input_like(x, self.weight), self.weight, self.bias)

    def forward_relu(self, x):
        """``relu(self(x))`` as one fused Function."""
        return F.linear_relu(_input_like(x, self.weight), self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Tanh(Module):
    def forward(self, x):
        return _ops.Tanh.apply(x)


class Sigmoid(Module):
    def forward(self, x):
        return _ops.Sigmoid.apply(x)


class Identity(Module):
    def forward(self, x):
        return x if isinstance(x, Tensor) else Tensor(x)


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), e.g. images (N, H, W, C) -> (N, H*W*C)."""

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        return x.reshape(x.shape[0], -1)


class Permute(Module):
    """Reorders the axes: ``x.transpose(*dims)``, a view (no copy).

    ``Permute(0, 3, 1, 2)`` turns channels-last images (N, H, W, C) into the (N, C, H, W)
    that `Conv2d` and the other image layers take; their Functions read such a view in
    its channels-last memory order, so the images are never copied into another layout.
    """

    def __init__(self, *dims: int):
        super().__init__()
        if sorted(dims) != list(range(len(dims))) or not all(type(d) is int for d in dims):
            raise ValueError(f"Permute: dims must be a permutation of 0..n-1, got {dims!r}")
        self.dims = tuple(dims)

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        if x.ndim != len(self.dims):
            raise ValueError(
                f"Permute{self.dims} expects {len(self.dims)}-D input, got shape {x.shape}"
            )
        return x.transpose(*self.dims)

    def extra_repr(self) -> str:
        return ", ".join(str(d) for d in self.dims)


class Dropout(Module):
    """Inverted dropout: in training each entry is zeroed with probability `p` and the
    rest scaled by ``1 / (1 - p)``; identity in evaluation.

    The masks come from ``self.rng``, a `numpy.random.Generator` made from
    `random_state`; assign a new generator to ``rng`` to replay the same masks (for a
    gradient check, or to resume a run).
    """

    def __init__(self, p: float = 0.5, random_state=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = as_generator(random_state)

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BatchNorm1d(Module):
    """Batch normalization of (N, num_features) inputs, per feature.

    Parameters ``weight`` (gamma, ones; None with ``scale=False``) and ``bias`` (beta,
    zeros; None with ``shift=False``); buffers ``running_mean`` (zeros) and
    ``running_var`` (ones), updated in training with ``running = (1 - momentum) *
    running + momentum * batch`` (unbiased variance, as PyTorch) and used in evaluation.
    Both buffers are in `state_dict`. ``scale`` and ``shift`` are the switches of
    `BatchNorm2d` too (``scale=False, shift=False`` is PyTorch's ``affine=False``).
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
        if isinstance(num_features, bool) or not isinstance(num_features, numbers.Integral):
            raise ValueError(f"BatchNorm1d: num_features must be an int, got {num_features!r}")
        if num_features <= 0:
            raise ValueError(f"BatchNorm1d: num_features must be positive, got {num_features}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm1d: momentum must be in [0, 1], got {momentum!r}")
        if not eps > 0:
            raise ValueError(f"BatchNorm1d: eps must be positive, got {eps!r}")
        self.num_features = int(num_features)
        self.momentum = float(momentum)
        self.eps = float(eps)
        _learned(self, num_features, scale, shift, dtype)
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))

    def forward(self, x):
        xd = x.data if isinstance(x, Tensor) else np.asarray(x)
        if xd.ndim != 2 or xd.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm1d({self.num_features}) expects input (N, {self.num_features}), "
                f"got shape {xd.shape}"
            )
        return F.batch_norm(
            x,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.training,
            self.momentum,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, momentum={self.momentum}, eps={self.eps}, "
            f"scale={self.weight is not None}, shift={self.bias is not None}"
        )


def _learned(bn: Module, num_features: int, scale: bool, shift: bool, dtype) -> None:
    """The learned parameters of a batch norm: ``weight`` (gamma, ones) with `scale`,
    ``bias`` (beta, zeros) with `shift`; each None without its switch."""
    if scale:
        bn.weight = Parameter(np.ones(num_features, dtype=dtype))
    else:
        bn.register_parameter("weight", None)
    if shift:
        bn.bias = Parameter(np.zeros(num_features, dtype=dtype))
    else:
        bn.register_parameter("bias", None)


class Sequential(Module):
    """Modules applied in order; submodules are named "0", "1", ...

    A module whose class defines ``forward_relu`` (`Linear`, `BatchNorm2d`) directly
    followed by a `ReLU` runs as that fused Function (same values and gradients, one
    Function and one array fewer). Only the class's own ``forward_relu`` counts, so a
    subclass that overrides ``forward`` is never fused by an inherited one.
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential takes Modules, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def forward(self, x):
        mods = list(self._modules.values())
        i = 0
        n = len(mods)
        while i < n:
            m = mods[i]
            if i + 1 < n and type(mods[i + 1]) is ReLU and "forward_relu" in type(m).__dict__:
                x = m.forward_relu(x)
                i += 2
                continue
            x = m(x)
            i += 1
        return x
