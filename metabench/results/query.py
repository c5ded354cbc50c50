"""Read-only queries over a results folder, in DuckDB.

Every table is read straight from the Parquet files found by one glob per table (see
``schema.GLOBS``), so new runs appear as soon as their files are renamed into place. Each file is
checked first (cached; see ``verify``): a corrupt or incompatible one is left out of every query
and listed by ``ResultsDB.problems()``. SQL text is
constant; suite names, metrics and paths are always bound as parameters.

Queries never raise because a folder is empty or missing: they return empty frames with the
documented columns.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from metabench.errors import ResultsError
from metabench.results import metrics as _metrics
from metabench.results.ids import run_dir
from metabench.results.schema import CURVES, GLOBS, RUNS, TASKS
from metabench.results.stats import ci_halfwidth
from metabench.results.verify import Problem, check_results_file_cached

#: Columns of ``ResultsDB.leaderboard``, in order.
LEADERBOARD_COLUMNS = [
    "rank", "algorithm", "family", "preset", "mean", "ci_low", "ci_high", "ci95", "std_seeds",
    "n_seeds", "n_tasks", "metric", "direction", "suite_version", "split_scheme", "transductive",
    "query_batch",
]  # fmt: skip
#: Run columns attached to each curve point / task value.
_RUN_KEYS = ["run_id", "algorithm", "family", "preset", "seed", "status", "suite_version",
             "split_scheme", "transductive", "query_batch"]  # fmt: skip
CURVES_COLUMNS = _RUN_KEYS + [c for c in CURVES.names if c != "run_id"]
TASKS_COLUMNS = _RUN_KEYS + [c for c in TASKS.names if c != "run_id"]

# Each query starts from these CTEs; $runs/$curves/$tasks are the bound globs.
_RUNS = "runs AS (SELECT * FROM read_parquet($runs, union_by_name=true, hive_partitioning=false))"
_CURVES = "curves AS (SELECT * FROM read_parquet($curves, union_by_name=true, hive_partitioning=false))"
_TASKS = "tasks AS (SELECT * FROM read_parquet($tasks, union_by_name=true, hive_partitioning=false))"
# Finished runs of the newest suite version that has finished runs: the leaderboard's population.
_FINISHED = """
finished AS (
    SELECT * FROM runs
    WHERE suite = $suite AND status = 'finished' AND suite_version = (
        SELECT max(suite_version) FROM runs WHERE suite = $suite AND status = 'finished')
)"""

_SUMMARY_SQL = f"""
WITH {_RUNS}
SELECT count(*) AS n_runs,
       count(*) FILTER (WHERE status = 'finished') AS n_finished,
       count(*) FILTER (WHERE status = 'running') AS running,
       list(DISTINCT suite ORDER BY suite) AS suites,
       list(DISTINCT algorithm ORDER BY algorithm) AS algorithms,
       max(coalesce(finished_at, started_at)) AS last_run_at
FROM runs
"""

_RUNS_SQL = f"""
WITH {_RUNS}
SELECT * FROM runs WHERE $suite IS NULL OR suite = $suite
ORDER BY started_at DESC, run_id
"""

_PRIMARY_SQL = f"""
WITH {_RUNS}, {_FINISHED}
SELECT primary_metric FROM finished GROUP BY primary_metric ORDER BY count(*) DESC, primary_metric LIMIT 1
"""

_METRICS_SQL = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED}
SELECT DISTINCT t.metric FROM finished r JOIN tasks t ON t.run_id = r.run_id
WHERE t.split = 'test' ORDER BY t.metric
"""

# Tasks are paired across algorithms (same task_id = same task), so average each task over seeds
# first and put the interval over tasks; the seed spread is the std of the per-seed means.
# `g` numbers the (algorithm, preset, protocol) groups so NULLs in older files still group.
_LEADERBOARD_SQL = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED},
grouped AS (
    SELECT *, dense_rank() OVER (
        ORDER BY algorithm, preset, split_scheme, transductive, query_batch) AS g
    FROM finished
),
groups AS (
    SELECT g, any_value(algorithm) AS algorithm, any_value(family) AS family,
           any_value(preset) AS preset, any_value(split_scheme) AS split_scheme,
           any_value(transductive) AS transductive, any_value(query_batch) AS query_batch,
           any_value(suite_version) AS suite_version
    FROM grouped GROUP BY g
),
cells AS (  -- one value per (group, seed, task); duplicate rows of a cell are averaged
    SELECT r.g, r.seed, t.task_id, avg(t.value) AS value
    FROM grouped r JOIN tasks t ON t.run_id = r.run_id
    WHERE t.split = 'test' AND t.metric = $metric
    GROUP BY r.g, r.seed, t.task_id
),
per_task AS (SELECT g, task_id, avg(value) AS value FROM cells GROUP BY g, task_id),
per_seed AS (SELECT g, seed, avg(value) AS value FROM cells GROUP BY g, seed),
by_task AS (
    SELECT g, avg(value) AS mean, stddev_samp(value) AS sd_tasks, count(*) AS n_tasks
    FROM per_task GROUP BY g
),
by_seed AS (
    SELECT g, stddev_samp(value) AS std_seeds, count(*) AS n_seeds FROM per_seed GROUP BY g
)
SELECT rank() OVER (ORDER BY CASE WHEN isnan(mean) THEN NULL WHEN $higher THEN mean ELSE -mean END
                    DESC NULLS LAST) AS rank,
       groups.algorithm, groups.family, groups.preset, mean, sd_tasks, std_seeds, n_seeds, n_tasks,
       groups.suite_version, groups.split_scheme, groups.transductive, groups.query_batch
FROM by_task JOIN by_seed USING (g) JOIN groups USING (g)
ORDER BY rank, algorithm, preset
"""

_CURVES_SQL = f"""
WITH {_RUNS}, {_CURVES},
selected AS (
    SELECT * FROM runs WHERE suite = $suite
      AND suite_version = (SELECT max(suite_version) FROM runs WHERE suite = $suite)
)
SELECT r.run_id, r.algorithm, r.family, r.preset, r.seed, r.status, r.suite_version,
       r.split_scheme, r.transductive, r.query_batch,
       c.step, c.wall_time_s, c.split, c.metric, c.value
FROM selected r JOIN curves c ON c.run_id = r.run_id
WHERE c.metric = $metric AND c.split = $split
ORDER BY r.algorithm, r.preset, r.seed, r.run_id, c.step
"""

_TASKS_SQL = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED}
SELECT r.run_id, r.algorithm, r.family, r.preset, r.seed, r.status, r.suite_version,
       r.split_scheme, r.transductive, r.query_batch,
       t.split, t.task_id, t.metric, t.value, t.descriptors
FROM finished r JOIN tasks t ON t.run_id = r.run_id
WHERE t.split = 'test' AND t.metric = $metric
ORDER BY r.algorithm, r.preset, r.seed, r.run_id, t.task_id
"""


def fingerprint(results_dir: str | os.PathLike) -> tuple[int, int, int]:
    """A cheap change detector for a results folder: (files, newest mtime in ns, total bytes).

    Covers the files of all three tables; atomic rewrites change the mtime, new curve parts the
    count. Used as a cache key so the dashboard shows new results without a restart.
    """
    root = Path(results_dir)
    count = newest = size = 0
    for pattern in GLOBS.values():
        for path in root.glob(pattern):
            try:
                st = path.stat()
            except OSError:  # replaced or removed while we looked
                continue
            count += 1
            newest = max(newest, st.st_mtime_ns)
            size += st.st_size
    return count, newest, size


class ResultsDB:
    """Queries over one results folder (``RESULTS/<run_id>/{runs,curves-*,tasks}.parquet``)."""

    def __init__(self, results_dir: str | os.PathLike):
        self.results_dir = Path(results_dir).expanduser().absolute()
        self._con = duckdb.connect(":memory:")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ResultsDB({str(self.results_dir)!r})"

    @property
    def exists(self) -> bool:
        """Whether the results folder exists at all."""
        return self.results_dir.is_dir()

    # -- public queries ------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts for the home page: n_runs, n_finished, running, suites, algorithms, last_run_at."""
        empty = {"n_runs": 0, "n_finished": 0, "running": 0, "suites": [], "algorithms": [],
                 "last_run_at": None}  # fmt: skip
        params = self._params("runs")
        if params is None:
            return empty
        row = self._query(_SUMMARY_SQL, params).iloc[0]
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
        """All runs (every status and version), newest first; optionally of one suite."""
        params = self._params("runs", suite=suite)
        if params is None:
            return _empty(RUNS.names)
        return self._query(_RUNS_SQL, params).reindex(columns=RUNS.names)

    def primary_metric(self, suite: str) -> str | None:
        """The primary metric of the suite's finished runs (newest version); None if none."""
        params = self._params("runs", suite=suite)
        if params is None:
            return None
        df = self._query(_PRIMARY_SQL, params)
        return None if df.empty else str(df.iloc[0, 0])

    def metrics(self, suite: str) -> list[str]:
        """Test metrics recorded for the suite's finished runs (newest version), primary first."""
        params = self._params("runs", "tasks", suite=suite)
        if params is None:
            return []
        found = [str(m) for m in self._query(_METRICS_SQL, params)["metric"]]
        primary = self.primary_metric(suite)
        return sorted(found, key=lambda m: (m != primary, m))

    def leaderboard(self, suite: str, metric: str | None = None) -> pd.DataFrame:
        """One row per (algorithm, preset, split_scheme, transductive, query_batch), best first.

        Only finished runs of the newest suite version with finished runs count. ``metric``
        defaults to the runs' primary metric. ``mean`` and the 95% CI (``ci_low``, ``ci_high``,
        half-width ``ci95``) are over test tasks after averaging each task over seeds:
        ``mean ± t.ppf(0.975, n_tasks-1) * sd / sqrt(n_tasks)``. ``std_seeds`` is the std
        (ddof=1) of the per-seed means, NaN with one seed. Columns: ``LEADERBOARD_COLUMNS``.
        """
        metric = metric or self.primary_metric(suite)
        if metric is None:
            return _empty(LEADERBOARD_COLUMNS)
        better = _metrics.direction(metric)  # unknown metric -> ConfigError
        params = self._params("runs", "tasks", suite=suite, metric=metric, higher=better == "higher")
        if params is None:
            return _empty(LEADERBOARD_COLUMNS)
        df = self._query(_LEADERBOARD_SQL, params)
        if df.empty:
            return _empty(LEADERBOARD_COLUMNS)
        df["ci95"] = ci_halfwidth(df.pop("sd_tasks").to_numpy(float), df["n_tasks"].to_numpy(float))
        df["ci_low"] = df["mean"] - df["ci95"]
        df["ci_high"] = df["mean"] + df["ci95"]
        df["metric"] = metric
        df["direction"] = better
        return df[LEADERBOARD_COLUMNS].reset_index(drop=True)

    def curves(self, suite: str, metric: str, split: str = "val") -> pd.DataFrame:
        """Learning-curve points of every run (any status) of the suite's newest version."""
        params = self._params("runs", "curves", suite=suite, metric=metric, split=split)
        if params is None:
            return _empty(CURVES_COLUMNS)
        return self._query(_CURVES_SQL, params)

    def tasks(self, suite: str, metric: str) -> pd.DataFrame:
        """Per-task test values of the leaderboard's runs (finished, newest version)."""
        params = self._params("runs", "tasks", suite=suite, metric=metric)
        if params is None:
            return _empty(TASKS_COLUMNS)
        return self._query(_TASKS_SQL, params)

    def problems(self) -> list[Problem]:
        """Results files that every query leaves out, each with what is wrong and what to do.

        A file is checked once (full read, checksums, schema; see ``metabench.results.verify``)
        and remembered until its size or mtime changes, so this is cheap on every rerun.
        """
        return [problem for table in GLOBS for _, problem in self._files(table) if problem is not None
                and problem.severity == "bad"]

    def run_dir(self, run_id: str) -> Path:
        """The folder of ``run_id`` (ConfigError for an id that is not a plain folder name)."""
        return run_dir(self.results_dir, run_id)

    # -- helpers -------------------------------------------------------------------------------

    def _files(self, table: str) -> list[tuple[Path, Problem | None]]:
        return [(path, check_results_file_cached(path, table))
                for path in sorted(self.results_dir.glob(GLOBS[table]))]

    def _params(self, *tables: str, **params: Any) -> dict[str, Any] | None:
        """Bind each table's list of good files; None when some table has none (-> empty result).

        An explicit list rather than a glob, so a corrupt or incompatible file (see
        ``problems``) is left out and every query works on the remaining files.
        """
        for table in tables:
            good = [str(path) for path, problem in self._files(table)
                    if problem is None or problem.severity != "bad"]
            if not good:
                return None
            params[table] = good
        return params

    def _query(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        try:
            try:
                with self._lock:  # one DuckDB connection, shared by the dashboard's threads
                    return self._con.execute(sql, params).df()
            except duckdb.IOException:
                # A resuming cell deletes its curve parts newer than its checkpoint: drop files
                # that vanished since they were listed and try once more.
                params = {k: [f for f in v if Path(f).exists()] if k in GLOBS else v
                          for k, v in params.items()}
                with self._lock:
                    return self._con.execute(sql, params).df()
        except duckdb.Error as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise ResultsError(
                f"Could not read the results in {self.results_dir}: {first_line}. A file may be "
                "corrupted or from an incompatible metabench version; delete that run's folder "
                "and rerun it."
            ) from exc


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
