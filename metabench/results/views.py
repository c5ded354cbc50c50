"""The data behind the dashboard's views, as plain pandas (no Streamlit, no torch).

Each function turns a ``ResultsDB`` frame into what a page shows; the pages only render.

- ``run_states``: each run's status, with 'running' checked against its job's process.
- ``suites_overview``: per suite, versions, runs by status, algorithms, presets, last run.
- ``smooth_curves``: EMA smoothing and thinning of ``ResultsDB.curve_summary`` for drawing.
- ``entry_costs`` / ``time_unit``: the Cost page's per-entry means and a readable time unit.
- ``paired_summary``: the Per-task page's A − B comparison (per-task table, paired test, wins).
- ``runs_summary``: what a set of runs holds (Home: the reference set, your own runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metabench.errors import MetabenchError
from metabench.results.descriptors import paired_tasks
from metabench.results.stats import PairedComparison, paired_comparison


def run_states(runs: pd.DataFrame, results_dir: str | Path) -> pd.Series:
    """Each run's status, with 'running' made honest by its job's liveness (the rule of
    ``jobstore.cell_states``): a run recorded as running counts as running only while its job's
    process is alive and reports the cell running; otherwise it is 'interrupted' (`metabench
    jobs resume` continues it). A running run without a job folder cannot be checked and stays
    'running'. Reads only the job folders of running runs (status.json, a /proc lookup).

    ``runs`` has ``ResultsDB.runs``' columns (at least status, job_id, run_id)."""
    from metabench.engine import jobstore  # torch-free: job folders and process liveness only

    states = runs["status"].astype(object).copy()
    running = runs.index[runs["status"] == "running"]
    if len(running) == 0:
        return states
    folder = Path(results_dir)
    jobs: dict[Any, dict[str, Any] | None] = {}
    for i in running:
        job_id = runs.at[i, "job_id"]
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
        cell = (status.get("cells") or {}).get(runs.at[i, "run_id"]) or {}
        if not (status.get("state") in jobstore.LIVE and cell.get("state") == "running"):
            states.at[i] = "interrupted"
    return states


def suites_overview(runs: pd.DataFrame) -> pd.DataFrame:
    """Per suite: versions, runs by status, algorithms, presets and the last run, from
    ``ResultsDB.runs`` whose ``status`` is already ``run_states`` (so 'interrupted' counts)."""
    rows = []
    for suite, part in runs.groupby("suite", sort=True):
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


def smooth_curves(df: pd.DataFrame, weight: float, max_points: int = 500) -> pd.DataFrame:
    """EMA-smooth each entry's mean and band (``weight`` 0 = off) and thin each line to at
    most ``max_points`` steps (evenly spaced, last kept) so the browser draws it quickly.
    ``df`` has ``ResultsDB.curve_summary``'s columns."""
    keys = [k for k in ("algorithm", "variant", "preset", "split_scheme", "transductive", "query_batch", "source")
            if k in df]
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


def entry_costs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per entry from ``ResultsDB.run_costs`` with an ``entry`` label column: the means
    over its runs of wall time, peak memory, the metric (``value``) and meta-steps, and its
    number of seeds; sorted by entry."""
    return runs.groupby("entry", as_index=False).agg(
        wall_time_s=("wall_time_s", "mean"), peak_memory_mb=("peak_memory_mb", "mean"), value=("value", "mean"),
        seeds=("seed", "nunique"), meta_steps=("meta_steps", "mean"))  # fmt: skip


def time_unit(longest_s: float) -> tuple[str, int]:
    """(unit, seconds per unit) that keeps a column of durations up to ``longest_s`` readable:
    seconds under 2 minutes, minutes under 2 hours, else hours."""
    return ("s", 1) if longest_s < 120 else ("min", 60) if longest_s < 7200 else ("h", 3600)


@dataclass(frozen=True)
class PairedSummary:
    """Entry ``a`` against entry ``b`` on the test tasks both have."""

    table: pd.DataFrame
    """``descriptors.paired_tasks``: one row per task with a, b, their difference and the winner."""
    comparison: PairedComparison
    wins_a: int
    """Tasks on which ``a`` is better."""
    wins_b: int


def paired_summary(values: pd.DataFrame, a: str, b: str, higher_is_better: bool) -> PairedSummary:
    """The paired view of two entries of ``ResultsDB.task_values`` (with an ``entry`` label
    column): per-task table, paired t-test and probability of improvement, wins of each."""
    table = paired_tasks(values, a, b, higher_is_better)
    cmp = paired_comparison(table["a"], table["b"], higher_is_better)
    return PairedSummary(table, cmp, int((table["winner"] == a).sum()), int((table["winner"] == b).sum()))


def runs_summary(runs: pd.DataFrame) -> dict[str, Any]:
    """What a set of runs holds, for Home (the reference set, your own runs): n_runs, n_finished,
    last_run_at (the newest finish, or start of a run still going; None without runs) and the
    sorted suites, algorithms, presets, metabench versions and devices of its runs. ``runs`` has
    ``ResultsDB.runs``' columns, e.g. the rows whose ``source`` is 'reference'."""

    def distinct(column: str) -> list[str]:
        return sorted({str(v) for v in runs[column].dropna()}) if column in runs else []

    return {
        "n_runs": len(runs),
        "n_finished": int((runs["status"] == "finished").sum()) if len(runs) else 0,
        "last_run_at": _last(runs),
        "suites": distinct("suite"),
        "algorithms": distinct("algorithm"),
        "presets": distinct("preset"),
        "metabench_versions": distinct("metabench_version"),
        "devices": distinct("device"),
    }


def _last(runs: pd.DataFrame) -> pd.Timestamp | None:
    if runs.empty:
        return None
    last = pd.to_datetime(runs["finished_at"]).fillna(pd.to_datetime(runs["started_at"])).max()
    return None if pd.isna(last) else pd.Timestamp(last)
