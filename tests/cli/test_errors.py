"""Every mistake a user can make on the command line is one line on stderr and exit status
2: argument errors, folders that cannot be written, settings that cannot run, damaged
files. A closed pipe ends the command quietly. A bug still shows its traceback."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from chainrule.cli import main


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("chainrule") and ": error: " in last, err
    for needle in needles:
        assert needle in last, (needle, last)
    return last


@pytest.fixture(scope="module")
def softmax_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "softmax"
    assert main(["train", "softmax", "--epochs", "2", "--out", str(run), "--quiet"]) == 0
    return run


# -- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "svm", "--epochs", "0"], "argument --epochs: expected a positive integer"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["eval"], "the following arguments are required: RUN_DIR"),
        (["compare", "--val-fraction", "2"], "argument --val-fraction"),
        (["train", "svm", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_argument_errors_are_one_line_with_a_hint(capsys, argv, needle):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert needle in lines[0] and lines[0].startswith("chainrule")
    assert "--help" in lines[0] and "usage:" not in lines[0]


# -- folders ------------------------------------------------------------------------------


def test_out_inside_a_file_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = cli(capsys, "compare", "--models", "svm", "--out", afile / "sub", "--quiet")
    one_line_error(code, err, "afile", "not a folder")
    code, _, err = cli(capsys, "train", "svm", "--out", afile / "sub" / "deeper", "--quiet")
    one_line_error(code, err, "afile", "not a folder")


def test_out_in_a_read_only_folder_is_one_line(unprivileged, capsys):
    folder, run = unprivileged
    ro = folder / "ro"
    ro.mkdir()
    ro.chmod(0o555)

    def check():
        code, _, err = cli(capsys, "train", "svm", "--out", ro / "x", "--quiet")
        one_line_error(code, err, "ermission denied", str(ro / "x"))

    run(check)


def test_an_os_error_while_writing_is_one_line(tmp_path, capsys, monkeypatch):
    import chainrule.report.run as run_module

    def denied(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(run_module, "write_file", denied)
    code, _, err = cli(capsys, "train", "svm", "--epochs", "1", "--out", tmp_path / "r", "--quiet")
    last = one_line_error(code, err, "ermission denied", str(tmp_path / "r" / "metrics.json"))
    assert "Errno" not in last


def test_a_disk_full_while_saving_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import chainrule.models.io as io_module

    def full(path, arrays):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(io_module, "_write_npz", full)
    code, _, err = cli(capsys, "train", "svm", "--epochs", "1", "--out", tmp_path / "r", "--quiet")
    one_line_error(code, err, "No space left on device", "model.npz")


def test_running_out_of_memory_is_one_line(monkeypatch, tmp_path, capsys):
    import chainrule.cli.evaluate as evaluate

    def exhausted(args):
        raise MemoryError("Unable to allocate 47.7 GiB for an array with shape (64, 100000000)")

    monkeypatch.setattr(evaluate, "run", exhausted)
    code, _, err = cli(capsys, "eval", tmp_path)
    one_line_error(code, err, "out of memory: Unable to allocate 47.7 GiB")


def test_a_bug_still_shows_its_traceback(monkeypatch, tmp_path):
    import chainrule.cli.evaluate as evaluate

    def bug(args):
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr(evaluate, "run", bug)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["eval", str(tmp_path)])


# -- settings and data --------------------------------------------------------------------


def test_a_validation_fraction_that_leaves_too_little_to_train_on(tmp_path, capsys):
    code, _, err = cli(
        capsys, "train", "knn", "--val-fraction", "0.999", "--out", tmp_path / "k", "--quiet"
    )
    assert "Traceback" not in err
    assert code == 0 or one_line_error(code, err, "knn")
    # two images a class, half held out: one training image a class, too few to choose k
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "tiny" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((4, 4), 60 * i, np.uint8)).save(
                tmp_path / "tiny" / c / f"{i}.png"
            )
    argv = ["train", "knn", "--data", tmp_path / "tiny", "--val-fraction", "0.5"]
    code, _, err = cli(capsys, *argv, "--out", tmp_path / "t", "--quiet")
    one_line_error(code, err, "knn on 2 training images")
    record = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert record["status"] == "failed" and "folds=5" in record["error"]


def test_a_network_too_large_for_memory_is_refused_before_allocating(tmp_path, capsys):
    import tracemalloc

    tracemalloc.start()
    try:
        code, _, err = cli(
            capsys, "train", "mlp", "--hidden", "100000000", "--out", tmp_path / "m", "--quiet"
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_line_error(code, err, "mlp", "memory")
    assert peak < 200_000_000
    assert not (tmp_path / "m").exists()


# -- damaged files ------------------------------------------------------------------------


def rewrite(src, dst, **replace) -> None:
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update({k: np.asarray(v) for k, v in replace.items()})
    np.savez(dst, **arrays)


def test_a_model_naming_fewer_classes_than_it_predicts(tmp_path, capsys, softmax_run):
    bad = tmp_path / "few.npz"
    rewrite(softmax_run / "model.npz", bad, classes_json=json.dumps(["0", "1", "2"]))
    image = tmp_path / "digit.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
    for argv in (["predict", bad, image], ["eval", bad]):
        code, _, err = cli(capsys, *argv, "--quiet")
        one_line_error(code, err, "names 3 classes but the model predicts 10")


def test_a_model_file_with_a_damaged_zip_directory(tmp_path, capsys, softmax_run):
    data = bytearray((softmax_run / "model.npz").read_bytes())
    pos = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, pos + 10, 99)  # an unknown compression method
    bad = tmp_path / "damaged.npz"
    bad.write_bytes(bytes(data))
    code, _, err = cli(capsys, "eval", bad, "--quiet")
    one_line_error(code, err, "truncated or damaged")
    with zipfile.ZipFile(softmax_run / "model.npz") as zf:
        assert zf.testzip() is None  # the original is intact


@pytest.mark.parametrize(
    "metrics, needle",
    [
        ('{"status": "running", "args": ', "metrics.json"),
        ("[]", "metrics.json"),
        ('{"args": {"model": "twolayer", "val_fraction": "x"}}', "val_fraction"),
        ('{"args": {"model": "twolayer", "seed": "a"}}', "seed"),
        ('{"args": {"model": "twolayer", "data": 5}}', "data"),
        ('{"args": {"model": "twolayer", "search": "yes"}}', "search"),
        ('{"args": {"model": "twolayer"}, "params": {"epochs": -1}}', "epochs"),
        ('{"args": {"model": "twolayer"}, "params": {"foo": 1}}', "foo"),
    ],
)
def test_resume_with_a_damaged_metrics_file(tmp_path, capsys, metrics, needle):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(metrics)
    code, _, err = cli(capsys, "train", "--resume", run, "--quiet")
    one_line_error(code, err, needle)


# -- pipes --------------------------------------------------------------------------------


def test_a_closed_pipe_ends_the_command_quietly(softmax_run):
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainrule", "eval", str(softmax_run), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # as `| head -c 0` would: nobody reads what it prints
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert err.decode() == ""
    assert proc.returncode == 141
