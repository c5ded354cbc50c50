"""Launch: start a comparison run as a durable job, and follow the jobs of this results folder."""

import streamlit as st

from metabench.dashboard import data, launch, routing, state
from metabench.errors import MetabenchError

routing.require_router(__file__)
st.title("Launch")
folder = data.results_dir()

token = None
can_act = not launch.readonly()
if not can_act:
    st.info("Launching is turned off on this dashboard (`METABENCH_READONLY=1`); jobs are shown read-only.")
elif launch.token_required():
    token = st.text_input("Access token", type="password", help="This dashboard requires METABENCH_TOKEN to launch.")
    can_act = launch.token_ok(token)
    if not can_act:
        st.warning("Enter the access token to launch, cancel or resume jobs.")

if can_act:
    with state.errors_as_messages():
        cat = launch.catalog()
    suite_ids = [s["id"] for s in cat["suites"]]
    suites = st.multiselect("Suites", suite_ids, default=[s for s in ("sinusoid-5shot",) if s in suite_ids],
                            key="launch_suites")
    fits, greyed = launch.fitting(cat, suites)
    if "launch_algorithms" in st.session_state:  # keep only choices that still fit
        st.session_state["launch_algorithms"] = [a for a in st.session_state["launch_algorithms"] if a in fits]
    algorithms = st.multiselect("Algorithms", fits, key="launch_algorithms",
                                help="Only algorithms that fit at least one chosen suite.")
    if greyed:
        with st.expander(f"{len(greyed)} algorithm(s) do not fit the chosen suites"):
            st.markdown(launch.unfit_list(greyed))
    left, mid, right = st.columns(3)
    seeds = left.text_input("Seeds", "0", help="Comma-separated, e.g. 0,1,2", key="launch_seeds")
    preset = mid.selectbox("Preset", ["smoke", "quick", "paper"], index=1, key="launch_preset")
    device = right.selectbox("Device", ["auto", "cpu", "cuda"], key="launch_device")
    executor = left.selectbox("Executor", ["local", "ray"], key="launch_executor")
    workers = mid.number_input("Workers (0 = automatic)", 0, 1024, 0, key="launch_workers")
    ray_address = right.text_input("Ray address (empty = a local Ray)", key="launch_ray",
                                   disabled=executor != "ray")
    sets: list[str] | None = []
    if suites and algorithms:
        st.markdown("**Settings** — the preset's values; change one to override it, or sweep a field.")
        parts = [launch.settings_inputs(cat, a, preset, suites) for a in algorithms]
        parts.append(launch.loop_inputs(cat, algorithms, preset, suites))
        sets = None if None in parts else [x for part in parts for x in part]
        if sets:
            st.caption("Overrides: " + " ".join(f"`{x.removeprefix('--set=')}`" for x in sets))
    with state.errors_as_messages():
        known = launch.cell_time_estimates(data.runs(), preset)
    grid = [(s, a) for s in suites for a in algorithms if cat["fits"][a][s]["ok"]]
    est = [known[p] for p in grid if p in known]
    if grid and est:
        n_seeds = len([x for x in seeds.split(",") if x.strip()]) or 1
        st.caption(f"Cell time on this machine ({preset}, median of finished runs): "
                   + ", ".join(f"{s} × {a}: {known[(s, a)][0]:.0f} s" for s, a in grid if (s, a) in known)
                   + f" · about {sum(m for m, _ in est) * n_seeds / 60:.1f} min of cell time for the known cells"
                   + (", per swept value" if any("," in x for x in sets or []) else ""))
    elif grid:
        st.caption(f"No finished {preset} runs of this grid here yet, so no time estimate.")
    ready = bool(suites and algorithms) and sets is not None
    go, look, _ = st.columns([1, 1, 4])
    if go.button("Launch", type="primary", disabled=not ready, key="launch_go"):
        try:
            job_id = launch.launch(folder, suites, algorithms, seeds, preset, device, executor, int(workers),
                                   ray_address or "", token, sets)
            st.success(f"Started job {job_id}.")
        except MetabenchError as exc:
            st.error(str(exc))
    if look.button("Preview cells", disabled=not ready, key="launch_preview"):   # metabench run --dry-run
        try:
            cells, skips = launch.preview(folder, suites, algorithms, seeds, preset, sets)
            st.dataframe(cells, hide_index=True, key="launch_cells")
            st.caption(f"{len(cells)} cell(s) (`metabench run --dry-run --json`)" + "".join(f" · skip {x}" for x in skips)
                       + (" · a value equal to the preset's is the plain entry" if sets else ""))
        except MetabenchError as exc:
            st.error(str(exc))

st.subheader("Jobs")


@st.fragment(run_every=2)
def jobs() -> None:
    launch.job_list(folder, can_act, token)


jobs()
