"""ConvNet: learning on tiny images, images and rows alike, model files with their
declared layout, exact resume, Lookahead, the spec's options, memory bound and plot."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule import nn
from chainrule.models import ConvNet, get_model_spec, load_model, save_model
from chainrule.models.spec import DataSummary

TINY = dict(channels=(4, 8), convs_per_stage=1, batch_size=32, random_state=0)


def bars(n=160, size=6, seed=0):
    """Images (N, size, size, 1) float32 with a bright vertical (class 0), horizontal
    (class 1) or diagonal (class 2) bar at a random place, over noise; labels (N,)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(0, 0.3, (n, size, size, 1)).astype(np.float32)
    at = rng.integers(0, size, n)
    for i in range(n):
        if y[i] == 0:
            X[i, :, at[i], 0] += 2.0
        elif y[i] == 1:
            X[i, at[i], :, 0] += 2.0
        else:
            X[i, np.arange(size), (np.arange(size) + at[i]) % size, 0] += 2.0
    return X, y


@pytest.fixture(scope="module")
def data():
    return bars(), bars(90, seed=1)


def test_learns_oriented_bars_well_above_chance(data):
    (X, y), (Xt, yt) = data
    model = ConvNet(**TINY, optimizer="adam", learning_rate=1e-2, epochs=6).fit(X, y)
    assert model.score(Xt, yt) > 0.8  # chance: 1/3
    assert model.image_shape_ == (6, 6, 1) and model.n_features_in_ == 36
    assert model.predict_proba(Xt).shape == (90, 3)
    convs = [m for m in model.net_.modules() if isinstance(m, nn.Conv2d)]
    assert [c.weight.shape for c in convs] == [(8, 1, 3, 3), (4, 8, 3, 3), (8, 4, 3, 3)]


def test_images_and_their_rows_train_the_same_network(data):
    (X, y), (Xt, _) = data
    kw = dict(TINY, epochs=1, stem="whiten")
    on_images = ConvNet(**kw).fit(X, y)
    rows = X.reshape(len(X), -1)  # channels-last images flattened: a view, no copy
    on_rows = ConvNet(**kw, image_shape=(6, 6, 1)).fit(rows, y)
    np.testing.assert_array_equal(on_images.predict_proba(Xt), on_rows.predict_proba(Xt))
    t_rows = Xt.reshape(len(Xt), -1)
    np.testing.assert_array_equal(on_images.predict_proba(t_rows), on_rows.predict_proba(Xt))


def test_images_stay_images_channels_last_into_the_first_convolution(data, monkeypatch):
    # Training hands the network the very array it was given, prediction the same
    # images (in float64, see test_row_invariance.py): no copy into another memory
    # order, no rows in between; the first layer views them as (N, C, H, W) for the
    # convolutions, still channels-last in memory.
    from chainrule.train.solver import Solver

    (X, y), _ = data
    trained_on, seen = [], []
    real_init, real_permute = Solver.__init__, nn.Permute.forward

    def solver_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        trained_on.append(self.X_train)

    def permute(self, x):
        out = real_permute(self, x)
        seen.append((x.data, out.data))
        return out

    monkeypatch.setattr(Solver, "__init__", solver_init)
    monkeypatch.setattr(nn.Permute, "forward", permute)
    model = ConvNet(**TINY, epochs=1).fit(X, y)
    assert trained_on[0] is X
    seen.clear()
    model.predict(X)
    given, viewed = seen[0]
    assert given.shape == (160, 6, 6, 1) and np.array_equal(given, X)
    assert viewed.shape == (160, 1, 6, 6) and np.shares_memory(viewed, given)
    assert viewed.strides[1] == given.itemsize  # channels-last in memory


def test_inputs_of_another_shape_are_refused_by_name(data):
    (X, y), _ = data
    model = ConvNet(**TINY, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"images \(H, W, C\) = \(5, 5, 1\), but ConvNet was"):
        model.predict(X[:, :5, :5])
    with pytest.raises(ValueError, match="X has 25 features, but ConvNet is expecting 36"):
        model.predict(X[:, :5, :5].reshape(len(X), -1))
    with pytest.raises(ValueError, match=r"rows \(N, D\) or images \(N, H, W, C\)"):
        model.predict(X[..., 0])
    with pytest.raises(ValueError, match=r"X holds images \(H, W, C\) = \(6, 6, 1\), but image_"):
        ConvNet(**TINY, image_shape=(6, 6, 3)).fit(X, y)
    with pytest.raises(ValueError, match="needs images of at least 2x2 pixels"):
        ConvNet(**TINY, stem="whiten").fit(X.reshape(len(X), -1), y)  # 1x1 images


def test_channels_first_images_are_named_in_a_warning(data):
    (X, y), _ = data
    nchw = np.ascontiguousarray(np.repeat(X, 8, axis=3).transpose(0, 3, 1, 2))  # (N, 8, 6, 6)
    nchw = nchw[:, :3]  # (N, 3, 6, 6): reads as 3x6 images of 6 channels
    with pytest.warns(UserWarning, match=r"channels-first images \(N, C, H, W\), pass"):
        ConvNet(**TINY, epochs=1).fit(np.ascontiguousarray(nchw), y)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"channels": (4, 0)}, "channels must be a sequence of positive ints"),
        ({"stem": "resnet"}, 'stem must be "whiten" or "conv"'),
        ({"convs_per_stage": 0}, "convs_per_stage must be a positive int"),
        ({"lookahead": -1}, "lookahead must be a non-negative int"),
        ({"aug_padding": 1.5}, "aug_padding must be a non-negative int"),
        ({"logit_scale": 0.0}, "logit_scale must be a positive number"),
        ({"image_shape": (6, 6)}, "image_shape must be"),
    ],
)
def test_bad_hyperparameters_name_the_problem(data, bad, message):
    (X, y), _ = data
    with pytest.raises(ValueError, match=message):
        ConvNet(**{**TINY, **bad}).fit(X, y)


@pytest.mark.parametrize("stem", ["conv", "whiten"])
def test_model_file_round_trip_and_declared_layout(data, tmp_path, stem):
    (X, y), (Xt, _) = data
    model = ConvNet(**TINY, stem=stem, dropout=0.2, logit_scale=0.5, epochs=1).fit(X, y)
    path = save_model(tmp_path / "m.npz", model)
    loaded = load_model(path).model
    np.testing.assert_array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))
    assert loaded.image_shape_ == (6, 6, 1)
    declared = get_model_spec("cnn").stored(ConvNet(**model.get_params()))
    state = model._state_dict()
    assert set(declared) == set(state)
    if stem == "whiten":  # the frozen filters are stored and read back
        np.testing.assert_array_equal(loaded.net_[1].weight, model.net_[1].weight)
        assert declared["net.1.weight"].shape == ("F", "channels", 2, 2)


def test_a_corrupted_model_file_is_refused_with_the_member_named(data, tmp_path):
    (X, y), _ = data
    model = ConvNet(**TINY, epochs=1).fit(X, y)
    path = save_model(tmp_path / "m.npz", model)
    with np.load(path, allow_pickle=False) as f:
        arrays = dict(f)
    arrays["model/net.4.weight"] = arrays["model/net.4.weight"][:2]  # a stage conv cut short
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"damaged.*net\.4\.weight has shape \(2, 8, 3, 3\)"):
        load_model(tmp_path / "bad.npz")
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["model/image_shape_"] = np.array([6, 3, 1])
    np.savez(tmp_path / "bad2.npz", **arrays)
    with pytest.raises(ValueError, match=r"image_shape_ \(6, 3, 1\) does not match rows of 36"):
        load_model(tmp_path / "bad2.npz")


def test_interrupted_fit_resumes_to_the_same_model(data, tmp_path, monkeypatch):
    from chainrule.train.solver import Solver

    (X, y), (Xv, yv) = data
    kw = dict(
        TINY, stem="whiten", dropout=0.1, epochs=3, optimizer="nesterov", learning_rate=0.05,
        lr_schedule="onecycle", weight_decay=5e-4, augment=True, aug_padding=1, lookahead=2,
    )  # fmt: skip
    straight = ConvNet(**kw).fit(X, y, Xv, yv)
    real_epoch = Solver._run_epoch

    def interrupted(self, *args):
        if self.epoch == 2:
            raise KeyboardInterrupt
        real_epoch(self, *args)

    monkeypatch.setattr(Solver, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ConvNet(**kw).fit(X, y, Xv, yv, checkpoint_dir=tmp_path)
    monkeypatch.setattr(Solver, "_run_epoch", real_epoch)
    resumed = ConvNet(**kw).fit(X, y, Xv, yv, checkpoint_dir=tmp_path, resume=True)
    assert resumed.history_["loss"] == straight.history_["loss"]
    for k, v in straight._state_dict().items():
        np.testing.assert_array_equal(resumed._state_dict()[k], v, err_msg=k)


def test_lookahead_wraps_the_optimizer_and_changes_the_trajectory(data):
    from chainrule import optim

    (X, y), _ = data
    kw = dict(TINY, epochs=1, optimizer="nesterov", learning_rate=0.05)
    from chainrule.models._options import make_optimizer

    model = ConvNet(**kw, lookahead=3)
    p = {**model._params(), "weight_decay": 0.0, "momentum": 0.9}
    opt = make_optimizer(nn.Sequential(nn.Linear(2, 2)), p)
    assert isinstance(opt, optim.Lookahead) and opt.k == 3 and opt.alpha == 0.5
    plain = ConvNet(**kw).fit(X, y)
    ahead = model.fit(X, y)
    assert plain.history_["loss"][:3] == ahead.history_["loss"][:3]  # k steps alike
    assert plain.history_["loss"][3] != ahead.history_["loss"][3]


def test_weight_decay_and_reg_act_on_convolutions_and_linear_weights_only(data):
    (X, y), _ = data
    model = ConvNet(**TINY, stem="whiten", epochs=1).fit(X, y)
    decayed = model._penalised(model.net_)
    assert [w.data.ndim for w in decayed] == [4, 4, 2]
    assert all(w is not model.net_[1].weight for w in decayed)  # the frozen filters


def test_spec_defaults_follow_the_data_size():
    spec = get_model_spec("cnn")
    assert spec.input_layout == "images" and not spec.compared_by_default
    small = spec.defaults(DataSummary(1150, 64, 10, (8, 8, 1), 1.0))
    large = spec.defaults(DataSummary(40000, 3072, 10, (32, 32, 3), 1.0))
    assert small["stem"] == "conv" and not small["augment"]  # digits: no flips
    assert large["stem"] == "whiten" and large["augment"] and large["aug_padding"] == 2
    assert large["optimizer"] == "nesterov" and large["lr_schedule"] == "onecycle"
    # small data sets get enough epochs for 180 steps: the digits' 10 epochs of 18
    # minibatches, 36 for a few hundred photos (5 minibatches), at most 50
    assert small["epochs"] == 10 and large["epochs"] == 18
    photos = spec.defaults(DataSummary(312, 64 * 48 * 3, 3, (48, 64, 3), 1.0))
    assert photos["epochs"] == 36 and photos["batch_size"] == 64
    assert spec.defaults(DataSummary(30, 4, 3, (1, 1, 4), 1.0))["epochs"] == 50
    for params in (small, large):
        ConvNet(**params)._check_hyperparameters()


def test_options_parse_channels_stem_and_lookahead():
    spec = get_model_spec("cnn")
    params, _ = spec.read_options({"--channels": "8,16", "--stem": "conv", "--lookahead": "5"})
    assert params == {"channels": (8, 16), "stem": "conv", "lookahead": 5}
    with pytest.raises(ValueError, match="--channels: expected channel widths"):
        spec.read_options({"--channels": "8,x"})
    with pytest.raises(ValueError, match="--lookahead: expected a non-negative integer"):
        spec.read_options({"--lookahead": "-2"})


def test_memory_bound_counts_the_activations_and_the_whitening_statistics():
    spec = get_model_spec("cnn")
    data = DataSummary(40000, 3072, 10, (32, 32, 3), 1.0)
    small = spec.memory(ConvNet(channels=(32, 64, 128), batch_size=64), data)
    large = spec.memory(ConvNet(channels=(32, 64, 128), batch_size=512), data)
    # the first stage's convolution output alone: 512 x 32 x 32 x 32 floats
    assert large - small >= 4 * (512 - 64) * 32 * 32 * 32
    whiten = spec.memory(ConvNet(channels=(32, 64, 128), stem="whiten", batch_size=64), data)
    assert whiten >= 8 * 500 * 31 * 31 * 12  # float64 2x2 patches of a chunk of 500 images


def test_filter_plot_is_the_stem_with_an_honest_title(data, tmp_path):
    from chainrule.models.spec import FitSummary
    from chainrule.report import plots

    (X, y), _ = data
    fitted = FitSummary((6, 6, 1), ["a", "b", "c"])
    for stem, shape, word in (
        ("conv", (8, 1, 3, 3), "trained"),
        ("whiten", (8, 1, 2, 2), "not trained"),
    ):
        model = ConvNet(**TINY, stem=stem, epochs=1).fit(X, y)
        (plot,) = get_model_spec("cnn").plots(model, fitted)
        assert plot.function == "plot_conv_filters" and plot.args[0].shape == shape
        assert word in plot.kwargs["title"]
        path = getattr(plots, plot.function)(
            *plot.args, path=tmp_path / f"{stem}.png", **plot.kwargs
        )
        assert path.stat().st_size > 0


def test_plot_conv_filters_checks_its_input(tmp_path):
    from chainrule.report.plots import plot_conv_filters

    with pytest.raises(ValueError, match="C 1 or 3"):
        plot_conv_filters(np.zeros((4, 2, 3, 3)), tmp_path / "x.png")
    rgb = np.random.default_rng(0).standard_normal((5, 3, 3, 3))
    assert plot_conv_filters(rgb, tmp_path / "rgb.png", max_filters=4).exists()


def photos(n, seed):
    """(n, 12, 16, 3) colour 'photos' of three objects (a red blob, a blue blob, green
    stripes) at random places over noise, values centred around 0; labels (n,)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(0, 0.4, (n, 12, 16, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:12, 0:16]
    for i in range(n):
        cy, cx = rng.uniform(3, 9), rng.uniform(3, 13)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)
        if y[i] == 2:
            X[i, ::3, :, 1] += 1.5
        else:
            X[i, :, :, 0 if y[i] == 0 else 2] += 2.0 * blob
    return X, y


@pytest.mark.parametrize("augment", [False, True])
def test_the_defaults_train_stably_on_a_few_dozen_photos(augment):
    # Small data: the small-data recipe, with enough epochs for its 180 steps (at most
    # 50); with crops, flips and test-time flips as well as without.
    X, y = photos(48, 0)
    Xt, yt = photos(60, 1)
    model = ConvNet(augment=augment, random_state=0).fit(X, y)
    assert model.fitted_params_["epochs"] == 50 and model.fitted_params_["stem"] == "conv"
    assert model.score(Xt, yt) >= 0.9  # chance: 1/3


# ----------------------------------------------------------------- the fast-CIFAR options


def test_dirac_init_and_the_shifts_learning_rate(data):
    (X, y), _ = data
    model = ConvNet(**TINY, init="dirac", bias_lr_factor=64, optimizer="nesterov",
                    learning_rate=0.05, weight_decay=5e-4, epochs=1).fit(X, y)  # fmt: skip
    net = model._build_network((6, 6, 1), 3, np.random.default_rng(0))
    convs = [m.weight.data for m in net.modules() if isinstance(m, nn.Conv2d)]
    for w in convs:
        k = min(w.shape[:2])
        np.testing.assert_array_equal(w[:k], nn.init.dirac((k, w.shape[1], 3, 3)))
    opt = model._optimizer(net, model._params(), len(X))
    weights, shifts = opt.param_groups
    assert [p.ndim for p in weights["params"]] == [4, 4, 4, 2]
    assert weights["lr"] == 0.05 and weights["weight_decay"] == 5e-4
    assert shifts["lr"] == pytest.approx(3.2) and shifts["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in shifts["params"])
    opt.lr = 0.01  # as a schedule: the shifts keep their 64x
    assert shifts["lr"] == pytest.approx(0.64)


def test_alternating_flips_train_reproducibly_and_resume_exactly(data, tmp_path, monkeypatch):
    from chainrule.data.augment import CropFlip
    from chainrule.train.solver import Solver

    (X, y), (Xv, yv) = data
    kw = dict(TINY, epochs=3, augment=True, aug_padding=1, flips="alternate",
              optimizer="nesterov", learning_rate=0.05, lr_schedule="onecycle")  # fmt: skip
    model = ConvNet(**kw)
    model.image_shape_ = (6, 6, 1)
    aug = model._augmentation(model._params())
    assert isinstance(aug, CropFlip) and aug.flips == "alternate" and aug.seed == 0
    straight = ConvNet(**kw).fit(X, y, Xv, yv)
    random_flips = ConvNet(**{**kw, "flips": "random"}).fit(X, y, Xv, yv)
    assert straight.history_["loss"] != random_flips.history_["loss"]
    real_epoch = Solver._run_epoch

    def interrupted(self, *args):
        if self.epoch == 2:
            raise KeyboardInterrupt
        real_epoch(self, *args)

    monkeypatch.setattr(Solver, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ConvNet(**kw).fit(X, y, Xv, yv, checkpoint_dir=tmp_path)
    monkeypatch.setattr(Solver, "_run_epoch", real_epoch)
    resumed = ConvNet(**kw).fit(X, y, Xv, yv, checkpoint_dir=tmp_path, resume=True)
    assert resumed.history_["loss"] == straight.history_["loss"]


def test_test_time_shifts_average_six_views_with_weights(data):
    from chainrule.autograd.arraymath import softmax
    from chainrule.data.augment import crop_flip

    (X, y), (Xt, _) = data
    model = ConvNet(**TINY, epochs=1, augment=True, test_time_shift=1).fit(X, y)
    images = Xt  # (N, H, W, C)
    n = len(images)

    def proba(view):
        return softmax(model._scores(np.ascontiguousarray(view)))

    def shifted(at, mirror):
        return crop_flip(images, np.full(n, at), np.full(n, at), np.full(n, mirror), padding=1)

    want = proba(images) + proba(images[:, :, ::-1])
    want += 0.5 * sum(proba(shifted(at, m)) for at in (0, 2) for m in (False, True))
    want /= 4.0
    np.testing.assert_allclose(model.predict_proba(Xt), want, rtol=1e-6, atol=1e-7)
    assert (model.predict(Xt) == want.argmax(axis=1)).all()
    no_flips = ConvNet(**TINY, epochs=1, test_time_shift=1).fit(X, y)
    # without flips: the image and its two shifts
    p = softmax(no_flips._scores(images))
    p += 0.5 * sum(softmax(no_flips._scores(shifted(at, False))) for at in (0, 2))
    np.testing.assert_allclose(no_flips.predict_proba(Xt), p / 2.0, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"init": "orthogonal"}, 'init must be "kaiming" or "dirac"'),
        ({"bias_lr_factor": 0}, "bias_lr_factor must be a positive number"),
        ({"bias_lr_factor": float("nan")}, "bias_lr_factor must be a positive number"),
        ({"lookahead": 2, "lookahead_ramp": float("nan")}, "lookahead_ramp must be a non-negative"),
        ({"flips": "sometimes"}, 'flips must be "random" or "alternate"'),
        ({"test_time_shift": -1}, "test_time_shift must be a non-negative int"),
        ({"muon_lr": 0}, "muon_lr must be a positive number"),
        ({"lookahead": 2, "lookahead_alpha": 0}, r"lookahead_alpha must be in \(0, 1\]"),
        ({"lookahead": 2, "lookahead_ramp": -0.5}, "lookahead_ramp must be a non-negative"),
        ({"muon_momentum": 1.0}, r"muon_momentum must be in \(0, 1\)"),
    ],
)
def test_bad_recipe_options_name_the_problem(data, bad, message):
    (X, y), _ = data
    with pytest.raises(ValueError, match=message):
        ConvNet(**{**TINY, **bad}).fit(X, y)


def test_recipe_options_on_the_command_line():
    spec = get_model_spec("cnn")
    params, _ = spec.read_options(
        {"--init": "dirac", "--bias-lr-factor": "64", "--flips": "alternate",
         "--test-time-shift": "1", "--muon-lr": "0.2", "--muon-momentum": "0.5"}
    )  # fmt: skip
    assert params == {"init": "dirac", "bias_lr_factor": 64.0, "flips": "alternate",
                      "test_time_shift": 1, "muon_lr": 0.2, "muon_momentum": 0.5}  # fmt: skip
    with pytest.raises(ValueError, match="--test-time-shift: expected a non-negative integer"):
        spec.read_options({"--test-time-shift": "x"})


def test_lookahead_alpha_and_ramp_over_a_fraction_of_the_run(data):
    from chainrule import optim
    from chainrule.train.solver import batches_per_epoch

    (X, y), (Xt, yt) = data
    kw = dict(TINY, optimizer="nesterov", learning_rate=0.05, lr_schedule="onecycle", epochs=6,
              lookahead=3, lookahead_alpha=0.226, lookahead_ramp=0.5)  # fmt: skip
    model = ConvNet(**kw).fit(X, y)
    assert model.score(Xt, yt) > 0.8
    opt = model._optimizer(model.net_, model._params(), len(X))
    assert isinstance(opt, optim.Lookahead) and (opt.k, opt.alpha) == (3, 0.226)
    steps = batches_per_epoch(len(X), TINY["batch_size"]) * 6
    assert opt.ramp_steps == round(steps / 2) and opt.current_alpha() == 1.0
    # without a ramp the pull is alpha from the first step
    other = ConvNet(**{**kw, "lookahead_ramp": 0}).fit(X, y)
    plain = other._optimizer(model.net_, other._params(), len(X))
    assert plain.ramp_steps is None and plain.current_alpha() == 0.226
    spec = get_model_spec("cnn")
    params, _ = spec.read_options({"--lookahead-alpha": "0.2", "--lookahead-ramp": "1"})
    assert params == {"lookahead_alpha": 0.2, "lookahead_ramp": 1.0}


def test_muon_orthogonalises_the_filters_and_steps_the_rest_by_nesterov_sgd(data):
    from chainrule import optim
    from chainrule.models._options import schedule_factory

    (X, y), (Xt, yt) = data
    kw = dict(TINY, optimizer="muon", learning_rate=0.05, muon_lr=0.2, muon_momentum=0.6,
              weight_decay=5e-4, bias_lr_factor=4, lr_schedule="onecycle")  # fmt: skip
    model = ConvNet(**kw, epochs=6).fit(X, y)
    assert model.score(Xt, yt) > 0.8
    opt = model._optimizer(model.net_, model._params(), len(X))
    assert isinstance(opt, optim.Muon)
    filters, weights, shifts = opt.param_groups
    convs = [m.weight for m in model.net_.modules() if isinstance(m, nn.Conv2d)]
    assert filters["params"] == convs and filters["orthogonalize"]
    assert filters["normalize_weights"] and filters["weight_decay"] == 0.0
    assert (filters["lr"], filters["momentum"]) == (0.2, 0.6)
    assert [p.ndim for p in weights["params"]] == [2] and not weights["orthogonalize"]
    assert (weights["lr"], weights["momentum"], weights["weight_decay"]) == (0.05, 0.9, 5e-4)
    assert shifts["lr"] == pytest.approx(0.2) and not shifts["orthogonalize"]
    # the one-cycle schedule scales the rates and leaves each group's momentum alone
    sched = schedule_factory(model._params())(opt, 10)
    for _ in range(3):
        sched.step()
    assert filters["momentum"] == 0.6 and weights["momentum"] == 0.9
    assert filters["lr"] / weights["lr"] == pytest.approx(4.0)
    # the filters keep the norm sqrt(out_channels) they are given at each step
    for conv in convs:
        assert np.linalg.norm(conv.data) == pytest.approx(np.sqrt(conv.shape[0]), rel=0.2)
