"""Tables and charts as the pages show them, and the problems banner.

``leaderboard_frame`` / ``aggregate_frame`` turn query frames into display frames (values in the
metric's unit, CIs as ranges, verdicts as words); ``leaderboard_table`` renders one with its
column help; ``altair_chart`` draws a chart without Altair's per-rerun schema validation.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from metabench.dashboard import data
from metabench.results import metrics as _metrics
from metabench.results.export import TRANSDUCTIVE_NOTE

def problems_banner() -> None:
    """A warning naming each results file every query skips (corrupt or from an incompatible
    version) and what to do about it; nothing when all files are good."""
    problems = data.problems()
    if not problems:
        return
    shown = "\n".join(f"- `{p.path}` {p.what}. {p.action}." for p in problems[:10])
    more = f"\n- ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    st.warning(
        f"{len(problems)} results file(s) cannot be used; every page shows the remaining results.\n\n"
        f"{shown}{more}\n\nCheck the whole folder with `metabench results verify --results-dir "
        f"{data.results_dir()}`.",
        icon="⚠️",
    )


#: Set to 1 to validate every chart against the Vega-Lite schema when drawn (the tests do).
VALIDATE_VAR = "METABENCH_VALIDATE_CHARTS"


def altair_chart(chart: Any, **kwargs: Any) -> None:
    """``st.altair_chart`` keeping the plot's own height whatever its legend holds, and without
    Altair's JSON-schema validation, which is about half the time
    of turning a layered chart into Vega-Lite on every rerun; the charts are fixed code, and the
    tests validate each one (``METABENCH_VALIDATE_CHARTS=1``)."""
    import altair as alt  # imported by the chart's own module already; not at app start

    if chart.autosize is alt.Undefined:
        # Streamlit's default ('fit') squeezes a chart's legend into its height, so a legend of
        # twenty entries flattens the plot to a strip; 'fit-x' fits the width and keeps the
        # plot's own height, the legend below it.
        chart = chart.properties(autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
    if os.environ.get(VALIDATE_VAR) != "1":
        # An instance attribute shadows the method Streamlit calls (Altair's own __setattr__
        # would store it as a chart property instead).
        object.__setattr__(chart, "to_dict", functools.partial(chart.to_dict, validate=False))
    st.altair_chart(chart, **kwargs)


def entry_width(names: pd.Series) -> int:
    """Pixels for a table column of entry names: the longest one (a variant's overrides in
    brackets) at the dataframe's font, within [110, 330]."""
    return min(max(int(6.5 * names.astype(str).str.len().max()) + 24, 110), 330)


def leaderboard_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as the page shows it: values in the metric's unit, CI as a range, the
    paired comparison with the best entry as words, missing values as 'n/a'."""
    metric = str(df["metric"].iloc[0])
    scale = _metrics.display_scale(metric)
    fmt = lambda v: _metrics.format_value(metric, v)  # noqa: E731
    ci = [
        "n/a" if pd.isna(lo) else f"{fmt(lo)} – {fmt(hi)}"
        for lo, hi in zip(df["ci_low"], df["ci_high"], strict=True)
    ]
    vs = []
    for verdict, p in zip(df["vs_best"], df["p_vs_best"], strict=True):
        if verdict in ("tie", "worse"):
            vs.append(f"{verdict} (p{'<0.001' if p < 0.001 else f'={p:.3f}'})")
        else:
            vs.append(str(verdict))
    table = pd.DataFrame(
        {
            "Rank": df["rank"],
            # the entry: maml, maml[inner_steps=3]; a dagger on transductive ones (issue 22)
            "Algorithm": df["entry"] if "entry" in df else df["variant"].fillna(df["algorithm"]),
            "Source": df["source"] if "source" in df else "yours",  # 'reference' (shipped) or 'yours'
            "Changes": df["changes"].fillna(""),  # the overrides of the preset, readably; '' = none
            "Family": df["family"],
            "Mean": df["mean"] * scale,
            "95% CI": ci,  # a range reads better than "± half-width" next to the mean
            "Std (seeds)": [fmt(v) for v in df["std_seeds"]],
            "Seeds": df["n_seeds"],
            "vs best": vs,
            "P(beats best)": ["–" if pd.isna(v) else f"{v:.2f}" for v in df["prob_improvement"]],
            "Preset": df["preset"],
            "Split": df["split_scheme"],
            "Transductive": df["transductive"],
            "Test tasks": df["n_tasks"],
            "Query batch": df["query_batch"],
            "Budget": df["budget"] if "budget" in df else "",  # test-time adaptation budget (issue 22)
        }
    )
    if df["published"].notna().any():
        published = [
            "–" if pd.isna(v) else fmt(v) + ("" if pd.isna(ci) else f" ± {fmt(ci)}")
            + (f" ({short_citation(src)})" if isinstance(src, str) and src else "")
            for v, ci, src in zip(df["published"], df["published_ci95"], df["published_source"], strict=True)
        ]  # fmt: skip
        table["Published"] = published  # last: the protocol columns matter more for reading the rows
    return table


def short_citation(citation: str) -> str:
    """'Finn, Abbeel & Levine (2017), Model-Agnostic ...' -> 'Finn et al. 2017' (a table cell);
    the full citation is shown under the table."""
    match = re.match(r"\s*([^(]+?)\s*\((\d{4})\)", citation)
    if not match:
        return citation[:40]
    authors, year = match.groups()
    if "," in authors:
        authors = authors.split(",")[0] + " et al."
    return f"{authors} {year}"


#: The leaderboard table's protocol columns (hidden when constant, then named under the table).
PROTOCOL_COLUMNS = ("Preset", "Split", "Transductive", "Test tasks", "Query batch", "Budget")


def leaderboard_table(df: pd.DataFrame) -> None:
    """Show a leaderboard frame as a table (see ``leaderboard_frame``)."""
    metric = str(df["metric"].iloc[0])
    scale = _metrics.display_scale(metric)
    table = leaderboard_frame(df)
    # Protocol columns that are the same on every row are said once under the table instead,
    # so the table fits a laptop screen (the exports keep every column).
    same = [c for c in PROTOCOL_COLUMNS if table[c].astype(str).nunique() == 1]
    # The Changes column only when some row has overrides (plain rows: the table as before).
    hidden = same + ([] if (table["Changes"] != "").any() else ["Changes"])
    # The Source column only when reference rows are shown (your own runs alone: the table as before).
    hidden += [] if (table["Source"] != "yours").any() else ["Source"]
    st.dataframe(
        table,
        hide_index=True,
        height="content",  # every entry in view: a leaderboard cut at ten rows hides who came last
        column_order=[c for c in table.columns if c not in hidden],
        column_config={
            # Narrow columns for short values, so the whole table fits a laptop screen.
            **{c: st.column_config.Column(width="small") for c in ("Seeds", "Preset", "Split", "Test tasks")},
            "Rank": st.column_config.Column(width="small", pinned=True),  # pinned with Algorithm, first
            "Algorithm": st.column_config.TextColumn(
                # wide enough for the longest entry (a variant's overrides in brackets), and pinned
                # so it stays in view when the table scrolls sideways on a narrow screen
                width=entry_width(table["Algorithm"]),
                pinned=True,
                help="The entry: the algorithm, with its overrides of the preset in brackets when it "
                "has any (a variant, e.g. maml[inner_steps=3]). Variants are never averaged together. "
                "† = transductive (see under the table)."
            ),
            "Budget": st.column_config.TextColumn(
                width="small",
                help="Test-time adaptation budget: inner steps on the support set (gradient-based "
                "learners) or support passes (metric and memory learners). Rows with different "
                "budgets: compare them at a common one with the metric@k choices (e.g. mse@10).",
            ),
            "Source": st.column_config.TextColumn(
                width="small",
                help="'reference': shipped with metabench (read-only; hide it with the sidebar switch); "
                "'yours': from your results folder. Your runs are paired with reference runs only when "
                "their fixed test tasks' fingerprints agree.",
            ),
            "Changes": st.column_config.TextColumn(
                width="medium",
                help="What this variant changes relative to the preset (Config fields; loop.* = loop "
                "settings); empty for the preset itself."
            ),
            "Mean": st.column_config.NumberColumn(
                format=_number_format(table["Mean"], scale), help=_metrics.label(metric)
            ),
            "Std (seeds)": st.column_config.TextColumn(
                help="Standard deviation of the per-seed means (ddof=1); n/a with one seed."
            ),
            "vs best": st.column_config.TextColumn(
                help="Paired t-test (scipy.stats.ttest_rel) against the rank-1 entry on the same "
                "test tasks: 'tie' when p ≥ 0.05 — the data cannot tell them apart."
            ),
            "P(beats best)": st.column_config.TextColumn(
                help="Probability of improvement: the fraction of test tasks on which this entry "
                "beats the best one (ties count half). 0.5 = as often better as worse."
            ),
            "Transductive": st.column_config.CheckboxColumn(
                width="small", help="Whether test queries were processed together (e.g. BatchNorm batch statistics)."
            ),
            "Query batch": st.column_config.TextColumn(
                width="medium", help="How test queries pass through BatchNorm."
            ),
            "Published": st.column_config.TextColumn(
                help="The paper's number where the row's recorded protocol matches the paper's (preset "
                "paper, split, transductive flag, metric, training way / shots / queries, inner steps "
                "at test, backbone), for rows without overrides only; full citations under the table."
            ),
        },
    )
    if same:
        shown = {c: ("yes" if v else "no") if isinstance(v, (bool, np.bool_)) else "n/a" if v in ("-", "") else str(v)
                 for c, v in table[same].iloc[0].items()}  # fmt: skip  ('-': no class splits; '': no budget)
        st.caption("Same protocol on every row: " + " · ".join(f"{c.lower()} **{v}**" for c, v in shown.items()) + ".")
    if df["transductive"].fillna(False).astype(bool).any():
        st.caption(TRANSDUCTIVE_NOTE + ".")
    sources = [s for s in dict.fromkeys(df["published_source"].dropna()) if isinstance(s, str) and s]
    if sources:
        st.caption("Published: " + "; ".join(f"*{short_citation(s)}*: {s}" for s in sources) + ".")


def aggregate_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The aggregate table as shown: entry, family, suites, mean rank, IQM and its CI."""
    return pd.DataFrame(
        {
            "Entry": table["entry"],
            "Family": table["family"],
            "Suites": table["n_suites"],
            "Mean rank": table["mean_rank"],
            "IQM": table["iqm"],
            "95% CI (bootstrap)": [f"{lo:.3f} – {hi:.3f}" for lo, hi in zip(table["iqm_low"], table["iqm_high"], strict=True)],
            "Runs": table["n_scores"],
        }
    )


def _number_format(values: pd.Series, scale: float) -> str:
    """printf format for a column: percentages with two decimals, else at least 3 significant
    digits for the smallest value (0.300, 0.0283), matching ``metrics.format_value``."""
    if scale != 1:
        return "%.2f%%"
    finite = values[np.isfinite(values) & (values != 0)].abs()
    if finite.empty:
        return "%.3f"
    decimals = int(min(6, max(0, 2 - np.floor(np.log10(finite.min())))))
    return f"%.{decimals}f"
