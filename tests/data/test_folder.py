"""Image folders: both layouts, decoding, errors naming files, and the decoded-array cache."""

import io
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
from PIL import Image

import chainrule.data as data
from chainrule.data import decode as decode_mod
from chainrule.data import folder as folder_mod
from chainrule.data.report import DataWarning
from chainrule.data.resize import resize_images


def write(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def make_flat(root, n_per_class=5, size=(6, 5), seed=0):
    """root/<class>/*.png with random pixels; returns {relative path: array}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for c in ("dog", "cat", "bird"):
        for i in range(n_per_class):
            arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            write(root / c / f"{i:03d}.png", arr)
            truth[f"{c}/{i:03d}.png"] = arr
    return truth


def test_flat_folder_all_split(tmp_path):
    truth = make_flat(tmp_path / "imgs")
    (tmp_path / "imgs" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "imgs" / "cat" / ".hidden.png").write_bytes(b"junk")
    with pytest.warns(DataWarning, match=r"left out 1 file .*cat/notes\.txt is not an image"):
        ds = data.load(tmp_path / "imgs", "all", cache_dir=tmp_path / "cache", progress=False)
    assert ds.classes == ["bird", "cat", "dog"]
    assert ds.images.shape == (15, 6, 5, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    # Files in class order, then name order.
    expected = [truth[k] for k in sorted(truth, key=lambda k: (k.split("/")[0], k))]
    np.testing.assert_array_equal(ds.images, np.stack(expected))
    assert ds.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_flat_folder_train_val_and_no_test(tmp_path):
    make_flat(tmp_path / "imgs", n_per_class=10)
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    train = data.load(str(tmp_path / "imgs"), "train", **kw)
    val = data.load(str(tmp_path / "imgs"), "val", **kw)
    assert (len(train), len(val)) == (24, 6)
    assert val.class_counts().tolist() == [2, 2, 2]
    together = {r.tobytes() for r in np.concatenate([train.images, val.images])}
    assert len(together) == 30
    assert data.available_splits(tmp_path / "imgs") == ("train", "val", "all")
    with pytest.raises(ValueError, match="split='all'"):
        data.load(tmp_path / "imgs", "test", **kw)


def test_split_layout_with_jpg_bmp_and_grayscale(tmp_path):
    root = tmp_path / "ds"
    rng = np.random.default_rng(1)
    smooth = np.full((8, 8, 3), 120, np.uint8)
    write(root / "train" / "a" / "0.jpg", smooth)
    write(root / "train" / "a" / "1.JPEG", smooth, fmt="JPEG")
    write(root / "train" / "b" / "0.bmp", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    write(root / "train" / "c" / "0.png", gray)
    write(root / "test" / "b" / "0.png", np.zeros((8, 8, 3), np.uint8))
    write(root / "test" / "b" / "nested" / "1.png", np.ones((8, 8, 3), np.uint8))
    kw = dict(cache_dir=tmp_path / "cache", progress=False)

    assert data.available_splits(root) == ("train", "val", "test", "all")
    train = data.load(root, "train", val_fraction=0, **kw)
    assert train.classes == ["a", "b", "c"]
    assert train.labels.tolist() == [0, 0, 1, 2]
    assert np.abs(train.images[:2].astype(int) - 120).max() <= 2  # JPEG is lossy
    np.testing.assert_array_equal(train.images[3], np.repeat(gray[:, :, None], 3, axis=2))
    test = data.load(root, "test", **kw)
    assert test.classes == ["a", "b", "c"]  # the union of all splits' classes
    assert test.labels.tolist() == [1, 1]
    np.testing.assert_array_equal(test.images[1], np.ones((8, 8, 3)))
    assert len(data.load(root, "all", **kw)) == 6


def test_split_layout_with_val_folder_is_used_as_is(tmp_path):
    root = tmp_path / "ds"
    for split, n in (("train", 4), ("val", 2)):
        for c in ("x", "y"):
            for i in range(n):
                write(root / split / c / f"{i}.png", np.full((4, 4, 3), i, np.uint8))
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    assert len(data.load(root, "train", **kw)) == 8
    assert len(data.load(root, "val", **kw)) == 4
    with pytest.raises(ValueError, match="no test/ folder"):
        data.load(root, "test", **kw)


def test_unreadable_image_is_named(tmp_path):
    make_flat(tmp_path / "imgs")
    bad = tmp_path / "imgs" / "dog" / "002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.warns(DataWarning, match=f"cannot read image {bad}"):
        ds = data.load(tmp_path / "imgs", "all", cache_dir=tmp_path / "cache", progress=False)
    assert len(ds) == 14
    with pytest.raises(ValueError, match=f"cannot use 1 file of .*cannot read image {bad}"):
        data.load(tmp_path / "imgs", "all", cache_dir=tmp_path / "c2", progress=False, strict=True)


def test_images_of_another_size_are_resized_to_the_most_common(tmp_path):
    truth = make_flat(tmp_path / "imgs")
    odd = tmp_path / "imgs" / "dog" / "004.png"
    big = np.random.default_rng(3).integers(0, 256, (14, 9, 3), dtype=np.uint8)
    write(odd, big)
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    message = (
        r"resized 1 of 15 images of .* to 5x6 pixels, the most common size .*9x14 pixels: dog/"
    )
    for _ in range(2):  # decoded, then from the cache: the same images, the same warning
        with pytest.warns(DataWarning, match=message):
            ds = data.load(tmp_path / "imgs", "all", **kw)
        assert ds.images.shape == (15, 6, 5, 3)
        np.testing.assert_array_equal(ds.images[-1], resize_images(big, 6, 5))
        np.testing.assert_array_equal(ds.images[0], truth["bird/000.png"])
    # another size asked for: every image resized to it
    with pytest.warns(
        DataWarning, match="resized 15 of 15 images .* to 3x4 pixels, the size asked for"
    ):
        small = data.load(tmp_path / "imgs", "all", image_size=(4, 3), **kw)
    np.testing.assert_array_equal(small.images[0], resize_images(truth["bird/000.png"], 4, 3))


def test_the_first_readable_image_need_not_have_the_common_size(tmp_path):
    make_flat(tmp_path / "imgs")
    (tmp_path / "imgs" / "bird" / "000.png").write_bytes(b"junk")
    write(tmp_path / "imgs" / "bird" / "001.png", np.zeros((9, 9, 3), np.uint8))
    with pytest.warns(DataWarning) as caught:
        ds = data.load(tmp_path / "imgs", "all", cache_dir=tmp_path / "cache", progress=False)
    assert ds.images.shape == (14, 6, 5, 3)
    assert np.all(ds.images[0] == 0)
    text = " ".join(str(w.message) for w in caught)
    assert "bird/000.png" in text and "9x9 pixels: bird/001.png" in text


def test_every_odd_file_and_empty_class_is_reported_at_once(tmp_path):
    root = tmp_path / "imgs"
    make_flat(root)
    (root / "cat" / "001.png").write_bytes(b"")  # empty file
    good = np.asarray(Image.open(root / "dog" / "000.png"))
    write(root / "dog" / "broken.jpg", good)
    (root / "dog" / "broken.jpg").write_bytes((root / "dog" / "broken.jpg").read_bytes()[:200])
    (root / "dog" / "labels.csv").write_text("a,b\n")
    (root / "spoon").mkdir()  # an empty class folder
    (root / "fork").mkdir()
    (root / "fork" / "readme.txt").write_text("photos to come")
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    with pytest.warns(DataWarning) as caught:
        ds = data.load(root, "all", **kw)
    assert ds.classes == ["bird", "cat", "dog"]  # no class without images
    assert len(ds) == 14 and ds.labels.max() == 2
    (warning,) = [str(w.message) for w in caught]
    assert warning.startswith(f"left out 4 files and 2 class folders of {root}")
    for needle in (
        "cat/001.png",
        "broken.jpg",
        "dog/labels.csv is not an image file",
        "fork/readme.txt",
        "'spoon' has no image files",
        "'fork' has no image",
    ):
        assert needle in warning, needle
    with pytest.raises(ValueError) as refused:
        data.load(root, "all", strict=True, **kw)
    assert str(refused.value).startswith(f"cannot use 4 files and 2 class folders of {root}")


def test_a_class_whose_images_cannot_be_read_is_not_a_class(tmp_path):
    make_flat(tmp_path / "imgs")
    for f in (tmp_path / "imgs" / "cat").iterdir():
        f.write_bytes(b"not an image")
    with pytest.warns(DataWarning, match="'cat' has no image that could be read"):
        ds = data.load(tmp_path / "imgs", "all", cache_dir=tmp_path / "cache", progress=False)
    assert ds.classes == ["bird", "dog"] and ds.labels.tolist() == [0] * 5 + [1] * 5


def test_split_layout_empty_class_and_sizes_of_the_first_split(tmp_path):
    root = tmp_path / "ds"
    for c in ("a", "b"):
        for i in range(3):
            write(root / "train" / c / f"{i}.png", np.full((6, 8, 3), 40 * i, np.uint8))
        write(root / "test" / c / "0.png", np.full((12, 16, 3), 90, np.uint8))
    (root / "train" / "empty").mkdir()
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    with pytest.warns(DataWarning, match="'empty' has no image files"):
        train = data.load(root, "train", val_fraction=0, **kw)
    assert train.classes == ["a", "b"]
    with pytest.warns(DataWarning, match="resized 2 of 8 images .* to 8x6 pixels.*test/a/0.png"):
        everything = data.load(root, "all", **kw)
    assert everything.images.shape == (8, 6, 8, 3)
    test = data.load(root, "test", image_size=(6, 8), **kw)
    np.testing.assert_array_equal(test.images, np.full((2, 6, 8, 3), 90, np.uint8))


def test_parallel_decoding_matches_serial(tmp_path):
    truth = make_flat(tmp_path / "imgs", n_per_class=100, size=(4, 4))  # > one chunk of 256
    paths = [tmp_path / "imgs" / k for k in sorted(truth)]
    serial = data.read_images(paths, progress=False, workers=1)
    threaded = data.read_images(paths, progress=False, workers=3)
    np.testing.assert_array_equal(serial, threaded)
    np.testing.assert_array_equal(serial, np.stack([truth[k] for k in sorted(truth)]))


def test_cache_hit_does_not_decode(tmp_path, monkeypatch):
    make_flat(tmp_path / "imgs")
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    first = data.load(tmp_path / "imgs", "all", **kw)
    assert len(list((tmp_path / "cache" / "folders").glob("*.npz"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(folder_mod, "decode_photos", refuse)
    second = data.load(tmp_path / "imgs", "all", **kw)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert second.classes == first.classes


def test_asking_for_the_folders_own_size_reads_its_cache(tmp_path, monkeypatch):
    """eval asks for the model's size, which is the training folder's own: no decoding."""
    make_flat(tmp_path / "imgs")
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    first = data.load(tmp_path / "imgs", "all", **kw)

    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the cache holds the folder at that size")

    monkeypatch.setattr(folder_mod, "decode_photos", refuse)
    again = data.load(tmp_path / "imgs", "all", image_size=(6, 5), **kw)
    np.testing.assert_array_equal(again.images, first.images)
    with pytest.raises(AssertionError, match="decoded although"):
        data.load(tmp_path / "imgs", "all", image_size=(3, 3), **kw)


def test_cache_invalidated_when_a_file_changes(tmp_path, monkeypatch):
    make_flat(tmp_path / "imgs")
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    data.load(tmp_path / "imgs", "all", **kw)
    changed = tmp_path / "imgs" / "bird" / "001.png"
    write(changed, np.full((6, 5, 3), 7, np.uint8))
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    decoded = []
    real = folder_mod.decode_photos
    monkeypatch.setattr(
        folder_mod, "decode_photos", lambda p, **k: decoded.append(p) or real(p, **k)
    )
    ds = data.load(tmp_path / "imgs", "all", **kw)
    assert len(decoded) == 1
    np.testing.assert_array_equal(ds.images[1], np.full((6, 5, 3), 7))
    # The entry for the old state is gone; only the new one is kept.
    assert len(list((tmp_path / "cache" / "folders").glob("*.npz"))) == 1

    (tmp_path / "imgs" / "bird" / "001.png").unlink()  # a removed file changes the key too
    assert len(data.load(tmp_path / "imgs", "all", **kw)) == 14
    assert len(decoded) == 2


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    make_flat(tmp_path / "imgs")
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    first = data.load(tmp_path / "imgs", "all", **kw)
    (entry,) = (tmp_path / "cache" / "folders").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:1000])
    again = data.load(tmp_path / "imgs", "all", **kw)
    np.testing.assert_array_equal(first.images, again.images)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    make_flat(tmp_path / "imgs", n_per_class=1)
    monkeypatch.setenv("CHAINRULE_CACHE", str(tmp_path / "envcache"))
    data.load(tmp_path / "imgs", "all", progress=False)
    assert len(list((tmp_path / "envcache" / "folders").glob("*.npz"))) == 1


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset name or folder"):
        data.load(tmp_path / "missing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        data.load(tmp_path / "empty", "all", cache_dir=tmp_path, progress=False)
    (tmp_path / "noimg" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        data.load(tmp_path / "noimg", "all", cache_dir=tmp_path, progress=False)


def test_read_image_modes(tmp_path):
    arr = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    write(tmp_path / "x.png", arr)
    np.testing.assert_array_equal(data.read_image(tmp_path / "x.png"), arr)
    gray = data.read_image(tmp_path / "x.png", mode="L")
    assert gray.shape == (4, 4, 1) and gray.dtype == np.uint8


# -- images too large to decode ----------------------------------------------------------


def png_bomb(path, width=9500, height=9500):
    """A valid 1-bit PNG of width x height black pixels: a few kilobytes on disk, a
    gigabyte or so once decoded to RGB (the size of the image's header is the only honest
    number in it)."""
    import struct
    import zlib

    def chunk(kind, payload):
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails the test if Pillow decodes any pixel (the size must be judged from the header)."""
    from PIL import ImageFile

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"decoded {self.size[0]}x{self.size[1]} pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.filterwarnings("error")  # one clear error, not Pillow's warning beside it
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, no_decoding):
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(
        ValueError, match=r"bomb\.png is 9500x9500 pixels, more than the 33,554,432"
    ):
        data.read_image(bomb)
    with pytest.raises(ValueError, match="9500x9500 pixels, more than the 1,000 pixels"):
        data.read_image(bomb, max_pixels=1000)


def test_an_oversized_image_in_a_folder_is_left_out_without_decoding(tmp_path, monkeypatch):
    make_flat(tmp_path / "imgs", n_per_class=2)
    bomb = png_bomb(tmp_path / "imgs" / "dog" / "zzz.png", width=2000, height=3000)
    from PIL import ImageFile

    real_load = ImageFile.ImageFile.load

    def small_only(self, *args, **kwargs):
        if self.size[0] * self.size[1] > 100:
            pytest.fail(f"decoded {self.size}")  # not an Exception: never caught on the way
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", small_only)
    monkeypatch.setattr(decode_mod, "MAX_IMAGE_PIXELS", 1000)
    with pytest.warns(DataWarning, match=f"{bomb} is 2000x3000 pixels, more than the 1,000"):
        ds = data.load(tmp_path / "imgs", "all", cache_dir=tmp_path / "cache", progress=False)
    assert len(ds) == 6


def test_pillow_decompression_bomb_error_is_a_clear_error(tmp_path, no_decoding):
    from PIL import Image

    bomb = png_bomb(tmp_path / "b.png", width=20_000, height=20_000)  # > 2x Pillow's limit
    assert 20_000 * 20_000 > 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match=r"b\.png is refused as a decompression bomb.*Pillow"):
        data.read_image(bomb, max_pixels=10**9)


def test_each_image_keeps_its_file_name_through_splits_and_the_cache(tmp_path):
    truth = make_flat(tmp_path / "imgs", n_per_class=10)
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    for _ in range(2):  # decoded, then read back from the cache
        for split in ("train", "val", "all"):
            ds = data.load(tmp_path / "imgs", split, **kw)
            assert len(ds.files) == len(ds)
            for image, label, name in zip(ds.images, ds.labels, ds.files):
                np.testing.assert_array_equal(image, truth[name])
                assert name.split("/")[0] == ds.classes[label]
    root = tmp_path / "split"
    for part in ("train", "test"):
        make_flat(root / part, n_per_class=4, seed=len(part))
    test = data.load(root, "test", **kw)
    assert test.files[0] == "test/bird/000.png"
    both = data.load(root, "all", **kw)
    assert both.files[:1] == ["train/bird/000.png"] and both.files[-1] == "test/dog/003.png"
    assert data.load("digits", "train", progress=False).files is None


def _entry_members(entry):
    with np.load(entry, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rewrite(entry, members):
    with open(entry, "wb") as f:
        np.savez(f, **members)


def test_cache_entry_with_more_images_than_files_is_rebuilt(tmp_path):
    make_flat(tmp_path / "imgs")
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    first = data.load(tmp_path / "imgs", "all", **kw)
    (entry,) = (tmp_path / "cache" / "folders").glob("*.npz")
    m = _entry_members(entry)
    n = len(m["labels"]) + 3  # same key, more images than the folder has files
    m.update(images=np.zeros((n, *m["images"].shape[1:]), np.uint8),
             labels=np.zeros(n, np.int64), kept=np.zeros(n, np.int64))  # fmt: skip
    _rewrite(entry, m)
    again = data.load(tmp_path / "imgs", "all", **kw)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.labels, again.labels)


def test_cache_entry_whose_header_claims_a_huge_array_is_rebuilt(tmp_path):
    """The header is checked against the member's size before anything is allocated:
    a header claiming 1.3 GB of images costs a fresh decode, not 1.3 GB."""
    make_flat(tmp_path / "imgs")
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    first = data.load(tmp_path / "imgs", "all", **kw)
    (entry,) = (tmp_path / "cache" / "folders").glob("*.npz")
    m = _entry_members(entry)
    n, h, w, c = m["images"].shape
    with zipfile.ZipFile(entry, "w") as zf:
        for k, v in m.items():
            b = io.BytesIO()
            np.lib.format.write_array(b, v)
            raw = b.getvalue()
            if k == "images":  # the same data under a header claiming far more
                raw = raw.replace(repr((n, h, w, c)).encode(),
                                  repr((n, h * 1000, w * 1000, c)).encode())  # fmt: skip
            zf.writestr(f"{k}.npy", raw)
    tracemalloc.start()
    try:
        again = data.load(tmp_path / "imgs", "all", **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(first.images, again.images)
    assert peak < 100 * 2**20, f"reading the damaged entry allocated {peak:,} bytes"


def test_cache_entry_that_is_a_link_is_not_followed(tmp_path, monkeypatch):
    make_flat(tmp_path / "imgs")
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    data.load(tmp_path / "imgs", "all", **kw)
    (entry,) = (tmp_path / "cache" / "folders").glob("*.npz")
    target = tmp_path / "elsewhere.npz"
    entry.rename(target)
    entry.symlink_to(target)
    decoded = []
    real = folder_mod.decode_photos
    monkeypatch.setattr(
        folder_mod, "decode_photos", lambda p, **k: decoded.append(p) or real(p, **k)
    )
    data.load(tmp_path / "imgs", "all", **kw)
    assert decoded, "a cache entry behind a link was read"
