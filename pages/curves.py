"""Learning curves: a metric against meta-steps or wall time, mean and 95% CI over seeds."""

import streamlit as st

from metabench.dashboard import charts, data, routing, state, tables

routing.require_router(__file__)
st.title("Learning curves")

f = state.suite_filters(metric_choice=False)
with state.errors_as_messages():
    pairs = data.curve_metrics(f.suite)
if not pairs:
    st.info(f"No curve points for `{f.suite}` yet; run `metabench run --suites {f.suite} --preset smoke`.")
    st.stop()
names = [f"{split} · {metric}" for split, metric in pairs]
cols = st.columns([3, 2, 2, 2])
with cols[0]:
    chosen = state.url_selectbox("Curve (split · metric)", names, "curve")
split, metric = pairs[names.index(chosen)]
with cols[1]:
    x = state.url_selectbox("x axis", ["step", "wall_time_s"], "x", widget=st.radio, horizontal=True,
                              format_func=lambda v: "meta-step" if v == "step" else "wall time")  # fmt: skip
with cols[2]:
    log_x = state.url_toggle("log x", "logx")
    log_y = state.url_toggle("log y", "logy")
with cols[3]:
    smooth = st.slider("Smoothing (EMA weight)", 0.0, 0.95, float(st.query_params.get("smooth", 0.0)), 0.05,
                       help="Exponential moving average over steps of the mean and the band; 0 = off.")  # fmt: skip
    st.query_params["smooth"] = f"{smooth:g}"

with state.errors_as_messages():
    df = data.curve_lines(f, metric, split, smooth)  # thinned to at most 500 points per line
    left_out = data.curve_excluded_runs(f)
if df.empty:
    state.nothing_matches(f)
tables.altair_chart(charts.curves_chart(df, metric, x=x, log_x=log_x, log_y=log_y), width="stretch")
n = df.groupby(charts.entry_labels(df))["n_seeds"].max()
st.caption(
    f"{split} {metric} of `{f.suite}` (newest version; finished, running and cancelled runs — "
    "failed and diverged runs are left out of the lines). Lines: mean over seeds at each "
    "meta-step; bands: 95% Student-t CI across seeds (none with one seed; cut at what the metric can take, e.g. 0–100%); wall time is the "
    "seeds' mean at that step. Seeds per entry: " + ", ".join(f"{k} {v}" for k, v in n.items()) + "."
)
if not left_out.empty:
    with st.expander(f"Left out of the lines: {len(left_out)} failed or diverged run(s)"):
        st.dataframe(left_out.rename(columns={"meta_steps": "meta-steps reached"}), hide_index=True)
