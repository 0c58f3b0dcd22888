"""The plot of a one-parameter search writes a PNG and refuses results it cannot draw."""

import pytest

from chainrule.report.plots import plot_search_curve

ROWS = [
    {"params": {"reg": r}, "train_acc": t, "val_acc": v, "fit_time": 0.1}
    for r, t, v in ((1e-3, 0.9, 0.8), (1e-1, 0.7, 0.75), (1e-2, 0.85, 0.82))
]


def test_search_curve_png(tmp_path):
    from PIL import Image

    path = plot_search_curve(ROWS, "reg", tmp_path / "s" / "search.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 200
    # without training accuracies (train_score=False) it draws validation alone
    rows = [{**r, "train_acc": None} for r in ROWS]
    assert plot_search_curve(rows, "reg", tmp_path / "v.png").exists()


def test_search_curve_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no parameter 'learning_rate'"):
        plot_search_curve(ROWS, "learning_rate", tmp_path / "x.png")
    with pytest.raises(ValueError, match="no search results"):
        plot_search_curve([], "reg", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
