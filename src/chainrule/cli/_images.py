"""Image files for ``chainrule predict``: named files and folders of them, decoded as image
folders are, at the size a model reads.

A folder stands for every image file below it (sorted by path, hidden files left out).
A named file that cannot be read is an error; in a folder such a file, or one that is not
an image, is left out with one warning naming them all (``--strict``: an error). An image
of another size than the model's is resized to it (`chainrule.data.resize_images`, the
resize an exported graph does), and one line on stderr says which and how; ``--no-resize``
refuses them instead.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from chainrule.cli import CommandError
from chainrule.cli._common import info, match_channels


def collect(names: list[str], strict: bool) -> tuple[list[str], set[str]]:
    """(image files to classify, those named on the command line): folders expanded."""
    from chainrule.data import DataWarning
    from chainrule.data.folder import image_files

    files, named, odd = [], set(), []
    for name in names:
        if not Path(name).is_dir():
            files.append(name)
            named.add(name)
            continue
        images, others = image_files(name)
        if not images:
            raise CommandError(f"no image files (.png, .jpg, .jpeg, .bmp) in the folder {name}")
        files += [str(p) for p in images]
        odd += [f"{p} is not an image file" for p in others]
    files_text = f"{len(odd)} file{'s' * (len(odd) != 1)}"
    if odd and strict:
        raise CommandError(f"cannot use {files_text} of the folders: " + "; ".join(odd))
    if odd:
        warnings.warn(DataWarning(f"left out {files_text}: " + "; ".join(odd)), stacklevel=2)
    return files, named


def decode(files: list[str], named: set[str], strict: bool) -> tuple[list[str], list]:
    """(the files that could be read, their images (H, W, 3) uint8). A named file that
    cannot be read is an error, one in a folder is left out with a warning (``strict``:
    an error); every problem is named at once."""
    from chainrule.data import DataWarning, read_image

    kept, images, problems = [], [], []
    for path in files:
        try:
            images.append(read_image(path, "RGB"))
            kept.append(path)
        except FileNotFoundError:
            problems.append((path, f"no such image file: {path}"))
        except (OSError, ValueError) as e:
            problems.append((path, str(e)))
    if any(path in named for path, _ in problems) or (problems and strict):
        raise CommandError("; ".join(text for _, text in problems))
    if problems:
        text = f"left out {len(problems)} of {len(files)} image files: "
        warnings.warn(DataWarning(text + "; ".join(t for _, t in problems)), stacklevel=2)
    if not kept:
        raise CommandError("none of the image files could be read")
    return kept, images


def sized(args, paths: list[str], images: list, shape, resize_here: bool) -> list:
    """``images`` with the channels of ``shape`` (H, W, C), resized to its H x W where
    ``resize_here`` (else left for the model to resize); ``--no-resize`` refuses other
    sizes. One line on stderr says what was resized, unless ``--quiet``."""
    from chainrule.data import resize_images
    from chainrule.data.resize import RESIZE_METHOD, format_size

    if shape is None:
        return images
    h, w, c = (int(s) for s in shape)
    images = [match_channels(im[None], c)[0] for im in images]
    other = defaultdict(list)
    for path, im in zip(paths, images):
        if im.shape[:2] != (h, w):
            other[im.shape[:2]].append(path)
    if not other:
        return images
    listed = "; ".join(f"{format_size(*s)}: {', '.join(p)}" for s, p in other.items())
    if getattr(args, "no_resize", False):
        raise CommandError(
            f"the model reads images of {format_size(h, w)} (without --no-resize they are "
            f"resized to it), and these have another size: {listed}"
        )
    n = sum(len(p) for p in other.values())
    where = "" if resize_here else " inside the ONNX graph"
    info(
        args,
        f"chainrule predict: resizing {n} of {len(images)} images to the model's "
        f"{format_size(h, w)}{where}, {RESIZE_METHOD}: {listed}",
    )
    if not resize_here:
        return images
    return [resize_images(im, h, w) for im in images]


def batches(images: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """(indices, stacked images) for each size among ``images``, in order of first use."""
    groups = defaultdict(list)
    for i, im in enumerate(images):
        groups[im.shape].append(i)
    return [(np.array(idx), np.stack([images[i] for i in idx])) for idx in groups.values()]
