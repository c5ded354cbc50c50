"""Cost: what each point of accuracy costs in wall time and peak memory, with the Pareto front."""

import numpy as np
import pandas as pd
import streamlit as st

from metabench.dashboard import charts, data, routing, state, tables
from metabench.results import metrics, stats, views

routing.require_router(__file__)
st.title("Cost")

f = state.suite_filters()
with state.errors_as_messages():
    runs = data.run_costs(f)
if runs.empty:
    state.nothing_matches(f)
runs = runs.assign(entry=charts.entry_labels(runs).to_numpy())
higher = metrics.direction(f.metric) == "higher"
entries = views.entry_costs(runs)

for column, title in (("wall_time_s", "wall time per run (s, log)"), ("peak_memory_mb", "peak memory (MiB, log)")):
    st.subheader("Against wall time" if column == "wall_time_s" else "Against peak memory")
    known = entries[np.isfinite(entries[column]) & (entries[column] > 0)]
    if known.empty:
        st.info(f"No run recorded its {column}.")
        continue
    front = stats.pareto_front(known[column], known["value"], higher)
    points = known.assign(pareto=front)
    tables.altair_chart(charts.cost_chart(runs[runs[column] > 0], points, f.metric, column, title), width="stretch")
    st.caption(
        "Small points: runs (seeds); large points: each entry's mean over seeds; ringed and joined: "
        f"the Pareto front (no other entry is both cheaper and better): {', '.join(points.loc[front, 'entry'])}."
    )

st.subheader("Per entry")
fmt = lambda v: metrics.format_value(f.metric, v)  # noqa: E731
longest = float(entries["wall_time_s"].max()) if entries["wall_time_s"].notna().any() else 0.0
unit, per = views.time_unit(longest)
wall = f"Wall time ({unit})"
st.dataframe(
    pd.DataFrame({
        "Entry": entries["entry"], f.metric: [fmt(v) for v in entries["value"]], "Seeds": entries["seeds"],
        wall: entries["wall_time_s"] / per, "Peak memory (MiB)": entries["peak_memory_mb"],
        "Meta-steps": entries["meta_steps"],
    }),
    hide_index=True,
    height="content",  # every entry in view, as on the leaderboard
    column_config={"Entry": st.column_config.TextColumn(width=tables.entry_width(entries["entry"]), pinned=True),
                   wall: st.column_config.NumberColumn(format="%.1f"),
                   "Peak memory (MiB)": st.column_config.NumberColumn(format="%.0f"),
                   "Meta-steps": st.column_config.NumberColumn(format="%.0f")},
)  # fmt: skip
st.caption(f"{metrics.label(f.metric)}; wall time and memory as stored per run (`runs.parquet`), all attempts.")
