import json
import math
import os

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


# -- the record of chainrule's files -----------------------------------------------------------


def test_another_writer_records_its_file_with_one_call(tmp_path):
    """A file written with ``write_file`` while a run holds the folder is chainrule's:
    ``force`` clears it like the rest."""
    with RunFolder.start(tmp_path / "run") as folder:
        folder.write_metrics({"command": "train", "status": "done"})
        assert folder.write_file("report.html", "<html></html>\n") == folder.path / "report.html"
        assert folder.record.ours("report.html")
    with RunFolder.start(tmp_path / "run", force=True) as folder:
        assert [p.name for p in folder._entries()] == []


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_a_plot_is_never_drawn_through_a_link_or_over_a_users_file(tmp_path):
    from chainrule.report.plots import plot_loss_curve

    target = tmp_path / "victim.png"
    target.write_bytes(b"important")
    with RunFolder.start(tmp_path / "run") as folder:
        (folder.path / "loss.png").symlink_to(target)
        (folder.path / "curve.png").write_bytes(b"mine")
        history = {"loss": [1.0, 0.5]}
        assert folder.plot(plot_loss_curve, "loss.png", history) is None
        assert folder.plot(plot_loss_curve, "curve.png", history) is None
        assert folder.plot(plot_loss_curve, "fresh.png", history) == folder.path / "fresh.png"
        assert "did not write" in folder.plot_errors["loss.png"]
        assert "did not write" in folder.plot_errors["curve.png"]
        assert folder.record.ours("fresh.png")
    assert target.read_bytes() == b"important"
    assert (tmp_path / "run" / "curve.png").read_bytes() == b"mine"


def test_metrics_are_never_read_through_a_link_nor_unbounded(tmp_path):
    run = RunFolder(tmp_path / "run")
    if os.name == "posix":
        (tmp_path / "other.json").write_text('{"command": "train"}')
        (run.path / "metrics.json").symlink_to(tmp_path / "other.json")
        with pytest.raises(OSError, match="symbolic link"):
            run.read_metrics()
        assert not run.is_run()
