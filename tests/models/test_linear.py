"""LinearSVM and SoftmaxClassifier: learning, gradients, estimator conventions, state, errors."""

import numpy as np
import pytest

from chainrule import data as cr_data
from chainrule.gradcheck import numeric_gradient, rel_error
from chainrule.models import io as model_io
from chainrule.models._base import NotFittedError
from chainrule.models.linear import LinearSVM, SoftmaxClassifier
from chainrule.report.plots import plot_loss_curve, plot_weight_templates

MODELS = [LinearSVM, SoftmaxClassifier]


def separable_problem(n_per_class=40, d=5, n_classes=3, seed=0):
    """Gaussian blobs far apart: linearly separable with a wide margin."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, d)) * 4
    X = np.concatenate([c + 0.3 * rng.standard_normal((n_per_class, d)) for c in centers])
    y = np.repeat(np.arange(n_classes), n_per_class)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def digits():
    train = cr_data.load("digits", split="train", progress=False)
    val = cr_data.load("digits", split="val", progress=False)
    pre = cr_data.Preprocessor().fit(train.images)
    return pre.transform(train.images), train.labels, pre.transform(val.images), val.labels


def fast(cls, **kw):
    params = dict(epochs=30, batch_size=20, learning_rate=0.1, reg=1e-4, lr_schedule=None)
    params.update(random_state=0, verbose=False)
    params.update(kw)
    return cls(**params)


# ------------------------------------------------------------------ learning


@pytest.mark.parametrize("cls", MODELS)
def test_learns_separable_problem_perfectly(cls):
    X, y = separable_problem()
    model = fast(cls).fit(X, y)
    assert model.score(X, y) == 1.0
    # The objective decreased.
    assert model.loss_history_[-20:].mean() < 0.2 * model.loss_history_[:5].mean()


@pytest.mark.parametrize("cls", MODELS)
def test_digits_high_accuracy_with_the_defaults(cls, digits):
    # "auto": the rate tuned on CIFAR-10 rows, scaled to the digits' smaller rows (about
    # 30 times larger), and enough epochs for a few hundred updates.
    X, y, Xv, yv = digits
    model = cls(random_state=0).fit(X, y, Xv, yv)
    assert model.score(Xv, yv) > 0.95
    assert model.learning_rate == "auto" and model.fitted_params_["learning_rate"] >= 0.3
    assert len(model.history_["val_acc"]) == model.fitted_params_["epochs"]
    assert model.history_["val_acc"][-1] == pytest.approx(model.score(Xv, yv))
    assert model.history_["train_acc"][-1] > model.history_["train_acc"][0]


@pytest.mark.parametrize("cls", MODELS)
def test_arbitrary_integer_labels(cls):
    X, y = separable_problem()
    labels = np.array([-3, 7, 42])[y]
    model = fast(cls).fit(X, labels)
    np.testing.assert_array_equal(model.classes_, [-3, 7, 42])
    np.testing.assert_array_equal(model.predict(X), labels)


# ------------------------------------------------------------------ objective and gradient


def _lecture_loss_and_grads(cls, X, y, W, b, reg):
    """The lecture's naive loops (cs231n ``svm_loss_naive`` / ``softmax_loss_naive``, with a
    bias): mean data loss + reg * sum(W**2), and its gradients dW, db. float64."""
    n = len(X)
    scores = X @ W + b
    loss, dW, db = 0.0, np.zeros_like(W), np.zeros_like(b)
    for i in range(n):
        s, yi = scores[i], y[i]
        if cls is LinearSVM:
            for j in range(W.shape[1]):
                margin = s[j] - s[yi] + 1
                if j != yi and margin > 0:
                    loss += margin
                    dW[:, j] += X[i]
                    dW[:, yi] -= X[i]
                    db[j] += 1
                    db[yi] -= 1
        else:
            p = np.exp(s - s.max())
            p /= p.sum()
            loss -= np.log(p[yi])
            p[yi] -= 1
            dW += np.outer(X[i], p)
            db += p
    loss = loss / n + reg * np.sum(W * W)
    return loss, dW / n + 2 * reg * W, db / n


def _training_objective(model, W, b):
    """The layer and the loss function that `fit` gives the Solver, with weights W, b."""
    layer = model._build_network((W.shape[0],), W.shape[1], np.random.default_rng(0))
    layer.weight.data = W.copy()
    layer.bias.data = b.copy()
    return layer, model._make_loss(layer, model._params())


@pytest.mark.parametrize("cls", MODELS)
def test_training_objective_and_gradients_are_the_lecture_formulas(cls):
    # What the Solver minimises: value and reverse-mode gradients against the lecture's
    # naive loops and against centered differences, float64; the bias is not regularized.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 6))
    y = rng.integers(0, 4, size=12)
    W0 = 0.5 * rng.standard_normal((6, 4))
    b0 = 0.5 * rng.standard_normal(4)
    model = cls(reg=0.37)
    layer, loss_fn = _training_objective(model, W0, b0)
    loss = loss_fn(layer(X), y)
    loss.backward()
    want, dW, db = _lecture_loss_and_grads(cls, X, y, W0, b0, 0.37)
    assert loss.item() == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(layer.weight.grad, dW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, db, rtol=1e-10, atol=1e-12)

    def objective(Wv, bv):
        layer, loss_fn = _training_objective(model, Wv, bv)
        return loss_fn(layer(X), y).item()

    num_W = numeric_gradient(lambda w: objective(w, b0), W0.copy(), h=1e-5)
    num_b = numeric_gradient(lambda v: objective(W0, v), b0.copy(), h=1e-5)
    assert rel_error(layer.weight.grad, num_W) < 1e-7
    assert rel_error(layer.bias.grad, num_b) < 1e-7


@pytest.mark.parametrize("cls", MODELS)
def test_fit_is_minibatch_sgd_with_the_rate_decayed_every_epoch(cls):
    # Two epochs of fit against the lecture's SGD loop written out: the same initial
    # weights, the same shuffled minibatches, W -= lr * dW with the lecture's gradients,
    # lr *= gamma after each epoch, the "exponential" schedule's gamma for 2 epochs
    # (down to 1% by the end of the run): 0.01 ** (1 / 2).
    X, y = separable_problem()
    model = fast(cls, epochs=2, learning_rate=0.05, reg=1e-2, lr_schedule="exponential")
    model.fit(X, y)
    rng = np.random.default_rng(0)
    W = (0.001 * rng.standard_normal((5, 3))).astype(np.float32).astype(np.float64)
    b = np.zeros(3)
    lr = 0.05
    for _epoch in range(2):
        order = rng.permutation(len(X))
        for start in range(0, len(X), 20):
            idx = order[start : start + 20]
            _, dW, db = _lecture_loss_and_grads(cls, X[idx].astype(np.float64), y[idx], W, b, 1e-2)
            W -= lr * dW
            b -= lr * db
        lr *= 0.01 ** (1 / 2)
    np.testing.assert_allclose(model.W_, W, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.b_, b, rtol=1e-4, atol=1e-6)
    assert len(model.loss_history_) == 2 * 6


# ------------------------------------------------------------------ inference


@pytest.mark.parametrize("cls", MODELS)
def test_outputs_shapes_and_dtypes(cls):
    X, y = separable_problem()
    model = fast(cls, epochs=2).fit(X.astype(np.float64), y)
    assert model.W_.shape == (5, 3) and model.W_.dtype == np.float32
    assert model.b_.shape == (3,) and model.b_.dtype == np.float32
    X = X.astype(np.float32)
    scores = model.decision_function(X)
    assert scores.shape == (len(X), 3) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, X @ model.W_ + model.b_, rtol=1e-5, atol=1e-5)
    # float64 input is scored in float64 (the same weights)
    scores64 = model.decision_function(X.astype(np.float64))
    assert scores64.dtype == np.float64
    np.testing.assert_allclose(scores64, scores, rtol=1e-5, atol=1e-5)
    proba = model.predict_proba(X)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(1), scores.argmax(1))
    assert model.predict(X).dtype == np.int64
    assert model.loss_history_.shape == (2 * 6,)  # 120 samples / 20 per batch, 2 epochs


def test_predict_proba_stable_for_huge_scores():
    X, y = separable_problem()
    model = fast(SoftmaxClassifier, epochs=1).fit(X, y)
    model.W_ = model.W_ * 1e6  # the layer's weights, set through W_
    assert np.abs(model.net_.weight.data).max() > 1e2
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


def test_chunked_scoring_matches_single_product(monkeypatch):
    import chainrule.models._network as network

    X, y = separable_problem()
    model = fast(LinearSVM, epochs=1).fit(X, y)
    whole = model.decision_function(X)
    monkeypatch.setattr(network, "_PREDICT_BATCH", 7)
    np.testing.assert_allclose(model.decision_function(X), whole, rtol=1e-6)


# ------------------------------------------------------------------ determinism and state


@pytest.mark.parametrize("cls", MODELS)
def test_random_state_determinism(cls):
    X, y = separable_problem(seed=1)
    a = fast(cls, epochs=3).fit(X, y)
    b = fast(cls, epochs=3).fit(X, y)
    np.testing.assert_array_equal(a.W_, b.W_)
    np.testing.assert_array_equal(a.loss_history_, b.loss_history_)
    c = fast(cls, epochs=3, random_state=None)
    c.set_params(random_state=1).fit(X, y)
    assert not np.array_equal(a.W_, c.W_)
    # A Generator is accepted and consumed.
    d = fast(cls, epochs=3, random_state=np.random.default_rng(0)).fit(X, y)
    np.testing.assert_array_equal(a.W_, d.W_)


def test_initial_weights_small_and_seeded():
    X, y = separable_problem()
    model = fast(LinearSVM, epochs=1, learning_rate=1e-12).fit(X, y)
    W0 = 0.001 * np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_allclose(model.W_, W0, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("cls", MODELS)
def test_state_round_trip(cls):
    X, y = separable_problem()
    model = fast(cls, epochs=3).fit(X, y, X[:30], y[:30])
    state = model._state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert sorted(state) == ["classes_", "n_features_in_", "net.bias", "net.weight"]
    fresh = cls(**model.fitted_params_)
    fresh._load_state_dict({k: v.copy() for k, v in state.items()})
    np.testing.assert_array_equal(fresh.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(fresh.classes_, model.classes_)
    np.testing.assert_array_equal(fresh.W_, model.W_)
    assert fresh.n_features_in_ == 5 and not hasattr(fresh, "history_")
    with pytest.raises(ValueError, match="missing keys: weight"):
        fresh._load_state_dict({k: v for k, v in state.items() if k != "net.weight"})
    with pytest.raises(ValueError, match=r"net\.bias|bias: shape \(7,\)"):
        fresh._load_state_dict({**state, "net.bias": np.zeros(7, np.float32)})


def test_saved_through_model_files(tmp_path):
    X, y = separable_problem()
    model = fast(SoftmaxClassifier, epochs=2).fit(X, y)
    path = tmp_path / "m.npz"
    model_io.save_model(path, model, classes=["a", "b", "c"])
    loaded = model_io.load_model(path).model
    assert isinstance(loaded, SoftmaxClassifier)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


# ------------------------------------------------------------------ estimator conventions


def test_get_set_params_and_repr():
    m = LinearSVM(learning_rate=0.5, reg=0.0)
    params = m.get_params()
    assert params["learning_rate"] == 0.5 and params["reg"] == 0.0
    assert set(params) == {
        "learning_rate",
        "reg",
        "epochs",
        "batch_size",
        "lr_schedule",
        "random_state",
        "verbose",
    }
    assert m.set_params(epochs=3) is m and m.epochs == 3
    assert "learning_rate=0.5" in repr(m)
    with pytest.raises(ValueError, match="invalid parameter"):
        m.set_params(momentum=0.9)


@pytest.mark.parametrize("cls", MODELS)
def test_sklearn_clone_and_cross_val_score(cls):
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    X, y = separable_problem()
    model = fast(cls, epochs=5)
    copy = clone(model)
    assert copy.get_params() == model.get_params() and copy is not model
    scores = cross_val_score(model, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() == 1.0


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "params, match",
    [
        ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
        ({"learning_rate": "0.1"}, "learning_rate must be a finite number"),
        ({"reg": -1.0}, "reg must be a finite number >= 0"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"epochs": 2.5}, "epochs must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of"),
    ],
)
def test_bad_hyperparameters(params, match):
    X, y = separable_problem()
    with pytest.raises(ValueError, match=match):
        fast(LinearSVM, **params).fit(X, y)


@pytest.mark.parametrize("cls", MODELS)
def test_bad_data(cls):
    X, y = separable_problem()
    m = fast(cls, epochs=1)
    with pytest.raises(ValueError, match="NaN"):
        Xn = X.copy()
        Xn[3, 1] = np.nan
        m.fit(Xn, y)
    with pytest.raises(ValueError, match="different numbers of samples"):
        m.fit(X, y[:-1])
    with pytest.raises(ValueError, match="2-D"):
        m.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        m.fit(X, y + 0.5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        m.fit(X, np.zeros(len(X), dtype=int))
    with pytest.raises(ValueError, match="both X_val and y_val"):
        m.fit(X, y, X_val=X)
    with pytest.raises(ValueError, match="X_val has 4 features"):
        m.fit(X, y, X[:, :4], y)
    with pytest.raises(NotFittedError):
        m.predict(X)
    m.fit(X, y)
    with pytest.raises(ValueError, match="X has 4 features"):
        m.predict(X[:, :4])


def test_divergence_is_reported():
    X, y = separable_problem()
    model = fast(LinearSVM, learning_rate=1e38, epochs=3)
    with pytest.raises(ValueError, match="diverged"):
        model.fit(X * 1e3, y)
    with pytest.raises(NotFittedError):  # nothing half-fitted is left behind
        model.predict(X)


# ------------------------------------------------------------------ plots


def test_weight_templates_and_loss_curve_plots(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4 * 4 * 3)).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    model = fast(SoftmaxClassifier, epochs=2).fit(X, y, X, y)
    p = plot_weight_templates(model.W_, (4, 4, 3), ["a", "b", "c"], tmp_path / "w.png")
    assert p.stat().st_size > 0
    with_bias = np.vstack([model.W_, np.ones((1, 3))])
    p = plot_weight_templates(with_bias, (4, 4, 3), ["a", "b", "c"], tmp_path / "wb.png")
    assert p.stat().st_size > 0
    with pytest.raises(ValueError, match="does not fit images"):
        plot_weight_templates(model.W_, (5, 5, 3), ["a", "b", "c"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="2 class names for 3 columns"):
        plot_weight_templates(model.W_, (4, 4, 3), ["a", "b"], tmp_path / "x.png")
    assert plot_loss_curve(model.history_, tmp_path / "l.png").stat().st_size > 0
    assert plot_loss_curve(model.loss_history_, tmp_path / "l2.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no loss values"):
        plot_loss_curve([], tmp_path / "l3.png")
