"""Home: what the reference set holds, what is in your results folder, and where to go next."""

import streamlit as st

from metabench.dashboard import data, routing, state
from metabench.results import views

routing.require_router(__file__)
st.title("metabench")
st.caption("Which way of learning to learn works best, on which kind of task, at what cost?")

folder = data.results_dir()
with state.errors_as_messages():
    runs = data.runs()
    states = data.run_states(runs)  # running = its job's process is alive
mine = runs["source"] == "yours"
reference = views.runs_summary(runs[~mine])
yours = views.runs_summary(runs[mine])

st.subheader("Reference results")
if not data.show_reference():
    st.caption("Hidden: the sidebar's *Reference runs* switch shows them beside yours.")
elif reference["n_runs"] == 0:
    st.caption("No reference results are installed with this copy of metabench.")
else:
    st.write("Measured by metabench itself and shipped with it (read-only), so every leaderboard has "
             "baselines from the first minute; marked *reference* on every page.")
    cols = st.columns(4)
    cols[0].metric("Reference runs", reference["n_runs"])
    cols[1].metric("Reference algorithms", len(reference["algorithms"]))
    cols[2].metric("Reference suites", len(reference["suites"]))
    cols[3].metric("Presets", ", ".join(reference["presets"]))
    st.write("**Leaderboards:**")
    state.suite_links(runs[~mine])
    st.write("**Algorithms:** " + ", ".join(reference["algorithms"]))
    st.write(f"**metabench version:** {', '.join(reference['metabench_versions']) or 'n/a'} · "
             f"**device:** {', '.join(reference['devices']) or 'n/a'}")
st.markdown(f"**Add your own:** `{state.FIRST_RUN}` — it appears as *yours* beside the reference rows, "
            "paired with those evaluated on the same fixed test tasks (same fingerprint; a smoke run tests "
            "fewer tasks than the quick reference runs, so it is shown beside them unpaired, with the reason).")

st.subheader("Your results")
if yours["n_runs"] == 0:
    where = "does not exist yet" if not folder.is_dir() else "holds no runs yet"
    st.info(
        f"The results folder `{folder}` {where}. Run a first comparison with "
        f"`{state.FIRST_RUN}`, then refresh this page."
    )
else:
    last = yours["last_run_at"]
    when = last.strftime("%Y-%m-%d %H:%M UTC") if last is not None else "n/a"
    st.write(f"Results in `{folder}` · last run {when}")
    cols = st.columns(6)
    cols[0].metric("Runs", yours["n_runs"])
    cols[1].metric("Finished", yours["n_finished"])
    cols[2].metric("Running", int((states[mine] == "running").sum()),
                   help="Runs whose job process is alive and working on them right now.")
    cols[3].metric("Interrupted", int((states[mine] == "interrupted").sum()),
                   help="Recorded as running, but their job's process is gone (killed, machine "
                   "restarted): `metabench jobs resume JOB` continues them.")
    cols[4].metric("Suites", len(yours["suites"]))
    cols[5].metric("Algorithms", len(yours["algorithms"]))
    st.write("**Suites:** " + ", ".join(yours["suites"]))
    st.write("**Algorithms:** " + ", ".join(yours["algorithms"]))
    with state.errors_as_messages():
        st.dataframe(data.suites_overview(), hide_index=True)

st.subheader("Pages")
pages = [p for p in routing.available_pages() if p.url_path]
for row in range(0, len(pages), 3):
    for col, page in zip(st.columns(3), pages[row:row + 3]):
        with col.container(border=True):
            st.page_link(page.path, label=f"**{page.title}**", icon=":material/arrow_forward:")
            st.caption(page.question)
