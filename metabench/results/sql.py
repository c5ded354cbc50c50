"""The SQL text of ``ResultsDB``'s queries, each subquery written once.

Every query reads the in-memory copies of the tables (``t_runs``, ``t_curves``, ``t_tasks``; see
``metabench.results.store``) through the CTEs ``runs``, ``curves`` and ``tasks``. SQL text is
constant: suite names, metrics and other values are always bound as parameters (``$suite``,
``$metric``, ...), never formatted in.

The populations:

- ``newest``: runs of any status of ``$suite``'s newest version (the curve queries);
- ``finished``: finished runs of the newest version of ``$suite`` that has finished runs (the
  leaderboard, per-task and cost queries);
- ``sel``: the same as ``finished`` for every suite at once (the aggregate across suites).

All three come from ``_newest_version``, the one place that says what "newest" means.

Sources (issue 21): every row carries ``source`` ('reference' or 'yours', see ``store``). A run
id is unique only within a source, so every join of a table with ``runs`` matches both run_id
and source. The ``runs`` CTE drops a reference run whose run_id the user's folder also holds
with the same ``config`` (the user's copy wins); with another config both stay, as separate
entries. Entries are grouped by source too, so a user's run never averages with a reference run.
"""

from __future__ import annotations

# Each query starts from these CTEs over the in-memory copies of the tables (see store._sync).
_RUNS = """runs AS (
    SELECT * FROM t_runs r
    WHERE r.source = 'yours' OR NOT EXISTS (
        SELECT 1 FROM t_runs u
        WHERE u.source = 'yours' AND u.run_id = r.run_id AND u.config IS NOT DISTINCT FROM r.config)
)"""
_CURVES = "curves AS (SELECT * FROM t_curves)"
_TASKS = "tasks AS (SELECT * FROM t_tasks)"


def _newest_version(name: str, where: str) -> str:
    """The CTE ``name``: the runs passing ``where`` (constant SQL) that belong to the newest
    suite version among such runs, per suite."""
    return f"""
{name} AS (
    SELECT * FROM runs WHERE {where}
    QUALIFY suite_version = max(suite_version) OVER (PARTITION BY suite)
)"""


# Runs (any status) of the suite's newest version: the population of the curve queries.
_NEWEST = _newest_version("newest", "suite = $suite")
# Finished runs of the newest suite version that has finished runs: the leaderboard's population.
_FINISHED = _newest_version("finished", "suite = $suite AND status = 'finished'")
# The same for every suite: the aggregate's population.
_ALL_FINISHED = _newest_version("sel", "status = 'finished'")

SUMMARY = f"""
WITH {_RUNS}
SELECT count(*) AS n_runs,
       count(*) FILTER (WHERE status = 'finished') AS n_finished,
       count(*) FILTER (WHERE status = 'running') AS running,
       list(DISTINCT suite ORDER BY suite) AS suites,
       list(DISTINCT algorithm ORDER BY algorithm) AS algorithms,
       max(coalesce(finished_at, started_at)) AS last_run_at
FROM runs
"""

RUNS = f"""
WITH {_RUNS}
SELECT * FROM runs WHERE $suite IS NULL OR suite = $suite
ORDER BY started_at DESC, run_id, source
"""

PRIMARY = f"""
WITH {_RUNS}, {_FINISHED}
SELECT primary_metric FROM finished GROUP BY primary_metric ORDER BY count(*) DESC, primary_metric LIMIT 1
"""

METRICS = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED}
SELECT DISTINCT t.metric FROM finished r JOIN tasks t ON t.run_id = r.run_id AND t.source = r.source
WHERE t.split = 'test' ORDER BY t.metric
"""

# Tasks are paired across algorithms (same task_id = same task), so average each task over seeds
# first and put the interval over tasks; the seed spread is the std of the per-seed means.
# `g` numbers the entries (variant, preset, protocol, test-task fingerprint) so NULLs in older
# files still group; two variants of one algorithm (e.g. maml and maml[inner_steps=3]) are two
# groups, never averaged. One scan of the tasks table returns both the per-task and the per-seed
# means of every group (a few thousand rows); the summaries and paired tests are then computed on
# those (``stats``). The scans cover every entry of the suite; the family / preset / split-scheme
# filters then select entries in pandas (``query._select``), so a filter change never scans
# again (``ResultsStore._memo``).


def _grouped(descriptors: bool = False) -> str:
    """The grouped finished runs (``grouped``), one row per group (``groups``) and the
    (group, seed, task) cells of ``$metric`` (``cells``)."""
    extra = ", any_value(t.descriptors) AS descriptors" if descriptors else ""
    return f"""
grouped AS (
    SELECT *, dense_rank() OVER (
        ORDER BY algorithm, variant, preset, split_scheme, transductive, query_batch,
                 tasks_fingerprint, source) AS g
    FROM finished
),
groups AS (
    SELECT g, any_value(algorithm) AS algorithm, any_value(variant) AS variant,
           any_value(overrides) AS overrides, any_value(family) AS family,
           any_value(preset) AS preset, any_value(split_scheme) AS split_scheme,
           any_value(transductive) AS transductive, any_value(query_batch) AS query_batch,
           any_value(suite_version) AS suite_version, any_value(tasks_fingerprint) AS tasks_fingerprint,
           any_value(source) AS source,
           -- its recorded protocol (issue 22), which the seeds of an entry share: the newest run's
           -- config, so a seed stored before the protocol was recorded never hides it
           arg_max(config, started_at) AS config
    FROM grouped GROUP BY g
),
cells AS (  -- one value per (group, seed, task); duplicate rows of a cell are averaged
    SELECT r.g, r.seed, t.task_id, avg(t.value) AS value{extra}
    FROM grouped r JOIN tasks t ON t.run_id = r.run_id AND t.source = r.source
    WHERE t.split = 'test' AND t.metric = $metric
    GROUP BY r.g, r.seed, t.task_id
)"""


_LEADERBOARD_BASE = f"WITH {_RUNS}, {_TASKS}, {_FINISHED}, {_grouped()}"

LEADERBOARD_VALUES = f"""
{_LEADERBOARD_BASE}
SELECT 'task' AS kind, g, task_id AS key, avg(value) AS value FROM cells GROUP BY g, task_id
UNION ALL
SELECT 'seed' AS kind, g, seed AS key, avg(value) AS value FROM cells GROUP BY g, seed
ORDER BY kind, g, key
"""

GROUPS = f"""
{_LEADERBOARD_BASE}
SELECT * FROM groups ORDER BY g
"""

TASK_VALUES = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED}, {_grouped(descriptors=True)}
SELECT grp.algorithm, grp.variant, grp.family, grp.preset, grp.split_scheme, grp.transductive,
       grp.query_batch, grp.source, c.task_id, avg(c.value) AS value, count(*) AS n_seeds,
       any_value(c.descriptors) AS descriptors
FROM cells c JOIN groups grp USING (g)
GROUP BY grp.g, grp.algorithm, grp.variant, grp.family, grp.preset, grp.split_scheme, grp.transductive,
         grp.query_batch, grp.source, c.task_id
ORDER BY grp.algorithm, grp.variant, grp.preset, grp.g, c.task_id
"""

RUN_COSTS = f"""
{_LEADERBOARD_BASE}
SELECT r.run_id, r.algorithm, r.variant, r.family, r.preset, r.split_scheme, r.transductive,
       r.query_batch, r.source, r.seed, r.wall_time_s, r.peak_memory_mb, r.meta_steps, r.device,
       avg(t.value) AS value, count(*) AS n_tasks
FROM grouped r JOIN tasks t ON t.run_id = r.run_id AND t.source = r.source
WHERE t.split = 'test' AND t.metric = $metric
GROUP BY ALL ORDER BY r.algorithm, r.variant, r.preset, r.seed, r.run_id, r.source
"""

FACETS = f"""
WITH {_RUNS}, {_FINISHED}
SELECT list(DISTINCT family ORDER BY family) AS families,
       list(DISTINCT preset ORDER BY preset) AS presets,
       list(DISTINCT split_scheme ORDER BY split_scheme) AS split_schemes,
       mode(split_scheme) AS main_split_scheme,
       list(DISTINCT variant ORDER BY variant) AS variants,
       list(DISTINCT coalesce(transductive, false) ORDER BY coalesce(transductive, false)) AS transductive
FROM finished
"""

# Every suite's newest finished version, its primary metric and its most common split scheme;
# then one mean per (suite, entry, seed) over the test tasks of the primary metric (tasks whose
# value is not finite, a test-time divergence, are left out, as in the leaderboard, which counts them).
RUN_SCORES = f"""
WITH {_RUNS}, {_TASKS}, {_ALL_FINISHED},
main AS (
    SELECT suite, mode(primary_metric) AS metric, mode(split_scheme) AS split_scheme
    FROM sel GROUP BY suite
)
SELECT s.suite, s.algorithm, s.variant, any_value(s.family) AS family, s.preset, s.transductive,
       s.query_batch, s.source, s.seed, m.metric, avg(t.value) FILTER (WHERE isfinite(t.value)) AS value,
       count(*) FILTER (WHERE isfinite(t.value)) AS n_tasks
FROM sel s JOIN main m ON m.suite = s.suite AND m.split_scheme = s.split_scheme
JOIN tasks t ON t.run_id = s.run_id AND t.source = s.source AND t.metric = m.metric AND t.split = 'test'
GROUP BY s.suite, s.algorithm, s.variant, s.preset, s.transductive, s.query_batch, s.source, s.seed, m.metric
ORDER BY s.suite, s.algorithm, s.variant, s.preset, s.seed, s.source
"""

CURVE_METRICS = f"""
WITH {_RUNS}, {_CURVES}, {_NEWEST}
SELECT DISTINCT c.split, c.metric FROM newest r JOIN curves c ON c.run_id = r.run_id AND c.source = r.source
ORDER BY c.split DESC, c.metric
"""

# Mean and spread across seeds at each step; wall time is the seeds' mean at that step. Runs
# whose status is in $excluded (failed, diverged) are left out: a diverged loss would swamp the mean.
CURVE_SUMMARY = f"""
WITH {_RUNS}, {_CURVES}, {_NEWEST},
points AS (  -- one value per (run, step): duplicate rows of a point are averaged
    SELECT r.algorithm, r.variant, r.family, r.preset, r.split_scheme, r.transductive, r.query_batch,
           r.source, r.seed, r.run_id, c.step, avg(c.wall_time_s) AS wall_time_s, avg(c.value) AS value
    FROM newest r JOIN curves c ON c.run_id = r.run_id AND c.source = r.source
    WHERE c.metric = $metric AND c.split = $split AND NOT list_contains($excluded, r.status)
    GROUP BY ALL
)
SELECT algorithm, variant, any_value(family) AS family, preset, split_scheme, transductive, query_batch,
       source, step, avg(wall_time_s) AS wall_time_s, avg(value) AS mean,
       stddev_samp(value) AS sd, count(*) AS n_seeds
FROM points
GROUP BY algorithm, variant, preset, split_scheme, transductive, query_batch, source, step
ORDER BY algorithm, variant, preset, split_scheme, transductive, query_batch, source, step
"""

# The run columns attached to each curve point / task value (``query._RUN_KEYS``).
_RUN_COLUMNS = """r.run_id, r.algorithm, r.variant, r.family, r.preset, r.seed, r.status, r.suite_version,
       r.split_scheme, r.transductive, r.query_batch, r.source"""

CURVES = f"""
WITH {_RUNS}, {_CURVES}, {_NEWEST}
SELECT {_RUN_COLUMNS},
       c.step, c.wall_time_s, c.split, c.metric, c.value
FROM newest r JOIN curves c ON c.run_id = r.run_id AND c.source = r.source
WHERE c.metric = $metric AND c.split = $split
ORDER BY r.algorithm, r.variant, r.preset, r.seed, r.run_id, r.source, c.step
"""

TASKS = f"""
WITH {_RUNS}, {_TASKS}, {_FINISHED}
SELECT {_RUN_COLUMNS},
       t.split, t.task_id, t.metric, t.value, t.descriptors
FROM finished r JOIN tasks t ON t.run_id = r.run_id AND t.source = r.source
WHERE t.split = 'test' AND t.metric = $metric
ORDER BY r.algorithm, r.variant, r.preset, r.seed, r.run_id, r.source, t.task_id
"""
