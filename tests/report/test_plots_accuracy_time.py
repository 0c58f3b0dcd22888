"""The accuracy-against-time curve: cumulative epoch times, and clear refusals."""

import numpy as np
import pytest

from chainrule.report.plots import accuracy_time_curve, plot_accuracy_vs_time

HISTORY = {"epoch_time": [30.0, 60.0, 90.0], "val_acc": [0.5, 0.7, 0.65], "loss": [1.0]}


def test_times_are_the_cumulative_epoch_times():
    seconds, accs = accuracy_time_curve(HISTORY)
    np.testing.assert_allclose(seconds, [30.0, 90.0, 180.0])
    np.testing.assert_array_equal(accs, [0.5, 0.7, 0.65])


def test_plot_is_a_png(tmp_path):
    from PIL import Image

    with Image.open(plot_accuracy_vs_time(HISTORY, tmp_path / "a.png")) as im:
        assert im.format == "PNG" and im.size[0] > 200


def test_bad_histories_are_refused(tmp_path):
    with pytest.raises(ValueError, match="needs 'epoch_time' and 'val_acc'"):
        accuracy_time_curve({"epoch_time": [1.0]})
    with pytest.raises(ValueError, match="3 epoch times but 2 validation accuracies"):
        plot_accuracy_vs_time({**HISTORY, "val_acc": [0.1, 0.2]}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
