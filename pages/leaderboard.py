"""Leaderboard: who wins on a suite, by how much, and whether it is real."""

import streamlit as st

from metabench.dashboard import charts, data, routing, state, tables
from metabench.results import metrics

routing.require_router(__file__)
st.title("Leaderboard")

f = state.suite_filters()
with state.errors_as_messages():
    board = data.leaderboard(f)
if board.empty:
    state.nothing_matches(f)

first = board.iloc[0]
st.caption(
    f"Suite **{f.suite}** version {first['suite_version']}"
    + (f" · split {f.split_scheme}" if f.split_scheme not in (None, "-") else "")  # '-': no class split
    + f" · finished runs only · {metrics.label(f.metric)} · {int(board['n_tasks'].max())} fixed test tasks."
)
tables.leaderboard_table(board)
for entry, note in zip(charts.entry_labels(board), board["note"].fillna(""), strict=True):
    # another set of fixed test tasks than the best entry's (shown, not compared), and/or test
    # tasks left out of the mean because adaptation diverged on them
    if note:
        st.warning(f"**{entry}**: {note}.", icon=":material/link_off:" if note.startswith("not paired") else None)
tables.altair_chart(charts.leaderboard_chart(board), width="stretch")
st.caption(
    "The chart: each entry's mean as a point and its 95% CI as a line, on an axis fitted to the values "
    "(not from zero), one colour per entry on every page; ◇ is the published number where the row's "
    "protocol matches the paper's; scroll on the chart to zoom the axis, drag to pan, double-click to reset. "
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
    + (" *Source*: **reference** rows are the runs shipped with metabench (read-only; the sidebar switch "
       "hides them), **yours** come from your results folder; the two are paired only on the same fixed "
       "test tasks (fingerprints agree), else the row is marked unpaired."
       if (board["source"] != "yours").any() else "")
)
st.page_link("pages/across_suites.py", label="Across suites: every entry over all suites →")
