"""Across suites: which entries do well over every suite at once (mean rank, IQM, profiles)."""

import streamlit as st

from metabench.dashboard import charts, data, routing, state, tables

routing.require_router(__file__)
st.title("Across suites")

with state.errors_as_messages():
    runs = data.runs()
if runs.empty:
    state.no_results()
finished = runs[runs["status"] == "finished"]
cols = st.columns(2)
with cols[0]:
    families = state.url_multiselect("Family", sorted(finished["family"].dropna().unique()), "family")
with cols[1]:
    presets = state.url_multiselect("Preset", sorted(finished["preset"].dropna().unique()), "preset")
with state.errors_as_messages():
    agg = data.aggregate(families, presets)
if agg.table.empty:
    st.info("No suite has a normalisation rule for its primary metric yet, so nothing can be pooled.")
    st.stop()
# The table, then the IQM chart, each at full width: side by side, thirty entries' names (a
# variant's overrides in brackets) cut the table's cells and left the chart a strip of a plot.
st.dataframe(
    tables.aggregate_frame(agg.table), hide_index=True, height="content",
    column_config={"Entry": st.column_config.TextColumn(width=tables.entry_width(agg.table["entry"]), pinned=True),
                   "IQM": st.column_config.NumberColumn(format="%.3f"),
                   "Mean rank": st.column_config.NumberColumn(format="%.2f")},
)  # fmt: skip
tables.altair_chart(charts.iqm_chart(agg.table), width="stretch")
# full width: the profile's legend names every entry, which squeezes the plot in a narrow column
tables.altair_chart(charts.profile_chart(agg.profile), width="stretch")
st.dataframe(
    agg.rules.rename(columns={"suite": "Suite", "metric": "Metric", "normalisation": "Normalised score",
                              "n_entries": "Entries"}),
    hide_index=True,
)  # fmt: skip
left_out = f" Left out (no normalisation rule): {', '.join(agg.left_out)}." if agg.left_out else ""
st.caption(
    "Each suite's primary metric is normalised by the rule above (defined once per suite kind in "
    "`metabench/results/normalize.py`), per seed, on the newest suite version and its main split. "
    "Following rliable (Agarwal et al., 2021), a suite is a task and a seed a run: *IQM* is the "
    "interquartile mean of all (seed, suite) scores, with a stratified bootstrap 95% CI (2000 "
    "resamples of seeds within each suite, percentile interval); where an entry's suites have "
    "different numbers of seeds, each suite weighs the same (a score weighs 1/its suite's seeds). "
    "*Mean rank* averages the entry's rank on each suite it ran (ties share ranks); the profile "
    "shows the fraction of runs scoring above τ (the mean over suites). Filters: family and "
    "preset above." + left_out
)
