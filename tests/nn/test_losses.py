"""svm_loss and cross_entropy: lecture numbers, naive loops, numeric gradients, PyTorch
(live where it is installed, and its recorded values on every run)."""

from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd.engine import Context
from chainrule.gradcheck import gradcheck, numeric_gradient, rel_error
from chainrule.nn.functional import (
    L2Penalty,
    SoftmaxCrossEntropy,
    SVMLoss,
    cross_entropy,
    l2_penalty,
    svm_loss,
)

LOSSES = [
    pytest.param(svm_loss, id="svm"),
    pytest.param(cross_entropy, id="softmax"),
    pytest.param(lambda s, y: cross_entropy(s, y, label_smoothing=0.2), id="softmax-ls0.2"),
]

# The lecture's example: scores of three images (rows: the cat, car and frog images;
# columns: class scores for cat, car, frog).
LECTURE_SCORES = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
LECTURE_LABELS = np.array([0, 1, 2])


# ------------------------------------------------------------------ references


def svm_loss_naive(scores, y):
    """The course's loop version: loss and dL/dscores."""
    n, c = scores.shape
    loss = 0.0
    dscores = np.zeros_like(scores)
    for i in range(n):
        for j in range(c):
            if j == y[i]:
                continue
            margin = scores[i, j] - scores[i, y[i]] + 1
            if margin > 0:
                loss += margin
                dscores[i, j] += 1
                dscores[i, y[i]] -= 1
    return loss / n, dscores / n


def softmax_loss_naive(scores, y, eps=0.0):
    n, c = scores.shape
    loss = 0.0
    dscores = np.zeros_like(scores)
    for i in range(n):
        shifted = scores[i] - max(scores[i])
        p = [np.exp(v) for v in shifted]
        total = sum(p)
        p = [v / total for v in p]
        for j in range(c):
            q = (1 - eps) * (j == y[i]) + eps / c
            loss -= q * np.log(p[j])
            dscores[i, j] = p[j] - q
    return loss / n, dscores / n


def analytic_grad(loss_fn, scores, y):
    s = cr.Tensor(scores, requires_grad=True)
    loss = loss_fn(s, y)
    loss.backward()
    return loss.item(), s.grad


def random_problem(n=6, c=5, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)) * scale, rng.integers(0, c, size=n)


# ------------------------------------------------------------------ lecture numbers


def test_svm_lecture_example():
    per_image = [
        svm_loss(LECTURE_SCORES[i : i + 1], LECTURE_LABELS[i : i + 1]).item() for i in range(3)
    ]
    np.testing.assert_allclose(per_image, [2.9, 0.0, 12.9], atol=1e-12)
    assert svm_loss(LECTURE_SCORES, LECTURE_LABELS).item() == pytest.approx(5.27, abs=5e-3)


def test_softmax_lecture_example():
    loss = cross_entropy(LECTURE_SCORES[:1], LECTURE_LABELS[:1]).item()
    assert loss == pytest.approx(2.04, abs=5e-3)
    assert np.exp(-loss) == pytest.approx(0.13, abs=5e-3)


# ------------------------------------------------------------------ naive loops


@pytest.mark.parametrize("seed", range(3))
def test_svm_matches_naive_loop(seed):
    scores, y = random_problem(n=20, c=7, seed=seed, scale=2.0)
    want_loss, want_grad = svm_loss_naive(scores, y)
    loss, grad = analytic_grad(svm_loss, scores, y)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, atol=1e-15)


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_softmax_matches_naive_loop(eps):
    scores, y = random_problem(n=15, c=6, seed=3, scale=3.0)
    want_loss, want_grad = softmax_loss_naive(scores, y, eps)
    loss, grad = analytic_grad(lambda s, t: cross_entropy(s, t, eps), scores, y)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, atol=1e-15)


def test_svm_ties_count_only_positive_margins():
    # Scores equal to the correct score give a margin of 1 (counted); a score exactly one
    # below the correct score sits on the kink and gets gradient 0.
    scores = np.array([[2.0, 2.0, 1.0, 0.0]])
    loss, grad = analytic_grad(svm_loss, scores, np.array([0]))
    assert loss == pytest.approx(1.0)
    np.testing.assert_array_equal(grad, [[-1.0, 1.0, 0.0, 0.0]])


# ------------------------------------------------------------------ gradient checks


@pytest.mark.parametrize("loss_fn", LOSSES)
@pytest.mark.parametrize("seed", range(2))
def test_gradient_matches_numeric(loss_fn, seed):
    scores, y = random_problem(n=5, c=4, seed=seed)
    _, grad = analytic_grad(loss_fn, scores, y)
    num = numeric_gradient(lambda s: loss_fn(s, y).item(), scores.copy(), h=1e-5)
    assert rel_error(grad, num) < 1e-7


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_gradcheck_reverse_and_forward_mode(loss_fn):
    scores, y = random_problem(n=8, c=6, seed=13, scale=2.0)
    assert gradcheck(lambda s: loss_fn(s, y), [scores], modes=("rev", "fwd"), tol=1e-7)


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_upstream_gradient_and_graph_composition(loss_fn):
    # The loss inside a graph: scores = X W, objective = 3 * loss. dW must match numeric.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 3))
    w0 = rng.standard_normal((3, 4))
    y = rng.integers(0, 4, size=6)
    w = cr.Tensor(w0.copy(), requires_grad=True)
    (loss_fn(cr.Tensor(x) @ w, y) * 3.0).backward()
    num = numeric_gradient(lambda m: 3.0 * loss_fn(x @ m, y).item(), w0.copy(), h=1e-5)
    assert rel_error(w.grad, num) < 1e-7


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_jvp_matches_backward(loss_fn):
    scores, y = random_problem(n=7, c=5, seed=11)
    tangent = np.random.default_rng(12).standard_normal(scores.shape)
    value, t_out = cr.jvp(lambda s: loss_fn(s, y), (scores,), (tangent,))
    _, grad = analytic_grad(loss_fn, scores, y)
    assert float(value) == pytest.approx(loss_fn(scores, y).item(), rel=1e-14)
    assert float(t_out) == pytest.approx(float((grad * tangent).sum()), rel=1e-10)
    h = 1e-6
    num = (loss_fn(scores + h * tangent, y).item() - loss_fn(scores - h * tangent, y).item()) / (
        2 * h
    )
    assert float(t_out) == pytest.approx(num, rel=1e-7)


def test_retain_graph_backward_twice_gives_same_gradient():
    scores, y = random_problem(seed=4)
    s = cr.Tensor(scores, requires_grad=True)
    loss = cross_entropy(s, y, 0.1)
    loss.backward(retain_graph=True)
    first = s.grad.copy()
    loss.backward()
    np.testing.assert_allclose(s.grad, 2 * first)


def test_usable_without_graph_course_style():
    scores, y = random_problem(seed=5)
    for fn, naive in [(SVMLoss, svm_loss_naive), (SoftmaxCrossEntropy, softmax_loss_naive)]:
        ctx = Context()
        args = (scores, y) if fn is SVMLoss else (scores, y, 0.0)
        loss = fn.forward(ctx, *args)
        dscores = fn.backward(ctx, np.float64(1.0))[0]
        want_loss, want_grad = naive(scores, y)
        assert float(loss) == pytest.approx(want_loss)
        np.testing.assert_allclose(dscores, want_grad, atol=1e-15)


# ------------------------------------------------------------------ dtypes and stability


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_float32_stays_float32(loss_fn):
    scores, y = random_problem(seed=6)
    s = cr.Tensor(scores.astype(np.float32), requires_grad=True)
    loss = loss_fn(s, y)
    loss.backward()
    assert loss.dtype == np.float32
    assert s.grad.dtype == np.float32
    _, want = analytic_grad(loss_fn, scores.astype(np.float32).astype(np.float64), y)
    np.testing.assert_allclose(s.grad, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_huge_logits(dtype):
    scores = np.array([[1e4, 0.0, -1e4], [-3e4, 2e4, 2e4], [5e4, 5e4 - 2.0, 0.0]], dtype=dtype)
    y = np.array([1, 2, 1])
    s = cr.Tensor(scores, requires_grad=True)
    loss = cross_entropy(s, y)
    loss.backward()
    s64 = scores.astype(np.float64)
    logsumexp = np.logaddexp.reduce(s64, axis=1)
    want = np.mean(logsumexp - s64[np.arange(3), y])
    assert np.isfinite(loss.item()) and np.isfinite(s.grad).all()
    assert loss.item() == pytest.approx(want, rel=1e-6)
    p = np.exp(s64 - logsumexp[:, None])
    p[np.arange(3), y] -= 1
    np.testing.assert_allclose(s.grad, p / 3, atol=1e-6)


def test_svm_huge_scores():
    scores = np.array([[1e4, -1e4, 1e4 + 5.0]])
    loss, grad = analytic_grad(svm_loss, scores, np.array([0]))
    assert loss == pytest.approx(6.0)
    np.testing.assert_array_equal(grad, [[-1.0, 0.0, 1.0]])


def test_plain_array_gives_tensor_without_grad():
    scores, y = random_problem(seed=8)
    out = svm_loss(scores, y)
    assert isinstance(out, cr.Tensor) and out.shape == () and not out.requires_grad
    assert cross_entropy(scores.tolist(), y.tolist()).item() == pytest.approx(
        cross_entropy(scores, y).item()
    )
    # Integer scores are taken as float64.
    assert svm_loss(np.array([[1, 3]]), np.array([0])).item() == pytest.approx(3.0)


# ------------------------------------------------------------------ PyTorch


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_cross_entropy_matches_pytorch(eps):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    scores, y = random_problem(n=32, c=10, seed=9, scale=4.0)
    ts = torch.tensor(scores, requires_grad=True)
    tl = F.cross_entropy(ts, torch.tensor(y), label_smoothing=eps)
    tl.backward()
    loss, grad = analytic_grad(lambda s, t: cross_entropy(s, t, eps), scores, y)
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(grad, ts.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_svm_matches_pytorch_multi_margin_loss():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    scores, y = random_problem(n=32, c=10, seed=10, scale=1.0)
    ts = torch.tensor(scores, requires_grad=True)
    # PyTorch divides each example's hinge sum by the number of classes as well.
    tl = F.multi_margin_loss(ts, torch.tensor(y), p=1, margin=1.0) * scores.shape[1]
    tl.backward()
    loss, grad = analytic_grad(svm_loss, scores, y)
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(grad, ts.grad.numpy(), rtol=1e-10, atol=1e-15)


# tests/fixtures/record_torch_references.py ran the two comparisons above in PyTorch once
# and stored inputs and results; these check chainrule against them without PyTorch.


@pytest.fixture(scope="module")
def recorded():
    path = Path(__file__).resolve().parents[1] / "fixtures" / "torch_losses.npz"
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("i, eps", [(0, 0.0), (1, 0.1), (2, 0.5)])
def test_cross_entropy_matches_recorded_pytorch(recorded, i, eps):
    assert recorded["ce.label_smoothing"][i] == eps
    scores, y = recorded["ce.scores"], recorded["ce.y"]
    loss, grad = analytic_grad(lambda s, t: cross_entropy(s, t, eps), scores, y)
    assert loss == pytest.approx(float(recorded[f"ce.{i}.loss"]), rel=1e-12)
    np.testing.assert_allclose(grad, recorded[f"ce.{i}.grad"], rtol=1e-10, atol=1e-15)


def test_svm_matches_recorded_pytorch_multi_margin_loss(recorded):
    loss, grad = analytic_grad(svm_loss, recorded["svm.scores"], recorded["svm.y"])
    assert loss == pytest.approx(float(recorded["svm.loss"]), rel=1e-12)
    np.testing.assert_allclose(grad, recorded["svm.grad"], rtol=1e-10, atol=1e-15)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("loss_fn", [svm_loss, cross_entropy])
@pytest.mark.parametrize(
    "scores, y, err, match",
    [
        (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), TypeError, "integers"),
        (np.zeros((3, 4)), np.array([0, 1, 4]), ValueError, "label 4 out of range"),
        (np.zeros((3, 4)), np.array([0, -1, 2]), ValueError, "label -1 out of range"),
        (np.zeros((3, 4)), np.array([0, 1]), ValueError, "2 labels for 3 rows"),
        (np.zeros((3, 4)), np.array([[0, 1, 2]]), ValueError, "1-D"),
        (np.zeros(4), np.array([0]), ValueError, "2-D"),
        (np.zeros((2, 3, 4)), np.array([0, 1]), ValueError, "2-D"),
        (np.zeros((0, 4)), np.zeros(0, dtype=int), ValueError, "empty"),
        (np.array([[0.0, np.nan]]), np.array([0]), ValueError, "NaN"),
        (np.array([[0.0, np.inf]]), np.array([0]), ValueError, "NaN or infinity"),
        (np.array([["a", "b"]]), np.array([0]), TypeError, "real numbers"),
        (np.zeros((1, 2)), cr.Tensor([0.0]), TypeError, "not a Tensor"),
    ],
)
def test_bad_input_errors(loss_fn, scores, y, err, match):
    with pytest.raises(err, match=match):
        loss_fn(scores, y)


@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan")])
def test_label_smoothing_out_of_range(eps):
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=eps)


# ---------------------------------------------------------------- L2 penalty


def test_l2_penalty_is_reg_times_sum_of_squares_of_weights():
    W = np.arange(6.0).reshape(2, 3)
    t = cr.Tensor(W, requires_grad=True)
    out = L2Penalty.apply(t, 0.1)
    assert out.item() == pytest.approx(0.1 * np.sum(W**2))
    out.backward()
    np.testing.assert_allclose(t.grad, 0.2 * W)
    a, b = cr.Tensor(W, requires_grad=True), cr.Tensor(-W.T, requires_grad=True)
    assert l2_penalty([a, b], 0.5).item() == pytest.approx(np.sum(W**2))
    with pytest.raises(ValueError, match="no weights"):
        l2_penalty([], 0.5)


def test_l2_penalty_gradients_reverse_and_forward_mode():
    rng = np.random.default_rng(5)
    W = cr.Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    l2_penalty([W], 0.3).backward()
    num = numeric_gradient(lambda w: l2_penalty([cr.Tensor(w)], 0.3).item(), W.data.copy())
    assert rel_error(W.grad, num) < 1e-8
    assert gradcheck(lambda w: L2Penalty.apply(w, 0.3), [W.data.copy()], modes=("fwd", "rev"))


def test_l2_penalty_keeps_float32():
    W = cr.Tensor(np.ones((3, 2), np.float32), requires_grad=True)
    out = l2_penalty([W], 0.5)
    out.backward()
    assert out.dtype == np.float32 and W.grad.dtype == np.float32
    assert out.item() == 3.0
