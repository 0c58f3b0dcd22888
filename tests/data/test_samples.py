"""Sample digit PNGs for trying ``chainrule predict``."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule
import chainrule.data as data


def test_write_digit_pngs_gives_back_the_test_images(tmp_path):
    paths = data.write_digit_pngs(tmp_path / "out")
    assert [p.name for p in paths] == [f"digit{d}.png" for d in range(10)]
    test = data.load("digits", "test", progress=False)
    for d, path in enumerate(paths):
        first = test.images[np.flatnonzero(test.labels == d)[0]]
        np.testing.assert_array_equal(data.read_image(path, mode="L"), first)
        rgb = data.read_image(path)  # how `predict` reads a file before converting it
        assert rgb.shape == (8, 8, 3) and np.all(rgb == first)


def test_several_per_class_and_bad_counts(tmp_path):
    paths = data.write_digit_pngs(tmp_path, n_per_class=2)
    assert len(paths) == 20 and paths[:2] == [tmp_path / "digit0_0.png", tmp_path / "digit0_1.png"]
    assert len({data.read_image(p).tobytes() for p in paths}) == 20
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="n_per_class"):
            data.write_digit_pngs(tmp_path, n_per_class=bad)


def test_command_line(tmp_path):
    src = str(Path(chainrule.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    run = [sys.executable, "-m", "chainrule.data.samples"]
    out = subprocess.run([*run, "pngs"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [os.path.join("pngs", f"digit{d}.png") for d in range(10)]
    assert (tmp_path / "pngs" / "digit9.png").is_file()
    bad = subprocess.run([*run, "a", "b"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("usage:")
