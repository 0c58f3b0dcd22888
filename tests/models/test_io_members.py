"""A model file says what it holds, and its hyperparameters are bounded by what it holds.

A file lists its members in its header: one that lost any (its preprocessing, say, after a
damaged zip directory) is refused instead of predicting on raw pixels. Files of format
version 1 (which list nothing) still load when nothing can have been lost unseen, and are
refused with the way to convert them otherwise. Hyperparameters that call for more
arrays than the file holds, or for more memory than the limit, are refused before
anything is built."""

from __future__ import annotations

import json
import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from chainrule.data import Preprocessor
from chainrule.models import registry
from chainrule.models.io import FORMAT_VERSION, load_model, save_model, upgrade_model_file

FIXTURES = Path(__file__).parent.parent / "fixtures"
RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(40, 4, 4, 1), dtype=np.uint8)
LABELS = np.arange(40) % 3


def members(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def write_npz(path, arrays: dict) -> Path:
    np.savez(path, **arrays)
    return Path(path)


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def saved(tmp_path, name="svm", **params) -> Path:
    prep = Preprocessor().fit(IMAGES)
    layout = "images" if name == "cnn" else "rows"
    if layout == "images":
        prep = Preprocessor(flatten=False).fit(IMAGES)
    X = prep.transform(IMAGES)
    defaults = {"svm": {"epochs": 2}, "mlp": {"epochs": 1, "hidden_dims": (8,)}}
    defaults["cnn"] = {"epochs": 1, "channels": (4,), "stem": "conv", "batch_size": 20}
    params = {**defaults.get(name, {}), **params, "random_state": 0, "verbose": False}
    model = registry.get_model_class(name)(**params).fit(X, LABELS)
    return save_model(tmp_path / f"{name}.npz", model, prep, ["a", "b", "c"])


# -- members declared ---------------------------------------------------------------------


def test_the_header_lists_every_member(tmp_path):
    path = saved(tmp_path)
    arrays = members(path)
    header = json.loads(str(arrays["__chainrule__"]))
    assert header["version"] == FORMAT_VERSION == 2
    assert sorted(header["members"]) == sorted(k for k in arrays if k != "__chainrule__")
    assert any(m.startswith("prep/") for m in header["members"])


@pytest.mark.parametrize("lost", ["prep/", "prep/std", "extra_json", "model/net.weight"])
def test_a_file_that_lost_a_declared_member_is_refused(tmp_path, lost):
    arrays = members(saved(tmp_path))
    kept = {k: v for k, v in arrays.items() if not k.startswith(lost)}
    assert len(kept) < len(arrays)
    path = write_npz(tmp_path / "lost.npz", kept)
    with pytest.raises(ValueError, match=f"lacks.*'{lost}"):
        load_model(path)


def test_a_zip_directory_that_lost_its_last_entries_is_refused(tmp_path):
    """A damaged end record (a smaller central directory) drops the last members, the
    preprocessing: the file is refused, not run on raw pixels."""
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    count, size, offset = struct.unpack_from("<HII", data, end + 10)
    entries = []  # (name, end) of each central directory entry
    at = offset
    while at < offset + size:
        n, m, k = struct.unpack_from("<HHH", data, at + 28)
        entries.append((bytes(data[at + 46 : at + 46 + n]), at + 46 + n + m + k))
        at += 46 + n + m + k
    keep = [end for name, end in entries if not name.startswith(b"prep/")]
    assert len(keep) < len(entries) and entries[len(keep) - 1][1] == keep[-1]  # prep/ last
    cut = keep[-1] - offset
    struct.pack_into("<HHI", data, end + 8, len(keep), len(keep), cut)
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(data[: offset + cut]) + bytes(data[end:]))
    with pytest.raises(ValueError, match="lacks.*'prep/"):
        load_model(damaged)


def test_a_member_the_header_does_not_list_is_refused(tmp_path):
    arrays = members(saved(tmp_path))
    header = json.loads(str(arrays["__chainrule__"]))
    header["members"].remove("extra_json")
    arrays["__chainrule__"] = np.array(json.dumps(header))
    with pytest.raises(ValueError, match="unknown member 'extra_json'"):
        load_model(write_npz(tmp_path / "more.npz", arrays))


@pytest.mark.parametrize("members_field", [None, "prep/mean", ["x"] * 3, [1, 2], {"a": 1}])
def test_a_bad_list_of_members_is_refused(tmp_path, members_field):
    arrays = members(saved(tmp_path))
    header = json.loads(str(arrays["__chainrule__"]))
    header["members"] = members_field
    arrays["__chainrule__"] = np.array(json.dumps(header))
    with pytest.raises(ValueError, match="members"):
        load_model(write_npz(tmp_path / "bad.npz", arrays))


# -- files of format version 1 ----------------------------------------------------------------


def test_a_version_1_file_with_its_preprocessing_still_loads():
    loaded = load_model(FIXTURES / "model_v1_svm.npz")
    images = np.asarray(loaded.extra["test_images"], dtype=np.uint8)
    assert loaded.preprocessor is not None
    assert loaded.predict(images).tolist() == loaded.extra["predictions"]


def test_a_version_1_file_without_preprocessing_is_refused_with_how_to_convert(tmp_path):
    path = shutil.copy(FIXTURES / "model_v1_svm_no_prep.npz", tmp_path / "old.npz")
    with pytest.raises(ValueError, match=r"upgrade_model_file\(") as info:
        load_model(path)
    assert "version 1" in str(info.value) and "preprocessing" in str(info.value)
    assert upgrade_model_file(path) == Path(path)
    loaded = load_model(path)
    images = np.asarray(loaded.extra["test_images"], dtype=np.uint8)
    assert loaded.preprocessor is None
    assert loaded.predict(images).tolist() == loaded.extra["predictions"]
    assert json.loads(str(members(path)["__chainrule__"]))["version"] == FORMAT_VERSION


def test_upgrading_keeps_a_version_1_file_with_preprocessing_as_it_predicts(tmp_path):
    path = shutil.copy(FIXTURES / "model_v1_svm.npz", tmp_path / "old.npz")
    before = load_model(path)
    upgrade_model_file(path, tmp_path / "new.npz")
    after = load_model(tmp_path / "new.npz")
    images = np.asarray(before.extra["test_images"], dtype=np.uint8)
    assert after.predict(images).tolist() == before.predict(images).tolist()
    assert after.classes == before.classes


def test_a_version_1_file_that_lost_its_preprocessing_stays_refused(tmp_path):
    """The conversion is for a file saved without preprocessing; one whose preprocessing
    was lost cannot be told from it, so the message asks before converting."""
    arrays = members(FIXTURES / "model_v1_svm.npz")
    kept = {k: v for k, v in arrays.items() if not k.startswith("prep/")}
    with pytest.raises(ValueError, match="saved without preprocessing"):
        load_model(write_npz(tmp_path / "lost.npz", kept))


# -- hyperparameters bounded by the file ----------------------------------------------------


def with_params(path, tmp_path, **changes) -> Path:
    arrays = members(path)
    params = json.loads(str(arrays["params_json"]))
    params.update(changes)
    arrays["params_json"] = np.array(json.dumps(params))
    return write_npz(tmp_path / "bad.npz", arrays)


@pytest.mark.parametrize(
    "name, changes",
    [
        ("cnn", {"convs_per_stage": 10_000_000}),  # more arrays than the file holds
        ("cnn", {"channels": [4] * 2000}),
        ("mlp", {"hidden_dims": [256] * 2000}),
        ("mlp", {"hidden_dims": [256] * 10**6}),  # more hyperparameters than any model has
    ],
)
def test_an_architecture_larger_than_the_file_is_refused_before_building(tmp_path, name, changes):
    path = with_params(saved(tmp_path, name), tmp_path, **changes)
    errors = []

    def load():
        try:
            load_model(path)
        except ValueError as e:
            errors.append(str(e))

    peak = peak_bytes(load)
    assert errors, "loaded"
    assert "hyperparameters" in errors[0]
    assert peak < 20 << 20, f"{peak:,} bytes allocated before refusing"


def test_a_model_whose_memory_bound_exceeds_the_limit_is_refused_before_building(tmp_path):
    """The spec's memory bound for one image, checked before the network is built."""
    path = saved(tmp_path, "mlp", hidden_dims=(512,))
    size = path.stat().st_size  # more than its arrays, less than weights, gradients, Adam
    with pytest.raises(ValueError, match="needs at least .* bytes"):
        load_model(path, max_bytes=size)
    assert load_model(path, max_bytes=64 << 20).model.n_features_in_ == 16


@pytest.mark.parametrize("shape", [(1, 1, 4000), (10**4, 10**4, 1)])
def test_a_cnn_image_shape_that_disagrees_with_its_arrays_is_refused_before_building(
    tmp_path, shape
):
    """The whitening stem's filters are built for the recorded image shape's channels (8c
    by c): a shape whose channels are not those of the stored filters would allocate
    gigabytes first; one that is not the preprocessing's would predict nonsense."""
    arrays = members(saved(tmp_path, "cnn", stem="whiten"))
    arrays["model/image_shape_"] = np.array(shape, dtype=np.int64)
    arrays["model/n_features_in_"] = np.array(int(np.prod(shape)), dtype=np.int64)
    path = write_npz(tmp_path / "shape.npz", arrays)
    errors = []

    def load():
        try:
            load_model(path)
        except ValueError as e:
            errors.append(str(e))

    peak = peak_bytes(load)
    assert errors and ("channels = 1" in errors[0] or "preprocessing makes" in errors[0])
    assert peak < 20 << 20
