"""Widgets and cached queries shared by the pages.

Pages call the query functions here (never ``ResultsDB`` or SQL directly). Each query is cached
on (results folder, a fingerprint of its Parquet files, method, arguments): an unchanged folder
is served from memory, and a new or rewritten results file changes the fingerprint, so new
results appear on the next rerun without restarting the server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from metabench.dashboard import PAGES
from metabench.errors import MetabenchError
from metabench.results import metrics as _metrics
from metabench.results.query import ResultsDB, fingerprint

ENV_VAR = "METABENCH_RESULTS"
#: The command the empty-state messages suggest: the smallest run that fills a leaderboard.
FIRST_RUN = "metabench run --suites sinusoid-5shot --algorithms maml --preset smoke"


# -- routing -------------------------------------------------------------------------------------

_ROUTED = "_metabench_routed"
_REROUTED = "_metabench_rerouted"


def navigation_pages() -> list[st.Page]:
    """``st.Page`` objects for every entry of ``metabench.dashboard.PAGES``."""
    return [st.Page(p.path, title=p.title, url_path=p.url_path, default=p.url_path == "") for p in PAGES]


def mark_routed() -> None:
    """Called by app.py before ``st.navigation``: this session's pages run through the router."""
    st.session_state[_ROUTED] = True


def require_router() -> None:
    """First call of every page: make sure the page runs inside app.py, not on its own.

    Streamlit still honours its old ``pages/``-folder convention until some session has called
    ``st.navigation``: after a server start, a first visit straight to ``/leaderboard`` runs
    ``pages/leaderboard.py`` alone (no sidebar, no page config, auto-named pages). Calling
    ``st.navigation`` switches the server to app.py's routing for good; the rerun then goes
    through app.py and lands on the same page, query string included.
    """
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


@st.cache_resource(show_spinner=False)
def _db(folder: str) -> ResultsDB:
    return ResultsDB(folder)


def db() -> ResultsDB:
    """The (cached) ResultsDB of the current results folder."""
    return _db(str(results_dir()))


# -- cached queries ------------------------------------------------------------------------------


@st.cache_data(ttl=2, show_spinner=False)
def _fingerprint(folder: str) -> tuple[int, int, int]:
    # A short TTL: one walk of the folder per rerun at most, yet new files show within seconds.
    return fingerprint(folder)


@st.cache_data(ttl=600, max_entries=256, show_spinner=False)
def _query(folder: str, stamp: tuple[int, int, int], method: str, kwargs: tuple) -> Any:
    del stamp  # only part of the cache key
    return getattr(_db(folder), method)(**dict(kwargs))


def _cached(method: str, **kwargs: Any) -> Any:
    folder = str(results_dir())
    return _query(folder, _fingerprint(folder), method, tuple(sorted(kwargs.items())))


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


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """Show a MetabenchError as one red sentence and stop the page, instead of a traceback."""
    try:
        yield
    except MetabenchError as exc:
        st.error(str(exc))
        st.stop()


# -- widgets -------------------------------------------------------------------------------------


def url_selectbox(label: str, options: Sequence[str], param: str, **kwargs: Any) -> str:
    """A selectbox whose value is mirrored in the URL query string (``?param=value``).

    Opening a URL with ``?param=value`` preselects that option, so a view can be shared. An
    unknown value in the URL falls back to the first option.
    """
    options = list(options)
    key, seen = f"url_{param}", f"url_{param}_written"
    in_url = st.query_params.get(param)
    # A URL value we did not write ourselves (a shared link, a page link) wins over the state.
    if in_url in options and in_url != st.session_state.get(seen):
        st.session_state[key] = in_url
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    value = st.selectbox(label, options, key=key, **kwargs)
    st.query_params[param] = value
    st.session_state[seen] = value
    return value


def leaderboard_table(df: pd.DataFrame) -> None:
    """Show a leaderboard frame as a table: values in the metric's unit, CI as a range."""
    metric = str(df["metric"].iloc[0])
    scale = _metrics.display_scale(metric)
    ci = [
        f"{_metrics.format_value(metric, lo)} – {_metrics.format_value(metric, hi)}"
        for lo, hi in zip(df["ci_low"], df["ci_high"], strict=True)
    ]
    table = pd.DataFrame(
        {
            "Rank": df["rank"],
            "Algorithm": df["algorithm"],
            "Family": df["family"],
            "Preset": df["preset"],
            "Mean": df["mean"] * scale,
            "95% CI": ci,  # a range reads better than "± half-width" next to the mean
            "Std (seeds)": df["std_seeds"] * scale,
            "Seeds": df["n_seeds"],
            "Tasks": df["n_tasks"],
            "Split": df["split_scheme"],
            "Transductive": df["transductive"],
            "Query batch": df["query_batch"],
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "Mean": st.column_config.NumberColumn(
                format=_number_format(table["Mean"], scale), help=_metrics.label(metric)
            ),
            "Std (seeds)": st.column_config.NumberColumn(
                format=_number_format(table["Std (seeds)"], scale),
                help="Standard deviation of the per-seed means (ddof=1).",
            ),
            "Transductive": st.column_config.CheckboxColumn(
                help="Whether test queries were processed together (e.g. BatchNorm batch statistics)."
            ),
            "Query batch": st.column_config.TextColumn(
                width="medium", help="How test queries pass through BatchNorm."
            ),
        },
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
