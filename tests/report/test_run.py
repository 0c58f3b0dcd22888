import json
import math

import numpy as np
import pytest

from chainrule.report.run import RunFolder, default_run_dir, to_jsonable


def test_metrics_are_written_as_json_with_numpy_values(tmp_path):
    run = RunFolder(tmp_path / "a" / "b")
    assert run.path.is_dir()
    assert run.read_metrics() == {}
    metrics = {
        "acc": np.float32(0.25),
        "n": np.int64(7),
        "curve": np.arange(3, dtype=np.float32),
        "pair": (1, 2),
        "bad": math.nan,
        1: {"nested": np.array([[1, 2]])},
    }
    path = run.write_metrics(metrics)
    on_disk = json.loads(path.read_text())
    assert on_disk == {
        "acc": 0.25,
        "n": 7,
        "curve": [0.0, 1.0, 2.0],
        "pair": [1, 2],
        "bad": None,
        "1": {"nested": [[1, 2]]},
    }
    assert run.read_metrics() == on_disk
    # no temporary files are left behind
    assert sorted(p.name for p in run.path.iterdir()) == ["metrics.json"]


def test_to_jsonable_keeps_plain_values():
    assert to_jsonable({"a": [True, None, "x", 3, 2.5]}) == {"a": [True, None, "x", 3, 2.5]}
    assert to_jsonable(np.random.default_rng(0)) is None


def test_run_folder_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        RunFolder(tmp_path / "f")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RunFolder(tmp_path / "missing", create=False)


def test_plot_failures_are_recorded_not_raised(tmp_path):
    run = RunFolder(tmp_path)
    calls = []

    def good(values, path):
        calls.append(values)
        path.write_bytes(b"png")

    def bad(values, path):
        raise ValueError("nothing to draw")

    assert run.plot(good, "good.png", [1, 2]) == tmp_path / "good.png"
    assert run.plot(bad, "bad.png", []) is None
    assert calls == [[1, 2]]
    assert run.plots == ["good.png"]
    assert run.plot_errors == {"bad.png": "ValueError: nothing to draw"}


def test_default_run_dir_is_unique(tmp_path):
    first = default_run_dir("compare", root=tmp_path)
    assert first.parent == tmp_path and first.name.startswith("compare-")
    first.mkdir()
    second = default_run_dir("compare", root=tmp_path)
    assert second != first and not second.exists()
