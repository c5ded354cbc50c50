"""Leaderboards as text: an aligned terminal table, CSV, or Markdown for a paper or README."""

from __future__ import annotations

import io
import math

import pandas as pd

from metabench.errors import ConfigError
from metabench.results.metrics import format_value

FORMATS = ("table", "csv", "markdown")

# (column in the leaderboard frame, header) of the human-readable formats, after "mean ± 95% CI".
_TEXT_COLUMNS = [
    ("algorithm", "algorithm"), ("family", "family"), ("preset", "preset"),
    ("std_seeds", "std (seeds)"), ("n_seeds", "seeds"), ("n_tasks", "tasks"),
    ("split_scheme", "split"), ("transductive", "transductive"), ("query_batch", "query batch"),
]  # fmt: skip
_RIGHT_ALIGNED = {0, 1, 5, 6, 7}  # rank, mean ± CI, std, seeds, tasks (positions in the header)


def format_leaderboard(df: pd.DataFrame, fmt: str = "table") -> str:
    """Render a ``ResultsDB.leaderboard`` frame as ``fmt``: 'table', 'csv' or 'markdown'.

    'table' (aligned plain text) and 'markdown' show values through ``metrics.format_value``
    with ``mean ± ci95`` in one column (accuracy as '95.00% ± 1.51%'). 'csv' keeps every
    column at full precision, for further processing.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown leaderboard format {fmt!r}; expected one of {', '.join(FORMATS)}.")
    if fmt == "csv":
        buffer = io.StringIO()
        df.to_csv(buffer, index=False, lineterminator="\n")
        return buffer.getvalue()
    header, rows = _text_rows(df)
    if fmt == "markdown":
        return _markdown(header, rows)
    return _aligned(header, rows)


def _text_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    metrics = df["metric"].unique() if "metric" in df else []
    mean_title = f"{metrics[0]} mean ± 95% CI" if len(metrics) == 1 else "mean ± 95% CI"
    columns = list(_TEXT_COLUMNS)
    if "published" in df:  # added by results.published.attach_published
        columns.append(("published", "published"))
    header = ["rank", mean_title] + [title for _, title in columns]
    rows = []
    for rec in df.to_dict("records"):
        metric = rec["metric"]
        mean = format_value(metric, rec["mean"])
        ci = rec["ci95"]
        cell = mean if _missing(ci) else f"{mean} ± {format_value(metric, ci)}"
        row = [_plain(rec["rank"]), cell]
        for column, _ in columns:
            value = rec[column]
            if column == "published" and not _missing(value):
                pci = rec.get("published_ci95")
                row.append(format_value(metric, value) + ("" if _missing(pci) else f" ± {format_value(metric, pci)}"))
                continue
            row.append(format_value(metric, value) if column in ("std_seeds", "published") else _plain(value))
        rows.append(row)
    return header, rows


def _aligned(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if i in _RIGHT_ALIGNED else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)]) + "\n"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---:" if i in _RIGHT_ALIGNED else ":---" for i in range(len(header))]
    return "\n".join([line(header), "|" + "|".join(align) + "|", *(line(r) for r in rows)]) + "\n"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _plain(value: object) -> str:
    if _missing(value):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
