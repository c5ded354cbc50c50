"""Leaderboard: who wins on a suite, by how much, and whether it is real; then across suites."""

import streamlit as st

from metabench.dashboard import charts, widgets
from metabench.results import metrics

widgets.require_router()
st.title("Leaderboard")

f = widgets.suite_filters()
with widgets.errors_as_messages():
    board = widgets.filtered("leaderboard", f)
if board.empty:
    widgets.nothing_matches(f)

first = board.iloc[0]
st.caption(
    f"Suite **{f.suite}** version {first['suite_version']}"
    + (f" · split {f.split_scheme}" if f.split_scheme not in (None, "-") else "")  # '-': no class split
    + f" · finished runs only · {metrics.label(f.metric)} · {int(board['n_tasks'].max())} fixed test tasks."
)
widgets.leaderboard_table(board)
for entry, note in zip(board["variant"], board["note"].fillna(""), strict=True):
    if note:   # another set of fixed test tasks than the best entry's: shown, but not compared
        st.warning(f"**{entry}** is {note}.", icon=":material/link_off:")
widgets.altair_chart(charts.leaderboard_chart(board), width="content")
st.caption(
    "Mean and 95% CI are over the fixed test tasks, which are the same for every algorithm: "
    "each task's value is first averaged over seeds, then mean ± t(0.975, n_tasks − 1) · "
    "sd / √n_tasks (Student t). *Std (seeds)* is the standard deviation of the per-seed "
    "means. *vs best*: a paired t-test (scipy `ttest_rel`) against the rank-1 entry on the "
    "same tasks; **tie** means p ≥ 0.05. *P(beats best)*: the fraction of tasks on which the "
    "entry does better than the best (ties count half). Rows differing in transductive or query "
    "batch follow different protocols."
    + (" A *variant* (e.g. `maml[inner_steps=3]`) is an algorithm run with overrides of its preset: "
       "its own entry, never averaged with the preset's runs; *Changes* says what differs, and "
       "published numbers sit only beside rows without overrides."
       if (board["changes"] != "").any() else "")
)

st.header("Across suites")
with widgets.errors_as_messages():
    agg = widgets.aggregate(f.families, f.presets)
if agg.table.empty:
    st.info("No suite has a normalisation rule for its primary metric yet, so nothing can be pooled.")
    st.stop()
left, right = st.columns([3, 2])
with left:
    st.dataframe(
        widgets.aggregate_frame(agg.table), hide_index=True,
        column_config={"IQM": st.column_config.NumberColumn(format="%.3f"),
                       "Mean rank": st.column_config.NumberColumn(format="%.2f")},
    )  # fmt: skip
    widgets.altair_chart(charts.iqm_chart(agg.table), width="stretch")
with right:
    widgets.altair_chart(charts.profile_chart(agg.profile), width="stretch")
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
    "resamples of seeds within each suite, percentile interval); *Mean rank* averages the "
    "entry's rank on each suite it ran (ties share ranks); the profile shows the fraction of runs "
    "scoring above τ. Filters: family and preset above." + left_out
)
