"""Typed, cached data access for the pages: the results folder and one function per query.

Pages call the functions here (never ``ResultsDB`` or SQL directly). Each query is cached on
(results folder, a fingerprint of its Parquet files, its arguments): an unchanged folder is
served from memory, and a new or rewritten results file changes the fingerprint, so new results
appear on the next rerun without restarting the server.

Speed (issue 5: first render of a page < 1 s, a filter change < 300 ms, with 1M result rows):
the folder is walked at most once per rerun (``_fingerprint``, which also brings the in-memory
tables of the ``ResultsDB`` up to date, file by file); opening a folder starts a background
thread that loads its tables and imports the heavy modules the pages need (``_warm_up``); the
unfiltered scans are remembered by ``ResultsDB`` so a filter only selects entries; export files
are built when a download button is clicked, once per (folder state, filters, format).

The plain pandas behind the views lives in ``metabench.results.views`` (Streamlit-free, tested
on its own); the functions here only cache it.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from metabench.results import views
from metabench.results.aggregate import Aggregate
from metabench.results.aggregate import aggregate as _aggregate
from metabench.results.export import frame_bytes, leaderboard_bytes
from metabench.results.query import ResultsDB
from metabench.results.verify import Problem

ENV_VAR = "METABENCH_RESULTS"
#: Imported in the background when the dashboard opens a folder, so no page waits for them.
WARM_MODULES = ("scipy.stats", "altair", "metabench.dashboard.charts", "metabench.results.descriptors")

Stamp = tuple[int, int, int]
#: (results folder, reference shown): which ``ResultsDB`` a query reads.
Where = tuple[str, bool]


@dataclass(frozen=True)
class Filters:
    """What the leaderboard-style pages show: one suite's population, one metric (the filter
    row of ``state.suite_filters``)."""

    suite: str
    metric: str
    families: list[str] | None
    """None = every family."""
    presets: list[str] | None
    split_scheme: str | None
    transductive: bool | None = None
    """Only transductive (True) or non-transductive (False) entries; None = both (issue 22)."""


#: A ``Filters`` as a hashable cache key: (suite, metric, families, presets, split_scheme, transductive).
Key = tuple[str, str, tuple[str, ...] | None, tuple[str, ...] | None, str | None, bool | None]


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


#: Session-state key of the sidebar's "Reference runs" switch (``state.reference_switch``).
REFERENCE_KEY = "url_reference"


def show_reference() -> bool:
    """Whether the pages show the reference set beside the user's runs (the sidebar switch; on
    by default)."""
    return bool(st.session_state.get(REFERENCE_KEY, True))


@st.cache_resource(show_spinner=False)
def _db(folder: str, reference: bool = True) -> ResultsDB:
    db = ResultsDB(folder, auto_refresh=False, reference=reference)  # _fingerprint refreshes it, once per rerun
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


@st.cache_data(ttl=2, show_spinner=False)
def _fingerprint(where: Where) -> Stamp:
    # A short TTL: one walk of the folder per rerun at most, yet new files show within seconds.
    # The walk also loads what changed into the folder's ResultsDB (its queries never walk).
    return _db(*where).refresh()


def _now() -> tuple[Where, Stamp]:
    """((the current folder, whether the reference set is shown), its fingerprint): the first two
    arguments of every cached query."""
    where = (str(results_dir()), show_reference())
    return where, _fingerprint(where)


def _key(f: Filters) -> Key:
    t = lambda v: None if v is None else tuple(v)  # noqa: E731
    return (f.suite, f.metric, t(f.families), t(f.presets), f.split_scheme, f.transductive)


def _filters(key: Key) -> dict[str, Any]:
    suite, metric, families, presets, split_scheme, transductive = key
    return {"suite": suite, "metric": metric, "families": None if families is None else list(families),
            "presets": None if presets is None else list(presets), "split_scheme": split_scheme,
            "transductive": transductive}  # fmt: skip


# -- cached queries (folder, stamp, arguments) -> result -----------------------------------------
# ``stamp`` is only part of the cache key: a changed folder is a new key.

_cache = st.cache_data(ttl=600, max_entries=256, show_spinner=False)


@_cache
def _summary(where: Where, stamp: Stamp) -> dict[str, Any]:
    return _db(*where).summary()


@_cache
def _runs(where: Where, stamp: Stamp, suite: str | None) -> pd.DataFrame:
    return _db(*where).runs(suite)


@_cache
def _metrics(where: Where, stamp: Stamp, suite: str) -> list[str]:
    return _db(*where).metrics(suite)


@_cache
def _facets(where: Where, stamp: Stamp, suite: str) -> dict[str, Any]:
    return _db(*where).facets(suite)


@_cache
def _problems(where: Where, stamp: Stamp) -> list[Problem]:
    return _db(*where).problems()


@_cache
def _leaderboard(where: Where, stamp: Stamp, key: Key) -> pd.DataFrame:
    return _db(*where).leaderboard(**_filters(key))


@_cache
def _task_values(where: Where, stamp: Stamp, key: Key) -> pd.DataFrame:
    return _db(*where).task_values(**_filters(key))


@_cache
def _run_costs(where: Where, stamp: Stamp, key: Key) -> pd.DataFrame:
    return _db(*where).run_costs(**_filters(key))


@_cache
def _curve_metrics(where: Where, stamp: Stamp, suite: str) -> list[tuple[str, str]]:
    return _db(*where).curve_metrics(suite)


@_cache
def _curve_summary(where: Where, stamp: Stamp, key: Key, metric: str, split: str) -> pd.DataFrame:
    args = {k: v for k, v in _filters(key).items() if k != "metric"}
    return _db(*where).curve_summary(metric=metric, split=split, **args)


@_cache
def _curve_excluded_runs(where: Where, stamp: Stamp, key: Key) -> pd.DataFrame:
    args = {k: v for k, v in _filters(key).items() if k != "metric"}
    return _db(*where).curve_excluded_runs(**args)


@_cache
def _aggregate_of(where: Where, stamp: Stamp, families: tuple | None, presets: tuple | None) -> Aggregate:
    listed = lambda v: None if v is None else list(v)  # noqa: E731
    return _aggregate(_db(*where).run_scores(listed(families), listed(presets)))


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def _curve_lines(where: Where, stamp: Stamp, key: Key, metric: str, split: str, smooth: float) -> pd.DataFrame:
    return views.smooth_curves(_curve_summary(where, stamp, key, metric, split), smooth)


def summary() -> dict[str, Any]:
    """See ``ResultsDB.summary``."""
    return _summary(*_now())


def suites() -> list[str]:
    """See ``ResultsDB.suites``."""
    return summary()["suites"]


def runs(suite: str | None = None) -> pd.DataFrame:
    """See ``ResultsDB.runs``."""
    return _runs(*_now(), suite)


def metrics(suite: str) -> list[str]:
    """See ``ResultsDB.metrics``."""
    return _metrics(*_now(), suite)


def facets(suite: str) -> dict[str, Any]:
    """See ``ResultsDB.facets``."""
    return _facets(*_now(), suite)


def problems() -> list[Problem]:
    """See ``ResultsDB.problems``."""
    return _problems(*_now())


def leaderboard(f: Filters) -> pd.DataFrame:
    """``ResultsDB.leaderboard`` under the filters ``f``."""
    return _leaderboard(*_now(), _key(f))


def task_values(f: Filters) -> pd.DataFrame:
    """``ResultsDB.task_values`` under the filters ``f``."""
    return _task_values(*_now(), _key(f))


def run_costs(f: Filters) -> pd.DataFrame:
    """``ResultsDB.run_costs`` under the filters ``f``."""
    return _run_costs(*_now(), _key(f))


def curve_metrics(suite: str) -> list[tuple[str, str]]:
    """See ``ResultsDB.curve_metrics``."""
    return _curve_metrics(*_now(), suite)


def curve_summary(f: Filters, metric: str, split: str) -> pd.DataFrame:
    """``ResultsDB.curve_summary`` of ``split`` ``metric`` under the filters ``f`` (its suite,
    families, presets and split scheme)."""
    return _curve_summary(*_now(), _key(f), metric, split)


def curve_excluded_runs(f: Filters) -> pd.DataFrame:
    """See ``ResultsDB.curve_excluded_runs``."""
    return _curve_excluded_runs(*_now(), _key(f))


def curve_lines(f: Filters, metric: str, split: str, smooth: float) -> pd.DataFrame:
    """``curve_summary`` smoothed and thinned for drawing (``views.smooth_curves``), cached."""
    return _curve_lines(*_now(), _key(f), metric, split, float(smooth))


def aggregate(families: list[str] | None, presets: list[str] | None) -> Aggregate:
    """``metabench.results.aggregate.aggregate`` of ``ResultsDB.run_scores`` (cached)."""
    tup = lambda v: None if v is None else tuple(v)  # noqa: E731
    return _aggregate_of(*_now(), tup(families), tup(presets))


def run_states(df: pd.DataFrame) -> pd.Series:
    """``views.run_states`` of ``df`` (runs of the current folder)."""
    return views.run_states(df, results_dir())


def suites_overview() -> pd.DataFrame:
    """``views.suites_overview`` of your runs (not the reference set), interrupted runs told apart."""
    df = runs()
    df = df[df["source"] == "yours"]
    return views.suites_overview(df.assign(status=run_states(df)))


@st.cache_data(max_entries=32, show_spinner=False)
def _task_features(task_ids: tuple, texts: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    from metabench.results.descriptors import features

    return features(pd.Series(task_ids), pd.Series(texts))


def task_features(values: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``descriptors.features`` of the distinct tasks in ``values`` (cached on their JSON)."""
    unique = values.drop_duplicates("task_id")
    return _task_features(tuple(unique["task_id"].tolist()), tuple(unique["descriptors"].tolist()))


# -- export files: built on click, then cached ---------------------------------------------------


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def _leaderboard_bytes(where: Where, stamp: Stamp, key: Key, fmt: str) -> bytes:
    return leaderboard_bytes(_leaderboard(where, stamp, key), fmt)


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def _task_values_bytes(where: Where, stamp: Stamp, key: Key, fmt: str) -> bytes:
    return frame_bytes(_task_values(where, stamp, key), fmt)


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def _curve_summary_bytes(where: Where, stamp: Stamp, key: Key, metric: str, split: str, fmt: str) -> bytes:
    return frame_bytes(_curve_summary(where, stamp, key, metric, split), fmt)


def leaderboard_file(f: Filters, fmt: str) -> Callable[[], bytes]:
    """The leaderboard under ``f`` as a file in ``fmt`` (any of ``export.FILE_FORMATS``), as a
    callable for ``st.download_button(data=...)``: built when called, for the folder as it is now."""
    where, stamp = _now()
    key = _key(f)
    return lambda: _leaderboard_bytes(where, stamp, key, fmt)


def task_values_file(f: Filters, fmt: str) -> Callable[[], bytes]:
    """``task_values`` under ``f`` as csv or parquet, built when called (see ``leaderboard_file``)."""
    where, stamp = _now()
    key = _key(f)
    return lambda: _task_values_bytes(where, stamp, key, fmt)


def curve_summary_file(f: Filters, metric: str, split: str, fmt: str) -> Callable[[], bytes]:
    """``curve_summary`` under ``f`` as csv or parquet, built when called (see ``leaderboard_file``)."""
    where, stamp = _now()
    key = _key(f)
    return lambda: _curve_summary_bytes(where, stamp, key, metric, split, fmt)
