"""Contact sheets and their tiles, and the search's printed summary."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from chainrule.report.examples import mistakes_record, predicted_probability
from chainrule.report.html import tile
from chainrule.report.images import sheet_png, thumbnails
from chainrule.report.text import search_summary


def test_thumbnails_shrink_by_block_means_only_when_too_large():
    small = np.arange(2 * 8 * 8 * 1, dtype=np.uint8).reshape(2, 8, 8, 1)
    assert thumbnails(small) is small
    big = np.zeros((1, 200, 150, 3), dtype=np.uint8)
    big[0, :100] = 200  # the top half bright
    out = thumbnails(big, max_side=96)  # factor 3: 200 -> 66, 150 -> 50
    assert out.shape == (1, 66, 50, 3)
    assert out[0, 0, 0, 0] == 200 and out[0, -1, 0, 0] == 0
    assert out[0, 33, 0, 0] == round(200 / 3)  # the block straddling the edge: its mean


def test_a_sheet_puts_tile_k_at_row_k_div_columns():
    tiles = [np.full((4, 3, 3), k * 20, dtype=np.uint8) for k in range(5)] + [None]
    png, layout = sheet_png(tiles, columns=4)
    assert layout == {"tile": [4, 3], "columns": 4, "rows": 2}
    with Image.open(io.BytesIO(png)) as im:
        sheet = np.asarray(im.convert("RGB"))
    assert sheet.shape == (8, 12, 3)
    for k in range(5):
        r, c = divmod(k, 4)
        assert (sheet[r * 4 : r * 4 + 4, c * 3 : c * 3 + 3] == k * 20).all()
    assert (sheet[4:, 3:6] == 255).all()  # the empty place
    with pytest.raises(ValueError, match="tile 1 has shape"):
        sheet_png([tiles[0], np.zeros((2, 2, 3), np.uint8)], 2)
    # a page shows tile 5 of it by placing the sheet behind a window
    html = tile("s.png", layout, 5, "alt", size=30)
    assert 'style="width:22px;height:30px"' in html
    assert re.search(r"width:90px;height:60px;left:-22px;top:-30px", html)


def test_mistakes_most_confident_first_with_their_files(tmp_path):
    images = np.zeros((6, 4, 4, 1), dtype=np.uint8)
    truth = np.array([0, 1, 1, 0, 1, 0])
    pred = np.array([0, 0, 1, 1, 0, 1])  # rows 1, 3, 4, 5 wrong
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.95, 0.05], [0.3, 0.7]])

    def probability(rows):
        return predicted_probability(proba[rows], pred[rows])

    files = [f"f{i}.png" for i in range(6)]
    record = mistakes_record(
        tmp_path, "m.png", images, truth, pred, ["cat", "dog"], split="val", files=files,
        probability=probability,
    )  # fmt: skip
    assert (record["n"], record["total"]) == (6, 4)
    assert [m["index"] for m in record["items"]] == [4, 3, 5, 1]  # 0.95, 0.7, 0.7 (tie: order), 0.6
    assert record["items"][0] == {
        "index": 4, "true": "dog", "pred": "cat", "probability": 0.95, "file": "f4.png"
    }  # fmt: skip
    assert (tmp_path / "m.png").is_file() and record["layout"]["columns"] == 4
    none = mistakes_record(tmp_path, "n.png", images, truth, truth, ["cat", "dog"], split="val")
    assert none["total"] == 0 and none["items"] == [] and not (tmp_path / "n.png").exists()
    # a label the model has no column for (a class absent from its training data)
    assert np.isnan(predicted_probability(proba[:1], np.array([2]), known=[0, 1])[0])


def test_search_summary_names_the_best_and_lists_trials_best_first():
    rows = [
        {
            "params": {"lr": lr, "reg": 1e-3},
            "train_acc": acc + 0.01,
            "val_acc": acc,
            "fit_time": 0.2,
        }
        for lr, acc in zip([0.1 * (k + 1) for k in range(12)], np.linspace(0.5, 0.9, 12)[::-1])
    ]
    lines = search_summary({"grid": {"lr": [], "reg": []}, "results": rows, "time_s": 3.0})
    assert lines[0] == (
        "search: 12 trials in 3.0 s on the validation split; best lr=0.1 reg=0.001 "
        "(validation 90.00%)"
    )
    assert lines[1].split() == ["lr", "reg", "train", "acc", "val", "acc", "fit", "time"]
    assert lines[2].startswith("  * ") and "90.00%" in lines[2]
    assert (
        len(lines) == 2 + 10 + 1 and lines[-1] == "    ... 2 more in metrics.json and report.html"
    )
    assert search_summary({"results": []}) == []


def test_probabilities_never_round_to_certainty():
    from chainrule.report.model_section import percent

    assert [percent(p) for p in (0.5, 0.996, 0.9999, 1.0, 0.99999)] == [
        "50%", "99.6%", "99.99%", "100%", ">99.99%"
    ]  # fmt: skip


def test_a_comparison_without_test_split_has_no_test_column(digits_comparison):
    import json

    from chainrule.report.run_page import run_page

    metrics = json.loads((digits_comparison / "metrics.json").read_text())
    page = run_page(metrics, set(), "cmp")
    assert ">test acc<" in page
    for record in metrics["models"].values():
        record["test_accuracy"] = None
        record["confusion_matrix_test"] = None
    page = run_page(metrics, set(), "cmp")
    assert ">test acc<" not in page and ">validation acc<" in page
