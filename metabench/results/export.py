"""Leaderboards as files: an aligned terminal table, CSV, Markdown, LaTeX or Parquet.

CSV and Parquet keep every column of ``ResultsDB.leaderboard`` at full precision (for further
processing). Table, Markdown and LaTeX are for reading and papers: ``mean ± 95% CI`` in one
column, values in the metric's unit, the best entry and those tied with it (paired t-test
p >= ``query.TIE_ALPHA``) in bold (Markdown, LaTeX), and a caption naming the suite, the
protocol and the number of test tasks.

Entries are named by their variant (``maml[inner_steps=3]``; the plain algorithm name when the
run used its preset as is, so tables of plain runs read as before) in the "algorithm" column.
Transductive entries (issue 22) carry a dagger on that name (``maml†``, ``TRANSDUCTIVE_MARK``) in
every format, explained by a footnote (the table's last line, the Markdown and LaTeX caption);
CSV and Parquet carry the marked name in the leaderboard's ``entry`` column. Each row's test-time
adaptation budget (``budget``: '10 inner steps', '1 support pass') is a column of its own.
"""

from __future__ import annotations

import io
import math

import pandas as pd

from metabench.errors import ConfigError
from metabench.results.metrics import format_value

FORMATS = ("table", "csv", "markdown", "latex")
#: Appended to the name of a transductive entry in every table and export.
TRANSDUCTIVE_MARK = "†"
#: The footnote that explains ``TRANSDUCTIVE_MARK``.
TRANSDUCTIVE_NOTE = ("† transductive: the test queries of a task pass through the network together (batch-norm "
                     "statistics of the query batch), information a row without † does not use (each of its queries "
                     "is classified on its own)")
#: Every format ``leaderboard_bytes`` writes (Parquet is binary, so not a ``format_leaderboard`` one).
FILE_FORMATS = (*FORMATS, "parquet")

# (column in the leaderboard frame, header) of the human-readable formats, after "mean ± 95% CI".
_TEXT_COLUMNS = [
    ("variant", "algorithm"), ("family", "family"), ("preset", "preset"),
    ("std_seeds", "std (seeds)"), ("n_seeds", "seeds"), ("n_tasks", "tasks"),
    ("split_scheme", "split"), ("transductive", "transductive"), ("query_batch", "query batch"),
    ("budget", "budget"), ("vs_best", "vs best"), ("prob_improvement", "P(beats best)"),
]  # fmt: skip
_RIGHT_ALIGNED = {0, 1, 5, 6, 7}  # rank, mean ± CI, std, seeds, tasks (positions in the header)


def format_leaderboard(df: pd.DataFrame, fmt: str = "table") -> str:
    """Render a ``ResultsDB.leaderboard`` frame as ``fmt``: 'table', 'csv', 'markdown' or 'latex'.

    'table' (aligned plain text) and 'markdown' show values through ``metrics.format_value``
    with ``mean ± ci95`` in one column (accuracy as '95.00% ± 1.51%'); 'markdown' and 'latex'
    add a caption (``caption``) and set the best entry and its ties in bold. 'csv' keeps every
    column at full precision, for further processing.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown leaderboard format {fmt!r}; expected one of {', '.join(FORMATS)}.")
    if fmt == "csv":
        buffer = io.StringIO()
        df.to_csv(buffer, index=False, lineterminator="\n")
        return buffer.getvalue()
    if fmt == "latex":
        return _latex(df)
    header, rows = _text_rows(df)
    if fmt == "markdown":
        bold = _bold_rows(df)
        rows = [[f"**{c}**" if i == 1 and b else c for i, c in enumerate(r)] for r, b in zip(rows, bold)]
        caption = f"*{caption_text(df)}*\n\n" if len(df) else ""
        return caption + _markdown(header, rows)
    footnote = f"{TRANSDUCTIVE_NOTE}\n" if any(_transductive(r) for r in df.to_dict("records")) else ""
    return _aligned(header, rows) + footnote


def leaderboard_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """A leaderboard frame as a file's bytes in ``fmt`` (one of ``FILE_FORMATS``)."""
    if fmt == "parquet":
        return frame_bytes(df, "parquet")
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown leaderboard format {fmt!r}; expected one of {', '.join(FILE_FORMATS)}.")
    return format_leaderboard(df, fmt).encode("utf-8")


def frame_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """Any results frame (per-task values, curves) as 'csv' or 'parquet' bytes, full precision."""
    if fmt == "csv":
        return df.to_csv(index=False, lineterminator="\n").encode("utf-8")
    if fmt == "parquet":
        buffer = io.BytesIO()
        # object columns of mixed None/str are stored as strings; the index is not a column
        df.reset_index(drop=True).to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise ConfigError(f"Unknown table format {fmt!r}; expected csv or parquet.")


def entry_names(df: pd.DataFrame) -> list[str]:
    """Each row's display name: its variant (or algorithm), with ``TRANSDUCTIVE_MARK`` when the
    row is transductive (the leaderboard's ``entry`` column)."""
    return [_plain(_entry(rec)) + (TRANSDUCTIVE_MARK if _transductive(rec) else "") for rec in df.to_dict("records")]


def budget_text(budget: object, unit: object) -> str:
    """A recorded adaptation budget as the leaderboard's ``budget`` column shows it: '10 inner
    steps', '1 inner step', '1 support pass', 'none', 'trial' (meta-RL: online, within the trial);
    '' when the run recorded none."""
    if _missing(unit) or not unit:
        return ""
    if unit == "trial":
        return "trial"
    if _missing(budget):
        return str(unit)
    n = int(budget)
    if unit == "none" or n == 0:
        return "none"
    singular = {"inner steps": "inner step", "support passes": "support pass"}.get(str(unit), str(unit))
    return f"{n} {singular if n == 1 else unit}"


def caption_text(df: pd.DataFrame) -> str:
    """One sentence naming the suite, metric, protocol and number of test tasks of a leaderboard
    (plus the dagger's footnote, ``TRANSDUCTIVE_NOTE``, when a row is transductive)."""
    first = df.iloc[0]
    metric = str(first["metric"])
    suite = str(first.get("suite", "")) if "suite" in df else ""
    protocol = []
    for column, name in (("preset", "preset"), ("split_scheme", "split")):
        values = sorted({_plain(v) for v in df[column]})
        protocol.append(f"{name} {', '.join(values)}")
    trans = sorted({_plain(v) for v in df["transductive"]})
    if len(trans) == 1:
        protocol.append("transductive" if trans == ["yes"] else "inductive (non-transductive)")
    else:
        protocol.append("transductive per row")
    tasks = sorted({int(n) for n in df["n_tasks"]})
    seeds = sorted({int(n) for n in df["n_seeds"]})
    what = f"{metric} ({first['direction']} is better)"
    note = f" {TRANSDUCTIVE_NOTE}." if "yes" in trans else ""
    return (
        f"{suite} (version {_plain(first['suite_version'])}), {what}: mean ± 95% CI over "
        f"{'/'.join(map(str, tasks))} fixed test tasks after averaging "
        f"{'/'.join(map(str, seeds))} seed(s); {'; '.join(protocol)}. Bold: best and entries "
        f"not significantly different from it (paired t-test on the test tasks, p ≥ 0.05).{note}"
    )


def _bold_rows(df: pd.DataFrame) -> list[bool]:
    if "vs_best" not in df:
        return [r == 1 for r in df["rank"]]
    return [v in ("best", "tie") for v in df["vs_best"]]


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}  # fmt: skip


def _tex(text: object) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in _plain(text))


def _entry(rec: dict) -> object:
    """A leaderboard row's name: its variant, or the algorithm in a frame without variants."""
    variant = rec.get("variant")
    return rec.get("algorithm") if _missing(variant) else variant


def _transductive(rec: dict) -> bool:
    value = rec.get("transductive")
    return not _missing(value) and not isinstance(value, str) and bool(value)


def _latex(df: pd.DataFrame) -> str:
    """A booktabs table: rank, algorithm, family, mean ± CI (bold = best or tied), std over seeds,
    seeds, p vs best; protocol columns only where rows differ (else they are in the caption)."""
    if df.empty:
        return "% empty leaderboard\n"
    metric = str(df["metric"].iloc[0])
    unit = r" (\%)" if format_value(metric, 0.5).endswith("%") else ""

    def num(v: object) -> str:  # no % signs inside cells: the unit is in the header
        return _tex(format_value(metric, v).rstrip("%"))

    varying = [(c, t) for c, t in (("preset", "Preset"), ("split_scheme", "Split"),
                                   ("transductive", "Transductive"))
               if df[c].map(_plain).nunique() > 1]  # fmt: skip
    header = ["Rank", "Algorithm", "Family", f"{_tex(metric)}{unit}", r"Std (seeds)", "Seeds",
              *[t for _, t in varying], r"$p$ vs best"]  # fmt: skip
    lines = []
    for rec, bold in zip(df.to_dict("records"), _bold_rows(df), strict=True):
        cell = num(rec["mean"]) if _missing(rec["ci95"]) else f"{num(rec['mean'])} $\\pm$ {num(rec['ci95'])}"
        if bold:
            cell = rf"\textbf{{{cell}}}"
        p = rec.get("p_vs_best")
        p_text = "--" if _missing(p) else ("$<$0.001" if p < 0.001 else f"{p:.3f}")
        name = _tex(_entry(rec)) + (r"$^\dagger$" if _transductive(rec) else "")
        row = [_tex(rec["rank"]), name, _tex(rec["family"]), cell,
               num(rec["std_seeds"]), _tex(rec["n_seeds"]), *[_tex(rec[c]) for c, _ in varying], p_text]  # fmt: skip
        lines.append(" & ".join(row) + r" \\")
    suite = _plain(df["suite"].iloc[0]) if "suite" in df else "leaderboard"
    caption = (_tex(caption_text(df)).replace("±", r"$\pm$").replace("≥", r"$\geq$")
               .replace(TRANSDUCTIVE_MARK, r"$^\dagger$"))
    label = "tab:" + "".join(ch if ch.isalnum() else "-" for ch in suite)
    spec = "rll" + "r" * 3 + "l" * len(varying) + "r"
    return "\n".join([
        r"\begin{table}[t]", r"\centering",
        r"\caption{" + caption + "}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule",
        *lines, r"\bottomrule", r"\end{tabular}", r"\end{table}",
    ]) + "\n"  # fmt: skip


def _text_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    metrics = df["metric"].unique() if "metric" in df else []
    mean_title = f"{metrics[0]} mean ± 95% CI" if len(metrics) == 1 else "mean ± 95% CI"
    columns = [(c, t) for c, t in _TEXT_COLUMNS if c in df or c == "variant"]
    if "published" in df and df["published"].notna().any():
        columns.append(("published", "published"))
    if "source" in df and (df["source"] != "yours").any():  # reference rows shown (issue 21): whose is which
        columns.append(("source", "source"))
    header = ["rank", mean_title] + [title for _, title in columns]
    rows = []
    for rec in df.to_dict("records"):
        metric = rec["metric"]
        mean = format_value(metric, rec["mean"])
        ci = rec["ci95"]
        cell = mean if _missing(ci) else f"{mean} ± {format_value(metric, ci)}"
        row = [_plain(rec["rank"]), cell]
        for column, _ in columns:
            value = _entry(rec) if column == "variant" else rec[column]
            if column == "variant" and _transductive(rec):
                value = f"{_plain(value)}{TRANSDUCTIVE_MARK}"
            if column == "published" and not _missing(value):
                pci = rec.get("published_ci95")
                row.append(format_value(metric, value) + ("" if _missing(pci) else f" ± {format_value(metric, pci)}"))
            elif column == "std_seeds":
                row.append(format_value(metric, value))
            elif column == "vs_best":
                p = rec.get("p_vs_best")
                row.append(_plain(value) if _missing(p) else f"{value} ({_p(p)})")
            elif column == "prob_improvement":
                row.append("n/a" if _missing(value) else f"{value:.2f}")
            else:
                row.append(_plain(value))
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


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _missing(value: object) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(isinstance(value, (float, int)) and math.isnan(value))
    except TypeError:
        return False


def _plain(value: object) -> str:
    if _missing(value):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
