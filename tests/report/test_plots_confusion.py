"""Confusion-matrix and first-layer-weight plots write real PNG images and refuse bad input."""

import numpy as np
import pytest

from chainrule.report.plots import plot_confusion_matrix, plot_first_layer_weights


def _png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_confusion_matrix_plot(tmp_path):
    cm = np.array([[5, 1, 0], [0, 3, 2], [0, 0, 0]])
    path = plot_confusion_matrix(cm, ["cat", "dog", "ship"], tmp_path / "sub" / "cm.png")
    w, h = _png_size(path)
    assert w > 100 and h > 100


def test_confusion_matrix_plot_bad_input(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="2 class names for a 3x3"):
        plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 1), (4, 5, 3)])
def test_first_layer_weights_plot(tmp_path, shape):
    d = int(np.prod(shape))
    W = np.random.default_rng(0).normal(size=(d + 1, 7))  # with a bias row
    path = plot_first_layer_weights(W, shape, tmp_path / "w.png", max_units=5)
    assert _png_size(path)[0] > 50


def test_first_layer_weights_plot_bad_input(tmp_path):
    with pytest.raises(ValueError, match="does not fit images"):
        plot_first_layer_weights(np.zeros((10, 3)), (3, 3, 3), tmp_path / "w.png")
    with pytest.raises(ValueError, match="image_shape"):
        plot_first_layer_weights(np.zeros((8, 3)), (2, 2, 2), tmp_path / "w.png")
