"""Image folders: ``DIR/<class>/*.png`` or ``DIR/{train,val,test}/<class>/...``.

Images are decoded with Pillow (imported on first use) in a thread pool, and the decoded
arrays are cached as an ``.npz`` file (no pickle) in the cache folder, keyed on the folder's
file list, sizes and modification times: a second load reads one file instead of decoding
every image again, and any added, removed or changed image makes a fresh decode.

An image's size is read from its header before any pixel is decoded: an image larger than
:data:`MAX_IMAGE_PIXELS`, or of another size than the dataset's first image, is refused
without being decoded (a PNG of 9500 x 9500 pixels can fit in 88 KB).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from chainrule._files import atomic_write

from .cache import cache_root, remove_stale_temps
from .dataset import Dataset
from .splits import carve

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "SPLIT_FOLDERS",
    "folder_splits",
    "load_folder",
    "read_image",
    "read_images",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
SPLIT_FOLDERS = ("train", "val", "test")
#: The most pixels (width x height) an image may have: 2**25, e.g. 8192 x 4096, about
#: 100 MB decoded as RGB. Larger images are refused from their header, before decoding.
MAX_IMAGE_PIXELS = 1 << 25
_CACHE_VERSION = 1
_CHUNK = 256
_STALE_TEMP_S = 600.0  # a cache file being written is never unchanged this long
_HEADER_LOCK = threading.Lock()


# -- decoding -----------------------------------------------------------------------------


def read_image(
    path: str | os.PathLike, mode: str = "RGB", max_pixels: int | None = None
) -> np.ndarray:
    """Decode one image file to an array (H, W, C) uint8, exactly as the folder loader does.

    ``mode`` is a Pillow mode: ``"RGB"`` gives C = 3, ``"L"`` (grayscale) gives C = 1.
    ``max_pixels`` (default :data:`MAX_IMAGE_PIXELS`) bounds width x height; the size is
    checked from the file's header, before decoding. Raises ``ValueError`` naming the file
    when it cannot be read as an image or is too large.
    """
    return _decode(os.fspath(path), mode, max_pixels)


class _Refused(ValueError):
    """An image refused from its header (raised as is, not as "cannot read image")."""


def _decode(path: str, mode: str, max_pixels: int | None, like: tuple | None = None):
    """``read_image``; with ``like = (first_path, (W, H))`` an image of another size than
    the first is refused before it is decoded."""
    from PIL import Image

    limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    try:
        with _open_header(path) as im:
            width, height = im.size
            if width * height > limit:
                raise _Refused(
                    f"image {path} is {width}x{height} pixels, more than the {limit:,} pixels "
                    "chainrule decodes (chainrule.data.folder.MAX_IMAGE_PIXELS)"
                )
            if like is not None and (width, height) != like[1]:
                raise _Refused(
                    f"image {path} is {width}x{height} pixels but {like[0]} is "
                    f"{like[1][0]}x{like[1][1]}; all images of a dataset must have the same size"
                )
            if im.mode != mode:
                im = im.convert(mode)
            arr = np.asarray(im)
    except (FileNotFoundError, _Refused):
        raise
    except Image.DecompressionBombError as exc:
        raise ValueError(
            f"image {path} is refused as a decompression bomb: {exc} (Pillow's "
            "PIL.Image.MAX_IMAGE_PIXELS)"
        ) from None
    except Exception as exc:  # Pillow raises many kinds of errors for broken files
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype != np.uint8:
        raise ValueError(f"cannot read image {path}: mode {mode} is not 8-bit")
    return arr


def _open_header(path: str):
    """``PIL.Image.open``: reads the header only. Pillow warns about images above its own
    limit (``PIL.Image.MAX_IMAGE_PIXELS``) here; chainrule's own limit, checked right
    after, decides instead, so that warning is silenced (Pillow's hard limit, twice its
    own, still raises DecompressionBombError). The warning filters are process-wide,
    hence the lock around the (short) header read."""
    import warnings

    from PIL import Image

    with _HEADER_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def read_images(
    paths,
    mode: str = "RGB",
    progress: bool = True,
    workers: int | None = None,
    desc: str = "decoding images",
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode image files that all have the same size into one array (N, H, W, C) uint8.

    Decoding runs in a thread pool (Pillow releases the GIL while it decodes) with a tqdm
    progress bar. Raises ``ValueError`` naming the first file that cannot be read, is
    larger than ``max_pixels`` (see :func:`read_image`) or whose size differs from the
    first image's (checked from its header, before decoding).
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("no image files given")
    first = _decode(paths[0], mode, max_pixels)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first
    like = (paths[0], (first.shape[1], first.shape[0]))

    def decode(lo: int, hi: int) -> int:
        for i in range(lo, hi):
            out[i] = _decode(paths[i], mode, max_pixels, like)
        return hi - lo

    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    bounds = [(lo, min(lo + _CHUNK, len(paths))) for lo in range(1, len(paths), _CHUNK)]
    with tqdm(total=len(paths), initial=1, unit="img", desc=desc, disable=not progress) as bar:
        if workers <= 1 or len(bounds) <= 1:
            for lo, hi in bounds:
                bar.update(decode(lo, hi))
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(decode, lo, hi) for lo, hi in bounds]
                try:
                    for future in futures:
                        bar.update(future.result())
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    return out


# -- listing ------------------------------------------------------------------------------


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _subdirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _walk_images(folder: Path, rel: str, out: list[tuple[str, int, int]]) -> None:
    """Append (relative path, size, mtime_ns) of every image below ``folder``, sorted."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            _walk_images(Path(entry.path), f"{rel}/{entry.name}", out)
        elif entry.is_file() and _is_image(entry.name):
            st = entry.stat()
            out.append((f"{rel}/{entry.name}", st.st_size, st.st_mtime_ns))


def _layout(root: Path) -> dict[str, Path] | None:
    """The split folders of ``root`` if it is laid out as ``root/{train,val,test}/<class>``,
    or None for a plain ``root/<class>`` folder."""
    subdirs = _subdirs(root)
    if subdirs and all(d in SPLIT_FOLDERS for d in subdirs):
        return {d: root / d for d in SPLIT_FOLDERS if d in subdirs}
    return None


def folder_splits(path: str | os.PathLike) -> tuple[str, ...]:
    """The ``split`` values that :func:`load_folder` accepts for this folder."""
    root = _check_root(path)
    layout = _layout(root)
    if layout is None:
        return ("train", "val", "all")
    names = [s for s in SPLIT_FOLDERS if s in layout or (s == "val" and "train" in layout)]
    return (*names, "all")


def _check_root(path) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"no such dataset name or folder: {os.fspath(path)!r}")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder of images")
    return root


# -- loading with a cache -----------------------------------------------------------------


def _load_set(
    folder: Path, classes: list[str], name: str, cache_dir, progress: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images, labels and file names (relative to ``folder``) of ``folder/<class>/...``
    for the given class list, cached."""
    files: list[tuple[str, int, int]] = []
    present = set(_subdirs(folder))
    for c in classes:
        if c in present:
            _walk_images(folder / c, c, files)
    if not files:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in the class folders of {folder}"
        )
    resolved = str(folder.resolve())
    key = hashlib.sha256(
        json.dumps(
            {"version": _CACHE_VERSION, "root": resolved, "classes": classes, "files": files},
            separators=(",", ":"),
        ).encode()
    ).hexdigest()[:32]
    prefix = hashlib.sha256(resolved.encode()).hexdigest()[:16]
    try:
        cache = cache_root(cache_dir) / "folders"
    except OSError:
        if cache_dir is not None:
            raise
        cache = None  # no usable default cache folder: decode every time
    entry = cache / f"{prefix}-{key}.npz" if cache is not None else None

    names = [rel for rel, _, _ in files]
    cached = _read_cache(entry, key, len(files)) if entry is not None else None
    if cached is not None:
        return (*cached, names)

    class_index = {c: i for i, c in enumerate(classes)}
    labels = np.array([class_index[rel.split("/", 1)[0]] for rel, _, _ in files], dtype=np.int64)
    images = read_images(
        [folder / rel for rel, _, _ in files], progress=progress, desc=f"decoding {name}"
    )
    if entry is not None:
        _write_cache(cache, entry, prefix, key, images, labels)
    return images, labels, names


def _read_cache(entry: Path, key: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    if not entry.is_file():
        return None
    try:
        with np.load(entry, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            images, labels = z["images"], z["labels"]
    except Exception:  # an unreadable cache entry is rebuilt, never trusted
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != n:
        return None
    if labels.dtype != np.int64 or labels.shape != (n,):
        return None
    return images, labels


def _write_cache(cache: Path, entry: Path, prefix: str, key: str, images, labels) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(cache, f"{prefix}-*.npz", ".tmp", _STALE_TEMP_S)
        with atomic_write(entry) as f:
            np.savez(f, images=images, labels=labels, key=np.array(key))
        # Entries for an older state of the same folder can never be hit again.
        for old in cache.glob(f"{prefix}-*.npz"):
            if old != entry:
                old.unlink(missing_ok=True)
    except OSError:
        # A cache that cannot be written (read-only, disk full) only costs speed next time.
        pass


def load_folder(
    path: str | os.PathLike,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    random_state: int = 0,
    progress: bool = True,
) -> Dataset:
    """Load an image folder (see :func:`chainrule.data.load` for the splits)."""
    root = _check_root(path)
    name = os.fspath(path)
    layout = _layout(root)

    if layout is None:
        classes = _subdirs(root)
        if not classes:
            raise ValueError(
                f"{root} has no class folders: expected {root}/<class>/*.png (or .jpg, .jpeg, "
                f".bmp), or {root}/train/<class>/... and {root}/test/<class>/..."
            )
        if split == "test":
            raise ValueError(
                f"{root} has no test/ folder (its images are in {root}/<class>/); use "
                "split='all' to take every image in it, e.g. to evaluate on it"
            )
        images, labels, files = _load_set(root, classes, name, cache_dir, progress)
        return carve(
            Dataset(images, labels, classes, name, "all", files), split, val_fraction, random_state
        )

    classes = sorted({c for d in layout.values() for c in _subdirs(d)})
    if not classes:
        raise ValueError(f"the split folders of {root} have no class folders in them")

    def load_part(part: str) -> Dataset:
        images, labels, files = _load_set(
            layout[part], classes, f"{name}/{part}", cache_dir, progress
        )
        return Dataset(images, labels, classes, name, part, [f"{part}/{f}" for f in files])

    if split == "all":
        parts = [load_part(p) for p in SPLIT_FOLDERS if p in layout]
        if len({p.image_shape for p in parts}) > 1:
            shapes = ", ".join(f"{p.split}: {p.image_shape}" for p in parts)
            raise ValueError(
                f"the split folders of {root} hold images of different sizes ({shapes})"
            )
        return Dataset(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.labels for p in parts]),
            classes,
            name,
            "all",
            [f for p in parts for f in p.files],
        )
    if split in layout and (split != "train" or "val" in layout):
        return load_part(split)
    if split in ("train", "val") and "train" in layout:
        return carve(load_part("train"), split, val_fraction, random_state)
    raise ValueError(
        f"{root} has no {split}/ folder; its splits are {', '.join(folder_splits(root))}"
    )
