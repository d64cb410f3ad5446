"""Tables and files for strsr-eval: per-method means shaped like the paper's Table 1, per-image CSV, JSON."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from strsr.evaluation.metrics import MetricSpec
from strsr.io.atomic import atomic_write, write_json

__all__ = ["format_table", "means", "write_csv", "write_report"]


def means(rows: Sequence[dict], columns: Sequence[MetricSpec]) -> dict[str, float]:
    """Mean of each column over the rows, ignoring NaNs (NaN when a column has no value at all)."""
    out = {}
    for c in columns:
        values = [r[c.name] for r in rows if c.name in r and not math.isnan(r[c.name])]
        out[c.name] = sum(values) / len(values) if values else math.nan
    return out


def _cell(value: float, name: str) -> str:
    if math.isnan(value):
        return "-"
    if name in ("psnr", "psnry") or name.startswith("grid"):
        return f"{value:.2f}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.3f}"


def format_table(results: dict[str, dict[str, float]], columns: Sequence[MetricSpec], counts: dict[str, int]) -> str:
    """One row per method, one column per metric with its direction (as Table 1: PSNR↑ ... Qual.↑, then grid16↓)."""
    headers = ["Method", "N"] + [f"{c.header}{'↓' if c.lower_better else '↑'}" for c in columns]
    body = [[method, str(counts[method])] + [_cell(row[c.name], c.name) for c in columns]
            for method, row in results.items()]  # fmt: skip
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in body)])


def _write_text(path: Path, write) -> None:
    """`write(file)` into `path` through strsr's atomic write: never a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def to_file(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            write(f)

    atomic_write(path, to_file)


def write_csv(path: Path, rows: Sequence[dict], columns: Sequence[MetricSpec]) -> None:
    """One line per (method, image), then one `mean` line per method."""
    names = [c.name for c in columns]

    def write(f):
        writer = csv.DictWriter(f, ["method", "image", *names], extrasaction="ignore", restval="")
        writer.writeheader()
        writer.writerows(rows)
        for method in dict.fromkeys(r["method"] for r in rows):
            writer.writerow({"method": method, "image": "mean", **means([r for r in rows if r["method"] == method],
                                                                      columns)})  # fmt: skip

    _write_text(path, write)


def write_report(path: Path, rows: Sequence[dict], columns: Sequence[MetricSpec], settings: dict) -> None:
    """{"settings", "metrics": [{name, header, lower_better, full_reference}], "means": {method: {...}}, "images"},
    as JSON (a missing value, NaN, as null)."""
    methods = dict.fromkeys(r["method"] for r in rows)
    payload = {
        "settings": settings,
        "metrics": [{"name": c.name, "header": c.header, "lower_better": c.lower_better,
                     "full_reference": c.full_reference} for c in columns],  # fmt: skip
        "means": {m: means([r for r in rows if r["method"] == m], columns) for m in methods},
        "images": list(rows),
    }
    write_json(path, _nan_to_none(payload))


def _nan_to_none(value):
    """NaN is not JSON: a missing value is written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value
