"""Update rules: SGD (with momentum and Nesterov momentum), RMSProp, Adam, AdamW.

Every optimizer updates each parameter's ``.data`` IN PLACE from its ``.grad``, with
state arrays (moments) allocated once, of the parameter's dtype (float32 stays
float32), and NumPy ufuncs writing into preallocated scratch buffers. Large
parameters are processed in chunks of `CHUNK` elements, so the scratch buffers stay
in the CPU cache and each step reads and writes every state array once instead of
once per arithmetic operation. `set_num_threads` splits the chunks over threads
(default 1; the result is bit-identical).

The formulas are PyTorch's (``torch.optim``), so trajectories agree with it:

- SGD: ``g += wd * p``; momentum ``b = mu * b + g``; Nesterov ``g = g + mu * b``
  (else ``g = b``); ``p -= lr * g``.
- RMSProp: ``s = alpha * s + (1 - alpha) * g^2``; ``p -= lr * g / (sqrt(s) + eps)``.
- Adam: ``t += 1`` before the update; ``m = b1 m + (1 - b1) g``;
  ``v = b2 v + (1 - b2) g^2``; ``p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) +
  eps)``; `weight_decay` adds ``wd * p`` to the gradient (L2 regularization).
- AdamW: Adam with decoupled weight decay ``p *= 1 - lr * wd`` before the update.

Weight decay is one step (`Optimizer._decay`) before every update rule: coupled, as L2
regularization added to the gradient, or decoupled (AdamW). `params` is an iterable of
Parameters, a Module, or a list of parameter groups as PyTorch's optimizers take them
(``{"params": [...], "lr": ..., "weight_decay": ...}`` and the rule's other settings;
see `chainrule.optim.groups`): each group is updated with its own settings.
`weight_decay_groups` builds such a list from a module: decay for matrices (ndim >= 2),
none for biases and batch-norm scales and shifts.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from chainrule.autograd.engine import Tensor
from chainrule.optim.groups import (
    GroupSetting,
    LearningRate,
    check_number,
    parse_groups,
    weight_decay_groups,
)

__all__ = [
    "CHUNK",
    "get_num_threads",
    "set_num_threads",
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSProp",
    "clip_grad_norm",
    "weight_decay_groups",
]

# 32768 float32 values = 128 KiB per array: a chunk of each operand fits in L2.
CHUNK = 1 << 15
_check_number = check_number


def _nonnegative(name, value):
    return check_number(name, value)


def _unit(name, value):
    return check_number(name, value, 0.0, 1.0)


def _betas(name, value):
    """(beta1, beta2), each in [0, 1); `name` ends in "betas"."""
    try:
        b1, b2 = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (beta1, beta2), got {value!r}") from None
    prefix = name[: -len("betas")]
    return (
        check_number(f"{prefix}beta1", b1, 0.0, 1.0, hi_open=True),
        check_number(f"{prefix}beta2", b2, 0.0, 1.0, hi_open=True),
    )


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _flat(a: np.ndarray) -> np.ndarray:
    """A 1-D view of a C-contiguous array (never a copy: updates must reach `a`)."""
    if not a.flags.c_contiguous:
        raise ValueError("optimizer: parameter data and gradients must be C-contiguous arrays")
    return a.reshape(-1)


class Optimizer:
    """Base class: holds the parameter groups (``param_groups``, see
    `chainrule.optim.groups`), the flat list of parameters ``params``, the learning rate
    ``lr`` (which schedules set), the step count ``t`` and per-parameter state arrays.

    A rule declares its settings beyond ``lr`` and ``weight_decay`` in ``_settings``
    (name -> check) and as `GroupSetting` attributes, and computes the numbers of one
    step of a group in ``_constants(group)``.
    """

    _state_names: tuple[str, ...] = ()
    _settings: dict = {}
    # Decoupled weight decay (AdamW) shrinks the parameters; coupled (L2) adds to the
    # gradient.
    _decoupled_weight_decay = False

    lr = LearningRate(_nonnegative)
    weight_decay = GroupSetting(_nonnegative)

    def __init__(self, params, lr: float, weight_decay: float = 0.0, **settings):
        name = type(self).__name__
        checks = {"lr": _nonnegative, "weight_decay": _nonnegative, **self._settings}
        given = {"lr": lr, "weight_decay": weight_decay, **settings}
        self.defaults = {k: checks[k](f"{name}: {k}", v) for k, v in given.items()}
        self.param_groups, self._lr_scales = parse_groups(params, self.defaults, checks, name)
        self._check_groups()
        self.params = [p for g in self.param_groups for p in g["params"]]
        self._group_of = [gi for gi, g in enumerate(self.param_groups) for _ in g["params"]]
        self.t = 0
        self.state: dict[str, list[np.ndarray | None]] = {
            k: [None] * len(self.params) for k in self._state_names
        }
        self._scratch: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def _check_groups(self) -> None:
        """Checks across the settings of a group (e.g. Nesterov needs momentum)."""

    @property
    def weight_decays(self) -> list[float]:
        """The weight decay of each parameter (that of its group)."""
        return [self.param_groups[gi]["weight_decay"] for gi in self._group_of]

    # ------------------------------------------------------------ helpers
    def _buffer(self, key: str, i: int) -> np.ndarray:
        """State array `key` of parameter i, zeros of its shape and dtype at first use."""
        buf = self.state[key][i]
        p = self.params[i].data
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype:
            buf = np.zeros_like(p, order="C")
            self.state[key][i] = buf
        return buf

    def _scratch_for(self, dtype, worker: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Two scratch arrays of CHUNK elements per (dtype, worker thread)."""
        key = (np.dtype(dtype), worker)
        s = self._scratch.get(key)
        if s is None:
            s = (np.empty(CHUNK, dtype=dtype), np.empty(CHUNK, dtype=dtype))
            self._scratch[key] = s
        return s

    def _grads(self):
        """(index, flat data, flat grad) for every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            g = p._grad
            if g is None:
                continue
            if isinstance(g, Tensor):  # kept with its graph by backward(create_graph=True)
                g = g.data
            if g.shape != p.data.shape:
                raise ValueError(
                    f"{type(self).__name__}: gradient of shape {g.shape} for a parameter of "
                    f"shape {p.data.shape}"
                )
            if g.dtype != p.data.dtype or not g.flags.c_contiguous:
                g = np.ascontiguousarray(g, dtype=p.data.dtype)
            yield i, _flat(p.data), g.reshape(-1)

    # ------------------------------------------------------------ public
    def zero_grad(self) -> None:
        """Forget the gradients of all parameters (``.grad = None``)."""
        for p in self.params:
            p._grad = None

    def step(self) -> None:
        """One update of every parameter that has a gradient (``t`` is incremented
        first), each with the settings of its group."""
        self.t += 1
        per_group = [(self._constants(g), g["weight_decay"], g["lr"]) for g in self.param_groups]
        items = []
        for i, p, g in self._grads():
            states = [_flat(self._buffer(k, i)) for k in self._active_states(i)]
            gi = self._group_of[i]
            for s, e in _chunks(p.size):
                items.append((p[s:e], g[s:e], [b[s:e] for b in states], gi))
        _run_chunks(self, items, per_group)

    def _constants(self, group) -> tuple:
        """Per-step numbers shared by the chunks of a group (learning rate, bias
        corrections...)."""
        return ()

    def _active_states(self, i: int) -> tuple[str, ...]:
        """The state arrays parameter i uses."""
        return self._state_names

    def _decay(self, p, g, wd, lr, scratch):
        """The weight-decay step of one chunk, before the update; returns the gradient
        the update uses. Coupled (L2, PyTorch's ``weight_decay``): ``g + wd * p``,
        written to `scratch`. Decoupled: ``p *= 1 - lr * wd`` in place, `g` unchanged."""
        if wd == 0:
            return g
        if self._decoupled_weight_decay:
            p *= 1.0 - lr * wd
            return g
        d = scratch[: p.size]
        np.multiply(p, wd, out=d)
        d += g
        return d

    def _update(self, p, g, states, u, consts) -> None:
        """Update one chunk in place: p, g and states are 1-D views of equal length n,
        u a scratch array of at least n elements (g may be another scratch array)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays only (writable to .npz without pickle): ``"t"``, ``"lr"`` and
        ``"<state>.<i>"`` for parameter i (e.g. ``"exp_avg.0"``). Copies."""
        state = {"t": np.array(self.t, dtype=np.int64), "lr": np.array(self.lr)}
        for key, bufs in self.state.items():
            for i, b in enumerate(bufs):
                if b is not None:
                    state[f"{key}.{i}"] = b.copy()
        state.update(self._extra_state())
        return state

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {}

    def _load_extra_state(self, state) -> None:
        pass

    def load_state_dict(self, state) -> None:
        """Restore what `state_dict` returned (for the same parameters, in the same
        order). Raises ValueError on unknown keys or shape mismatches."""
        name = type(self).__name__
        problems = []
        for k in ("t", "lr"):
            if k not in state:
                problems.append(f"missing key {k!r}")
        new_state = {key: [None] * len(self.params) for key in self._state_names}
        extra_keys = set(self._extra_state())
        for k in state.keys():
            if k in ("t", "lr") or k in extra_keys:
                continue
            key, _, idx = k.rpartition(".")
            if key not in new_state or not idx.isdigit() or int(idx) >= len(self.params):
                problems.append(f"unexpected key {k!r}")
                continue
            i = int(idx)
            v = np.asarray(state[k])
            p = self.params[i].data
            if v.shape != p.shape:
                problems.append(f"{k}: shape {v.shape}, parameter {i} has shape {p.shape}")
                continue
            new_state[key][i] = np.array(v, dtype=p.dtype, order="C")
        if problems:
            raise ValueError(f"cannot load {name} state: " + "; ".join(problems))
        self.t = int(np.asarray(state["t"]))
        self.lr = float(np.asarray(state["lr"]))
        self.state = new_state
        self._load_extra_state(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr}, {len(self.params)} parameters)"


def _chunks(n: int):
    for s in range(0, n, CHUNK):
        yield s, min(s + CHUNK, n)


_threads = {"n": 1, "pool": None}
# Below this many elements per step a second thread costs more than it saves.
_PARALLEL_MIN = 1 << 18


def set_num_threads(n: int) -> None:
    """Number of threads the optimizers split their updates over (default 1).

    The update is memory-bound elementwise NumPy work that releases the GIL, so on an
    idle multi-core CPU two threads shorten it; on a loaded machine one is as good.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    if _threads["pool"] is not None and n != _threads["n"]:
        _threads["pool"].shutdown(wait=True)
        _threads["pool"] = None
    _threads["n"] = int(n)


def get_num_threads() -> int:
    return _threads["n"]


def _run_group(opt, items, worker, per_group):
    for p, g, states, gi in items:
        consts, wd, lr = per_group[gi]
        a, b = opt._scratch_for(p.dtype, worker)
        opt._update(p, opt._decay(p, g, wd, lr, a), states, b, consts)


def _run_chunks(opt, items, per_group) -> None:
    nt = min(_threads["n"], len(items))
    if nt <= 1 or sum(it[0].size for it in items) < _PARALLEL_MIN:
        _run_group(opt, items, 0, per_group)
        return
    if _threads["pool"] is None:
        from concurrent.futures import ThreadPoolExecutor

        _threads["pool"] = ThreadPoolExecutor(_threads["n"] - 1, "chainrule-optim")
    # Contiguous groups of about equal size; the calling thread takes the first.
    size = sum(it[0].size for it in items)
    groups, cur, acc = [], [], 0
    for it in items:
        cur.append(it)
        acc += it[0].size
        if acc >= size * (len(groups) + 1) / nt and len(groups) < nt - 1:
            groups.append(cur)
            cur = []
    groups.append(cur)
    futures = [
        _threads["pool"].submit(_run_group, opt, grp, k, per_group)
        for k, grp in enumerate(groups[1:], start=1)
    ]
    _run_group(opt, groups[0], 0, per_group)
    for f in futures:
        f.result()


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    ``SGD(params, lr, momentum=0.0, nesterov=False, weight_decay=0.0)``; state
    ``momentum_buffer`` when momentum > 0.
    """

    _state_names = ("momentum_buffer",)
    _settings = {"momentum": _nonnegative, "nesterov": _flag}
    momentum = GroupSetting(_nonnegative)
    nesterov = GroupSetting(_flag)

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        momentum: float = 0.0,
        nesterov=False,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr, weight_decay, momentum=momentum, nesterov=bool(nesterov))

    def _check_groups(self):
        for g in self.param_groups:
            if g["nesterov"] and g["momentum"] == 0:
                raise ValueError(f"{type(self).__name__}: Nesterov momentum needs momentum > 0")

    def _active_states(self, i):
        return self._state_names if self.param_groups[self._group_of[i]]["momentum"] else ()

    def _constants(self, group):
        return (group["lr"], group["momentum"], group["nesterov"])

    def _update(self, p, g, states, u, consts):
        lr, mu, nesterov = consts
        u = u[: p.size]
        d = g
        if states:
            (buf,) = states
            buf *= mu
            buf += g
            if nesterov:
                np.multiply(buf, mu, out=u)
                u += g
                d = u
            else:
                d = buf
        np.multiply(d, -lr, out=u)
        p += u


class RMSProp(Optimizer):
    """RMSProp: ``s = alpha * s + (1 - alpha) * g^2``, ``p -= lr * g / (sqrt(s) + eps)``.

    ``RMSProp(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0)`` (the course's
    ``decay_rate`` is `alpha`); state ``square_avg``.
    """

    _state_names = ("square_avg",)
    _settings = {"alpha": _unit, "eps": _nonnegative}
    alpha = GroupSetting(_unit)
    eps = GroupSetting(_nonnegative)

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr, weight_decay, alpha=alpha, eps=eps)

    def _constants(self, group):
        return (group["lr"], group["alpha"], group["eps"])

    def _update(self, p, g, states, u, consts):
        lr, alpha, eps = consts
        (sq,) = states
        u = u[: p.size]
        sq *= alpha
        np.multiply(g, g, out=u)
        u *= 1.0 - alpha
        sq += u
        np.sqrt(sq, out=u)
        u += eps
        np.divide(g, u, out=u)
        u *= -lr
        p += u


class Adam(Optimizer):
    """Adam with bias correction; the step count ``t`` is incremented before the update.

    ``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)``;
    `weight_decay` is L2 regularization added to the gradient (use `AdamW` for
    decoupled decay). State ``exp_avg`` (m) and ``exp_avg_sq`` (v).
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _settings = {"betas": _betas, "eps": _nonnegative}
    betas = GroupSetting(_betas)
    eps = GroupSetting(_nonnegative)

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr, weight_decay, betas=betas, eps=eps)

    def _constants(self, group):
        t = self.t
        b1, b2 = group["betas"]
        bc1 = 1.0 - b1**t
        bc2_sqrt = math.sqrt(1.0 - b2**t)
        # lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
        #   = (lr * sqrt(bc2) / bc1) * m / (sqrt(v) + eps * sqrt(bc2)): one pass fewer.
        return (b1, b2, -group["lr"] * bc2_sqrt / bc1, group["eps"] * bc2_sqrt)

    def _update(self, p, g, states, u, consts):
        b1, b2, step_size, eps_hat = consts
        m, v = states
        u = u[: p.size]
        # m = b1 m + (1 - b1) g
        m *= b1
        np.multiply(g, 1.0 - b1, out=u)
        m += u
        # v = b2 v + (1 - b2) g^2
        v *= b2
        np.multiply(g, g, out=u)
        u *= 1.0 - b2
        v += u
        # p += step_size * m / (sqrt(v) + eps_hat)
        np.sqrt(v, out=u)
        u += eps_hat
        np.divide(m, u, out=u)
        u *= step_size
        p += u


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter):
    ``p *= 1 - lr * weight_decay`` before the Adam update.

    ``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)``.
    """

    _decoupled_weight_decay = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ):
        super().__init__(params, lr, betas, eps, weight_decay)


def clip_grad_norm(
    params, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> float:
    """Scale all gradients in place so that their joint norm is at most `max_norm`.

    The norm is taken over all gradients together (as if concatenated); when it
    exceeds `max_norm` every gradient is multiplied by ``max_norm / (norm + 1e-6)``,
    as ``torch.nn.utils.clip_grad_norm_``. `norm_type` is 2 or ``inf``. Returns the
    norm before clipping (a float). A NaN or infinite norm raises ValueError when
    `error_if_nonfinite`, else it is returned and the gradients are left as they are.
    """
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    if isinstance(params, Tensor):
        params = [params]
    max_norm = _check_number("clip_grad_norm: max_norm", max_norm)
    if norm_type not in (2, 2.0, math.inf):
        raise ValueError(f"clip_grad_norm: norm_type must be 2 or inf, got {norm_type!r}")
    grads = [np.asarray(p._grad) for p in params if isinstance(p, Tensor) and p._grad is not None]
    if not grads:
        return 0.0
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(g))) for g in grads)
    else:
        sq = 0.0
        for g in grads:
            f = g.reshape(-1)
            sq += float(np.dot(f, f))
        total = math.sqrt(sq)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise ValueError(f"clip_grad_norm: the gradient norm is {total} (NaN or inf)")
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= coef
    return total
