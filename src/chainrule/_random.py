"""One way to turn a `random_state` argument into a `numpy.random.Generator`."""

from __future__ import annotations

import numbers

import numpy as np


def as_generator(random_state=None, name: str = "random_state") -> np.random.Generator:
    """A ``numpy.random.Generator`` from None (fresh entropy), a non-negative int seed, a
    ``SeedSequence`` or a ``Generator`` (returned as is, so the caller's stream advances)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise TypeError(
        f"{name} must be None, an int seed or a numpy.random.Generator, "
        f"got {type(random_state).__name__}"
    )
