"""Export: exactly the leaderboard shown under the current filters, as a file; and raw tables."""

import streamlit as st

from metabench.dashboard import data, routing, state
from metabench.results.ids import safe_file_name

routing.require_router(__file__)
st.title("Export")

f = state.suite_filters()
with state.errors_as_messages():
    board = data.leaderboard(f)
if board.empty:
    state.nothing_matches(f)

stem = f"{f.suite}-{f.metric.replace('@', '_at')}"   # file names go through safe_file_name
st.subheader("Leaderboard")
st.caption(
    "The table of the Leaderboard page under these filters. CSV and Parquet: every column at full "
    "precision; Markdown and LaTeX: paper-ready (mean ± 95% CI, best and ties in bold, a caption "
    "naming suite, protocol and number of test tasks). From the command line: "
    f"`metabench leaderboard --suite {f.suite} --format latex`."
)
kinds = {"CSV": ("csv", "text/csv"), "Parquet": ("parquet", "application/vnd.apache.parquet"),
         "Markdown": ("md", "text/markdown"), "LaTeX": ("tex", "application/x-tex")}  # fmt: skip
cols = st.columns(len(kinds))
for col, (label, (ext, mime)) in zip(cols, kinds.items(), strict=True):
    fmt = {"md": "markdown", "tex": "latex"}.get(ext, ext)
    # Files are built on click (then cached), not on every rerun of this page.
    col.download_button(label, data.leaderboard_file(f, fmt),
                        file_name=safe_file_name(f"{stem}-leaderboard", ext), mime=mime, key=f"dl_{ext}", width="stretch")  # fmt: skip
preview = state.url_selectbox("Preview", ["LaTeX", "Markdown"], "preview", widget=st.radio, horizontal=True)
st.code(data.leaderboard_file(f, "latex" if preview == "LaTeX" else "markdown")().decode(),
        language="latex" if preview == "LaTeX" else "markdown", wrap_lines=True)  # fmt: skip

st.subheader("Per-task values and learning curves")
with state.errors_as_messages():
    tasks = data.task_values(f)
    curve_pairs = data.curve_metrics(f.suite)
if curve_pairs:  # chosen before the buttons that use it
    names = [f"{s} · {m}" for s, m in curve_pairs]
    split, metric = curve_pairs[names.index(state.url_selectbox("Curve", names, "curve"))]
cols = st.columns(4)
cols[0].download_button("Per-task CSV", data.task_values_file(f, "csv"),
                        safe_file_name(f"{stem}-tasks", "csv"),
                        "text/csv", key="dl_tasks_csv")  # fmt: skip
cols[1].download_button("Per-task Parquet", data.task_values_file(f, "parquet"),
                        safe_file_name(f"{stem}-tasks", "parquet"), key="dl_tasks_pq")  # fmt: skip
if curve_pairs:
    cols[2].download_button("Curve CSV", data.curve_summary_file(f, metric, split, "csv"),
                            safe_file_name(f"{f.suite}-{split}-{metric}-curves", "csv"), "text/csv", key="dl_curves_csv")  # fmt: skip
    cols[3].download_button("Curve Parquet", data.curve_summary_file(f, metric, split, "parquet"),
                            safe_file_name(f"{f.suite}-{split}-{metric}-curves", "parquet"), key="dl_curves_pq")  # fmt: skip
st.caption(
    f"Per task: {len(tasks)} rows, one per (entry, test task), averaged over seeds, with the task's "
    "descriptors. Curves: mean and 95% CI over seeds per meta-step (every step, unthinned)."
)
