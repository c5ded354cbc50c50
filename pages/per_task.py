"""Per task: on which test tasks each algorithm wins — distributions, descriptors, A minus B."""

import streamlit as st

from metabench.dashboard import charts, data, routing, state, tables
from metabench.results import descriptors, metrics, views

routing.require_router(__file__)
st.title("Per task")

f = state.suite_filters()
with state.errors_as_messages():
    values = data.task_values(f)
    board = data.leaderboard(f)
if values.empty:
    state.nothing_matches(f)
values = values.assign(entry=charts.entry_labels(values).to_numpy())
order = charts.entry_labels(board).tolist()  # best first
higher = metrics.direction(f.metric) == "higher"

st.subheader("Distribution over test tasks")
tables.altair_chart(charts.task_distribution_chart(values, f.metric, order), width="stretch")
st.caption(
    f"Each task's {f.metric} averaged over seeds; boxes: quartiles and median, whiskers: min and max "
    f"over {values['task_id'].nunique()} fixed test tasks."
)

st.subheader("By task descriptor")
numeric, categorical = data.task_features(values)
cat_names = categorical.groupby("descriptor")["category"].nunique().sort_values().index.tolist()
options = [f"{d} (category)" for d in cat_names] + [f"{c} (numeric)" for c in numeric.columns]
if not options:
    st.info("The tasks of this suite carry no descriptors to break the results down by.")
else:
    preferred = [o for o in options if o.split(" ")[0] in descriptors.PREFERRED]
    chosen = state.url_selectbox("Descriptor", options, "descriptor", default=(preferred or options)[0])
    name = chosen.rsplit(" (", 1)[0]
    if chosen.endswith("(category)"):
        table = descriptors.by_category(values, categorical, name)
        tables.altair_chart(charts.category_chart(table, f.metric, name), width="stretch")
        st.caption(
            f"Mean {f.metric} of each entry over the tasks of each {name} value (a task belongs to "
            "every value it contains), with a 95% CI over those tasks (cut at what the metric can "
            "take); the 30 most frequent values, hardest first."
        )
    else:
        merged = values.join(numeric[[name]], on="task_id")
        tables.altair_chart(charts.numeric_descriptor_chart(merged, f.metric, name), width="stretch")
        st.caption(f"One point per (entry, task); lines join the means of ten equal-count bins of {name}.")

st.subheader("Paired: A − B on each task")
if len(order) < 2:
    st.info("Only one entry matches the filters; a paired view needs two.")
    st.stop()
cols = st.columns(2)
with cols[0]:
    a = state.url_selectbox("A", order, "a")
with cols[1]:
    b = state.url_selectbox("B", [e for e in order if e != a], "b")
paired = views.paired_summary(values, a, b, higher)
cmp, wins_a, wins_b = paired.comparison, paired.wins_a, paired.wins_b
m = st.columns(4)
m[0].metric(f"{a} better on", f"{wins_a} task{'s' * (wins_a != 1)}")
m[1].metric(f"{b} better on", f"{wins_b} task{'s' * (wins_b != 1)}")
m[2].metric("Mean A − B", metrics.format_value(f.metric, cmp.mean_diff) if not metrics.spec(f.metric).percent
            else f"{cmp.mean_diff * 100:+.2f} pts")  # fmt: skip
m[3].metric("Paired t-test p", "n/a" if cmp.p_value != cmp.p_value else f"{cmp.p_value:.3g}")
tables.altair_chart(charts.paired_chart(paired.table, f.metric, a, b, order), width="stretch")
st.caption(f"{metrics.label(f.metric)}; P({a} beats {b} on a task) = {cmp.prob_improvement:.2f} (ties count half).")
