"""Altair charts for the pages; pure functions from a query's frame to a chart."""

from __future__ import annotations

import altair as alt
import pandas as pd

from metabench.results import metrics as _metrics

# Columns that tell two leaderboard rows of the same variant apart, in the order they are
# appended to its label when they differ.
_DISTINGUISHING = ("preset", "split_scheme", "transductive", "query_batch", "source")


def entry_labels(df: pd.DataFrame) -> pd.Series:
    """One unique label per leaderboard row: its variant (``maml[inner_steps=3]``; the plain
    algorithm name without overrides, or in a frame without a ``variant`` column), plus whatever
    sets its rows apart."""
    name = df["variant"].fillna(df["algorithm"]) if "variant" in df else df["algorithm"]
    varying = [c for c in _DISTINGUISHING if c in df and df.groupby(name)[c].nunique(dropna=False).max() > 1]
    labels = name.astype(str)
    for column in varying:
        values = df[column].map(
            lambda v: ("transductive" if v else "inductive") if isinstance(v, bool) else str(v)
        )
        labels = labels + " · " + values.astype(str)
    return labels


def leaderboard_chart(df: pd.DataFrame) -> alt.LayerChart:
    """Each entry's mean as a point with its 95% CI as a line, best first, on an axis fitted to
    the CIs (not from zero: 98.1% and 96.4% must look different); the published number, where
    the row has one, as a hollow black diamond just below the entry's point. Colours: ``entry_colors``."""
    metric = str(df["metric"].iloc[0])
    scale = _metrics.display_scale(metric)
    published = df["published"] if "published" in df else pd.Series(float("nan"), index=df.index)
    published_ci = df["published_ci95"] if "published_ci95" in df else pd.Series(float("nan"), index=df.index)
    data = pd.DataFrame(
        {
            "entry": entry_labels(df),
            "mean": df["mean"] * scale,
            "ci_low": df["ci_low"] * scale,
            "ci_high": df["ci_high"] * scale,
            "published": published.astype(float) * scale,
            "shown": [_metrics.format_value(metric, v) for v in df["mean"]],
            "ci": [f"± {_metrics.format_value(metric, v)}" for v in df["ci95"]],
            "std": [_metrics.format_value(metric, v) for v in df["std_seeds"]],  # 'n/a' with one seed
            "n_seeds": df["n_seeds"],
            "n_tasks": df["n_tasks"],
            "paper": [(_metrics.format_value(metric, v) + (f" ± {_metrics.format_value(metric, c)}" if pd.notna(c) else "")
                       + (f" ({src})" if isinstance(src, str) and src else "")) if pd.notna(v) else ""
                      for v, c, src in zip(published, published_ci,
                                           df["published_source"] if "published_source" in df else [None] * len(df))],
        }
    )  # fmt: skip
    order = data["entry"].tolist()  # the frame is sorted by rank
    lo, hi = fitted_domain(metric, data["ci_low"], data["ci_high"],
                           (published - published_ci.fillna(0)) * scale, (published + published_ci.fillna(0)) * scale)
    x_title = _metrics.label(metric)
    y = alt.Y("entry:N", sort=order, title=None, axis=alt.Axis(labelLimit=280))
    xs = alt.Scale(domain=[lo, hi], zero=False, nice=False)
    color = entry_color(order, legend=False)
    base = alt.Chart(data).encode(y=y, color=color)
    tooltip = [
        alt.Tooltip("entry:N", title="entry"),
        alt.Tooltip("shown:N", title=metric),
        alt.Tooltip("ci:N", title="95% CI"),
        alt.Tooltip("std:N", title="std (seeds)"),
        alt.Tooltip("n_seeds:Q", title="seeds"),
        alt.Tooltip("n_tasks:Q", title="tasks"),
        alt.Tooltip("paper:N", title="published"),
    ]
    rule = base.mark_rule(strokeWidth=3, opacity=0.8).encode(
        x=alt.X("ci_low:Q", title=x_title, scale=xs), x2="ci_high:Q", tooltip=tooltip)
    point = base.mark_point(filled=True, size=120, opacity=1).encode(x=alt.X("mean:Q", title=x_title, scale=xs),
                                                                      tooltip=tooltip)
    layers = [rule, point]
    if data["published"].notna().any():
        paper = data[data["published"].notna()]
        layers.append(alt.Chart(paper).mark_point(shape="diamond", size=110, filled=False, color="black",
                                                  strokeWidth=1.5, yOffset=9).encode(
            x=alt.X("published:Q", title=x_title, scale=xs), y=y,
            tooltip=[alt.Tooltip("entry:N", title="entry"), alt.Tooltip("paper:N", title="published")]))
    # No width of its own: the page stretches it to the container. Scroll to zoom and drag to pan
    # along the metric axis (double-click resets): one far-off entry (pixel-centroid's 44% beside
    # 93-98%) fits the axis to every CI but squeezes the leaders together; zooming separates them
    # without hiding anyone by default.
    return alt.layer(*layers).properties(height=alt.Step(36)).interactive(bind_y=False)


def fitted_domain(metric: str, *values: pd.Series, pad: float = 0.08) -> tuple[float, float]:
    """[low, high] (display units) around every finite value given (the CI ends, the published
    marks), padded by ``pad`` of the span on each side, never past what the metric can take."""
    finite = pd.concat([pd.Series(v, dtype=float) for v in values], ignore_index=True)
    finite = finite[finite.map(lambda x: pd.notna(x) and abs(x) != float("inf"))]
    if finite.empty:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    span = high - low if high > low else max(abs(high) * 0.02, 1e-9)
    floor, ceiling = (v * _metrics.display_scale(metric) for v in value_range(metric))
    return max(low - pad * span, floor), min(high + pad * span, ceiling)


def value_range(metric: str) -> tuple[float, float]:
    """The values ``metric`` can take (stored units): [0, 1] for percentages, >= 0 for errors."""
    if _metrics.spec(metric).percent:
        return 0.0, 1.0
    if _metrics.parse(metric)[0] in ("mse", "mae"):
        return 0.0, float("inf")
    return float("-inf"), float("inf")


#: The entry colours: Vega's tableau10, then Dark2, then tableau20's light tones (24 in all).
PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
           "#9ecae9", "#ffbf79", "#88d27a", "#ff9d98", "#d6a5c9", "#83bcb6"]  # fmt: skip
#: Every built-in algorithm's own colour (a plain entry named after it gets it on every page), so
#: algorithms shown together never share one: the few-shot algorithms tableau10 then Dark2, the
#: meta-RL and classical rows other strong tones (oracle near black, random grey). tests/test_first_look.py checks
#: that every built-in is listed.
BUILTIN_COLORS = dict(zip(
    ["maml", "protonet", "reptile", "anil", "metasgd", "fomaml", "matchingnet", "mann", "metanet", "finetune",
     "rfs", "simpleshot", "pixel-centroid", "rl2", "maml-rl", "mql", "oracle", "random", "ucb1", "thompson",
     "gittins", "greedy", "epsilon-greedy", "psrl"],
    PALETTE[:13] + ["#e7298a", "#66a61e", "#e6ab02", "#333333", "#a0a0a0", "#a6761d", "#17becf", "#bcbd22",
                    "#8c6bb1", "#084594", "#cb181d"]))  # fmt: skip


def entry_colors(entries) -> list[str]:
    """The colour of each entry, by its name alone, so an entry has one colour on every chart of
    the app whatever else is shown: a built-in's own (``BUILTIN_COLORS``), else (a variant, a
    plugin, an entry label with a ' · source' suffix) one picked from ``PALETTE`` by a hash of
    the name (stable across processes, unlike Python's ``hash``)."""
    import hashlib

    return [BUILTIN_COLORS.get(str(e)) or PALETTE[int(hashlib.sha256(str(e).encode()).hexdigest(), 16) % len(PALETTE)]
            for e in entries]  # fmt: skip


def entry_color(entries, legend: bool = True, field: str = "entry") -> alt.Color:
    """The colour encoding of ``field`` for ``entries`` (every value it takes): ``entry_colors``."""
    names = list(dict.fromkeys(str(e) for e in entries))
    legend_ = alt.Legend(orient="bottom", columns=4, labelLimit=240, symbolOpacity=1) if legend else None  # not a band's faint fill
    return alt.Color(f"{field}:N", title=None, legend=legend_, scale=alt.Scale(domain=names, range=entry_colors(names)))


# -- learning curves -----------------------------------------------------------------------------


def curves_chart(df: pd.DataFrame, metric: str, x: str = "step", log_x: bool = False,
                 log_y: bool = False) -> alt.LayerChart:
    """One line per entry (mean over seeds) with its 95% CI band across seeds.

    ``df`` is ``ResultsDB.curve_summary`` (optionally smoothed), ``x`` 'step' or 'wall_time_s'.
    """
    scale = _metrics.display_scale(metric)
    lo, hi = value_range(metric)  # a t interval over 2 seeds is wide: keep it inside what can occur
    data = pd.DataFrame({
        "entry": entry_labels(df), "x": df[x], "mean": df["mean"] * scale,
        "low": df["ci_low"].clip(lo, hi) * scale, "high": df["ci_high"].clip(lo, hi) * scale, "seeds": df["n_seeds"],
    })  # fmt: skip
    if log_x:
        data = data[data["x"] > 0]
    x_title = "meta-step" if x == "step" else "wall-clock time (s)"
    axis = alt.Axis(format="d", tickMinStep=1) if x == "step" and not log_x else alt.Axis()  # whole steps
    xs = alt.X("x:Q", title=x_title, scale=alt.Scale(type="log" if log_x else "linear"), axis=axis)
    ys = alt.Scale(type="log" if log_y else "linear", zero=False)
    base = alt.Chart(data).encode(x=xs, color=entry_color(data["entry"]))
    band = base.mark_area(opacity=0.18).encode(y=alt.Y("low:Q", scale=ys, title=_metrics.label(metric)), y2="high:Q")
    few = data.groupby("entry")["x"].size().max() <= 30  # a short curve: mark each measured point
    line = base.mark_line(strokeWidth=2, point=bool(few)).encode(
        y=alt.Y("mean:Q", scale=ys, title=_metrics.label(metric)),
        tooltip=[alt.Tooltip("entry:N"), alt.Tooltip("x:Q", title=x_title, format=",.0f"),
                 alt.Tooltip("mean:Q", title=metric, format=".4g"), alt.Tooltip("seeds:Q")],
    )  # fmt: skip
    return alt.layer(band, line).properties(height=380)


# -- per task ------------------------------------------------------------------------------------


def task_distribution_chart(df: pd.DataFrame, metric: str, order: list[str]) -> alt.Chart:
    """Box plot of the per-task values (averaged over seeds) of each entry, best first."""
    scale = _metrics.display_scale(metric)
    data = pd.DataFrame({"entry": entry_labels(df), "value": df["value"] * scale, "task": df["task_id"]})
    return (
        alt.Chart(data)
        .mark_boxplot(extent="min-max", size=28)
        .encode(
            y=alt.Y("entry:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X("value:Q", title=_metrics.label(metric), scale=alt.Scale(zero=False)),
            # colours by name (as in every other chart), not by rank: an entry keeps its colour
            color=entry_color(data["entry"], legend=False),
        )
        .properties(height=alt.Step(42))
    )


def category_chart(df: pd.DataFrame, metric: str, descriptor: str) -> alt.LayerChart:
    """Mean per category (with a 95% CI over that category's tasks) for each entry.

    ``df``: entry, category, mean, low, high, n_tasks (one row per entry and category).
    """
    scale = _metrics.display_scale(metric)
    lo, hi = value_range(metric)  # a CI over two or three tasks is wide: keep it inside what can occur
    data = df.assign(mean=df["mean"] * scale, low=df["low"].clip(lo, hi) * scale, high=df["high"].clip(lo, hi) * scale)
    order = (data.groupby("category")["mean"].mean().sort_values(
        ascending=_metrics.direction(metric) == "higher").index.tolist())  # worst category first
    y = alt.Y("category:N", sort=order, title=descriptor, axis=alt.Axis(labelLimit=200))
    base = alt.Chart(data).encode(y=y, color=entry_color(data["entry"]),
                                  yOffset="entry:N")  # fmt: skip
    # The axis on top: with 30 categories the chart is taller than a screen.
    rule = base.mark_rule().encode(x=alt.X("low:Q", title=_metrics.label(metric), scale=alt.Scale(zero=False),
                                           axis=alt.Axis(orient="top")), x2="high:Q")  # fmt: skip
    point = base.mark_point(filled=True, size=50).encode(
        x="mean:Q",
        tooltip=["entry:N", "category:N", alt.Tooltip("mean:Q", format=".4g"), alt.Tooltip("n_tasks:Q", title="tasks")],
    )
    return alt.layer(rule, point).properties(height=alt.Step(12))  # per entry within a category (yOffset)


def numeric_descriptor_chart(df: pd.DataFrame, metric: str, feature: str) -> alt.LayerChart:
    """Per-task value against a numeric descriptor: one point per (entry, task) and a line
    through the means of ten equal-count bins of the descriptor per entry."""
    scale = _metrics.display_scale(metric)
    data = pd.DataFrame({"entry": df["entry"], "x": df[feature], "value": df["value"] * scale,
                         "task": df["task_id"]}).dropna(subset=["x"])  # fmt: skip
    bins = pd.qcut(data["x"].rank(method="first"), q=min(10, max(1, data["x"].nunique())), labels=False)
    means = data.assign(bin=bins).groupby(["entry", "bin"], as_index=False)[["x", "value"]].mean()
    color = entry_color(data["entry"])
    points = alt.Chart(data).mark_circle(size=18, opacity=0.35).encode(
        x=alt.X("x:Q", title=feature), y=alt.Y("value:Q", title=_metrics.label(metric), scale=alt.Scale(zero=False)),
        color=color, tooltip=["entry:N", "task:Q", alt.Tooltip("x:Q", title=feature), alt.Tooltip("value:Q", format=".4g")],
    )  # fmt: skip
    line = alt.Chart(means).mark_line(strokeWidth=2.5, point=True).encode(x="x:Q", y="value:Q", color=color)
    return alt.layer(points, line).properties(height=360)


def paired_chart(df: pd.DataFrame, metric: str, a: str, b: str, entries: list[str] | None = None) -> alt.Chart:
    """A − B on every test task, sorted, coloured by which entry does better on that task.

    ``df``: task_id, diff (A − B in stored units), winner ('A', 'B' or 'tie' as labels).
    ``entries``: unused (kept for callers): A and B get the colours every chart gives them by name.
    """
    colors = entry_colors([a, b])
    scale = _metrics.display_scale(metric)
    data = df.assign(diff=df["diff"] * scale).sort_values("diff").reset_index(drop=True)
    data["order"] = range(len(data))
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("order:Q", title="test tasks, sorted by the difference", axis=alt.Axis(labels=False, ticks=False)),
            y=alt.Y("diff:Q", title=f"{a} − {b} ({metric}{' %' if scale != 1 else ''})"),
            color=alt.Color("winner:N", title="better on the task",
                            scale=alt.Scale(domain=[a, b, "tie"], range=[*colors, "#999999"])),
            tooltip=["task_id:Q", alt.Tooltip("diff:Q", format=".4g"), "winner:N"],
        )  # fmt: skip
        .properties(height=300)
    )


# -- cost ----------------------------------------------------------------------------------------


def cost_chart(runs: pd.DataFrame, entries: pd.DataFrame, metric: str, x: str, x_title: str) -> alt.LayerChart:
    """Each run (small points) and each entry's mean over seeds (large points), the Pareto front
    of the entries drawn as a step line through the entries on it (ringed).

    ``runs``: entry, ``x``, value, seed. ``entries``: entry, ``x``, value, pareto (bool).
    """
    scale = _metrics.display_scale(metric)
    runs = runs.assign(value=runs["value"] * scale)
    entries = entries.assign(value=entries["value"] * scale)
    color = entry_color(pd.concat([runs["entry"], entries["entry"]]))
    xs = alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(type="log", nice=False))
    ys = alt.Y("value:Q", title=_metrics.label(metric), scale=alt.Scale(zero=False))
    small = alt.Chart(runs).mark_circle(size=30, opacity=0.4).encode(
        x=xs, y=ys, color=color, tooltip=["entry:N", "seed:Q", alt.Tooltip(f"{x}:Q", format=",.4g"),
                                          alt.Tooltip("value:Q", format=".4g")])  # fmt: skip
    big = alt.Chart(entries).mark_point(filled=True, size=160).encode(
        x=xs, y=ys, color=color, tooltip=["entry:N", alt.Tooltip(f"{x}:Q", format=",.4g"),
                                          alt.Tooltip("value:Q", format=".4g"), "pareto:N"])  # fmt: skip
    front = entries[entries["pareto"]].sort_values(x)
    line = alt.Chart(front).mark_line(interpolate="step-after", color="black", strokeDash=[4, 3]).encode(x=xs, y=ys)
    rings = alt.Chart(front).mark_point(size=420, color="black", strokeWidth=1.5).encode(x=xs, y=ys)
    return alt.layer(line, small, big, rings).properties(height=360)


# -- aggregate -----------------------------------------------------------------------------------


def iqm_chart(table: pd.DataFrame) -> alt.LayerChart:
    """IQM of normalised scores with its stratified-bootstrap 95% CI, one row per entry."""
    order = table["entry"].tolist()
    y = alt.Y("entry:N", sort=order, title=None, axis=alt.Axis(labelLimit=240))
    base = alt.Chart(table).encode(y=y, color=entry_color(order, legend=False))
    bar = base.mark_rule(strokeWidth=6, opacity=0.5).encode(
        x=alt.X("iqm_low:Q", title="IQM of normalised scores (0 = chance/baseline, 1 = perfect)"), x2="iqm_high:Q")
    dot = base.mark_point(filled=True, size=90, color="black").encode(
        x="iqm:Q", tooltip=["entry:N", alt.Tooltip("iqm:Q", format=".3f"), alt.Tooltip("iqm_low:Q", format=".3f"),
                            alt.Tooltip("iqm_high:Q", format=".3f"), alt.Tooltip("mean_rank:Q", format=".2f")])  # fmt: skip
    return alt.layer(bar, dot).properties(height=alt.Step(34))


def profile_chart(profile: pd.DataFrame) -> alt.Chart:
    """rliable's performance profile: fraction of runs with normalised score > tau."""
    return (
        alt.Chart(profile)
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("tau:Q", title="normalised score τ"),
            y=alt.Y("fraction:Q", title="fraction of runs > τ", scale=alt.Scale(domain=[0, 1])),
            color=entry_color(profile["entry"]),
            tooltip=["entry:N", alt.Tooltip("tau:Q", format=".2f"), alt.Tooltip("fraction:Q", format=".2f")],
        )
        .properties(height=300)
    )
