"""Model files that lie: members nobody declared, headers and hyperparameters that claim
more than the file holds, NaN weights, damaged zip directories, unreadable files. Each is
refused with a ValueError (or PermissionError) naming the problem, before memory is spent
on what the file claims."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from chainrule.models import registry
from chainrule.models.io import load_model, save_model
from chainrule.models.spec import Member, ModelSpec

ROWS = np.random.default_rng(1).normal(size=(60, 12)).astype(np.float32)
LABELS = np.arange(60) % 3


def fitted(name: str, **params):
    defaults = {"knn": {}, "svm": {"epochs": 2}, "softmax": {"epochs": 2}}.get(name, {"epochs": 2})
    params = {**defaults, **params}
    if name != "knn":
        params.update(random_state=0, verbose=False)
    return registry.get_model_class(name)(**params).fit(ROWS, LABELS)


def members(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def write_zip(path, arrays: dict, *, raw: dict | None = None, compress=()) -> None:
    """Write ``arrays`` as .npy members (``compress``: names deflated) and ``raw`` members
    (name -> bytes) as they are."""
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            method = zipfile.ZIP_DEFLATED if key in compress else zipfile.ZIP_STORED
            zf.writestr(zipfile.ZipInfo(key + ".npy"), buf.getvalue(), compress_type=method)
        for key, data in (raw or {}).items():
            zf.writestr(zipfile.ZipInfo(key), data, compress_type=zipfile.ZIP_DEFLATED)


def with_params(arrays: dict, **changes) -> dict:
    params = json.loads(str(arrays["params_json"]))
    params.update(changes)
    return {**arrays, "params_json": np.array(json.dumps(params))}


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.fixture
def svm_file(tmp_path):
    return save_model(tmp_path / "svm.npz", fitted("svm"), classes=["a", "b", "c"])


# -- members nobody declared ------------------------------------------------------------


@pytest.mark.parametrize("name", ["model/extra", "extra", "prep/extra"])
def test_an_unknown_member_is_refused_before_it_is_read(tmp_path, svm_file, name):
    arrays = members(svm_file)
    arrays[name] = np.zeros(10_000_000, dtype=np.float32)  # 40 MB, deflated to 40 KB
    path = tmp_path / "extra.npz"
    write_zip(path, arrays, compress={name})
    assert path.stat().st_size < 200_000

    def load():
        with pytest.raises(ValueError, match=f"unknown member {name!r}"):
            load_model(path)

    assert peak_bytes(load) < 4_000_000


def test_a_member_that_is_not_an_npy_array_is_refused(tmp_path, svm_file):
    path = tmp_path / "raw.npz"
    write_zip(path, members(svm_file), raw={"notes.txt": b"hello"})
    with pytest.raises(ValueError, match="unknown member 'notes.txt'"):
        load_model(path)


def test_a_missing_member_is_named(tmp_path, svm_file):
    arrays = members(svm_file)
    del arrays["model/net.bias"]
    write_zip(tmp_path / "m.npz", arrays)
    with pytest.raises(ValueError, match="model/net.bias"):
        load_model(tmp_path / "m.npz")


def test_each_family_declares_exactly_what_it_stores():
    for name, params in [
        ("knn", {"k": 3}),
        ("svm", {}),
        ("softmax", {}),
        ("twolayer", {"hidden_size": 7}),
        ("mlp", {"hidden_dims": (6, 5), "batchnorm": True, "dropout": 0.2}),
        ("mlp", {"hidden_dims": (4,), "batchnorm": False, "dropout": 0.0}),
    ]:
        model = fitted(name, **params)
        declared = registry.get_model_spec(name).stored(model)
        assert declared is not None, name
        # Every stored array declared; every required one stored (k-NN may store its
        # training images instead of its rows: both are declared, neither required).
        assert set(declared) >= set(model._state_dict()), name
        assert {k for k, m in declared.items() if m.required} <= set(model._state_dict()), name


def test_a_state_that_breaks_its_declaration_is_not_written(tmp_path, monkeypatch):
    model = fitted("svm")
    spec = registry.get_model_spec("svm")
    monkeypatch.setattr(type(spec), "stored", lambda self, m: {"net.weight": Member(("D", "C"))})
    with pytest.raises(ValueError, match="does not declare"):
        save_model(tmp_path / "m.npz", model)
    assert not (tmp_path / "m.npz").exists()


# -- sizes claimed by hyperparameters and headers ----------------------------------------


def test_hyperparameters_that_disagree_with_the_weights_are_refused_before_building(tmp_path):
    path = save_model(tmp_path / "net.npz", fitted("twolayer", hidden_size=7))
    write_zip(tmp_path / "huge.npz", with_params(members(path), hidden_size=10**9))

    def load():
        with pytest.raises(ValueError, match=r"net\.0\.weight has shape \(12, 7\)"):
            load_model(tmp_path / "huge.npz")

    assert peak_bytes(load) < 4_000_000


def test_a_feature_count_that_disagrees_with_the_weights_is_refused(tmp_path):
    path = save_model(tmp_path / "net.npz", fitted("twolayer", hidden_size=7))
    arrays = members(path)
    arrays["model/n_features_in_"] = np.array(10**12, dtype=np.int64)
    write_zip(tmp_path / "m.npz", arrays)
    with pytest.raises(ValueError, match="n_features_in_ is 1000000000000"):
        load_model(tmp_path / "m.npz")


def npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def test_a_header_claiming_a_huge_array_is_refused_without_allocating(tmp_path, svm_file):
    arrays = members(svm_file)
    path = tmp_path / "m.npz"
    huge = {"model/net.weight.npy": npy_header((10**7, 10**7)) + b"\0" * 4096}
    write_zip(path, {k: v for k, v in arrays.items() if k != "model/net.weight"}, raw=huge)

    def load():
        with pytest.raises(ValueError, match="net.weight"):
            load_model(path)

    assert peak_bytes(load) < 4_000_000


def test_a_consistent_file_larger_than_the_limit_is_refused(svm_file):
    with pytest.raises(ValueError, match="needs .* bytes of memory, more than the limit"):
        load_model(svm_file, max_bytes=100)
    assert load_model(svm_file, max_bytes=10**6).name == "svm"


def test_a_member_whose_size_disagrees_with_its_header_is_damaged(tmp_path, svm_file):
    arrays = members(svm_file)
    short = {"model/net.weight.npy": npy_header((12, 3)) + b"\0" * 8}  # 144 bytes, 8 held
    kept = {k: v for k, v in arrays.items() if k != "model/net.weight"}
    write_zip(tmp_path / "m.npz", kept, raw=short)
    with pytest.raises(ValueError, match="damaged"):
        load_model(tmp_path / "m.npz")


# -- values -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize(
    "name, key", [("svm", "net.weight"), ("twolayer", "net.0.weight"), ("knn", "fit_X")]
)
def test_non_finite_weights_are_refused(tmp_path, name, key, bad):
    path = save_model(tmp_path / "m.npz", fitted(name))
    arrays = members(path)
    arrays[f"model/{key}"] = arrays[f"model/{key}"].copy()
    arrays[f"model/{key}"].flat[3] = bad
    write_zip(tmp_path / "bad.npz", arrays)
    with pytest.raises(ValueError, match=f"model/{key} holds NaN or infinite values"):
        load_model(tmp_path / "bad.npz")


def test_fewer_class_names_than_classes_is_refused(tmp_path):
    model = fitted("softmax")
    with pytest.raises(ValueError, match="2 class names given for a model with labels up to 2"):
        save_model(tmp_path / "m.npz", model, classes=["a", "b"])
    arrays = members(save_model(tmp_path / "m.npz", model, classes=["a", "b", "c"]))
    arrays["classes_json"] = np.array(json.dumps(["a", "b"]))
    write_zip(tmp_path / "few.npz", arrays)
    with pytest.raises(ValueError, match="names 2 classes but the model predicts 3"):
        load_model(tmp_path / "few.npz")


def test_names_given_per_entry_of_classes_are_kept_by_label(tmp_path):
    model = registry.get_model_class("knn")(k=1).fit(ROWS, LABELS + 4)
    path = save_model(tmp_path / "m.npz", model, classes=["four", "five", "six"])
    assert load_model(path).classes == ["0", "1", "2", "3", "four", "five", "six"]


def test_a_format_version_of_another_type_says_so(tmp_path, svm_file):
    arrays = members(svm_file)
    head = json.loads(str(arrays["__chainrule__"]))
    for version, needle in [("1", "the string '1'"), (1.0, "the float 1.0"), (True, "True")]:
        arrays["__chainrule__"] = np.array(json.dumps({**head, "version": version}))
        write_zip(tmp_path / "v.npz", arrays)
        with pytest.raises(ValueError, match="format version") as info:
            load_model(tmp_path / "v.npz")
        message = str(info.value)
        assert needle in message and "reads version 2" in message
        assert "version 2;" not in message.replace("reads version 2", "")


# -- damaged archives, unreadable files --------------------------------------------------


def central_directory(data: bytes) -> list[int]:
    """Offsets of the central directory's file headers."""
    out, pos = [], data.find(b"PK\x01\x02")
    while pos != -1:
        out.append(pos)
        pos = data.find(b"PK\x01\x02", pos + 4)
    return out


@pytest.mark.parametrize(
    "field, offset, fmt, value",
    [
        ("compression method", 10, "<H", 99),
        ("version needed", 6, "<H", 250),
        ("flags: encrypted", 8, "<H", 0x1),
        ("flags: strong encryption", 8, "<H", 0x41),
        ("flags: patched data", 8, "<H", 0x20),
        ("local header offset", 42, "<I", 0xFFFFFF00),
        ("uncompressed size", 24, "<I", 7),
    ],
)
def test_a_damaged_zip_directory_is_refused_in_one_message(
    tmp_path, svm_file, field, offset, fmt, value
):
    data = bytearray(svm_file.read_bytes())
    for entry in central_directory(bytes(data)):
        struct.pack_into(fmt, data, entry + offset, value)
    svm_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or damaged|not a chainrule model file"):
        load_model(svm_file)


def test_random_damage_to_the_zip_directory_gives_a_value_error_or_the_model(svm_file):
    data = svm_file.read_bytes()
    start = central_directory(data)[0]
    rng = np.random.default_rng(0)
    for pos in rng.integers(start, len(data), size=300):
        damaged = bytearray(data)
        damaged[pos] ^= int(rng.integers(1, 256))
        svm_file.write_bytes(bytes(damaged))
        try:
            loaded = load_model(svm_file)
        except ValueError:
            continue
        assert loaded.name == "svm"


def test_an_unreadable_file_says_permission_denied(svm_file, monkeypatch):
    import chainrule.models.io as io_module

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(io_module, "_open_file", denied)
    with pytest.raises(PermissionError, match="cannot be read: permission denied"):
        load_model(svm_file)


def test_an_unreadable_file_on_disk_says_permission_denied(unprivileged):
    folder, run = unprivileged
    path = save_model(folder / "svm.npz", fitted("svm"), classes=["a", "b", "c"])
    path.chmod(0)

    def check():
        with pytest.raises(PermissionError, match="permission denied"):
            load_model(path)

    run(check)


# -- run folders --------------------------------------------------------------------------


def test_a_run_folder_loads_like_on_the_command_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_model(run / "model.npz", fitted("svm"))
    assert load_model(run).path == run / "model.npz"
    cmp = tmp_path / "compare"
    cmp.mkdir()
    save_model(cmp / "svm.npz", fitted("svm"))
    save_model(cmp / "knn.npz", fitted("knn"))
    assert load_model(cmp, model="knn").name == "knn"
    with pytest.raises(ValueError, match="several models .*pick one"):
        load_model(cmp)


class Centroids:
    """A registered family without a spec: no declaration of its members."""

    def get_params(self, deep=True):
        return {}

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(0) for c in self.classes_])
        return self

    def _state_dict(self):
        return {"classes_": self.classes_, "means_": self.means_}

    def _load_state_dict(self, state):
        self.classes_, self.means_ = state["classes_"], state["means_"]


def test_a_family_without_a_declaration_still_gets_the_generic_checks(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._LOCATIONS, "centroids", (__name__, "Centroids"))
    monkeypatch.setitem(registry.MODEL_REGISTRY._classes, "centroids", Centroids)
    assert ModelSpec("centroids").stored(Centroids()) is None
    path = save_model(tmp_path / "c.npz", Centroids().fit(ROWS, LABELS))
    arrays = members(path)
    assert load_model(path).model.means_.shape == (3, 12)
    write_zip(tmp_path / "top.npz", {**arrays, "junk": np.zeros(3)})
    with pytest.raises(ValueError, match="unknown member 'junk'"):
        load_model(tmp_path / "top.npz")
    means = arrays["model/means_"].copy()
    means[0, 0] = np.nan
    write_zip(tmp_path / "nan.npz", {**arrays, "model/means_": means})
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_model(tmp_path / "nan.npz")
    with pytest.raises(ValueError, match="more than the limit"):
        load_model(path, max_bytes=64)


def test_json_nested_beyond_the_parser_is_damaged(tmp_path, svm_file):
    arrays = members(svm_file)
    arrays["classes_json"] = np.array("[" * 100_000 + "]" * 100_000)
    write_zip(tmp_path / "deep.npz", arrays)
    with pytest.raises(ValueError, match="'classes_json' is not valid JSON"):
        load_model(tmp_path / "deep.npz")
    arrays["params_json"] = np.array("[" * 100_000 + "]" * 100_000)
    write_zip(tmp_path / "deep.npz", arrays)
    with pytest.raises(ValueError, match="hyperparameters are 800,000 bytes long"):
        load_model(tmp_path / "deep.npz")


def test_unknown_members_are_refused_from_the_directory_alone(tmp_path, svm_file):
    lie = {"model/extra.npy": npy_header((10**7, 10**7)) + b"\0" * 64}
    write_zip(tmp_path / "m.npz", members(svm_file), raw=lie)
    with pytest.raises(ValueError, match="unknown member 'model/extra'"):
        load_model(tmp_path / "m.npz")
