"""Altair charts for the pages; pure functions from a query's frame to a chart."""

from __future__ import annotations

import altair as alt
import pandas as pd

from metabench.results import metrics as _metrics

# Columns that tell two leaderboard rows of the same algorithm apart, in the order they are
# appended to its label when they differ.
_DISTINGUISHING = ("preset", "split_scheme", "transductive", "query_batch")


def entry_labels(df: pd.DataFrame) -> pd.Series:
    """One unique label per leaderboard row: the algorithm, plus whatever sets its rows apart."""
    varying = [c for c in _DISTINGUISHING if df.groupby("algorithm")[c].nunique(dropna=False).max() > 1]
    labels = df["algorithm"].astype(str)
    for column in varying:
        values = df[column].map(
            lambda v: ("transductive" if v else "inductive") if isinstance(v, bool) else str(v)
        )
        labels = labels + " · " + values.astype(str)
    return labels


def leaderboard_chart(df: pd.DataFrame) -> alt.LayerChart:
    """Bars of each entry's mean with 95% CI whiskers, best first; y names metric and direction."""
    metric = str(df["metric"].iloc[0])
    scale = _metrics.display_scale(metric)
    data = pd.DataFrame(
        {
            "entry": entry_labels(df),
            "family": df["family"],
            "mean": df["mean"] * scale,
            "ci_low": df["ci_low"] * scale,
            "ci_high": df["ci_high"] * scale,
            "shown": [_metrics.format_value(metric, v) for v in df["mean"]],
            "ci": [f"± {_metrics.format_value(metric, v)}" for v in df["ci95"]],
            "n_seeds": df["n_seeds"],
            "n_tasks": df["n_tasks"],
        }
    )
    order = data["entry"].tolist()  # the frame is sorted by rank
    x = alt.X("entry:N", sort=order, title=None, axis=alt.Axis(labelAngle=0, labelLimit=220))
    y_title = _metrics.label(metric)
    bars = (
        alt.Chart(data)
        .mark_bar(opacity=0.85, width=alt.RelativeBandSize(0.6))
        .encode(
            x=x,
            y=alt.Y("mean:Q", title=y_title),
            color=alt.Color("family:N", title="family"),
            tooltip=[
                alt.Tooltip("entry:N", title="entry"),
                alt.Tooltip("shown:N", title=metric),
                alt.Tooltip("ci:N", title="95% CI"),
                alt.Tooltip("n_seeds:Q", title="seeds"),
                alt.Tooltip("n_tasks:Q", title="tasks"),
            ],
        )
    )
    # Whiskers as a rule plus short caps: an errorbar's default caps span the whole bar.
    whisker = alt.Chart(data).encode(x=x)
    rule = whisker.mark_rule(color="black", strokeWidth=1.5).encode(
        y=alt.Y("ci_low:Q", title=y_title), y2="ci_high:Q"
    )
    caps = [
        whisker.mark_tick(color="black", thickness=1.5, size=18).encode(y=alt.Y(f"{end}:Q", title=y_title))
        for end in ("ci_low", "ci_high")
    ]
    return alt.layer(bars, rule, *caps).properties(height=360, width=alt.Step(110))
