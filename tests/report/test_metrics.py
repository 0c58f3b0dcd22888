import numpy as np
import pytest

from chainrule.report.metrics import accuracy, confusion_matrix, per_class_accuracy


def test_accuracy_counts_matches():
    assert accuracy([0, 1, 2, 2], [0, 2, 2, 1]) == 0.5
    assert accuracy(np.array([3]), np.array([3])) == 1.0


def test_confusion_matrix_rows_are_true_classes():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 0])
    cm = confusion_matrix(y_true, y_pred, num_classes=4)
    expected = np.zeros((4, 4), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        expected[t, p] += 1
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    assert np.trace(cm) / cm.sum() == accuracy(y_true, y_pred)
    np.testing.assert_allclose(per_class_accuracy(cm)[:3], [0.5, 2 / 3, 0.0])
    assert np.isnan(per_class_accuracy(cm)[3])
    assert confusion_matrix(y_true, y_pred).shape == (3, 3)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([0, 1], [0])
    with pytest.raises(TypeError, match="integer class labels"):
        accuracy([0.5], [0.5])
    with pytest.raises(ValueError, match="N = 0"):
        accuracy([], [])
    with pytest.raises(ValueError, match="does not fit num_classes=2"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="non-negative"):
        confusion_matrix([0, -1], [0, 1])
    with pytest.raises(ValueError, match="square"):
        per_class_accuracy(np.zeros((2, 3)))
