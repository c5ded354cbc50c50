"""Widgets and cached queries shared by the pages.

Pages call the query functions here (never ``ResultsDB`` or SQL directly). Each query is cached
on (results folder, a fingerprint of its Parquet files, method, arguments): an unchanged folder
is served from memory, and a new or rewritten results file changes the fingerprint, so new
results appear on the next rerun without restarting the server.

Speed (issue 5: first render of a page < 1 s, a filter change < 300 ms, with 1M result rows):
the folder is walked at most once per rerun (``_fingerprint``, which also brings the in-memory
tables of the ``ResultsDB`` up to date, file by file); opening a folder starts a background
thread that loads its tables and imports the heavy modules the pages need (``_warm_up``); the
unfiltered scans are remembered by ``ResultsDB`` so a filter only selects entries; export files
are built when a download button is clicked, once per (folder state, filters, format).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from metabench.dashboard import PAGES
from metabench.engine import jobstore  # torch-free: job folders and process liveness only
from metabench.errors import MetabenchError
from metabench.results import metrics as _metrics
from metabench.results.aggregate import Aggregate
from metabench.results.aggregate import aggregate as _aggregate
from metabench.results.descriptors import features as _descriptor_features
from metabench.results.export import frame_bytes, leaderboard_bytes
from metabench.results.query import ResultsDB

ENV_VAR = "METABENCH_RESULTS"
#: The command the empty-state messages suggest: the smallest run that fills a leaderboard.
FIRST_RUN = "metabench run --suites sinusoid-5shot --algorithms maml --preset smoke"


# -- routing -------------------------------------------------------------------------------------

_ROUTED = "_metabench_routed"
_REROUTED = "_metabench_rerouted"


def navigation_pages() -> list[st.Page]:
    """``st.Page`` objects for every entry of ``metabench.dashboard.PAGES`` whose script exists
    (a page listed ahead of its script, like Launch, appears once the script lands)."""
    return [
        st.Page(p.path, title=p.title, url_path=p.url_path, default=p.url_path == "")
        for p in available_pages()
    ]


def available_pages() -> list:
    """The entries of ``PAGES`` whose script exists next to app.py."""
    root = Path(__file__).resolve().parents[2]
    return [p for p in PAGES if (root / p.path).is_file()]


def mark_routed() -> None:
    """Called by app.py before ``st.navigation``: this session's pages run through the router."""
    st.session_state[_ROUTED] = True


def _page_changed(param: str) -> bool:
    """True on the first run of a page for ``param``'s widget: Streamlit drops (or resets) a
    widget's state when another page ran in between, so the remembered value must be restored."""
    page = st.session_state.get("_metabench_page")
    marker = f"url_{param}_page"
    changed = st.session_state.get(marker) != page
    st.session_state[marker] = page
    return changed


def require_router() -> None:
    """First call of every page: make sure the page runs inside app.py, not on its own.

    Streamlit still honours its old ``pages/``-folder convention until some session has called
    ``st.navigation``: after a server start, a first visit straight to ``/leaderboard`` runs
    ``pages/leaderboard.py`` alone (no sidebar, no page config, auto-named pages). Calling
    ``st.navigation`` switches the server to app.py's routing for good; the rerun then goes
    through app.py and lands on the same page, query string included.
    """
    # Which page is running (its script), so URL widgets know when the page changed.
    st.session_state["_metabench_page"] = sys._getframe(1).f_code.co_filename
    if not st.session_state.get(_ROUTED) and not st.session_state.get(_REROUTED):
        st.session_state[_REROUTED] = True  # once: a page run as the main script must not loop
        st.navigation(navigation_pages(), position="hidden")
        st.rerun()


# -- the results folder --------------------------------------------------------------------------


def default_results_dir() -> str:
    """``$METABENCH_RESULTS`` if set, else ``results`` (relative to where the app runs)."""
    return os.environ.get(ENV_VAR) or "results"


def results_dir_input() -> None:
    """The sidebar's "Results folder" box; its value lives in ``st.session_state["results_dir"]``."""
    st.sidebar.text_input(
        "Results folder",
        value=default_results_dir(),
        key="results_dir",
        help=f"Folder holding one sub-folder per run. Defaults to ${ENV_VAR} or ./results.",
    )


def results_dir() -> Path:
    """The results folder chosen in the sidebar (or the default), as an absolute path."""
    value = st.session_state.get("results_dir") or default_results_dir()
    return Path(value).expanduser().absolute()


#: Imported in the background when the dashboard opens a folder, so no page waits for them.
WARM_MODULES = ("scipy.stats", "altair", "metabench.dashboard.charts", "metabench.results.descriptors")


@st.cache_resource(show_spinner=False)
def _db(folder: str) -> ResultsDB:
    db = ResultsDB(folder, auto_refresh=False)  # _fingerprint refreshes it, once per rerun
    db.refresh()
    db.warm_up = _warm_up(db)  # type: ignore[attr-defined]  # joined by benchmarks/bench_dashboard.py
    return db


def _warm_up(db: ResultsDB) -> threading.Thread:
    """Load the folder's tables into memory and import the pages' heavy modules, in a daemon
    thread: the first load of the dashboard pays for it once, no later page does."""

    def work() -> None:
        db.preload(("runs", "tasks")).join()
        for name in WARM_MODULES:
            importlib.import_module(name)
        db.preload(("curves",)).join()

    thread = threading.Thread(target=work, name="metabench warm-up", daemon=True)
    thread.start()
    return thread


def db() -> ResultsDB:
    """The (cached) ResultsDB of the current results folder."""
    return _db(str(results_dir()))


# -- cached queries ------------------------------------------------------------------------------


@st.cache_data(ttl=2, show_spinner=False)
def _fingerprint(folder: str) -> tuple[int, int, int]:
    # A short TTL: one walk of the folder per rerun at most, yet new files show within seconds.
    # The walk also loads what changed into the folder's ResultsDB (its queries never walk).
    return _db(folder).refresh()


@st.cache_data(ttl=600, max_entries=256, show_spinner=False)
def _query(folder: str, stamp: tuple[int, int, int], method: str, kwargs: tuple) -> Any:
    del stamp  # only part of the cache key
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs}
    if method == "aggregate":  # derived from run_scores: normalise, rank, bootstrap
        return _aggregate(_db(folder).run_scores(**args))
    return getattr(_db(folder), method)(**args)


def _cached(method: str, **kwargs: Any) -> Any:
    folder = str(results_dir())
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    return _query(folder, _fingerprint(folder), method, key)


def summary() -> dict[str, Any]:
    """See ``ResultsDB.summary``."""
    return _cached("summary")


def suites() -> list[str]:
    """See ``ResultsDB.suites``."""
    return _cached("suites")


def metrics(suite: str) -> list[str]:
    """See ``ResultsDB.metrics``."""
    return _cached("metrics", suite=suite)


def leaderboard(suite: str, metric: str | None = None) -> pd.DataFrame:
    """See ``ResultsDB.leaderboard``."""
    return _cached("leaderboard", suite=suite, metric=metric)


def runs(suite: str | None = None) -> pd.DataFrame:
    """See ``ResultsDB.runs``."""
    return _cached("runs", suite=suite)


def curves(suite: str, metric: str, split: str = "val") -> pd.DataFrame:
    """See ``ResultsDB.curves``."""
    return _cached("curves", suite=suite, metric=metric, split=split)


def tasks(suite: str, metric: str) -> pd.DataFrame:
    """See ``ResultsDB.tasks``."""
    return _cached("tasks", suite=suite, metric=metric)


def run_states(df: pd.DataFrame) -> pd.Series:
    """Each run's status, with 'running' made honest by its job's liveness (the rule of
    ``jobstore.cell_states``): a run recorded as running counts as running only while its job's
    process is alive and reports the cell running; otherwise it is 'interrupted' (`metabench
    jobs resume` continues it). A running run without a job folder cannot be checked and stays
    'running'. Reads only the job folders of running runs (status.json, a /proc lookup)."""
    states = df["status"].astype(object).copy()
    running = df.index[df["status"] == "running"]
    if len(running) == 0:
        return states
    folder = results_dir()
    jobs: dict[Any, dict[str, Any] | None] = {}
    for i in running:
        job_id = df.at[i, "job_id"]
        if job_id not in jobs:
            jdir = folder / jobstore.JOBS / str(job_id)
            try:
                known = isinstance(job_id, str) and (jobstore.job_dir(folder, job_id) / "spec.json").is_file()
            except MetabenchError:  # not a plain folder name
                known = False
            jobs[job_id] = jobstore.read_status(jdir) if known else None
        status = jobs[job_id]
        if status is None:
            continue
        cell = (status.get("cells") or {}).get(df.at[i, "run_id"]) or {}
        if not (status.get("state") in jobstore.LIVE and cell.get("state") == "running"):
            states.at[i] = "interrupted"
    return states


def suites_overview() -> pd.DataFrame:
    """Per suite: versions, runs by status, algorithms, seeds and the last run (from ``runs``)."""
    df = runs()
    df = df.assign(status=run_states(df))
    rows = []
    for suite, part in df.groupby("suite", sort=True):
        last = part["finished_at"].fillna(part["started_at"]).max()
        rows.append({
            "Suite": suite,
            "Versions": ", ".join(str(v) for v in sorted(part["suite_version"].unique())),
            "Runs": len(part),
            "Finished": int((part["status"] == "finished").sum()),
            "Running": int((part["status"] == "running").sum()),
            "Interrupted": int((part["status"] == "interrupted").sum()),
            "Failed / diverged": int(part["status"].isin(["failed", "diverged"]).sum()),
            "Algorithms": ", ".join(sorted(part["algorithm"].unique())),
            "Presets": ", ".join(sorted(part["preset"].unique())),
            "Last run": last.strftime("%Y-%m-%d %H:%M UTC") if pd.notna(last) else "n/a",
        })  # fmt: skip
    return pd.DataFrame(rows)


def facets(suite: str) -> dict[str, Any]:
    """See ``ResultsDB.facets``."""
    return _cached("facets", suite=suite)


def filtered(method: str, f: Filters, **kwargs: Any) -> Any:
    """``ResultsDB.<method>`` (leaderboard, task_values, run_costs) under the filters ``f``."""
    return _cached(method, **filter_kwargs(f), **kwargs)


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def _file_bytes(folder: str, stamp: tuple[int, int, int], method: str, kwargs: tuple, fmt: str) -> bytes:
    df = _query(folder, stamp, method, kwargs)
    return leaderboard_bytes(df, fmt) if method == "leaderboard" else frame_bytes(df, fmt)


def export_bytes(method: str, fmt: str, **kwargs: Any) -> bytes:
    """``ResultsDB.<method>(**kwargs)`` as a file in ``fmt`` (the leaderboard in any of
    ``export.FILE_FORMATS``, other tables as csv or parquet), cached like the queries."""
    folder = str(results_dir())
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    return _file_bytes(folder, _fingerprint(folder), method, key, fmt)


def deferred_bytes(method: str, fmt: str, **kwargs: Any) -> Any:
    """A callable for ``st.download_button(data=...)``: the file is built when the button is
    clicked (``export_bytes``), not on every rerun of the page."""
    folder = str(results_dir())
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    stamp = _fingerprint(folder)
    return lambda: _file_bytes(folder, stamp, method, key, fmt)


def filter_kwargs(f: Filters) -> dict[str, Any]:
    """The query arguments of the filters ``f`` (for ``export_bytes`` / ``deferred_bytes``)."""
    return {"suite": f.suite, "metric": f.metric, "families": f.families, "presets": f.presets,
            "split_scheme": f.split_scheme}  # fmt: skip


def curve_metrics(suite: str) -> list[tuple[str, str]]:
    """See ``ResultsDB.curve_metrics``."""
    return _cached("curve_metrics", suite=suite)


def curve_summary(f: Filters, metric: str, split: str) -> pd.DataFrame:
    """See ``ResultsDB.curve_summary``."""
    return _cached("curve_summary", suite=f.suite, metric=metric, split=split, families=f.families,
                   presets=f.presets, split_scheme=f.split_scheme)  # fmt: skip


def curve_excluded_runs(f: Filters) -> pd.DataFrame:
    """See ``ResultsDB.curve_excluded_runs``."""
    return _cached("curve_excluded_runs", suite=f.suite, families=f.families, presets=f.presets,
                   split_scheme=f.split_scheme)  # fmt: skip


def curve_lines(f: Filters, metric: str, split: str, smooth: float) -> pd.DataFrame:
    """``curve_summary`` smoothed and thinned for drawing (``smooth_curves``), cached."""
    folder = str(results_dir())
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in
                       {"suite": f.suite, "metric": metric, "split": split, "families": f.families,
                        "presets": f.presets, "split_scheme": f.split_scheme}.items()))  # fmt: skip
    return _curve_lines(folder, _fingerprint(folder), key, float(smooth))


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def _curve_lines(folder: str, stamp: tuple[int, int, int], kwargs: tuple, smooth: float) -> pd.DataFrame:
    return smooth_curves(_query(folder, stamp, "curve_summary", kwargs), smooth)


def aggregate(families: list[str] | None, presets: list[str] | None) -> Aggregate:
    """``metabench.results.aggregate.aggregate`` of ``ResultsDB.run_scores`` (cached)."""
    return _cached("aggregate", families=families, presets=presets)


def problems_banner() -> None:
    """A warning naming each results file every query skips (corrupt or from an incompatible
    version) and what to do about it; nothing when all files are good."""
    problems = _cached("problems")
    if not problems:
        return
    shown = "\n".join(f"- `{p.path}` {p.what}. {p.action}." for p in problems[:10])
    more = f"\n- ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    st.warning(
        f"{len(problems)} results file(s) cannot be used; every page shows the remaining results.\n\n"
        f"{shown}{more}\n\nCheck the whole folder with `metabench results verify --results-dir "
        f"{results_dir()}`.",
        icon="⚠️",
    )


#: Set to 1 to validate every chart against the Vega-Lite schema when drawn (the tests do).
VALIDATE_VAR = "METABENCH_VALIDATE_CHARTS"


def altair_chart(chart: Any, **kwargs: Any) -> None:
    """``st.altair_chart`` without Altair's JSON-schema validation, which is about half the time
    of turning a layered chart into Vega-Lite on every rerun; the charts are fixed code, and the
    tests validate each one (``METABENCH_VALIDATE_CHARTS=1``)."""
    if os.environ.get(VALIDATE_VAR) != "1":
        # An instance attribute shadows the method Streamlit calls (Altair's own __setattr__
        # would store it as a chart property instead).
        object.__setattr__(chart, "to_dict", functools.partial(chart.to_dict, validate=False))
    st.altair_chart(chart, **kwargs)


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """Show a MetabenchError as one red sentence and stop the page, instead of a traceback."""
    try:
        yield
    except MetabenchError as exc:
        st.error(str(exc))
        st.stop()


# -- widgets -------------------------------------------------------------------------------------


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
    st.session_state[sticky] = value
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


@dataclass(frozen=True)
class Filters:
    """What the leaderboard-style pages show: one suite's population, one metric."""

    suite: str
    metric: str
    families: list[str] | None
    """None = every family."""
    presets: list[str] | None
    split_scheme: str | None


def suite_filters(metric_choice: bool = True) -> Filters:
    """The shared filter row: suite, metric, family, preset (and split scheme when a suite has
    several); every value in the URL. Stops the page with a message saying what to run when
    there is nothing to show."""
    with errors_as_messages():
        all_suites = suites()
    if not all_suites:
        no_results()
    cols = st.columns([3, 2, 3, 3]) if metric_choice else st.columns([3, 3, 3])
    with cols[0]:
        suite = url_selectbox("Suite", all_suites, "suite")
    with errors_as_messages():
        available = metrics(suite)
        options = facets(suite)
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
    return Filters(suite, metric, families, presets, split)


def no_results() -> None:
    """The empty-results message (what to run), then stop the page."""
    st.info(f"No results yet in `{results_dir()}`: run `{FIRST_RUN}`, then refresh this page.")
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


def leaderboard_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as the page shows it: values in the metric's unit, CI as a range, the
    paired comparison with the best entry as words, missing values as 'n/a'."""
    metric = str(df["metric"].iloc[0])
    scale = _metrics.display_scale(metric)
    fmt = lambda v: _metrics.format_value(metric, v)  # noqa: E731
    ci = [
        "n/a" if pd.isna(lo) else f"{fmt(lo)} – {fmt(hi)}"
        for lo, hi in zip(df["ci_low"], df["ci_high"], strict=True)
    ]
    vs = []
    for verdict, p in zip(df["vs_best"], df["p_vs_best"], strict=True):
        if verdict in ("tie", "worse"):
            vs.append(f"{verdict} (p{'<0.001' if p < 0.001 else f'={p:.3f}'})")
        else:
            vs.append(str(verdict))
    table = pd.DataFrame(
        {
            "Rank": df["rank"],
            "Algorithm": df["variant"].fillna(df["algorithm"]),  # the entry: maml, maml[inner_steps=3]
            "Changes": df["changes"].fillna(""),  # the overrides of the preset, readably; '' = none
            "Family": df["family"],
            "Mean": df["mean"] * scale,
            "95% CI": ci,  # a range reads better than "± half-width" next to the mean
            "Std (seeds)": [fmt(v) for v in df["std_seeds"]],
            "Seeds": df["n_seeds"],
            "vs best": vs,
            "P(beats best)": ["–" if pd.isna(v) else f"{v:.2f}" for v in df["prob_improvement"]],
            "Preset": df["preset"],
            "Split": df["split_scheme"],
            "Transductive": df["transductive"],
            "Test tasks": df["n_tasks"],
            "Query batch": df["query_batch"],
        }
    )
    if df["published"].notna().any():
        published = [
            "–" if pd.isna(v) else fmt(v) + ("" if pd.isna(ci) else f" ± {fmt(ci)}")
            + (f" ({short_citation(src)})" if isinstance(src, str) and src else "")
            for v, ci, src in zip(df["published"], df["published_ci95"], df["published_source"], strict=True)
        ]  # fmt: skip
        table["Published"] = published  # last: the protocol columns matter more for reading the rows
    return table


def short_citation(citation: str) -> str:
    """'Finn, Abbeel & Levine (2017), Model-Agnostic ...' -> 'Finn et al. 2017' (a table cell);
    the full citation is shown under the table."""
    match = re.match(r"\s*([^(]+?)\s*\((\d{4})\)", citation)
    if not match:
        return citation[:40]
    authors, year = match.groups()
    if "," in authors:
        authors = authors.split(",")[0] + " et al."
    return f"{authors} {year}"


#: The leaderboard table's protocol columns (hidden when constant, then named under the table).
PROTOCOL_COLUMNS = ("Preset", "Split", "Transductive", "Test tasks", "Query batch")


def leaderboard_table(df: pd.DataFrame) -> None:
    """Show a leaderboard frame as a table (see ``leaderboard_frame``)."""
    metric = str(df["metric"].iloc[0])
    scale = _metrics.display_scale(metric)
    table = leaderboard_frame(df)
    # Protocol columns that are the same on every row are said once under the table instead,
    # so the table fits a laptop screen (the exports keep every column).
    same = [c for c in PROTOCOL_COLUMNS if table[c].astype(str).nunique() == 1]
    # The Changes column only when some row has overrides (plain rows: the table as before).
    hidden = same + ([] if (table["Changes"] != "").any() else ["Changes"])
    st.dataframe(
        table,
        hide_index=True,
        column_order=[c for c in table.columns if c not in hidden],
        column_config={
            # Narrow columns for short values, so the whole table fits a laptop screen.
            **{c: st.column_config.Column(width="small") for c in ("Rank", "Seeds", "Preset", "Split", "Test tasks")},
            "Algorithm": st.column_config.TextColumn(
                help="The entry: the algorithm, with its overrides of the preset in brackets when it "
                "has any (a variant, e.g. maml[inner_steps=3]). Variants are never averaged together."
            ),
            "Changes": st.column_config.TextColumn(
                help="What this variant changes relative to the preset (Config fields; loop.* = loop "
                "settings); empty for the preset itself."
            ),
            "Mean": st.column_config.NumberColumn(
                format=_number_format(table["Mean"], scale), help=_metrics.label(metric)
            ),
            "Std (seeds)": st.column_config.TextColumn(
                help="Standard deviation of the per-seed means (ddof=1); n/a with one seed."
            ),
            "vs best": st.column_config.TextColumn(
                help="Paired t-test (scipy.stats.ttest_rel) against the rank-1 entry on the same "
                "test tasks: 'tie' when p ≥ 0.05 — the data cannot tell them apart."
            ),
            "P(beats best)": st.column_config.TextColumn(
                help="Probability of improvement: the fraction of test tasks on which this entry "
                "beats the best one (ties count half). 0.5 = as often better as worse."
            ),
            "Transductive": st.column_config.CheckboxColumn(
                width="small", help="Whether test queries were processed together (e.g. BatchNorm batch statistics)."
            ),
            "Query batch": st.column_config.TextColumn(
                width="medium", help="How test queries pass through BatchNorm."
            ),
            "Published": st.column_config.TextColumn(
                help="The paper's number for the same algorithm, split, transductive flag and metric "
                "(its 95% half-width when given), for rows without overrides only; full citations "
                "under the table."
            ),
        },
    )
    if same:
        shown = {c: ("yes" if v else "no") if isinstance(v, (bool, np.bool_)) else "n/a" if v == "-" else str(v)
                 for c, v in table[same].iloc[0].items()}  # fmt: skip  ('-': a suite without class splits)
        st.caption("Same protocol on every row: " + " · ".join(f"{c.lower()} **{v}**" for c, v in shown.items()) + ".")
    sources = [s for s in dict.fromkeys(df["published_source"].dropna()) if isinstance(s, str) and s]
    if sources:
        st.caption("Published: " + "; ".join(f"*{short_citation(s)}*: {s}" for s in sources) + ".")


@st.cache_data(max_entries=32, show_spinner=False)
def _task_features(task_ids: tuple, texts: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _descriptor_features(pd.Series(task_ids), pd.Series(texts))


def task_features(values: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``descriptors.features`` of the distinct tasks in ``values`` (cached on their JSON)."""
    unique = values.drop_duplicates("task_id")
    return _task_features(tuple(unique["task_id"].tolist()), tuple(unique["descriptors"].tolist()))


def smooth_curves(df: pd.DataFrame, weight: float, max_points: int = 500) -> pd.DataFrame:
    """EMA-smooth each entry's mean and band (``weight`` 0 = off) and thin each line to at
    most ``max_points`` steps (evenly spaced, last kept) so the browser draws it quickly."""
    keys = [k for k in ("algorithm", "variant", "preset", "split_scheme", "transductive", "query_batch") if k in df]
    groups = df.groupby(keys, dropna=False, sort=False)
    if weight > 0:
        alpha = 1.0 - weight
        df = df.copy()
        for column in ("mean", "ci_low", "ci_high"):
            df[column] = groups[column].transform(lambda s: s.ewm(alpha=alpha, ignore_na=True).mean())
    position = groups.cumcount()
    size = groups["step"].transform("size")
    stride = np.maximum(1, np.ceil(size / max_points)).astype(int)
    return df[(position % stride == 0) | (position == size - 1)]


def aggregate_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The aggregate table as shown: entry, family, suites, mean rank, IQM and its CI."""
    return pd.DataFrame(
        {
            "Entry": table["entry"],
            "Family": table["family"],
            "Suites": table["n_suites"],
            "Mean rank": table["mean_rank"],
            "IQM": table["iqm"],
            "95% CI (bootstrap)": [f"{lo:.3f} – {hi:.3f}" for lo, hi in zip(table["iqm_low"], table["iqm_high"], strict=True)],
            "Runs": table["n_scores"],
        }
    )


def _number_format(values: pd.Series, scale: float) -> str:
    """printf format for a column: percentages with two decimals, else at least 3 significant
    digits for the smallest value (0.300, 0.0283), matching ``metrics.format_value``."""
    if scale != 1:
        return "%.2f%%"
    finite = values[np.isfinite(values) & (values != 0)].abs()
    if finite.empty:
        return "%.3f"
    decimals = int(min(6, max(0, 2 - np.floor(np.log10(finite.min())))))
    return f"%.{decimals}f"
