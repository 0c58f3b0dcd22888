"""Weight initialisations: sample statistics against each formula, the (fan_in, fan_out)
layout, gains against PyTorch's recorded table, seeding, dtypes, shapes and errors."""

import math
from pathlib import Path

import numpy as np
import pytest

from chainrule import nn
from chainrule.nn import init

SHAPE = (1000, 600)  # 600,000 draws: the sample std is within 0.1% of the true one (1 sd)
FAN_IN, FAN_OUT = SHAPE
GAUSS_WITHIN_1SD = math.erf(1 / math.sqrt(2))  # 0.6827
UNIFORM_WITHIN_1SD = 1 / math.sqrt(3)  # 0.5774


def check_normal(w, std):
    """w looks like N(0, std^2): mean, spread and the share within one std."""
    n = w.size
    assert abs(w.std(dtype=np.float64) / std - 1) < 0.005  # about 5 standard errors
    assert abs(w.mean(dtype=np.float64)) < 5 * std / math.sqrt(n)
    assert abs(np.mean(np.abs(w) < std) - GAUSS_WITHIN_1SD) < 0.003


def check_uniform(w, bound):
    """w looks like U(-bound, bound): inside the bound, reaching it, uniform spread."""
    n = w.size
    assert np.abs(w).max() <= bound * (1 + 1e-7)  # float32 rounding of the bound
    assert np.abs(w).max() > bound * (1 - 1e-4)  # 600,000 draws reach the edge
    std = bound / math.sqrt(3)
    assert abs(w.std(dtype=np.float64) / std - 1) < 0.005
    assert abs(w.mean(dtype=np.float64)) < 5 * std / math.sqrt(n)
    assert abs(np.mean(np.abs(w) < std) - UNIFORM_WITHIN_1SD) < 0.003


# ----------------------------------------------------------------- formulas


@pytest.mark.parametrize(
    "nonlinearity, gain",
    [("relu", math.sqrt(2)), ("tanh", 5 / 3), ("linear", 1.0), ("leaky_relu", None)],
)
def test_kaiming_normal_variance_is_gain_squared_over_fan_in(nonlinearity, gain):
    gain = gain or math.sqrt(2 / (1 + 0.01**2))
    w = init.kaiming_normal(SHAPE, 0, nonlinearity=nonlinearity)
    check_normal(w, gain / math.sqrt(FAN_IN))


@pytest.mark.parametrize("nonlinearity, gain", [("relu", math.sqrt(2)), ("sigmoid", 1.0)])
def test_kaiming_uniform_bound_is_gain_times_sqrt_3_over_fan_in(nonlinearity, gain):
    w = init.kaiming_uniform(SHAPE, 1, nonlinearity=nonlinearity)
    check_uniform(w, gain * math.sqrt(3 / FAN_IN))


@pytest.mark.parametrize("gain", [1.0, 5 / 3])
def test_xavier_normal_variance_is_2_over_fan_in_plus_fan_out(gain):
    w = init.xavier_normal(SHAPE, 2, gain=gain)
    check_normal(w, gain * math.sqrt(2 / (FAN_IN + FAN_OUT)))


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_xavier_uniform_bound_is_sqrt_6_over_fan_in_plus_fan_out(gain):
    w = init.xavier_uniform(SHAPE, 3, gain=gain)
    check_uniform(w, gain * math.sqrt(6 / (FAN_IN + FAN_OUT)))


def test_normal_is_weight_scale_times_standard_normal():
    check_normal(init.normal(SHAPE, weight_scale=1e-3, random_state=4), 1e-3)
    # the same draws as a standard normal, scaled
    a = init.normal((50, 40), weight_scale=0.25, random_state=5, dtype=np.float64)
    b = np.random.default_rng(5).standard_normal((50, 40))
    np.testing.assert_allclose(a, 0.25 * b, rtol=1e-15)
    np.testing.assert_array_equal(init.normal((3, 2), weight_scale=0.0, random_state=0), 0.0)


def test_fan_in_is_the_first_axis():
    # weights are (fan_in, fan_out): a tall matrix gets the smaller Kaiming std
    tall = init.kaiming_normal((2000, 50), 0, dtype=np.float64)
    wide = init.kaiming_normal((50, 2000), 0, dtype=np.float64)
    assert abs(tall.std() / math.sqrt(2 / 2000) - 1) < 0.02
    assert abs(wide.std() / math.sqrt(2 / 50) - 1) < 0.02
    # a bias-like 1-D shape uses its length as fan_in and fan_out
    v = init.xavier_uniform((100_000,), 0, dtype=np.float64)
    assert np.abs(v).max() <= math.sqrt(6 / 200_000)


# ----------------------------------------------------------------- gains


@pytest.fixture(scope="module")
def recorded_gains():
    """torch.nn.init.calculate_gain, stored by tests/fixtures/record_torch_references.py."""
    path = Path(__file__).resolve().parents[1] / "fixtures" / "torch_init.npz"
    with np.load(path, allow_pickle=False) as f:
        return {k.removeprefix("gain."): float(f[k]) for k in f.files if k.startswith("gain.")}


# key in the record -> calculate_gain arguments (leaky_relu's default slope is 0.01)
GAIN_ARGS = {
    "relu": ("relu",),
    "leaky_relu": ("leaky_relu",),
    "leaky_relu_0.2": ("leaky_relu", 0.2),
    "tanh": ("tanh",),
    "linear": ("linear",),
    "sigmoid": ("sigmoid",),
}


def test_gains_match_recorded_pytorch_table(recorded_gains):
    assert sorted(recorded_gains) == sorted(GAIN_ARGS)
    for key, args in GAIN_ARGS.items():
        assert init.calculate_gain(*args) == pytest.approx(recorded_gains[key], rel=1e-15), key
    assert init.calculate_gain("identity") == 1.0


# ----------------------------------------------------------------- seeding, dtypes, shapes

INITS = [
    init.kaiming_normal,
    init.kaiming_uniform,
    init.xavier_normal,
    init.xavier_uniform,
    init.normal,
]


@pytest.mark.parametrize("fn", INITS)
def test_seeded_draws_repeat_and_a_generator_advances(fn):
    a, b, c = fn((30, 20), random_state=7), fn((30, 20), random_state=7), fn((30, 20), 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g = np.random.default_rng(7)
    first, second = fn((30, 20), random_state=g), fn((30, 20), random_state=g)
    np.testing.assert_array_equal(first, a)  # a Generator seeded 7 draws what seed 7 draws
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("fn", INITS)
def test_dtype_shape_and_layout(fn):
    w32 = fn([6, 4], random_state=0)
    w64 = fn((6, 4), random_state=0, dtype=np.float64)
    assert w32.shape == w64.shape == (6, 4)
    assert w32.dtype == np.float32 and w64.dtype == np.float64
    assert w32.flags.c_contiguous and w64.flags.c_contiguous
    # float32 weights are the float64 draws rounded, not other draws
    np.testing.assert_array_equal(w32, w64.astype(np.float32))
    z = init.zeros((3, 2))
    assert z.dtype == np.float32 and z.shape == (3, 2) and not z.any()


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", INITS)
@pytest.mark.parametrize("shape", [(2, 3, 4), (0, 3), (3, 0), ()])
def test_bad_shapes_name_the_shape(fn, shape):
    with pytest.raises(ValueError, match=r"weight shape \(fan_in, fan_out\)"):
        fn(shape, random_state=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown nonlinearity 'swish'"):
        init.kaiming_normal((3, 2), 0, nonlinearity="swish")
    for scale in (-1e-3, float("nan")):
        with pytest.raises(ValueError, match="weight_scale"):
            init.normal((3, 2), weight_scale=scale)
    with pytest.raises(TypeError, match="random_state"):
        init.xavier_uniform((3, 2), random_state="seed")
    with pytest.raises(ValueError, match="non-negative"):
        init.kaiming_uniform((3, 2), random_state=-1)


# ----------------------------------------------------------------- identity filters


@pytest.mark.parametrize("shape", [(6, 4, 3, 3), (4, 6, 3, 3), (5, 5, 1, 1), (3, 2, 5, 3)])
def test_dirac_filters_pass_the_input_channels_through(shape):
    from chainrule.nn.functional import conv2d

    out, c_in, kh, kw = shape
    w = init.dirac(shape, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, c_in, 7, 8))
    y = conv2d(x, w, None, 1, (kh // 2, kw // 2)).data
    k = min(out, c_in)
    np.testing.assert_array_equal(y[:, :k], x[:, :k])
    np.testing.assert_array_equal(y[:, k:], 0.0)
    assert w.sum() == k and w.dtype == np.float64


def test_dirac_matches_pytorch():
    torch = pytest.importorskip("torch")
    for shape in [(6, 4, 3, 3), (4, 6, 3, 3), (3, 2, 5, 3)]:
        want = torch.nn.init.dirac_(torch.empty(shape)).numpy()
        np.testing.assert_array_equal(init.dirac(shape), want)


def test_kaiming_dirac_is_kaiming_with_identity_filters_first():
    shape = (48, 16, 3, 3)
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    w = init.kaiming_dirac(shape, rng1)
    he = init.kaiming_normal(shape, rng2)
    np.testing.assert_array_equal(w[:16], init.dirac((16, 16, 3, 3)))
    np.testing.assert_array_equal(w[16:], he[16:])
    assert rng1.random() == rng2.random()  # the same draws
    conv = nn.Conv2d(16, 48, 3, padding=1, bias=False, init="dirac", random_state=5)
    np.testing.assert_array_equal(conv.weight.data, w)
    with pytest.raises(ValueError, match="out_channels, in_channels, kh, kw"):
        init.kaiming_dirac((4, 4))
