"""URL state and the shared filter row.

Widgets whose value is mirrored in the URL query string (``url_selectbox``, ``url_multiselect``,
``url_toggle``), so a view can be shared as a link, and whose last value is kept from page to
page; ``suite_filters``, the suite / metric / family / preset row of the leaderboard-style pages;
and the messages that stop a page when there is nothing to show.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import streamlit as st

from metabench.dashboard import data
from metabench.dashboard.data import Filters
from metabench.dashboard.routing import PAGE_KEY
from metabench.errors import MetabenchError

#: The suite the leaderboard-style pages open on (the default benchmark's, when it has results).
DEFAULT_SUITE = "omniglot-5w1s"
#: The command the empty-state messages suggest: the smallest run of your own, which lands beside the
#: reference protonet runs of omniglot-5w1s (unpaired: a smoke run tests fewer fixed tasks).
FIRST_RUN = f"metabench run --suites {DEFAULT_SUITE} --algorithms protonet --preset smoke"


def _page_changed(param: str) -> bool:
    """True on the first run of a page for ``param``'s widget: Streamlit drops (or resets) a
    widget's state when another page ran in between, so the remembered value must be restored."""
    page = st.session_state.get(PAGE_KEY)
    marker = f"url_{param}_page"
    changed = st.session_state.get(marker) != page
    st.session_state[marker] = page
    return changed


def url_selectbox(
    label: str, options: Sequence[str], param: str, widget: Any = None, default: str | None = None, **kwargs: Any
) -> str:
    """A selectbox (or ``widget``, e.g. ``st.radio``) whose value is mirrored in the URL query
    string (``?param=value``).

    Opening a URL with ``?param=value`` preselects that option, so a view can be shared. The
    last value chosen on any page is kept for the next page (pages share ``suite``, ``metric``
    and the filters). An unknown value in the URL falls back to ``default`` or the first option.
    """
    options = [str(o) for o in options]
    key, seen, sticky = f"url_{param}", f"url_{param}_written", f"sticky_{param}"
    in_url = st.query_params.get(param)
    # A URL value we did not write ourselves (a shared link, a page link) wins over the state.
    if in_url in options and in_url != st.session_state.get(seen):
        st.session_state[key] = in_url
    elif _page_changed(param) and st.session_state.get(sticky) in options:
        st.session_state[key] = st.session_state[sticky]
    if st.session_state.get(key) not in options:
        remembered = st.session_state.get(sticky)
        st.session_state[key] = remembered if remembered in options else (
            default if default in options else options[0])
    value = (widget or st.selectbox)(label, options, key=key, **kwargs)
    st.query_params[param] = value
    st.session_state[seen] = st.session_state[sticky] = value
    return value


def url_multiselect(label: str, options: Sequence[str], param: str, **kwargs: Any) -> list[str] | None:
    """A multiselect mirrored in the URL as ``?param=a,b``; all options selected = no filter.

    Returns the selected options, or None when every option is selected (the URL then omits
    the parameter, so a shared link keeps working when new values appear).
    """
    options = [str(o) for o in options]
    key, seen, sticky = f"url_{param}", f"url_{param}_written", f"sticky_{param}"
    in_url = st.query_params.get(param)
    if in_url is not None and in_url != st.session_state.get(seen):
        st.session_state[key] = [] if in_url == "none" else [v for v in in_url.split(",") if v in options] or options
    elif _page_changed(param):
        remembered = st.session_state.get(sticky)
        st.session_state[key] = options if remembered is None else [v for v in remembered if v in options]
    current = st.session_state.get(key)
    if current is None or not set(current) <= set(options):
        remembered = st.session_state.get(sticky)
        kept = [v for v in remembered if v in options] if remembered is not None else options
        st.session_state[key] = kept if kept or remembered == [] else options
    value = list(st.multiselect(label, options, key=key, **kwargs))
    # "Every option" is remembered as such (None), not as today's list: the next page (another
    # suite, or Across suites over all of them) may offer options this one did not.
    st.session_state[sticky] = None if set(value) == set(options) else value
    if set(value) == set(options):
        st.query_params.pop(param, None)
        st.session_state[seen] = None
        return None
    text = ",".join(value) if value else "none"
    st.query_params[param] = text
    st.session_state[seen] = text
    return value


def url_toggle(label: str, param: str, default: bool = False, **kwargs: Any) -> bool:
    """A toggle mirrored in the URL as ``?param=1`` / ``?param=0``."""
    key, seen = f"url_{param}", f"url_{param}_written"
    in_url = st.query_params.get(param)
    if in_url in ("0", "1") and in_url != st.session_state.get(seen):
        st.session_state[key] = in_url == "1"
    elif _page_changed(param) and f"sticky_{param}" in st.session_state:
        st.session_state[key] = st.session_state[f"sticky_{param}"]
    if key not in st.session_state:
        st.session_state[key] = default
    value = bool(st.toggle(label, key=key, **kwargs))
    st.session_state[f"sticky_{param}"] = value
    st.query_params[param] = "1" if value else "0"
    st.session_state[seen] = "1" if value else "0"
    return value


def reference_switch() -> bool:
    """The sidebar's "Reference runs" switch, mirrored in the URL as ``?reference=0/1``: whether
    the pages show the reference set shipped with metabench beside your runs (on by default;
    ``data.show_reference`` reads it)."""
    with st.sidebar:
        return url_toggle(
            "Reference runs", "reference", default=True,
            help="Show the reference results shipped with metabench (marked 'reference') beside your "
            "own runs ('yours'). Your runs pair with them only on the same fixed test tasks.",
        )  # fmt: skip


def suite_filters(metric_choice: bool = True) -> Filters:
    """The shared filter row: suite, metric, family, preset (and split scheme when a suite has
    several); every value in the URL. Stops the page with a message saying what to run when
    there is nothing to show."""
    with errors_as_messages():
        all_suites = data.suites()
    if not all_suites:
        no_results()
    cols = st.columns([3, 2, 3, 3]) if metric_choice else st.columns([3, 3, 3])
    with cols[0]:
        # the benchmark's own default suite first (where FIRST_RUN lands), not the alphabet's first
        suite = url_selectbox("Suite", all_suites, "suite", default=DEFAULT_SUITE)
    with errors_as_messages():
        available = data.metrics(suite)
        options = data.facets(suite)
    if not available:
        st.info(
            f"No finished run of `{suite}` has test results yet; wait for a run to finish or run "
            f"`metabench run --suites {suite} --algorithms maml --preset smoke`."
        )
        st.stop()
    metric = available[0]
    if metric_choice:
        with cols[1]:
            metric = url_selectbox("Metric", available, "metric", help="Test metric; primary first.")
    with cols[-2]:
        families = url_multiselect("Family", options["families"], "family")
    with cols[-1]:
        presets = url_multiselect("Preset", options["presets"], "preset")
    split = options["main_split_scheme"]
    if len(options["split_schemes"]) > 1:
        split = url_selectbox(
            "Split scheme", options["split_schemes"], "split_scheme", default=split,
            help="Rows of different class splits are never compared; pick one.",
        )  # fmt: skip
    transductive = None
    if len(options.get("transductive", [])) > 1:   # issue 22: both kinds present, marked † in the table
        choice = url_selectbox(
            "Transductive", ["both", "only transductive (†)", "only non-transductive"], "transductive",
            help="Transductive rows (†) process a task's test queries together (batch-norm statistics "
            "of the query batch); the others classify each query on its own.",
        )  # fmt: skip
        transductive = {"only transductive (†)": True, "only non-transductive": False}.get(choice)
    return Filters(suite, metric, families, presets, split, transductive)


def suite_links(runs: pd.DataFrame, per_row: int = 4) -> None:
    """A link per suite of ``runs`` (``ResultsDB.runs``' columns) to its leaderboard, with the
    number of algorithms and finished runs under it: the first thing a new user looks for. The
    fullest leaderboards come first (most algorithms, then name)."""
    finished = runs[runs["status"] == "finished"]
    counts = finished.groupby("suite").agg(algorithms=("algorithm", "nunique"), runs=("run_id", "size"))
    suites = suite_order(counts)
    for row in range(0, len(suites), per_row):
        for col, suite in zip(st.columns(per_row), suites[row:row + per_row]):
            with col.container(border=True):
                st.page_link("pages/leaderboard.py", label=f"**{suite}**", query_params={"suite": suite},
                             icon=":material/leaderboard:")  # fmt: skip
                n_algos, n_runs = counts.at[suite, "algorithms"], counts.at[suite, "runs"]
                st.caption(f"{_count(n_algos, 'algorithm')} · {_count(n_runs, 'run')}")


def suite_order(counts: pd.DataFrame) -> list[str]:
    """Suites (``counts``' index, with an ``algorithms`` column) by most algorithms, then name."""
    return sorted(counts.index, key=lambda s: (-int(counts.at[s, "algorithms"]), s))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def no_results() -> None:
    """The empty-results message (what to run), then stop the page."""
    st.info(f"No results yet in `{data.results_dir()}`: run `{FIRST_RUN}`, then refresh this page.")
    st.stop()


def nothing_matches(f: Filters) -> None:
    """The message for filters that select nothing, then stop the page."""
    st.info(
        f"No finished `{f.suite}` run matches these filters (family: {_any(f.families)}, preset: "
        f"{_any(f.presets)}). Widen the filters, or run one, e.g. "
        f"`metabench run --suites {f.suite} --algorithms maml --preset {(f.presets or ['smoke'])[0]}`."
    )
    st.stop()


def _any(values: list[str] | None) -> str:
    return "any" if values is None else ", ".join(values) or "none"


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """Show a MetabenchError as one red sentence and stop the page, instead of a traceback."""
    try:
        yield
    except MetabenchError as exc:
        st.error(str(exc))
        st.stop()
