"""TwoLayerNet and FullyConnectedNet: gradients, overfitting a small set, estimator
conventions, model files, and the universal-approximation example."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from chainrule import Tensor
from chainrule.data import load
from chainrule.gradcheck import numeric_gradient, rel_error
from chainrule.models._base import NotFittedError
from chainrule.models.mlp import FullyConnectedNet, TwoLayerNet

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits():
    ds = load("digits")
    X = ds.images.reshape(len(ds.images), -1).astype(np.float32) / 255.0
    X -= X.mean(axis=0)
    return X, ds.labels


def _blobs(n=240, d=10, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X @ rng.standard_normal((d, c))).argmax(1)
    return X, y


# ---------------------------------------------------------------- gradients


def test_full_network_loss_gradient_with_dropout_batchnorm_and_reg_float64():
    model = FullyConnectedNet(
        hidden_dims=(7, 6), dropout=0.3, batchnorm=True, reg=0.05, label_smoothing=0.1
    )
    rng = np.random.default_rng(0)
    net = model._build_network((5,), 4, rng, dtype=np.float64)
    for m in net.modules():  # batch-norm scales and shifts away from 1 and 0
        if type(m).__name__ == "BatchNorm1d":
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.data.shape)
            m.bias.data[...] = rng.uniform(-0.5, 0.5, m.bias.data.shape)
    loss_fn = model._make_loss(net, model._params())
    X = rng.standard_normal((9, 5))
    y = rng.integers(0, 4, 9)
    start = rng.bit_generator.state

    def loss():
        rng.bit_generator.state = start  # the same dropout masks every time
        return loss_fn(net(Tensor(X)), y)

    out = loss()
    assert out.dtype == np.float64
    net.zero_grad()
    out.backward()
    params = dict(net.named_parameters())
    # 3 weights, no bias before batch norm, gamma and beta of 2 batch norms, the last bias
    assert len(params) == 3 + 2 * 2 + 1
    for name, p in params.items():
        num = numeric_gradient(lambda _: loss().item(), p.data, h=1e-5)
        assert rel_error(p.grad, num) < 1e-6, name


def test_reg_penalises_weights_only(digits):
    X, y = digits
    kw = dict(hidden_dims=(32,), epochs=10, batch_size=50, random_state=0, verbose=False)
    plain = FullyConnectedNet(**kw).fit(X[:200], y[:200])
    strong = FullyConnectedNet(reg=0.5, **kw).fit(X[:200], y[:200])
    w_plain = plain.net_[0].weight.data
    w_strong = strong.net_[0].weight.data
    assert np.sum(w_strong**2) < 0.8 * np.sum(w_plain**2)
    # The penalty is exactly reg * sum(W**2) over the weight matrices: no biases.
    from chainrule.nn.functional import cross_entropy

    net = strong.net_
    scores = net(Tensor(X[:20]))
    extra = (
        strong._make_loss(net, strong._params())(scores, y[:20]).item()
        - cross_entropy(scores, y[:20]).item()
    )
    weights = [m.weight.data for m in net if type(m).__name__ == "Linear"]
    assert extra == pytest.approx(
        0.5 * sum(np.sum(W.astype(np.float64) ** 2) for W in weights), rel=1e-4
    )


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("hidden", [(100, 100), (100, 100, 100, 100)], ids=["3-layer", "5-layer"])
def test_overfits_fifty_images(digits, hidden):
    X, y = digits
    model = FullyConnectedNet(
        hidden_dims=hidden,
        learning_rate=5e-3,
        batch_size=25,
        epochs=30,
        random_state=0,
        verbose=False,
    ).fit(X[:50], y[:50])
    assert model.score(X[:50], y[:50]) == 1.0
    assert model.history_["train_acc"][-1] == 1.0


def test_two_layer_net_learns_digits(digits):
    X, y = digits
    model = TwoLayerNet(
        hidden_size=64, epochs=15, batch_size=50, learning_rate=3e-3, random_state=0, verbose=False
    )
    model.fit(X[:800], y[:800], X[800:], y[800:])
    assert model.score(X[800:], y[800:]) > 0.9
    assert [type(m).__name__ for m in model.net_] == ["Linear", "ReLU", "Linear"]
    assert model.net_[0].weight.shape == (64, 64)


def test_best_epoch_is_kept_and_history_recorded(digits):
    X, y = digits
    model = FullyConnectedNet(
        hidden_dims=(64, 64),
        batchnorm=True,
        dropout=0.2,
        epochs=4,
        batch_size=100,
        lr_schedule="cosine",
        random_state=0,
        verbose=False,
    )
    model.fit(X[:600], y[:600], X[600:], y[600:])
    h = model.history_
    assert len(h["val_acc"]) == len(h["train_acc"]) == len(h["lr"]) == 4
    assert len(h["loss"]) == 4 * 6
    assert h["best_val_acc"] == max(h["val_acc"]) == model.score(X[600:], y[600:])
    assert h["lr"][0] > h["lr"][-1]  # cosine decay


def test_same_seed_same_model_and_labels_of_any_value(digits):
    X, y = digits
    labels = np.array([3, 7, 11, 20, 21, 40, 41, 42, 50, 99])[y[:300]]
    kw = dict(hidden_dims=(32,), dropout=0.1, epochs=2, random_state=5, verbose=False)
    a = FullyConnectedNet(**kw).fit(X[:300], labels)
    b = FullyConnectedNet(**kw).fit(X[:300], labels)
    np.testing.assert_array_equal(a.predict_proba(X[:50]), b.predict_proba(X[:50]))
    assert set(a.predict(X)) <= set(labels)
    np.testing.assert_array_equal(a.classes_, np.unique(labels))
    p = a.predict_proba(X[:50])
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a.classes_[p.argmax(1)], a.predict(X[:50]))


def test_augmentation_changes_training_and_needs_the_image_shape(digits):
    X, y = digits
    kw = dict(hidden_dims=(32,), epochs=2, random_state=0, verbose=False)
    plain = FullyConnectedNet(**kw).fit(X[:300], y[:300])
    aug = FullyConnectedNet(augment=True, image_shape=(8, 8, 1), aug_padding=1, **kw)
    aug.fit(X[:300], y[:300])
    assert plain.history_["loss"] != aug.history_["loss"]
    with pytest.raises(ValueError, match="image_shape"):
        FullyConnectedNet(augment=True, **kw).fit(X[:300], y[:300])
    with pytest.raises(ValueError, match="does not match"):
        FullyConnectedNet(augment=True, image_shape=(8, 8, 3), **kw).fit(X[:300], y[:300])


def test_test_time_flip_averages_the_image_and_its_mirror(digits):
    X, y = digits
    kw = dict(
        hidden_dims=(32,),
        epochs=3,
        augment=True,
        image_shape=(8, 8, 1),
        verbose=False,
        random_state=0,
    )
    model = FullyConnectedNet(**kw).fit(X[:600], y[:600], X[600:900], y[600:900])
    mirrored = X.reshape(-1, 8, 8, 1)[:, :, ::-1].reshape(len(X), -1)

    def softmax(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    expected = (
        softmax(model.decision_function(X)) + softmax(model.decision_function(mirrored))
    ) / 2
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-5, atol=1e-6)
    # the best epoch was chosen looking at each image once
    single = np.mean(model.decision_function(X[600:900]).argmax(1) == y[600:900])
    assert model.history_["best_val_acc"] == single
    model.set_params(test_time_flip=False)
    np.testing.assert_allclose(
        model.predict_proba(X), softmax(model.decision_function(X)), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="image_shape"):
        FullyConnectedNet(epochs=1, test_time_flip=True, verbose=False).fit(X[:100], y[:100])
    with pytest.raises(TypeError, match="test_time_flip"):
        FullyConnectedNet(epochs=1, test_time_flip="yes", verbose=False).fit(X[:100], y[:100])


@pytest.mark.parametrize("opt", ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_every_optimizer_trains(digits, opt):
    X, y = digits
    lr = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05}.get(opt, 3e-3)
    model = FullyConnectedNet(
        hidden_dims=(64,),
        optimizer=opt,
        learning_rate=lr,
        epochs=6,
        batch_size=50,
        weight_decay=1e-4,
        lr_schedule="onecycle",
        random_state=0,
        verbose=False,
    ).fit(X[:500], y[:500])
    assert model.history_["epoch_loss"][-1] < 0.75 * model.history_["epoch_loss"][0]
    assert model.history_["train_acc"][-1] > 0.7


def test_interrupted_fit_resumes_to_the_same_model(tmp_path, digits, monkeypatch):
    import chainrule.data.augment as augment_module

    X, y = digits
    kw = dict(
        hidden_dims=(32,),
        batchnorm=True,
        dropout=0.1,
        epochs=3,
        batch_size=100,
        lr_schedule="onecycle",
        augment=True,
        image_shape=(8, 8, 1),
        aug_padding=1,
        random_state=0,
        verbose=False,
    )
    data = (X[:400], y[:400], X[400:600], y[400:600])
    straight = FullyConnectedNet(**kw).fit(*data)

    real = augment_module.random_crop_flip_flat
    calls = []

    def crash_in_third_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 * 4 + 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(augment_module, "random_crop_flip_flat", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        FullyConnectedNet(**kw).fit(*data, checkpoint_dir=tmp_path)
    monkeypatch.setattr(augment_module, "random_crop_flip_flat", real)
    resumed = FullyConnectedNet(**kw).fit(*data, checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(resumed.predict_proba(X), straight.predict_proba(X))
    assert resumed.history_["loss"] == straight.history_["loss"]
    for k, v in straight._state_dict().items():
        np.testing.assert_array_equal(resumed._state_dict()[k], v)


def test_resume_refuses_the_checkpoint_of_other_hyperparameters_or_data(tmp_path, digits):
    X, y = digits
    kw = dict(hidden_dims=(16,), epochs=2, batch_size=100, random_state=0, verbose=False)
    FullyConnectedNet(**{**kw, "epochs": 1}).fit(X[:300], y[:300], checkpoint_dir=tmp_path)
    kw["epochs"] = 1
    with pytest.raises(
        ValueError, match=r"params.learning_rate: 0\.003 in the checkpoint, 0\.01 now"
    ):
        FullyConnectedNet(**{**kw, "learning_rate": 1e-2}).fit(
            X[:300], y[:300], checkpoint_dir=tmp_path, resume=True
        )
    with pytest.raises(ValueError, match="n_train: 300 in the checkpoint, 400 now"):
        FullyConnectedNet(**kw).fit(X[:400], y[:400], checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="caller: None in the checkpoint, {'data': 'elsewhere'}"):
        FullyConnectedNet(**kw).fit(
            X[:300],
            y[:300],
            checkpoint_dir=tmp_path,
            resume=True,
            checkpoint_settings={"data": "elsewhere"},
        )
    # epochs is a setting of the run (it sizes the schedule); verbose is not.
    with pytest.raises(ValueError, match="params.epochs: 1 in the checkpoint, 2 now"):
        FullyConnectedNet(**{**kw, "epochs": 2}).fit(
            X[:300], y[:300], checkpoint_dir=tmp_path, resume=True
        )
    quiet = FullyConnectedNet(**{**kw, "verbose": True})
    quiet.fit(X[:300], y[:300], checkpoint_dir=tmp_path, resume=True)
    assert len(quiet.history_["epoch_loss"]) == 1


# ---------------------------------------------------------------- conventions and files


def test_get_set_params_and_clone():
    model = FullyConnectedNet(hidden_dims=(5, 4), dropout=0.25)
    params = model.get_params()
    assert params["hidden_dims"] == (5, 4) and params["dropout"] == 0.25
    assert model.set_params(reg=0.1) is model and model.reg == 0.1
    assert TwoLayerNet(hidden_size=7).get_params()["hidden_size"] == 7
    assert "hidden_dims" not in TwoLayerNet().get_params()
    sklearn_base = pytest.importorskip("sklearn.base")
    c = sklearn_base.clone(model)
    assert c.get_params() == model.get_params() and c is not model


def test_state_dict_round_trip_through_a_model_file(tmp_path, digits):
    from chainrule.models.io import load_model, save_model

    X, y = digits
    model = FullyConnectedNet(
        hidden_dims=(32, 16), batchnorm=True, dropout=0.2, epochs=2, random_state=0, verbose=False
    ).fit(X[:300], y[:300])
    state = model._state_dict()
    assert "net.1.running_mean" in state and "net.1.running_var" in state
    assert not np.allclose(state["net.1.running_var"], 1.0)  # statistics were learned
    path = tmp_path / "mlp.npz"
    save_model(path, model)
    loaded = load_model(path).model
    assert type(loaded) is FullyConnectedNet
    assert loaded.get_params()["hidden_dims"] in ((32, 16), [32, 16])
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    json.dumps(model.get_params())  # hyperparameters are plain JSON values

    two = TwoLayerNet(hidden_size=8, epochs=1, random_state=0, verbose=False).fit(X, y)
    save_model(tmp_path / "two.npz", two)
    np.testing.assert_array_equal(load_model(tmp_path / "two.npz").model.predict(X), two.predict(X))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"hidden_dims": (10, 0)}, "hidden_dims"),
        ({"hidden_dims": "big"}, "hidden_dims"),
        ({"dropout": 1.0}, "dropout"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"lr_schedule": "sometimes"}, "lr_schedule"),
        ({"schedule_per": "day"}, "schedule_per"),
        ({"epochs": 0}, "epochs"),
        ({"reg": -0.1}, "reg"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"batchnorm": "yes"}, "batchnorm"),
        ({"weight_scale": 0}, "weight_scale"),
    ],
)
def test_bad_hyperparameters_are_refused_at_fit(params, match):
    X, y = _blobs()
    model = FullyConnectedNet(**params, verbose=False)  # no validation in __init__
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(X, y)


def test_bad_data_is_refused():
    X, y = _blobs()
    model = FullyConnectedNet(epochs=1, verbose=False)
    with pytest.raises(NotFittedError):
        model.predict(X)
    with pytest.raises(ValueError, match="at least 2 classes in y, got 1 class"):
        model.fit(X, np.zeros(len(X), int))
    with pytest.raises(ValueError, match="not seen"):
        model.fit(X, y, X[:10], np.full(10, 7))
    with pytest.raises(ValueError, match="NaN"):
        Xn = X.copy()
        Xn[3, 2] = np.nan
        model.fit(Xn, y)
    with pytest.raises(ValueError, match="features"):
        model.fit(X, y, X[:10, :5], y[:10])
    model.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :4])
    with pytest.raises(ValueError, match="hidden_size"):
        TwoLayerNet(hidden_size=0).fit(X, y)


# ---------------------------------------------------------------- the example


def test_universal_approximation_example(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "universal_approximation", ROOT / "examples" / "universal_approximation.py"
    )
    ua = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ua)

    x = np.linspace(ua.LO, ua.HI, 400)
    net, losses = ua.train_two_layer(x[::4], ua.target(x[::4]), hidden=30, steps=600)
    terms, b2 = ua.relu_terms(net, x)
    fit = terms.sum(1) + b2
    with_engine = net(Tensor(x.reshape(-1, 1))).data[:, 0]
    np.testing.assert_allclose(fit, with_engine, atol=1e-12)  # the fit IS a sum of ReLUs
    rmse = np.sqrt(np.mean((fit - ua.target(x)) ** 2))
    assert losses[-1] < 0.01 * losses[0]
    assert rmse < 0.15

    errs = []
    for k in (6, 24):
        parts = ua.bump_parts(*ua.bump_network(ua.target, k), x)
        errs.append(np.sqrt(np.mean((parts.sum(1) - ua.target(x)) ** 2)))
    assert errs[1] < 0.25 * errs[0] and errs[1] < 0.05  # more bumps, closer fit

    out = tmp_path / "ua.png"
    assert ua.main(["--out", str(out), "--steps", "200", "--hidden", "10"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
