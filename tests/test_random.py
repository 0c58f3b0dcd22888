"""as_generator: the one conversion of a `random_state` argument into a Generator."""

import numpy as np
import pytest

from chainrule._random import as_generator


def test_int_seed_and_seed_sequence_give_numpys_streams():
    want = np.random.default_rng(42).standard_normal(5)
    np.testing.assert_array_equal(as_generator(42).standard_normal(5), want)
    np.testing.assert_array_equal(as_generator(np.int64(42)).standard_normal(5), want)
    seq = np.random.SeedSequence(42)
    np.testing.assert_array_equal(as_generator(seq).standard_normal(5), want)


def test_a_generator_is_returned_as_is_so_the_callers_stream_advances():
    g = np.random.default_rng(0)
    assert as_generator(g) is g
    first = as_generator(g).random()
    assert as_generator(g).random() != first


def test_none_gives_fresh_entropy():
    a, b = as_generator(None), as_generator()
    assert isinstance(a, np.random.Generator)
    assert a.integers(2**62) != b.integers(2**62)  # equal once in 2**62 runs


@pytest.mark.parametrize("bad", ["seed", 1.5, True, [1, 2], np.random.RandomState(0)])
def test_other_types_are_refused_by_name(bad):
    with pytest.raises(TypeError, match=r"random_state must be None, an int seed"):
        as_generator(bad)
    with pytest.raises(TypeError, match=r"^seed must be"):
        as_generator(bad, name="seed")


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="random_state must be a non-negative integer, got -1"):
        as_generator(-1)
