"""Leaderboard: which algorithm wins on a suite, with 95% CIs over the fixed test tasks."""

import streamlit as st

from metabench.dashboard import charts, widgets
from metabench.results import metrics

widgets.require_router()
st.title("Leaderboard")

with widgets.errors_as_messages():
    suites = widgets.suites()
if not suites:
    st.info(f"No results yet in `{widgets.results_dir()}`: run `{widgets.FIRST_RUN}`.")
    st.stop()

left, right = st.columns(2)
with left:
    suite = widgets.url_selectbox("Suite", suites, "suite")
with widgets.errors_as_messages():
    available = widgets.metrics(suite)
if not available:
    st.info(
        f"No finished run of `{suite}` has test results yet; wait for a run to finish or run "
        f"`metabench run --suites {suite} --algorithms maml --preset smoke`."
    )
    st.stop()
with right:
    metric = widgets.url_selectbox("Metric", available, "metric", help="Test metric; primary first.")

with widgets.errors_as_messages():
    board = widgets.leaderboard(suite, metric)

first = board.iloc[0]
st.caption(
    f"Suite **{suite}** version {first['suite_version']} · finished runs only · "
    f"{metrics.label(metric)}."
)
widgets.leaderboard_table(board)
st.altair_chart(charts.leaderboard_chart(board), width="content")
st.caption(
    "Mean and 95% CI are over the fixed test tasks, which are the same for every algorithm: "
    "each task's value is first averaged over seeds, then mean ± t(0.975, n_tasks − 1) · "
    "sd / √n_tasks (Student t). *Std (seeds)* is the standard deviation of the per-seed "
    "means. Rows differing in split, transductive or query batch follow different protocols "
    "and are not directly comparable."
)
