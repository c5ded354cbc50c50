"""The public query API over a results folder: ``ResultsDB``.

``ResultsDB`` is a ``ResultsStore`` (``metabench.results.store``: the thread-safe in-memory
DuckDB mirror of the folder) with one method per question the dashboard and the CLI ask; the SQL
lives in ``metabench.results.sql`` and the statistics (CIs, ranks, paired tests) in
``metabench.results.stats``. Suite names, metrics and paths are always bound as parameters.

Queries never raise because a folder is empty or missing: they return empty frames with the
documented columns.

Entries (issue 20): runs are seeds of one entry only when suite, suite version, split scheme,
protocol (transductive, query_batch), preset and *variant* (the algorithm plus its overrides of
the preset, ``runs.variant``) all agree. Every query that groups or labels entries carries
``variant``; for runs written before variants existed it is the algorithm name (the store fills
in ``schema.LEGACY_DEFAULTS`` as it loads each file).

Reference and your own runs side by side (issue 21): ``ResultsDB(folder)`` also reads the
shipped reference set (``metabench.reference``; ``reference=False`` hides it, ``reference=DIR``
reads another folder in its place). Every runs / leaderboard / curve / task row carries
``source`` ('reference' or 'yours') and entries are grouped by it, so a user's smoke run of
protonet is its own entry beside the reference protonet quick run. A user's entry is paired
with a reference entry (paired t-test, probability of improvement, ``vs_best``) only when their
``tasks_fingerprint`` agree; otherwise ``vs_best`` is 'unpaired' and ``note`` says why. A run
id in both folders: the user's copy wins when the configs agree (the reference copy is left
out), else both stay as separate entries (``sql``).
"""

from __future__ import annotations

import json

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metabench.results import metrics as _metrics
from metabench.results import sql
from metabench.results.ids import run_dir
from metabench.results.export import budget_text, entry_names
from metabench.results.published import attach_published, run_protocol
from metabench.results.schema import CURVES, RUNS, TASKS
from metabench.results.stats import TIE_ALPHA, ci_halfwidth, ranks, versus_best
from metabench.results.store import MEMO_SIZE, ResultsStore, fingerprint
from metabench.results.variants import changes_text

__all__ = ["RUN_COLUMNS", "CURVES_COLUMNS", "CURVE_EXCLUDED", "ENTRY_KEYS", "LEADERBOARD_COLUMNS", "MEMO_SIZE", "TASKS_COLUMNS",
           "TIE_ALPHA", "ResultsDB", "fingerprint"]  # fmt: skip

#: Columns of ``ResultsDB.leaderboard``, in order.
LEADERBOARD_COLUMNS = [
    "rank", "algorithm", "variant", "changes", "family", "preset", "mean", "ci_low", "ci_high", "ci95",
    "std_seeds", "n_seeds", "n_tasks", "metric", "direction", "suite_version", "split_scheme", "transductive",
    "query_batch", "suite", "vs_best", "p_vs_best", "prob_improvement", "published",
    "published_ci95", "published_source", "tasks_fingerprint", "note", "source", "budget", "entry",
]  # fmt: skip
# What the paired-comparison columns of ``ResultsDB.leaderboard`` mean (``stats.versus_best``):
# ``vs_best``: 'best', 'tie' (paired t-test p >= ``TIE_ALPHA``), 'worse', or 'unpaired' when the
# entry's fixed test tasks are not the best entry's (their ``tasks_fingerprint`` differs; the
# ``note`` column says so); ``p_vs_best``: two-sided ``ttest_rel`` p-value against the rank-1
# entry on the tasks both have; ``prob_improvement``: P(this entry beats the best on a task),
# ties counted half.

#: Run statuses left out of ``ResultsDB.curve_summary`` (the pages list such runs separately).
CURVE_EXCLUDED = ("failed", "diverged")
#: The entry key: rows of one leaderboard differ in at least one of these (the suite and its
#: version are fixed per leaderboard). ``variant`` names the algorithm too.
ENTRY_KEYS = ["algorithm", "variant", "preset", "split_scheme", "transductive", "query_batch", "source"]
#: Run columns attached to each curve point / task value.
_RUN_KEYS = ["run_id", "algorithm", "variant", "family", "preset", "seed", "status", "suite_version",
             "split_scheme", "transductive", "query_batch", "source"]  # fmt: skip
RUN_COLUMNS = RUNS.names + ["source"]
CURVES_COLUMNS = _RUN_KEYS + [c for c in CURVES.names if c != "run_id"]
TASKS_COLUMNS = _RUN_KEYS + [c for c in TASKS.names if c != "run_id"]


class ResultsDB(ResultsStore):
    """Queries over one results folder (``RESULTS/<run_id>/{runs,curves-*,tasks}.parquet``)."""

    def __repr__(self) -> str:
        return f"ResultsDB({str(self.results_dir)!r})"

    # -- public queries ------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts for the home page: n_runs, n_finished, running, suites, algorithms, last_run_at."""
        empty = {"n_runs": 0, "n_finished": 0, "running": 0, "suites": [], "algorithms": [],
                 "last_run_at": None}  # fmt: skip
        params = self._params("runs")
        if params is None:
            return empty
        row = self._query(sql.SUMMARY, params).iloc[0]
        last = row["last_run_at"]
        return {
            "n_runs": int(row["n_runs"]),
            "n_finished": int(row["n_finished"]),
            "running": int(row["running"]),
            "suites": list(row["suites"]),
            "algorithms": list(row["algorithms"]),
            "last_run_at": None if pd.isna(last) else pd.Timestamp(last),
        }

    def suites(self) -> list[str]:
        """Suite ids with at least one run, sorted."""
        return self.summary()["suites"]

    def runs(self, suite: str | None = None) -> pd.DataFrame:
        """All runs (every status and version), newest first; optionally of one suite. Columns:
        ``RUN_COLUMNS`` (the runs table and ``source``)."""
        params = self._params("runs", suite=suite)
        if params is None:
            return _empty(RUN_COLUMNS)
        return self._query(sql.RUNS, params).reindex(columns=RUN_COLUMNS)

    def primary_metric(self, suite: str) -> str | None:
        """The primary metric of the suite's finished runs (newest version); None if none."""
        params = self._params("runs", suite=suite)
        if params is None:
            return None
        df = self._query(sql.PRIMARY, params)
        return None if df.empty else str(df.iloc[0, 0])

    def metrics(self, suite: str) -> list[str]:
        """Test metrics recorded for the suite's finished runs (newest version), primary first."""
        params = self._params("runs", "tasks", suite=suite)
        if params is None:
            return []
        found = [str(m) for m in self._query(sql.METRICS, params)["metric"]]
        primary = self.primary_metric(suite)
        return sorted(found, key=lambda m: (m != primary, m))

    def leaderboard(
        self,
        suite: str,
        metric: str | None = None,
        families: list[str] | None = None,
        presets: list[str] | None = None,
        split_scheme: str | None = None,
        transductive: bool | None = None,
    ) -> pd.DataFrame:
        """One row per entry (variant, preset, split_scheme, transductive, query_batch, test-task
        fingerprint, source), best first.

        ``variant`` is the algorithm plus its overrides of the preset (``maml[inner_steps=3]``; the
        plain name without overrides); ``changes`` says what those overrides are, readably
        (``inner_steps=3, loop.meta_steps=4``; '' for a plain row). Runs of different variants
        are never averaged together.

        Only finished runs of the newest suite version with finished runs count, optionally
        only those of the given families / presets / split scheme (``None`` = all; rank and
        "best" are within what is selected). ``metric`` defaults to the runs' primary metric.
        ``mean`` and the 95% CI (``ci_low``, ``ci_high``, half-width ``ci95``) are over test
        tasks after averaging each task over seeds: ``mean ± t.ppf(0.975, n_tasks-1) * sd /
        sqrt(n_tasks)``. ``std_seeds`` is the std (ddof=1) of the per-seed means, NaN with one
        seed. Each row is compared with the rank-1 row on the tasks both have (``vs_best``,
        ``p_vs_best``, ``prob_improvement``; see ``TIE_ALPHA``). ``published`` (with
        ``published_ci95`` and ``published_source``) is the paper's number for the row when the
        runs' recorded protocol (``runs.config``) and preset match one with the same algorithm,
        split scheme, transductive flag and metric on every field it states, for plain rows only
        (``metabench.results.published``). ``transductive`` keeps only transductive (True) or
        non-transductive (False) entries. ``budget`` is the entries' recorded test-time
        adaptation budget ('10 inner steps', '1 support pass'; '' when none was recorded) and
        ``entry`` the name tables show (the variant, with a dagger when transductive;
        ``export.entry_names``). Columns: ``LEADERBOARD_COLUMNS``.
        """
        metric = metric or self.primary_metric(suite)
        if metric is None:
            return _empty(LEADERBOARD_COLUMNS)
        better = _metrics.direction(metric)  # unknown metric -> ConfigError
        params = self._params("runs", "tasks", suite=suite, metric=metric)
        if params is None:
            return _empty(LEADERBOARD_COLUMNS)
        # The scan is done once per (suite, metric) for every entry; filters only select entries.
        groups = _select(self._memo(sql.GROUPS, params, "runs", "tasks"), families, presets, split_scheme,
                         transductive)
        values = self._memo(sql.LEADERBOARD_VALUES, params, "runs", "tasks")
        values = values[values["g"].isin(groups["g"])]
        if values.empty:
            return _empty(LEADERBOARD_COLUMNS)
        df = _summarise(values, groups.set_index("g"), higher=better == "higher")
        df["changes"] = [changes_text(o) for o in df["overrides"]]
        df["metric"] = metric
        df["direction"] = better
        df["suite"] = suite
        df = attach_published(df, suite)
        df["budget"] = [budget_text(*_budget(c)) for c in df["config"]]
        df["entry"] = entry_names(df)
        return df[LEADERBOARD_COLUMNS].reset_index(drop=True)

    def facets(self, suite: str) -> dict[str, Any]:
        """Filter choices of a suite's leaderboard population: families, presets, split_schemes,
        variants, transductive (the flags present, e.g. [False, True]; sorted lists) and
        main_split_scheme (the most common one; None without runs)."""
        empty = {"families": [], "presets": [], "split_schemes": [], "main_split_scheme": None, "variants": [],
                 "transductive": []}
        params = self._params("runs", suite=suite)
        if params is None:
            return empty
        row = self._query(sql.FACETS, params).iloc[0]
        if row["families"] is None or len(row["families"]) == 0:
            return empty
        return {k: (list(row[k]) if k != "main_split_scheme" else row[k]) for k in empty}

    def task_values(
        self,
        suite: str,
        metric: str,
        families: list[str] | None = None,
        presets: list[str] | None = None,
        split_scheme: str | None = None,
        transductive: bool | None = None,
    ) -> pd.DataFrame:
        """One row per (leaderboard entry, test task): the task's value averaged over seeds,
        ``n_seeds`` and the task's ``descriptors`` (JSON). Same population as ``leaderboard``."""
        columns = ENTRY_KEYS[:2] + ["family"] + ENTRY_KEYS[2:] + ["task_id", "value", "n_seeds", "descriptors"]
        return self._selected(sql.TASK_VALUES, ("runs", "tasks"), columns,
                              (families, presets, split_scheme, transductive), suite=suite, metric=metric)

    def run_costs(
        self,
        suite: str,
        metric: str,
        families: list[str] | None = None,
        presets: list[str] | None = None,
        split_scheme: str | None = None,
        transductive: bool | None = None,
    ) -> pd.DataFrame:
        """One row per finished run of the leaderboard's population: its wall time, peak memory,
        meta-steps and its mean ``metric`` over the test tasks (``value``)."""
        columns = ["run_id", *ENTRY_KEYS[:2], "family", *ENTRY_KEYS[2:], "seed", "wall_time_s",
                   "peak_memory_mb", "meta_steps", "device", "value", "n_tasks"]  # fmt: skip
        return self._selected(sql.RUN_COSTS, ("runs", "tasks"), columns,
                              (families, presets, split_scheme, transductive), suite=suite, metric=metric)

    def run_scores(self, families: list[str] | None = None, presets: list[str] | None = None) -> pd.DataFrame:
        """For the aggregate view: one row per (suite, entry, seed) with the seed's mean of the
        suite's primary metric over its test tasks (``value``). Per suite: finished runs of the
        newest version, of its most common split scheme only (never mixed)."""
        columns = ["suite", "algorithm", "variant", "family", "preset", "transductive", "query_batch", "source",
                   "seed", "metric", "value", "n_tasks"]  # fmt: skip
        return self._selected(sql.RUN_SCORES, ("runs", "tasks"), columns, (families, presets))

    def curve_metrics(self, suite: str) -> list[tuple[str, str]]:
        """(split, metric) pairs with curve points for the suite's newest version; val first."""
        params = self._params("runs", "curves", suite=suite)
        if params is None:
            return []
        df = self._query(sql.CURVE_METRICS, params)
        return list(zip(df["split"], df["metric"], strict=True))

    def curve_summary(
        self,
        suite: str,
        metric: str,
        split: str = "val",
        families: list[str] | None = None,
        presets: list[str] | None = None,
        split_scheme: str | None = None,
        transductive: bool | None = None,
    ) -> pd.DataFrame:
        """Learning curves averaged over seeds: one row per (entry, step) with the mean, the
        95% CI across seeds (``ci_low``, ``ci_high``; NaN with one seed), ``n_seeds`` and the
        seeds' mean ``wall_time_s`` at that step. Newest suite version; runs of every status but
        those in ``CURVE_EXCLUDED`` (failed, diverged: see ``curve_excluded_runs``)."""
        columns = ["algorithm", "variant", "family", "preset", "split_scheme", "transductive", "query_batch",
                   "source", "step", "wall_time_s", "mean", "ci_low", "ci_high", "n_seeds"]  # fmt: skip
        params = self._params("runs", "curves", suite=suite, metric=metric, split=split,
                              excluded=list(CURVE_EXCLUDED))  # fmt: skip
        if params is None:
            return _empty(columns)
        df = _select(self._memo(sql.CURVE_SUMMARY, params, "runs", "curves"), families, presets, split_scheme,
                     transductive)
        half = ci_halfwidth(df.pop("sd").to_numpy(float), df["n_seeds"].to_numpy(float))
        df["ci_low"] = df["mean"] - half
        df["ci_high"] = df["mean"] + half
        return df[columns]

    def curve_excluded_runs(
        self,
        suite: str,
        families: list[str] | None = None,
        presets: list[str] | None = None,
        split_scheme: str | None = None,
        transductive: bool | None = None,
    ) -> pd.DataFrame:
        """The runs ``curve_summary`` leaves out (status in ``CURVE_EXCLUDED``) under the same
        filters, newest suite version: run_id, algorithm, variant, family, preset, split_scheme, seed,
        status, meta_steps, error."""
        columns = ["run_id", "algorithm", "variant", "family", "preset", "split_scheme", "seed", "status",
                   "meta_steps", "error", "source"]  # fmt: skip
        runs = self.runs(suite)
        if runs.empty:
            return _empty(columns)
        runs = runs[(runs["suite_version"] == runs["suite_version"].max()) & runs["status"].isin(CURVE_EXCLUDED)]
        return _select(runs, families, presets, split_scheme, transductive)[columns].reset_index(drop=True)

    def curves(self, suite: str, metric: str, split: str = "val") -> pd.DataFrame:
        """Learning-curve points of every run (any status) of the suite's newest version."""
        params = self._params("runs", "curves", suite=suite, metric=metric, split=split)
        if params is None:
            return _empty(CURVES_COLUMNS)
        return self._query(sql.CURVES, params)

    def tasks(self, suite: str, metric: str) -> pd.DataFrame:
        """Per-task test values of the leaderboard's runs (finished, newest version)."""
        params = self._params("runs", "tasks", suite=suite, metric=metric)
        if params is None:
            return _empty(TASKS_COLUMNS)
        return self._query(sql.TASKS, params)

    def _selected(self, query: str, tables: tuple[str, ...], columns: list[str], filters: tuple, **params: Any
                  ) -> pd.DataFrame:
        """The memoised, unfiltered scan ``query`` over ``tables`` with ``params``, then the rows
        that pass ``filters`` (``_select``'s families, presets, split scheme, transductive),
        ``columns`` only; empty with those columns when a table has no file yet."""
        found = self._params(*tables, **params)
        if found is None:
            return _empty(columns)
        return _select(self._memo(query, found, *tables), *filters)[columns].reset_index(drop=True)

    def run_dir(self, run_id: str) -> Path:
        """The folder of ``run_id`` (ConfigError for an id that is not a plain folder name)."""
        return run_dir(self.results_dir, run_id)


def _budget(config: Any) -> tuple[Any, Any]:
    """(adaptation_budget, adaptation_unit) from a run's config JSON; (None, None) when absent.
    Runs stored before the budget was recorded in their protocol (issue 22) but whose Config has
    ``test_inner_steps`` (the gradient-based learners' budget field) show that many inner steps."""
    protocol = run_protocol(config) or {}
    if protocol.get("adaptation_budget") is not None:
        return protocol.get("adaptation_budget"), protocol.get("adaptation_unit")
    try:
        steps = (json.loads(config) if isinstance(config, str) else config)["algorithm"]["test_inner_steps"]
    except (TypeError, ValueError, KeyError):
        return None, None
    return (steps, "inner steps") if isinstance(steps, int) else (None, None)


def _select(
    df: pd.DataFrame, families: list[str] | None = None, presets: list[str] | None = None, split_scheme: Any = None,
    transductive: bool | None = None,
) -> pd.DataFrame:
    """The rows of ``df`` whose family, preset, split scheme and transductive flag (issue 22) pass
    the filters (None = any).
    The scans are unfiltered (and memoised); every filter is applied here, in pandas."""
    keep = pd.Series(True, index=df.index)
    if families is not None:
        keep &= df["family"].isin([str(f) for f in families])
    if presets is not None:
        keep &= df["preset"].isin([str(p) for p in presets])
    if split_scheme is not None:
        keep &= df["split_scheme"] == split_scheme
    if transductive is not None:
        keep &= df["transductive"].fillna(False).astype(bool) == bool(transductive)
    return df[keep]


def _summarise(values: pd.DataFrame, groups: pd.DataFrame, higher: bool) -> pd.DataFrame:
    """Leaderboard rows from per-(group, task) and per-(group, seed) means (few rows): the CI
    over tasks, the seed spread, the rank and the comparison with the best entry (``stats``)."""
    tasks = values[values["kind"] == "task"]
    seeds = values[values["kind"] == "seed"]
    # A task whose value is not finite in some seed (adaptation diverged at test time: NaN or inf)
    # is left out of the mean and CI, and counted, so the row says so instead of hiding it.
    finite = tasks[np.isfinite(tasks["value"].to_numpy(float))]
    by_task = finite.groupby("g")["value"].agg(mean="mean", sd_tasks="std", n_tasks="count")
    by_seed = seeds.groupby("g")["value"].agg(std_seeds="std", n_seeds="size")
    left_out = (tasks.groupby("g")["value"].size() - by_task["n_tasks"]).reindex(groups.index).fillna(0)
    df = groups.join(by_task, how="inner").join(by_seed, how="inner")
    df["ci95"] = ci_halfwidth(df.pop("sd_tasks").to_numpy(float), df["n_tasks"].to_numpy(float))
    df["ci_low"] = df["mean"] - df["ci95"]
    df["ci_high"] = df["mean"] + df["ci95"]
    df["rank"] = ranks(df["mean"].to_numpy(float), higher_is_better=higher)
    df = df.sort_values(["rank", "algorithm", "variant", "preset", "source"], kind="stable")
    # (n_tasks, n_entries) in the leaderboard's order, NaN = the entry lacks the task
    matrix = tasks.pivot(index="key", columns="g", values="value").reindex(columns=df.index)
    compared = versus_best(matrix.to_numpy(float), 0, df["tasks_fingerprint"].tolist(), higher_is_better=higher)
    df["vs_best"] = [c.verdict for c in compared]
    df["p_vs_best"] = [c.p_value for c in compared]
    df["prob_improvement"] = [c.prob_improvement for c in compared]
    df["note"] = [c.note for c in compared]
    for g, n in left_out.items():
        if n and g in df.index:
            diverged = (f"{int(n)} test task(s) without a finite value in some seed (adaptation diverged at "
                        f"test time) are left out of the mean and CI")
            df.loc[g, "note"] = f"{df.loc[g, 'note']}; {diverged}" if df.loc[g, "note"] else diverged
    return df.reset_index(drop=True)


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
