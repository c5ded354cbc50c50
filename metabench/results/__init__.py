"""Results: the Parquet tables the engine writes and everything that reads them.

No torch and no Streamlit here, so the CLI and the dashboard can import it cheaply.

- ``schema``: the runs / curves / tasks tables, declared once.
- ``metrics``: which way is better for each metric and how to format it.
- ``writer``: ``write_table`` (validated, atomic, checksummed) and ``read_table``.
- ``query``: ``ResultsDB``, DuckDB queries over a results folder (leaderboard, curves, tasks);
  built on ``store`` (the thread-safe in-memory mirror of the folder) and ``sql`` (the SQL text).
- ``stats``: confidence intervals, seed/task summaries, ranks and paired tests as pure functions.
- ``views``: the plain pandas behind the dashboard's views (run states, suite overview, smoothing,
  costs, A − B).
- ``export``: ``format_leaderboard`` as table, CSV or Markdown.
- ``fixtures``: ``write_fixture_results``, a small fake results folder for tests and demos
  (``write_variant_fixture``: the same plus variants of maml).
- ``variants``: how a run's overrides of its preset read in a leaderboard (``changes``).
"""

from metabench.results.export import format_leaderboard
from metabench.results.fixtures import write_fixture_results
from metabench.results.metrics import METRICS, direction, format_value
from metabench.results.query import LEADERBOARD_COLUMNS, ResultsDB
from metabench.results.schema import CURVES, RUNS, TASKS
from metabench.results.stats import mean_ci, seed_task_summary
from metabench.results.writer import read_table, write_table

__all__ = [
    "CURVES", "LEADERBOARD_COLUMNS", "METRICS", "RUNS", "TASKS", "ResultsDB", "direction",
    "format_leaderboard", "format_value", "mean_ci", "read_table", "seed_task_summary",
    "write_fixture_results", "write_table",
]  # fmt: skip
