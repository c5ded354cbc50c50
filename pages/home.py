"""Home: what is in the results folder, and where to go next."""

import streamlit as st

from metabench.dashboard import data, routing, state

routing.require_router()
st.title("metabench")
st.caption("Which way of learning to learn works best, on which kind of task, at what cost?")

folder = data.results_dir()
with state.errors_as_messages():
    summary = data.summary()

if summary["n_runs"] == 0:
    where = "does not exist yet" if not folder.is_dir() else "holds no runs yet"
    st.info(
        f"The results folder `{folder}` {where}. Run a first comparison with "
        f"`{state.FIRST_RUN}`, then refresh this page."
    )
else:
    last = summary["last_run_at"]
    when = last.strftime("%Y-%m-%d %H:%M UTC") if last is not None else "n/a"
    st.write(f"Results in `{folder}` · last run {when}")
    with state.errors_as_messages():
        states = data.run_states(data.runs())  # running = its job's process is alive
    cols = st.columns(6)
    cols[0].metric("Runs", summary["n_runs"])
    cols[1].metric("Finished", summary["n_finished"])
    cols[2].metric("Running", int((states == "running").sum()),
                   help="Runs whose job process is alive and working on them right now.")
    cols[3].metric("Interrupted", int((states == "interrupted").sum()),
                   help="Recorded as running, but their job's process is gone (killed, machine "
                   "restarted): `metabench jobs resume JOB` continues them.")
    cols[4].metric("Suites", len(summary["suites"]))
    cols[5].metric("Algorithms", len(summary["algorithms"]))
    st.write("**Suites:** " + ", ".join(summary["suites"]))
    st.write("**Algorithms:** " + ", ".join(summary["algorithms"]))
    with state.errors_as_messages():
        st.dataframe(data.suites_overview(), hide_index=True)

st.subheader("Pages")
for page in routing.available_pages():
    if page.url_path:
        st.page_link(page.path, label=page.title)
        st.caption(page.question)
