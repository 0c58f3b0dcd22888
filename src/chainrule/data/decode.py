"""Decoding image files with Pillow: one file, files of one size, or photos as they come.

An image's size is read from its header before any pixel is decoded: an image larger than
:data:`MAX_IMAGE_PIXELS` is refused without being decoded (a PNG of 9500 x 9500 pixels
can fit in 88 KB). :func:`read_images` wants files of one size; :func:`decode_photos`
takes a folder's files as they are: a file that cannot be read is set aside with the
reason, and images of another size than the chosen one are resized to it
(:func:`chainrule.data.resize.resize_images`).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .resize import resize_images

__all__ = ["MAX_IMAGE_PIXELS", "Decoded", "decode_photos", "read_image", "read_images"]

#: The most pixels (width x height) an image may have: 2**25, e.g. 8192 x 4096, about
#: 100 MB decoded as RGB. Larger images are refused from their header, before decoding.
MAX_IMAGE_PIXELS = 1 << 25
_CHUNK = 256
_HEADER_LOCK = threading.Lock()


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
                    "chainrule decodes (chainrule.data.decode.MAX_IMAGE_PIXELS)"
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


def _in_chunks(n: int, start: int, work, workers: int | None, progress: bool, desc: str):
    """``work(lo, hi)`` over [start, n) in chunks of 256, in a thread pool (Pillow
    releases the GIL while it decodes), with a tqdm progress bar."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    bounds = [(lo, min(lo + _CHUNK, n)) for lo in range(start, n, _CHUNK)]
    with tqdm(total=n, initial=start, unit="img", desc=desc, disable=not progress) as bar:
        if workers <= 1 or len(bounds) <= 1:
            for lo, hi in bounds:
                work(lo, hi)
                bar.update(hi - lo)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(work, lo, hi) for lo, hi in bounds]
            try:
                for future, (lo, hi) in zip(futures, bounds):
                    future.result()
                    bar.update(hi - lo)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


def read_images(
    paths,
    mode: str = "RGB",
    progress: bool = True,
    workers: int | None = None,
    desc: str = "decoding images",
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode image files that all have the same size into one array (N, H, W, C) uint8.

    Decoding runs in a thread pool with a tqdm progress bar. Raises ``ValueError`` naming
    the first file that cannot be read, is larger than ``max_pixels`` (see
    :func:`read_image`) or whose size differs from the first image's (checked from its
    header, before decoding).
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("no image files given")
    first = _decode(paths[0], mode, max_pixels)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first
    like = (paths[0], (first.shape[1], first.shape[0]))

    def decode(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            out[i] = _decode(paths[i], mode, max_pixels, like)

    _in_chunks(len(paths), 1, decode, workers, progress, desc)
    return out


@dataclass
class Decoded:
    """Photos decoded by :func:`decode_photos`.

    images : (len(kept), height, width, C) uint8, at ``size``
    kept : (len(kept),) int64, the index in ``paths`` of each image
    failed : [(index, reason)] of the files that could not be read
    resized : [(index, (H, W))]: the images that had another size (H, W)
    size : (height, width) of every image in ``images``
    """

    images: np.ndarray
    kept: np.ndarray
    failed: list = field(default_factory=list)
    resized: list = field(default_factory=list)
    size: tuple = (0, 0)


def decode_photos(
    paths,
    mode: str = "RGB",
    size: tuple[int, int] | None = None,
    progress: bool = True,
    workers: int | None = None,
    desc: str = "decoding images",
    max_pixels: int | None = None,
) -> Decoded:
    """Decode image files of any sizes into images of one size (see :class:`Decoded`).

    ``size`` (height, width) is the size of the result; None takes the most common size
    among the files (at a tie, the size of the earliest file). Images of another size are
    resized (:func:`chainrule.data.resize.resize_images`). A file that cannot be read or
    is larger than ``max_pixels`` (checked from its header) is left out and named in
    ``failed`` with the reason, never decoded in part.
    """
    paths = [os.fspath(p) for p in paths]
    size = None if size is None else (int(size[0]), int(size[1]))
    failed: dict[int, str] = {}
    start, first = 0, None
    while first is None and start < len(paths):  # the first readable file sets the layout
        try:
            first = _decode(paths[start], mode, max_pixels)
        except (OSError, ValueError) as e:
            failed[start] = _reason(e)
        start += 1
    if first is None:
        return Decoded(np.empty((0, 0, 0, 0), np.uint8), np.empty(0, np.int64), _listed(failed))
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[start - 1] = first
    others: dict[int, np.ndarray] = {}  # images of another size than the first

    def decode(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            try:
                arr = _decode(paths[i], mode, max_pixels)
            except (OSError, ValueError) as e:
                failed[i] = _reason(e)
                continue
            if arr.shape == first.shape:
                out[i] = arr
            else:
                others[i] = arr

    _in_chunks(len(paths), start, decode, workers, progress, desc)
    kept = np.array([i for i in range(start - 1, len(paths)) if i not in failed], np.int64)
    return _one_size(out, kept, others, first.shape[:2], size, _listed(failed))


def _one_size(out, kept, others, first_size, size, failed) -> Decoded:
    """The kept images of ``out`` (rows of the first image's size) and ``others``, all
    at ``size`` (None: the most common size), in the order of ``kept``."""
    if not others and len(kept) == len(out) and size in (None, tuple(first_size)):
        return Decoded(out, kept, failed, [], tuple(first_size))  # every image read, one size
    sizes = [tuple(others[i].shape[:2]) if i in others else first_size for i in kept]
    if size is None:
        counts = Counter(sizes)
        size = max(counts, key=lambda s: (counts[s], -sizes.index(s)))
    size = (int(size[0]), int(size[1]))
    resized = [(int(i), s) for i, s in zip(kept, sizes) if s != size]
    if size == tuple(first_size):
        for j, i in enumerate(kept):  # compact in place: kept is increasing, j <= i
            out[j] = resize_images(others[i], *size) if i in others else out[i]
        images = out[: len(kept)]
    else:
        images = np.empty((len(kept), *size, out.shape[3]), dtype=np.uint8)
        for j, i in enumerate(kept):
            images[j] = resize_images(others[i] if i in others else out[i], *size)
    return Decoded(images, kept, failed, resized, size)


def _reason(e: Exception) -> str:
    return str(e) if not isinstance(e, FileNotFoundError) else f"no such file: {e.filename}"


def _listed(failed: dict[int, str]) -> list[tuple[int, str]]:
    return sorted(failed.items())
