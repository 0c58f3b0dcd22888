"""Image folders: both layouts, decoding, errors naming files, and the decoded-array cache."""

import os

import numpy as np
import pytest
from PIL import Image

import chainrule.data as data
from chainrule.data import folder as folder_mod


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
    with pytest.raises(ValueError, match=f"cannot read image {bad}"):
        data.load(tmp_path / "imgs", "all", cache_dir=tmp_path / "cache", progress=False)


def test_mismatched_sizes_name_the_file(tmp_path):
    make_flat(tmp_path / "imgs")
    odd = tmp_path / "imgs" / "dog" / "004.png"
    write(odd, np.zeros((7, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=f"{odd} is 5x7 pixels.*same size"):
        data.load(tmp_path / "imgs", "all", cache_dir=tmp_path / "cache", progress=False)


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

    monkeypatch.setattr(folder_mod, "read_image", refuse)
    monkeypatch.setattr(folder_mod, "read_images", refuse)
    second = data.load(tmp_path / "imgs", "all", **kw)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert second.classes == first.classes


def test_cache_invalidated_when_a_file_changes(tmp_path, monkeypatch):
    make_flat(tmp_path / "imgs")
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    data.load(tmp_path / "imgs", "all", **kw)
    changed = tmp_path / "imgs" / "bird" / "001.png"
    write(changed, np.full((6, 5, 3), 7, np.uint8))
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    decoded = []
    real = folder_mod.read_images
    monkeypatch.setattr(folder_mod, "read_images", lambda p, **k: decoded.append(p) or real(p, **k))
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


def test_an_oversized_image_in_a_folder_is_not_decoded(tmp_path, monkeypatch):
    make_flat(tmp_path / "imgs", n_per_class=2)
    bomb = png_bomb(tmp_path / "imgs" / "dog" / "zzz.png", width=2000, height=3000)
    from PIL import ImageFile

    real_load = ImageFile.ImageFile.load

    def small_only(self, *args, **kwargs):
        assert self.size[0] * self.size[1] <= 100, f"decoded {self.size}"
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", small_only)
    with pytest.raises(ValueError, match=f"{bomb} is 2000x3000 pixels but .* is 5x6"):
        data.load(tmp_path / "imgs", "all", cache_dir=tmp_path / "cache", progress=False)


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
