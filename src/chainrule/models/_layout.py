"""Checking the arrays of a model file against what its family declares (`Member`).

A family declares its arrays with sizes that are numbers (from its hyperparameters) or
names (``"D"``, ``"C"``: the same size wherever they appear). `check_layout` checks the
headers of a file's arrays (shape and dtype only, nothing read yet) against such a
declaration and returns the sizes the names stand for; `check_values` checks an array
once read (a scalar's value against its size name, floats finite).
"""

from __future__ import annotations

import numbers

import numpy as np

from chainrule.models.spec import Member

__all__ = [
    "PREPROCESSING",
    "any_members",
    "check_layout",
    "check_values",
    "declared_members",
]


def _shape_text(dims, sizes: dict) -> str:
    """``("D", 7)`` as ``(64, 7)`` once D is known; None shows as ``any``."""
    shown = ["any" if d is None else str(sizes[d][0]) if d in sizes else str(d) for d in dims]
    return f"({shown[0]},)" if len(shown) == 1 else f"({', '.join(shown)})"


def _check_shape(key: str, header, member: Member, sizes: dict) -> None:
    """Check one member's header against its declaration; bind its named sizes.

    ``sizes`` maps a size name to ``(value, member that set it)``.
    """
    shape, kind = header.shape, header.dtype.kind
    if kind not in member.kinds:
        raise ValueError(f"{key} has dtype {header.dtype}, expected kind {member.kinds!r}")
    if len(shape) != len(member.shape):
        raise ValueError(
            f"{key} has shape {shape}, expected {len(member.shape)} dimension(s) "
            f"{_shape_text(member.shape, sizes)}"
        )
    for size, dim in zip(shape, member.shape):
        if isinstance(dim, numbers.Integral) and size != dim:
            raise ValueError(
                f"{key} has shape {shape}, but the model's hyperparameters call for "
                f"{_shape_text(member.shape, sizes)}"
            )
        if isinstance(dim, str):
            if dim not in sizes:
                sizes[dim] = (size, key)
            elif sizes[dim][0] != size:
                value, source = sizes[dim]
                raise ValueError(
                    f"{key} has shape {shape}, but {source} makes {dim} = {value}: "
                    f"expected {_shape_text(member.shape, sizes)}"
                )


def check_layout(headers: dict, declared: dict[str, Member], prefix: str) -> dict:
    """Check member headers ``{key: Header}`` (keys without ``prefix``) against a
    declaration; returns the named sizes. Raises ValueError naming the member."""
    missing = [k for k, m in declared.items() if m.required and k not in headers]
    if missing:
        raise ValueError(f"it has no member {prefix + missing[0]!r}")
    sizes: dict = {}
    for key, member in declared.items():
        if key in headers:
            _check_shape(prefix + key, headers[key], member, sizes)
    return sizes


def check_values(key: str, value: np.ndarray, member: Member, sizes: dict) -> None:
    """Check an array read from member ``key``: a scalar size (or each entry of a 1-D
    array) against the size its name stands for in ``sizes`` (from `check_layout`), floats
    finite where declared."""
    if member.value is not None:
        n = int(value)
        if member.value in sizes and sizes[member.value][0] != n:
            size, source = sizes[member.value]
            raise ValueError(f"{key} is {n}, but {source} makes {member.value} = {size}")
    for i, name in enumerate(member.entries or ()):
        if name in sizes and i < value.size and int(value.flat[i]) != sizes[name][0]:
            size, source = sizes[name]
            raise ValueError(
                f"{key}[{i}] is {int(value.flat[i])}, but {source} makes {name} = {size}"
            )
    if member.finite and value.dtype.kind == "f" and not np.isfinite(value).all():
        raise ValueError(f"{key} holds NaN or infinite values")


# The preprocessing's arrays (chainrule.data.Preprocessor.state_dict).
PREPROCESSING = {
    "version": Member((), "iu"),
    "image_shape": Member((3,), "iu"),
    "mean": Member(("channels",)),
    "std": Member(("channels",)),
    "center": Member((), "b"),
    "standardize": Member((), "b"),
    "bias": Member((), "b"),
    "flatten": Member((), "b", required=False),
}


def declared_members(spec, model, headers: dict) -> dict[str, Member]:
    """The family's declaration (``spec.stored(model)``), or for a family that declares
    none, the arrays of ``headers`` (name -> anything with ``shape``) as they are: numbers
    or text of any size, floats finite."""
    declared = spec.stored(model)
    return any_members(headers) if declared is None else declared


def any_members(headers: dict) -> dict[str, Member]:
    """The arrays of ``headers`` as they are: numbers or text of any size, floats finite."""
    return {k: Member((None,) * len(h.shape), "biufU") for k, h in headers.items()}
