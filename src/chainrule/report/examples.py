"""The pictures of a run's page: a few training images of each class, and the images a
model got wrong, most confident mistakes first.

Each set is one contact sheet (`chainrule.report.images`) in the run folder and a record
in ``metrics.json`` saying which tile shows what, so that the page can be written again
(``chainrule report``) without the data. Arrays in, files and records out: the caller
gives the images, labels and predictions, and the model's probabilities as a function.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from chainrule.report.images import sheet_png, thumbnails
from chainrule.report.pages import write_file

__all__ = ["SAMPLES_FILE", "mistakes_record", "predicted_probability", "samples_record"]

SAMPLES_FILE = "samples.png"
PER_CLASS = 8  # sample images of each class
MAX_CLASSES = 60  # classes shown with samples (the first ones)
MAX_MISTAKES = 48  # mistakes shown
# Mistakes whose probabilities are computed: beyond this many (k-NN on 10,000 CIFAR-10
# validation images gets 6,500 wrong) a seeded sample of them, so that the page costs a
# fraction of the evaluation, not another one.
MAX_SCORED = 2000


def samples_record(
    folder: str | os.PathLike, images: np.ndarray, labels: np.ndarray, classes: list[str],
    counts: dict[str, list[int]], seed: int = 0,
) -> dict:  # fmt: skip
    """Write ``samples.png`` (a row of up to 8 training ``images`` (N, H, W, C) uint8 per
    class, drawn with ``seed``) into ``folder``; returns its record: the sheet's layout,
    the images shown per class and ``counts`` (``{split: images per class}``)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    shown = classes[:MAX_CLASSES]
    tiles: list = []
    per_class = []
    for c in range(len(shown)):
        picked = np.sort(order[labels[order] == c][:PER_CLASS])
        tiles += list(thumbnails(images[picked])) if len(picked) else []
        tiles += [None] * (PER_CLASS - len(picked))
        per_class.append(int(len(picked)))
    if all(t is None for t in tiles):  # no class shown has a training image
        tiles[0] = np.full_like(thumbnails(images[:1])[0], 255)
    png, layout = sheet_png(tiles, PER_CLASS)
    write_file(Path(folder) / SAMPLES_FILE, png)
    return {
        "sheet": SAMPLES_FILE,
        "layout": layout,
        "per_class": per_class,
        "counts": counts,
        "classes_shown": len(shown),
    }


def mistakes_record(
    folder: str | os.PathLike, name: str, images: np.ndarray, truth: np.ndarray,
    pred: np.ndarray, classes: list[str], *, split: str, files: list[str] | None = None,
    probability: Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 0,
) -> dict:  # fmt: skip
    """The images that a model got wrong (``pred`` differs from ``truth``), the most
    confident first: their contact sheet ``name`` in ``folder`` and a record of each
    (index in the split, true and predicted class, the probability the model gave its
    prediction, the file name where the images came from files).

    ``probability(rows)``: the model's probability of its predicted class for the images
    at indices ``rows`` (None: mistakes in the split's order).
    """
    wrong = np.flatnonzero(np.asarray(pred) != np.asarray(truth))
    record = {"split": split, "n": int(len(truth)), "total": int(len(wrong)), "items": []}
    if not len(wrong):
        return record
    scored = wrong
    if len(wrong) > MAX_SCORED:
        rng = np.random.default_rng(seed)
        scored = np.sort(rng.choice(wrong, size=MAX_SCORED, replace=False))
        record["scored"] = MAX_SCORED
    p = None if probability is None else np.asarray(probability(scored), dtype=np.float64)
    key = np.zeros(len(scored)) if p is None else np.nan_to_num(p, nan=-1.0)
    top = np.lexsort((scored, -key))[:MAX_MISTAKES]
    for i in top:
        row = int(scored[i])
        record["items"].append({
            "index": row,
            "true": classes[int(truth[row])],
            "pred": classes[int(pred[row])],
            "probability": None if p is None or np.isnan(p[i]) else float(p[i]),
            "file": None if files is None else files[row],
        })  # fmt: skip
    png, layout = sheet_png(list(thumbnails(images[scored[top]])), min(12, len(top)))
    write_file(Path(folder) / name, png)
    record.update({"sheet": name, "layout": layout})
    return record


def predicted_probability(proba: np.ndarray, pred: np.ndarray, known=None) -> np.ndarray:
    """``proba`` (N, C), columns for the labels ``known`` (default 0..C-1): the column of
    each row's predicted label ``pred`` (N,), NaN where that label has no column."""
    proba = np.asarray(proba, dtype=np.float64)
    known = np.arange(proba.shape[1]) if known is None else np.asarray(known)
    columns = np.clip(np.searchsorted(known, pred), 0, proba.shape[1] - 1)
    found = known[columns] == pred
    return np.where(found, proba[np.arange(len(pred)), columns], np.nan)
