"""Read-only queries over a results folder, in DuckDB.

Each table's Parquet files (one glob per table, see ``schema.GLOBS``) are loaded into an
in-memory DuckDB table the first time a query needs that table, and kept in step with the folder
file by file: a walk of the folder compares each file's (mtime, size) with what was loaded, and
only new, rewritten or removed files are read or dropped. So new runs appear as soon as their
files are renamed into place, while a million rows are scanned from memory, not re-read from
Parquet on every query. ``ResultsDB(..., auto_refresh=False)`` walks the folder only when
``refresh()`` is called (the dashboard does so once per rerun, see ``dashboard.widgets``). SQL
text is constant; suite names, metrics and paths are always bound as parameters. Each file is
checked before it is loaded (cached; see ``verify``): a corrupt or incompatible one is left out
of every query and listed by ``ResultsDB.problems()``.

Queries never raise because a folder is empty or missing: they return empty frames with the
documented columns.

Entries (issue 20): runs are seeds of one entry only when suite, suite version, split scheme,
protocol (transductive, query_batch), preset and *variant* (the algorithm plus its overrides of
the preset, ``runs.variant``) all agree. Every query that groups or labels entries carries
``variant``; for runs written before variants existed it is the algorithm name (``_sync`` fills in
``schema.LEGACY_DEFAULTS`` as it loads each file).
"""

from __future__ import annotations

import fnmatch
import os
import threading
from pathlib import Path
from typing import Any

from collections import OrderedDict

import duckdb
import numpy as np
import pandas as pd

from metabench.errors import ResultsError
from metabench.results import metrics as _metrics
from metabench.results.ids import run_dir
from metabench.results.published import attach_published
from metabench.results.schema import CURVES, GLOBS, LEGACY_DEFAULTS, RUNS, SCHEMAS, TASKS
from metabench.results.stats import ci_halfwidth, paired_comparison
from metabench.results.variants import changes_text
from metabench.results.verify import Problem, check_results_file_cached

#: Columns of ``ResultsDB.leaderboard``, in order.
LEADERBOARD_COLUMNS = [
    "rank", "algorithm", "variant", "changes", "family", "preset", "mean", "ci_low", "ci_high", "ci95",
    "std_seeds", "n_seeds", "n_tasks", "metric", "direction", "suite_version", "split_scheme", "transductive",
    "query_batch", "suite", "vs_best", "p_vs_best", "prob_improvement", "published",
    "published_ci95", "published_source", "tasks_fingerprint", "note",
]  # fmt: skip
#: What the paired-comparison columns of ``ResultsDB.leaderboard`` mean.
#: ``vs_best``: 'best', 'tie' (paired t-test p >= ``TIE_ALPHA``), 'worse', or 'unpaired' when the
#: entry's fixed test tasks are not the best entry's (their ``tasks_fingerprint`` differs; the
#: ``note`` column says so); ``p_vs_best``: two-sided ``ttest_rel`` p-value against the rank-1
#: entry on the tasks both have;
#: ``prob_improvement``: P(this entry beats the best on a task), ties counted half.
TIE_ALPHA = 0.05
#: Run statuses left out of ``ResultsDB.curve_summary`` (the pages list such runs separately).
CURVE_EXCLUDED = ("failed", "diverged")
#: How many unfiltered scans a ResultsDB remembers (see ``ResultsDB._memo``).
MEMO_SIZE = 64
#: The entry key: rows of one leaderboard differ in at least one of these (the suite and its
#: version are fixed per leaderboard). ``variant`` names the algorithm too.
ENTRY_KEYS = ["algorithm", "variant", "preset", "split_scheme", "transductive", "query_batch"]
#: Run columns attached to each curve point / task value.
_RUN_KEYS = ["run_id", "algorithm", "variant", "family", "preset", "seed", "status", "suite_version",
             "split_scheme", "transductive", "query_batch"]  # fmt: skip
CURVES_COLUMNS = _RUN_KEYS + [c for c in CURVES.names if c != "run_id"]
TASKS_COLUMNS = _RUN_KEYS + [c for c in TASKS.names if c != "run_id"]

# Each query starts from these CTEs over the in-memory copies of the tables (see ResultsDB._sync).
_RUNS = "runs AS (SELECT * FROM t_runs)"
_CURVES = "curves AS (SELECT * FROM t_curves)"
_TASKS = "tasks AS (SELECT * FROM t_tasks)"
# Runs (any status) of the suite's newest version: the population of the curve queries.
_NEWEST = """
newest AS (
    SELECT * FROM runs
    WHERE suite = $suite AND suite_version = (SELECT max(suite_version) FROM runs WHERE suite = $suite)
)"""
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
# `g` numbers the (variant, preset, protocol) groups so NULLs in older files still group; two
# variants of one algorithm (e.g. maml and maml[inner_steps=3]) are two groups, never averaged.
# One scan of the tasks table returns both the per-task and the per-seed means of every group
# (a few thousand rows); the summaries and paired tests are then computed on those. The scans
# cover every entry of the suite; the family / preset / split-scheme filters then select entries
# in pandas (``_select``), so a filter change never scans again (``ResultsDB._memo``).

def _grouped(descriptors: bool = False) -> str:
    """The filtered, grouped finished runs and their (group, seed, task) cells."""
    extra = ", any_value(t.descriptors) AS descriptors" if descriptors else ""
    return f"""
grouped AS (
    SELECT *, dense_rank() OVER (
        ORDER BY algorithm, variant, preset, split_scheme, transductive, query_batch,
                 tasks_fingerprint) AS g
    FROM finished
),
groups AS (
    SELECT g, any_value(algorithm) AS algorithm, any_value(variant) AS variant,
           any_value(overrides) AS overrides, any_value(family) AS family,
           any_value(preset) AS preset, any_value(split_scheme) AS split_scheme,
           any_value(transductive) AS transductive, any_value(query_batch) AS query_batch,
           any_value(suite_version) AS suite_version, any_value(tasks_fingerprint) AS tasks_fingerprint
    FROM grouped GROUP BY g
),
cells AS (  -- one value per (group, seed, task); duplicate rows of a cell are averaged
    SELECT r.g, r.seed, t.task_id, avg(t.value) AS value{extra}
    FROM grouped r JOIN tasks t ON t.run_id = r.run_id
    WHERE t.split = 'test' AND t.metric = $metric
    GROUP BY r.g, r.seed, t.task_id
)"""


_LEADERBOARD_SQL = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED}, {_grouped()}
SELECT 'task' AS kind, g, task_id AS key, avg(value) AS value FROM cells GROUP BY g, task_id
UNION ALL
SELECT 'seed' AS kind, g, seed AS key, avg(value) AS value FROM cells GROUP BY g, seed
ORDER BY kind, g, key
"""
_GROUPS_SQL = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED}, {_grouped()}
SELECT * FROM groups ORDER BY g
"""

_TASK_VALUES_SQL = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED}, {_grouped(descriptors=True)}
SELECT grp.algorithm, grp.variant, grp.family, grp.preset, grp.split_scheme, grp.transductive,
       grp.query_batch, c.task_id, avg(c.value) AS value, count(*) AS n_seeds,
       any_value(c.descriptors) AS descriptors
FROM cells c JOIN groups grp USING (g)
GROUP BY grp.g, grp.algorithm, grp.variant, grp.family, grp.preset, grp.split_scheme, grp.transductive,
         grp.query_batch, c.task_id
ORDER BY grp.algorithm, grp.variant, grp.preset, grp.g, c.task_id
"""

_RUN_COSTS_SQL = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED}, {_grouped()}
SELECT r.run_id, r.algorithm, r.variant, r.family, r.preset, r.split_scheme, r.transductive,
       r.query_batch, r.seed, r.wall_time_s, r.peak_memory_mb, r.meta_steps, r.device,
       avg(t.value) AS value, count(*) AS n_tasks
FROM grouped r JOIN tasks t ON t.run_id = r.run_id
WHERE t.split = 'test' AND t.metric = $metric
GROUP BY ALL ORDER BY r.algorithm, r.variant, r.preset, r.seed, r.run_id
"""

_FACETS_SQL = f"""
WITH {_RUNS}, {_FINISHED}
SELECT list(DISTINCT family ORDER BY family) AS families,
       list(DISTINCT preset ORDER BY preset) AS presets,
       list(DISTINCT split_scheme ORDER BY split_scheme) AS split_schemes,
       mode(split_scheme) AS main_split_scheme,
       list(DISTINCT variant ORDER BY variant) AS variants
FROM finished
"""

# Every suite's newest finished version, its primary metric and its most common split scheme;
# then one mean per (suite, entry, seed) over the test tasks of the primary metric.
_RUN_SCORES_SQL = f"""
WITH {_RUNS}, {_TASKS},
fin AS (SELECT * FROM runs WHERE status = 'finished'),
newest AS (SELECT suite, max(suite_version) AS v FROM fin GROUP BY suite),
sel AS (
    SELECT f.* FROM fin f JOIN newest n ON f.suite = n.suite AND f.suite_version = n.v
),
main AS (
    SELECT suite, mode(primary_metric) AS metric, mode(split_scheme) AS split_scheme
    FROM sel GROUP BY suite
)
SELECT s.suite, s.algorithm, s.variant, any_value(s.family) AS family, s.preset, s.transductive,
       s.query_batch, s.seed, m.metric, avg(t.value) AS value, count(*) AS n_tasks
FROM sel s JOIN main m ON m.suite = s.suite AND m.split_scheme = s.split_scheme
JOIN tasks t ON t.run_id = s.run_id AND t.metric = m.metric AND t.split = 'test'
GROUP BY s.suite, s.algorithm, s.variant, s.preset, s.transductive, s.query_batch, s.seed, m.metric
ORDER BY s.suite, s.algorithm, s.variant, s.preset, s.seed
"""

_CURVE_METRICS_SQL = f"""
WITH {_RUNS}, {_CURVES}, {_NEWEST}
SELECT DISTINCT c.split, c.metric FROM newest r JOIN curves c ON c.run_id = r.run_id
ORDER BY c.split DESC, c.metric
"""

# Mean and spread across seeds at each step; wall time is the seeds' mean at that step. Runs
# that failed or diverged are left out (``CURVE_EXCLUDED``): a diverged loss would swamp the mean.
_CURVE_SUMMARY_SQL = f"""
WITH {_RUNS}, {_CURVES}, {_NEWEST},
points AS (  -- one value per (run, step): duplicate rows of a point are averaged
    SELECT r.algorithm, r.variant, r.family, r.preset, r.split_scheme, r.transductive, r.query_batch,
           r.seed, r.run_id, c.step, avg(c.wall_time_s) AS wall_time_s, avg(c.value) AS value
    FROM newest r JOIN curves c ON c.run_id = r.run_id
    WHERE c.metric = $metric AND c.split = $split AND NOT list_contains($excluded, r.status)
    GROUP BY ALL
)
SELECT algorithm, variant, any_value(family) AS family, preset, split_scheme, transductive, query_batch,
       step, avg(wall_time_s) AS wall_time_s, avg(value) AS mean,
       stddev_samp(value) AS sd, count(*) AS n_seeds
FROM points
GROUP BY algorithm, variant, preset, split_scheme, transductive, query_batch, step
ORDER BY algorithm, variant, preset, split_scheme, transductive, query_batch, step
"""

_CURVES_SQL = f"""
WITH {_RUNS}, {_CURVES}, {_NEWEST}
SELECT r.run_id, r.algorithm, r.variant, r.family, r.preset, r.seed, r.status, r.suite_version,
       r.split_scheme, r.transductive, r.query_batch,
       c.step, c.wall_time_s, c.split, c.metric, c.value
FROM newest r JOIN curves c ON c.run_id = r.run_id
WHERE c.metric = $metric AND c.split = $split
ORDER BY r.algorithm, r.variant, r.preset, r.seed, r.run_id, c.step
"""

_TASKS_SQL = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED}
SELECT r.run_id, r.algorithm, r.variant, r.family, r.preset, r.seed, r.status, r.suite_version,
       r.split_scheme, r.transductive, r.query_batch,
       t.split, t.task_id, t.metric, t.value, t.descriptors
FROM finished r JOIN tasks t ON t.run_id = r.run_id
WHERE t.split = 'test' AND t.metric = $metric
ORDER BY r.algorithm, r.variant, r.preset, r.seed, r.run_id, t.task_id
"""


def _walk(results_dir: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """One walk of the folder: per table, {path: (mtime in ns, size)} of the files its glob
    (``schema.GLOBS``) selects."""
    patterns = {table: glob.rsplit("/", 1)[-1] for table, glob in GLOBS.items()}
    found: dict[str, dict[str, tuple[int, int]]] = {table: {} for table in GLOBS}
    for folder, _dirs, names in os.walk(results_dir):
        for name in names:
            for table, pattern in patterns.items():
                if fnmatch.fnmatchcase(name, pattern):
                    path = os.path.join(folder, name)
                    try:
                        st = os.stat(path)
                    except OSError:  # replaced or removed while we looked
                        break
                    found[table][path] = (st.st_mtime_ns, st.st_size)
                    break
    return found


def _split_good(listing: dict[str, dict[str, tuple[int, int]]]
                ) -> tuple[dict[str, dict[str, tuple[int, int]]], list[Problem]]:
    """(``listing`` without the files every query leaves out, the problems of those files):
    corrupt, or from an incompatible version (see ``metabench.results.verify``). Each check is
    cached until the file changes."""
    good: dict[str, dict[str, tuple[int, int]]] = {}
    bad: list[Problem] = []
    for table, files in listing.items():
        good[table] = {}
        for path, stamp in files.items():
            problem = check_results_file_cached(Path(path), table)
            if problem is None or problem.severity != "bad":
                good[table][path] = stamp
            else:
                bad.append(problem)
    return good, bad


def _stamp(listing: dict[str, dict[str, tuple[int, int]]]) -> tuple[int, int, int]:
    files = [v for table in listing.values() for v in table.values()]
    return len(files), max((m for m, _ in files), default=0), sum(n for _, n in files)


def fingerprint(results_dir: str | os.PathLike) -> tuple[int, int, int]:
    """A cheap change detector for a results folder: (files, newest mtime in ns, total bytes).

    Covers the files of all three tables; atomic rewrites change the mtime, new curve parts the
    count. Used as a cache key so the dashboard shows new results without a restart.
    """
    return _stamp(_walk(Path(results_dir)))


class ResultsDB:
    """Queries over one results folder (``RESULTS/<run_id>/{runs,curves-*,tasks}.parquet``)."""

    def __init__(self, results_dir: str | os.PathLike, auto_refresh: bool = True):
        self.results_dir = Path(results_dir).expanduser().absolute()
        self.auto_refresh = auto_refresh
        """True: every query first looks for changed files; False: only ``refresh()`` does."""
        self._con = duckdb.connect(":memory:")
        # Threads (the dashboard's sessions, a preload) each query through their own cursor on
        # the one in-memory database; a table is synced by one thread at a time.
        self._local = threading.local()
        self._walk_lock = threading.Lock()
        self._table_locks = {table: threading.Lock() for table in GLOBS}
        self._listing: dict[str, dict[str, tuple[int, int]]] | None = None  # good files of the last walk
        self._problems: list[Problem] = []  # bad files of the last walk
        self._loaded: dict[str, dict[str, tuple[int, int]]] = {}  # table -> files in memory
        self._versions = {table: 0 for table in GLOBS}  # bumped whenever a table's rows change
        self._memos: OrderedDict[tuple, pd.DataFrame] = OrderedDict()

    def refresh(self) -> tuple[int, int, int]:
        """Walk the folder once, bring the tables already in memory up to date with it, and
        return its ``fingerprint``."""
        with self._walk_lock:
            found = self._scan()
            listing = self._listing
        for table in list(self._loaded):
            # A table another thread is loading (the background preload) is skipped rather than
            # waited for: the next query of that table syncs it with this listing first.
            lock = self._table_locks[table]
            if lock.acquire(blocking=False):
                try:
                    self._sync(table, listing)
                finally:
                    lock.release()
        return _stamp(found)

    def preload(self, tables: tuple[str, ...] = ("runs", "tasks", "curves")) -> threading.Thread:
        """Load ``tables`` into memory in a background thread (the dashboard starts one when it
        opens a folder, so the first visit of each page finds its table loaded). Errors are
        left for the queries to report."""

        def load() -> None:
            for table in tables:
                try:
                    self._params(table)
                except ResultsError:
                    pass

        thread = threading.Thread(target=load, name=f"preload {self.results_dir}", daemon=True)
        thread.start()
        return thread

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._walk_lock:  # the connection itself is not thread-safe; its cursors are
                cursor = self._local.cursor = self._con.cursor()
        return cursor

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

    def leaderboard(
        self,
        suite: str,
        metric: str | None = None,
        families: list[str] | None = None,
        presets: list[str] | None = None,
        split_scheme: str | None = None,
    ) -> pd.DataFrame:
        """One row per entry (variant, preset, split_scheme, transductive, query_batch), best first.

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
        ``published_ci95`` and ``published_source``) is the paper's number for the row when one
        with the same algorithm, split scheme, transductive flag and metric exists, for plain rows
        only (``metabench.results.published``). Columns: ``LEADERBOARD_COLUMNS``.
        """
        metric = metric or self.primary_metric(suite)
        if metric is None:
            return _empty(LEADERBOARD_COLUMNS)
        better = _metrics.direction(metric)  # unknown metric -> ConfigError
        params = self._params("runs", "tasks", suite=suite, metric=metric)
        if params is None:
            return _empty(LEADERBOARD_COLUMNS)
        # The scan is done once per (suite, metric) for every entry; filters only select entries.
        groups = _select(self._memo(_GROUPS_SQL, params, "runs", "tasks"), families, presets, split_scheme)
        values = self._memo(_LEADERBOARD_SQL, params, "runs", "tasks")
        values = values[values["g"].isin(groups["g"])]
        if values.empty:
            return _empty(LEADERBOARD_COLUMNS)
        df = _summarise(values, groups.set_index("g"), higher=better == "higher")
        df["changes"] = [changes_text(o) for o in df["overrides"]]
        df["metric"] = metric
        df["direction"] = better
        df["suite"] = suite
        df = attach_published(df, suite)
        return df[LEADERBOARD_COLUMNS].reset_index(drop=True)

    def facets(self, suite: str) -> dict[str, Any]:
        """Filter choices of a suite's leaderboard population: families, presets, split_schemes,
        variants (sorted lists) and main_split_scheme (the most common one; None without runs)."""
        empty = {"families": [], "presets": [], "split_schemes": [], "main_split_scheme": None, "variants": []}
        params = self._params("runs", suite=suite)
        if params is None:
            return empty
        row = self._query(_FACETS_SQL, params).iloc[0]
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
    ) -> pd.DataFrame:
        """One row per (leaderboard entry, test task): the task's value averaged over seeds,
        ``n_seeds`` and the task's ``descriptors`` (JSON). Same population as ``leaderboard``."""
        columns = ENTRY_KEYS[:2] + ["family"] + ENTRY_KEYS[2:] + ["task_id", "value", "n_seeds", "descriptors"]
        params = self._params("runs", "tasks", suite=suite, metric=metric)
        if params is None:
            return _empty(columns)
        df = self._memo(_TASK_VALUES_SQL, params, "runs", "tasks")
        return _select(df, families, presets, split_scheme)[columns].reset_index(drop=True)

    def run_costs(
        self,
        suite: str,
        metric: str,
        families: list[str] | None = None,
        presets: list[str] | None = None,
        split_scheme: str | None = None,
    ) -> pd.DataFrame:
        """One row per finished run of the leaderboard's population: its wall time, peak memory,
        meta-steps and its mean ``metric`` over the test tasks (``value``)."""
        columns = ["run_id", *ENTRY_KEYS[:2], "family", *ENTRY_KEYS[2:], "seed", "wall_time_s",
                   "peak_memory_mb", "meta_steps", "device", "value", "n_tasks"]  # fmt: skip
        params = self._params("runs", "tasks", suite=suite, metric=metric)
        if params is None:
            return _empty(columns)
        df = self._memo(_RUN_COSTS_SQL, params, "runs", "tasks")
        return _select(df, families, presets, split_scheme)[columns].reset_index(drop=True)

    def run_scores(self, families: list[str] | None = None, presets: list[str] | None = None) -> pd.DataFrame:
        """For the aggregate view: one row per (suite, entry, seed) with the seed's mean of the
        suite's primary metric over its test tasks (``value``). Per suite: finished runs of the
        newest version, of its most common split scheme only (never mixed)."""
        columns = ["suite", "algorithm", "variant", "family", "preset", "transductive", "query_batch", "seed",
                   "metric", "value", "n_tasks"]  # fmt: skip
        params = self._params("runs", "tasks")
        if params is None:
            return _empty(columns)
        df = self._memo(_RUN_SCORES_SQL, params, "runs", "tasks")
        return _select(df, families, presets)[columns].reset_index(drop=True)

    def curve_metrics(self, suite: str) -> list[tuple[str, str]]:
        """(split, metric) pairs with curve points for the suite's newest version; val first."""
        params = self._params("runs", "curves", suite=suite)
        if params is None:
            return []
        df = self._query(_CURVE_METRICS_SQL, params)
        return list(zip(df["split"], df["metric"], strict=True))

    def curve_summary(
        self,
        suite: str,
        metric: str,
        split: str = "val",
        families: list[str] | None = None,
        presets: list[str] | None = None,
        split_scheme: str | None = None,
    ) -> pd.DataFrame:
        """Learning curves averaged over seeds: one row per (entry, step) with the mean, the
        95% CI across seeds (``ci_low``, ``ci_high``; NaN with one seed), ``n_seeds`` and the
        seeds' mean ``wall_time_s`` at that step. Newest suite version; runs of every status but
        those in ``CURVE_EXCLUDED`` (failed, diverged: see ``curve_excluded_runs``)."""
        columns = ["algorithm", "variant", "family", "preset", "split_scheme", "transductive", "query_batch",
                   "step", "wall_time_s", "mean", "ci_low", "ci_high", "n_seeds"]  # fmt: skip
        params = self._params("runs", "curves", suite=suite, metric=metric, split=split,
                              excluded=list(CURVE_EXCLUDED))  # fmt: skip
        if params is None:
            return _empty(columns)
        df = _select(self._memo(_CURVE_SUMMARY_SQL, params, "runs", "curves"), families, presets, split_scheme)
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
    ) -> pd.DataFrame:
        """The runs ``curve_summary`` leaves out (status in ``CURVE_EXCLUDED``) under the same
        filters, newest suite version: run_id, algorithm, variant, family, preset, split_scheme, seed,
        status, meta_steps, error."""
        columns = ["run_id", "algorithm", "variant", "family", "preset", "split_scheme", "seed", "status",
                   "meta_steps", "error"]  # fmt: skip
        runs = self.runs(suite)
        if runs.empty:
            return _empty(columns)
        runs = runs[(runs["suite_version"] == runs["suite_version"].max()) & runs["status"].isin(CURVE_EXCLUDED)]
        return _select(runs, families, presets, split_scheme)[columns].reset_index(drop=True)

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
        with self._walk_lock:
            if self._listing is None or self.auto_refresh:
                self._scan()
            return list(self._problems)

    def run_dir(self, run_id: str) -> Path:
        """The folder of ``run_id`` (ConfigError for an id that is not a plain folder name)."""
        return run_dir(self.results_dir, run_id)

    # -- helpers -------------------------------------------------------------------------------

    def _scan(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Walk the folder once: keep its good files as the listing every query loads from and its
        bad ones as ``problems``; return the whole walk (for the fingerprint). The caller holds
        the walk lock."""
        found = _walk(self.results_dir)
        self._listing, self._problems = _split_good(found)
        return found

    def _params(self, *tables: str, **params: Any) -> dict[str, Any] | None:
        """Make sure ``tables`` are in memory and current; None when some table has no file yet
        (-> an empty result). Files that fail their check (see ``problems``) are never loaded, so
        every query works on the remaining files."""
        for attempt in (0, 1):
            with self._walk_lock:
                if self._listing is None or self.auto_refresh:
                    self._scan()
                listing = self._listing
            try:
                for table in tables:
                    if not listing[table]:
                        return None
                    with self._table_locks[table]:
                        self._sync(table, listing)
                break
            except ResultsError:
                # A resuming cell deletes its curve parts newer than its checkpoint: a file listed a
                # moment ago may be gone. _sync dropped the listing; walk once more.
                if attempt:
                    raise
        return params

    def _sync(self, table: str, listing: dict[str, dict[str, tuple[int, int]]]) -> None:
        """Load the files of ``table`` that are new or changed since the last sync into
        ``t_<table>`` and drop the rows of changed or removed ones (one transaction).
        The caller holds the table's lock."""
        want = listing[table]
        have = self._loaded.get(table)
        name = f"t_{table}"
        con = self._cursor()
        if have is None:
            con.register("_empty", SCHEMAS[table].empty_table())
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT *, ''::VARCHAR AS _file FROM _empty")
            con.unregister("_empty")
            have = self._loaded[table] = {}
        stale = [p for p, v in have.items() if want.get(p) != v]
        new = [p for p, v in want.items() if have.get(p) != v]
        if not stale and not new:
            return
        try:
            con.execute("BEGIN TRANSACTION")
            if stale:
                con.execute(f"DELETE FROM {name} WHERE list_contains($files, _file)", {"files": stale})
            if new:
                source = "read_parquet($files, union_by_name=true, hive_partitioning=false, filename=true)"
                present = set(con.execute(f"DESCRIBE SELECT * FROM {source}", {"files": new}).df()["column_name"])
                columns, values, params = _load_columns(table, present)
                con.execute(f"INSERT INTO {name} ({columns}, _file) SELECT {values}, filename FROM {source}",
                            {"files": new, **params})  # fmt: skip
            con.execute("COMMIT")
        except duckdb.Error as exc:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:  # the error ended the transaction already
                pass
            with self._walk_lock:
                self._listing = None  # walk again next time: a file may have been replaced meanwhile
            raise self._error(exc) from exc
        for p in stale:
            del have[p]
        for p in new:
            have[p] = want[p]
        self._versions[table] += 1

    def _memo(self, sql: str, params: dict[str, Any], *tables: str) -> pd.DataFrame:
        """``_query``, remembered until one of ``tables`` changes (the last ``MEMO_SIZE`` results).
        For the unfiltered scans that the filtered views select from; treat the frame as read-only."""
        key = (sql, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())),
               tuple(self._versions[t] for t in tables))  # fmt: skip
        with self._walk_lock:
            if key in self._memos:
                self._memos.move_to_end(key)
                return self._memos[key]
        df = self._query(sql, params)
        with self._walk_lock:
            self._memos[key] = df
            while len(self._memos) > MEMO_SIZE:
                self._memos.popitem(last=False)
        return df

    def _query(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        try:
            return self._cursor().execute(sql, params).df()
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: duckdb.Error) -> ResultsError:
        first_line = str(exc).strip().splitlines()[0]
        return ResultsError(
            f"Could not read the results in {self.results_dir}: {first_line}. A file may be "
            "corrupted or from an incompatible metabench version; delete that run's folder "
            "and rerun it."
        )


def _load_columns(table: str, present: set[str]) -> tuple[str, str, dict[str, Any]]:
    """(the column list of an INSERT into ``t_<table>``, the matching SELECT list over the files,
    its parameters) for files holding the columns ``present``. Older files may lack some columns:
    those of ``schema.LEGACY_DEFAULTS`` take their default (also where files of both versions are
    read together and a column is null for the older ones); other missing columns stay null
    (``verify`` leaves such files out anyway). Column names come from the schema, values are bound."""
    defaults = LEGACY_DEFAULTS.get(table, {})
    names, values, params = [], [], {}
    for column in SCHEMAS[table].names:
        if column in defaults:
            kind, value = defaults[column]
            if kind == "column":
                fallback = f'"{value}"'
            elif value is None:
                fallback = "NULL"
            else:
                params[f"default_{column}"] = value
                fallback = f"$default_{column}"
            names.append(column)
            values.append(f'coalesce("{column}", {fallback})' if column in present else fallback)
        elif column in present:
            names.append(column)
            values.append(f'"{column}"')
    return ", ".join(f'"{c}"' for c in names), ", ".join(values), params


def _select(
    df: pd.DataFrame, families: list[str] | None = None, presets: list[str] | None = None, split_scheme: Any = None
) -> pd.DataFrame:
    """The rows of ``df`` whose family, preset and split scheme pass the filters (None = any);
    the same rule as ``_FILTERS`` in SQL."""
    keep = pd.Series(True, index=df.index)
    if families is not None:
        keep &= df["family"].isin([str(f) for f in families])
    if presets is not None:
        keep &= df["preset"].isin([str(p) for p in presets])
    if split_scheme is not None:
        keep &= df["split_scheme"] == split_scheme
    return df[keep]


def _summarise(values: pd.DataFrame, groups: pd.DataFrame, higher: bool) -> pd.DataFrame:
    """Leaderboard rows from per-(group, task) and per-(group, seed) means (few rows)."""
    tasks = values[values["kind"] == "task"]
    seeds = values[values["kind"] == "seed"]
    by_task = tasks.groupby("g")["value"].agg(mean="mean", sd_tasks="std", n_tasks="count")
    by_seed = seeds.groupby("g")["value"].agg(std_seeds="std", n_seeds="count")
    df = groups.join(by_task, how="inner").join(by_seed, how="inner")
    df["ci95"] = ci_halfwidth(df.pop("sd_tasks").to_numpy(float), df["n_tasks"].to_numpy(float))
    df["ci_low"] = df["mean"] - df["ci95"]
    df["ci_high"] = df["mean"] + df["ci95"]
    key = df["mean"] if higher else -df["mean"]
    df["rank"] = key.rank(method="min", ascending=False, na_option="bottom").astype("int64")
    df = df.sort_values(["rank", "algorithm", "variant", "preset"], kind="stable")
    # Paired comparison of every row with the best one, on the tasks both have.
    matrix = tasks.pivot(index="key", columns="g", values="value")
    columns = {g: matrix[g].to_numpy(float) for g in matrix.columns}  # (n_tasks,) per group, NaN = missing
    best = df.index[0]
    vs, ps, probs, notes = [], [], [], []
    for g in df.index:
        notes.append(_pairing_note(df.loc[g, "tasks_fingerprint"], df.loc[best, "tasks_fingerprint"]))
        if g == best:
            vs.append("best"), ps.append(float("nan")), probs.append(float("nan"))
            continue
        if notes[-1]:
            vs.append("unpaired"), ps.append(float("nan")), probs.append(float("nan"))
            continue
        a, b = columns[g], columns[best]
        both = ~(np.isnan(a) | np.isnan(b))
        if both.sum() < 2:
            vs.append("n/a"), ps.append(float("nan")), probs.append(float("nan"))
            continue
        cmp = paired_comparison(a[both], b[both], higher_is_better=higher)
        tied = not cmp.p_value < TIE_ALPHA
        vs.append("tie" if tied else "worse"), ps.append(cmp.p_value), probs.append(cmp.prob_improvement)
    df["vs_best"], df["p_vs_best"], df["prob_improvement"], df["note"] = vs, ps, probs, notes
    return df.reset_index(drop=True)


def _pairing_note(fingerprint: Any, best: Any) -> str:
    """'' when an entry's test tasks are the best entry's (same fingerprint, or neither recorded
    one: runs from before fingerprints), else one sentence saying why it is not paired."""
    known = [isinstance(f, str) and bool(f) for f in (fingerprint, best)]
    if not any(known) or (all(known) and fingerprint == best):
        return ""
    if not known[0]:
        return "not paired with the best entry: this entry's runs recorded no test-task fingerprint"
    if not known[1]:
        return "not paired with the best entry: the best entry's runs recorded no test-task fingerprint"
    return (f"not paired with the best entry: different fixed test tasks (fingerprint "
            f"{str(fingerprint).split(':')[-1][:12]} vs {str(best).split(':')[-1][:12]})")



def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
