"""Pieces of the report pages: escaped text, tables, figures, image tiles, the document.

Every text that comes from a run (class names, file names, model and data names,
settings, errors) goes through `esc` (or an attribute through `attr`) before it is put
into a page. The page's style and script are inlined, so a page needs no network: its
pictures are files beside it in the run folder.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from importlib import resources

from chainrule.report.text import format_accuracy, format_seconds

__all__ = [
    "Cell",
    "acc_cell",
    "attr",
    "document",
    "esc",
    "facts",
    "figure",
    "table",
    "tile",
]

GENERATOR = "chainrule report"
REPORT_FILE = "report.html"  # the page of a run folder


def esc(text) -> str:
    """``text`` (any value) as HTML text."""
    return html.escape("" if text is None else str(text), quote=False)


def attr(text) -> str:
    """``text`` as the value of a double-quoted HTML attribute."""
    return html.escape("" if text is None else str(text), quote=True)


def _asset(name: str) -> str:
    return resources.files("chainrule.report").joinpath("page", name).read_text("utf-8")


def document(title: str, body: str) -> str:
    """A complete page: the style and the table-sorting script inlined."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{GENERATOR}">\n'
        f"<title>{esc(title)}</title>\n"
        f"<style>{_asset('report.css')}</style>\n"
        f"<script>{_asset('report.js')}</script>\n"
        f"</head><body>\n{body}\n</body></html>\n"
    )


class Cell:
    """A table cell: its HTML, the value the table sorts it by, and its CSS class."""

    def __init__(self, content: str, sort=None, cls: str | None = None):
        self.content = content
        self.sort = sort
        self.cls = cls


def acc_cell(acc: float | None, bar: bool = False, note: str = "") -> Cell:
    """An accuracy as a cell, sorted by its value; ``bar``: a meter of its length under
    the number; ``note``: HTML after the number (``(29/29)``)."""
    text = esc(format_accuracy(acc)) + note
    if acc is None or not bar:
        return Cell(text, acc)
    width = max(0.0, min(1.0, float(acc))) * 100
    meter = f'<span class="meter"><span style="width:{width:.1f}%"></span></span>'
    return Cell(text + meter, acc, "bar")


def time_cell(seconds: float | None) -> Cell:
    return Cell(esc(format_seconds(seconds)), seconds)


def _cell_html(value, tag: str = "td") -> str:
    if isinstance(value, Cell):
        sort = value.sort
        if isinstance(sort, float) and not math.isfinite(sort):
            sort = None
        data = "" if sort is None else f' data-sort="{attr(sort)}"'
        cls = f' class="{attr(value.cls)}"' if value.cls else ""
        return f"<{tag}{data}{cls}>{value.content}</{tag}>"
    return f"<{tag}>{esc(value)}</{tag}>"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence],
    *,
    sortable: bool = False,
    best: int | None = None,
    cls: str = "",
    caption: str | None = None,
) -> str:
    """An HTML table (in a box that scrolls sideways on a narrow screen). Cells are
    text (escaped here) or `Cell` (HTML already made safe); ``best``: the row marked."""
    classes = " ".join(c for c in ("sortable" if sortable else "", cls) if c)
    first = rows[0] if rows else []

    def aligned(k: int) -> str:  # a text column's heading is left-aligned like its cells
        cell = first[k] if k < len(first) else None
        text = isinstance(cell, Cell) and cell.cls in ("text", "wrap", "tiles")
        return ' class="text"' if text else ""

    head = "".join(f'<th scope="col"{aligned(k)}>{esc(h)}</th>' for k, h in enumerate(headers))
    body = []
    for i, row in enumerate(rows):
        mark = ' class="best"' if i == best else ""
        body.append(f"<tr{mark}>" + "".join(_cell_html(v) for v in row) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (
        f'<div class="scroll"><table class="{classes}">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def facts(items: Sequence[tuple[str, str]]) -> str:
    """A list of ``(name, HTML)`` pairs (names escaped here)."""
    inner = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="facts">{inner}</dl>'


def figure(src: str, caption: str, alt: str | None = None, cls: str | None = None) -> str:
    """A picture beside the page (``src`` a file name in the same folder)."""
    kind = f' class="{attr(cls)}"' if cls else ""
    return (
        f'<figure{kind}><img src="{attr(src)}" alt="{attr(alt or caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def tile(src: str, layout: dict, index: int, alt: str, size: int = 64) -> str:
    """Tile ``index`` of the contact sheet ``src`` (its ``layout`` from
    ``chainrule.report.images.sheet_png``), shown ``size`` pixels on its longer side."""
    h, w = layout["tile"]
    scale = size / max(h, w)
    tw, th = w * scale, h * scale
    r, c = divmod(index, layout["columns"])
    style = (
        f"width:{layout['columns'] * tw:.0f}px;height:{layout['rows'] * th:.0f}px;"
        f"left:{-c * tw:.0f}px;top:{-r * th:.0f}px"
    )
    return (
        f'<span class="tile" style="width:{tw:.0f}px;height:{th:.0f}px">'
        f'<img src="{attr(src)}" alt="{attr(alt)}" style="{style}"></span>'
    )
