"""Numbers as the command line and the pages write them: times and accuracies."""

from __future__ import annotations

__all__ = ["format_accuracy", "format_seconds", "search_summary"]


def format_seconds(seconds: float | None) -> str:
    """``469 us``, ``6.2 ms``, ``98 ms``, ``3.5 s``, ``14.6 min``, ``2.3 h``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_accuracy(acc: float | None) -> str:
    """``97.22%``; ``-`` for None."""
    return "-" if acc is None else f"{100 * acc:.2f}%"


def _value(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def search_summary(search: dict, limit: int = 10) -> list[str]:
    """The lines that sum up a grid search (its record in ``metrics.json``): how many
    trials in what time, the best settings with their validation accuracy, then the
    trials best first (at most ``limit``; the best marked ``*``)."""
    rows = [r for r in search.get("results") or [] if isinstance(r, dict)]
    if not rows:
        return []
    names = list(search.get("grid") or rows[0].get("params") or {})
    order = sorted(range(len(rows)), key=lambda i: (-(rows[i].get("val_acc") or 0.0), i))
    best = rows[order[0]]
    settings = " ".join(f"{k}={_value(best['params'].get(k))}" for k in names)
    time_s = search.get("time_s")
    took = f" in {format_seconds(time_s)}" if time_s is not None else ""
    lines = [
        f"search: {len(rows)} trials{took} on the validation split; best {settings} "
        f"(validation {format_accuracy(best.get('val_acc'))})"
    ]
    header = [*names, "train acc", "val acc", "fit time"]
    table = [header]
    for i in order[:limit]:
        r = rows[i]
        table.append(
            [_value(r["params"].get(k)) for k in names]
            + [format_accuracy(r.get("train_acc")), format_accuracy(r.get("val_acc")),
               format_seconds(r.get("fit_time"))]
        )  # fmt: skip
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    for n, row in enumerate(table):
        mark = "*" if n == 1 else " "
        lines.append("  " + mark + " " + "  ".join(c.rjust(w) for c, w in zip(row, widths)))
    if len(rows) > limit:
        lines.append(f"    ... {len(rows) - limit} more in metrics.json and report.html")
    return lines
