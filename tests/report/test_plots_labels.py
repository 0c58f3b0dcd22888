"""What the plots say: time axes in readable units, the search's best marked and named,
every point labeled, and no label or legend drawn over a curve."""

import numpy as np
import pytest

from chainrule.report import _figure, plots, plots_search
from chainrule.report._figure import time_unit
from chainrule.report.text import format_seconds


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save (they are drawn, so text has a place)."""
    kept = []

    def save(fig, path):
        out = _figure.save(fig, path)
        kept.append(fig)
        return out

    monkeypatch.setattr(plots, "_save", save)
    monkeypatch.setattr(plots_search, "save", save)
    return kept


def texts_of(fig):
    found = []
    for ax in fig.axes:
        found += [t.get_text() for t in ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            found += [t.get_text() for t in legend.get_texts()]
    return found


def assert_no_label_over_a_curve(fig):
    """No annotation and no legend covers a point of any line (in display pixels)."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        points = _figure._curve_points(ax)
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        if ax.get_legend() is not None:
            boxes.append(ax.get_legend().get_window_extent(renderer))
        for box in boxes:
            shrunk = box.expanded(0.98, 0.9)
            assert not _figure._hits(shrunk, points), f"a label at {box} covers a curve"


@pytest.mark.parametrize(
    "seconds, unit, text",
    [
        (0.08, "ms", "80 ms"),
        (45.0, "s", "45.0 s"),
        (900.0, "min", "15.0 min"),
        (9000.0, "h", "2.5 h"),
    ],
)
def test_time_units_follow_the_duration(seconds, unit, text):
    assert time_unit([0.0, seconds])[1] == unit
    assert format_seconds(seconds) == text


def test_an_80_ms_fit_reads_in_milliseconds(tmp_path, figures):
    # 30 epochs of 2.7 ms: the axis that read 0.0000-0.0013 minutes.
    history = {"epoch_time": [0.0027] * 30, "val_acc": list(np.linspace(0.5, 0.98, 30))}
    plots.plot_accuracy_vs_time(history, tmp_path / "a.png")
    fig = figures[-1]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "training time (ms, including validation)"
    assert ax.get_xlim()[1] == pytest.approx(81, abs=10)
    assert any("best: 98.00% after 81 ms (epoch 30)" in t for t in texts_of(fig))
    assert_no_label_over_a_curve(fig)


def test_loss_and_knn_legends_stay_off_the_curves(tmp_path, figures):
    rng = np.random.default_rng(0)
    loss = list(np.exp(-np.linspace(0, 3, 400)) + 0.05 * rng.random(400))
    history = {"loss": loss, "train_acc": [0.5, 0.8, 0.9, 0.95], "val_acc": [0.5, 0.7, 0.8, 0.82]}
    plots.plot_loss_curve(history, tmp_path / "l.png")
    assert_no_label_over_a_curve(figures[-1])
    cv = {k: [0.9 - 0.01 * k + 0.005 * f for f in range(5)] for k in (1, 3, 5, 8, 10, 20)}
    plots.plot_knn_cv(cv, tmp_path / "k.png")
    assert_no_label_over_a_curve(figures[-1])


def rows_2d():
    rows = []
    for lr in (1e-3, 1e-2, 1e-1):
        for reg in (1e-4, 1e-3, 1e-2):
            acc = 0.9 - 0.1 * abs(np.log10(lr) + 2) - 0.05 * abs(np.log10(reg) + 3)
            rows.append({"params": {"learning_rate": lr, "reg": reg}, "train_acc": acc + 0.03,
                         "val_acc": acc, "fit_time": 0.1})  # fmt: skip
    return rows


def test_search_plot_labels_every_point_and_names_the_best(tmp_path, figures):
    plots.plot_search_results(rows_2d(), tmp_path / "s.png")
    fig = figures[-1]
    texts = texts_of(fig)
    assert "best: learning_rate=0.01, reg=0.001 (validation 90.0%)" in texts
    labels = [t.get_text() for t in fig.axes[2].texts]  # axes: training, bar, validation, bar
    assert sorted(labels) == sorted(f"{100 * r['val_acc']:.1f}%" for r in rows_2d())
    bold = [t.get_text() for t in fig.axes[2].texts if t.get_fontweight() == "bold"]
    assert bold == ["90.0%"]


def test_search_curve_labels_points_off_both_curves(tmp_path, figures):
    rows = [
        {"params": {"reg": r}, "train_acc": t, "val_acc": v, "fit_time": 0.1}
        for r, t, v in (
            (1e-4, 0.95, 0.80),
            (1e-3, 0.93, 0.86),
            (1e-2, 0.88, 0.84),
            (1e-1, 0.7, 0.69),
        )
    ]
    plots.plot_search_curve(rows, "reg", tmp_path / "c.png")
    fig = figures[-1]
    assert "best: reg=0.001 (validation 86.0%)" in texts_of(fig)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["69.0%", "80.0%", "84.0%", "86.0%"]
    assert_no_label_over_a_curve(fig)
