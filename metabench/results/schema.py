"""The three results tables, each declared once as a pyarrow schema.

Tables are long and tidy (one measured value per row) so that one DuckDB glob reads a whole
table across every run folder:

    RESULTS/<run_id>/runs.parquet                 one row, rewritten atomically as status changes
    RESULTS/<run_id>/curves-<8-digit step>.parquet  parts, appended as training goes
    RESULTS/<run_id>/tasks.parquet                one row per (test task, metric)

Each field's description is kept in the field metadata under ``b"doc"`` as well as being the
comment next to it, so tools (and the dashboard) can show it.

Schema versions (``SCHEMA_VERSION``, stored by the writer in every file's footer metadata under
``metabench.schema_version``; a file without it is version 1):

1. the first release.
2. ``runs`` gains ``variant``, ``overrides``, ``origin`` and ``contract_version`` (issue 20: a
   variant, an algorithm plus its overrides of the preset, is its own leaderboard entry), and
   ``tasks_fingerprint`` (issue 21: which fixed test tasks the rows are on). Files of version 1
   are still read: their missing columns take ``LEGACY_DEFAULTS`` (variant = algorithm,
   overrides = '{}', origin = 'built-in', contract_version = null, tasks_fingerprint = null),
   which is exactly what those runs were: the preset of a built-in algorithm, on tasks nobody
   fingerprinted.

New columns go at the end of a table, so readers that address columns by position keep working.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa

from metabench.errors import ConfigError

TableName = Literal["runs", "curves", "tasks"]

#: Values the ``runs.status`` column may take.
STATUSES = ("running", "finished", "failed", "cancelled", "diverged")
#: Values the ``split`` column may take, per table (meta-splits, not support/query).
SPLITS = {"curves": ("train", "val"), "tasks": ("test",)}

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


def _field(name: str, type_: pa.DataType, doc: str, *, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


RUNS = pa.schema(
    [
        _field("run_id", pa.string(), "Unique id of the run; also the name of its folder."),
        _field("job_id", pa.string(), "Job that launched the run; null when run directly.", nullable=True),
        _field("suite", pa.string(), "Suite id, e.g. 'omniglot-5w1s'."),
        _field("suite_version", pa.int32(), "Suite version; the leaderboard never mixes versions."),
        _field("split_scheme", pa.string(), "Class split used, e.g. 'vinyals'; '-' when not applicable."),
        _field(
            "algorithm",
            pa.string(),
            "The algorithm as named: a registered name, e.g. 'maml', or a plugin's import path "
            "'pkg.mod:Class'; without its overrides (see variant).",
        ),
        _field("family", pa.string(), "Algorithm family, e.g. 'optimization', 'metric', 'model'."),
        _field("seed", pa.int32(), "Seed of the run; runs differing only by seed are replicates."),
        _field("preset", pa.string(), "Preset name, e.g. 'smoke', 'quick', 'paper'."),
        _field("status", pa.string(), "One of " + ", ".join(STATUSES) + "."),
        _field("device", pa.string(), "Device the run used, e.g. 'cpu' or 'cuda:0 (NVIDIA H100)'."),
        _field("started_at", UTC_TIMESTAMP, "When the run started (UTC)."),
        _field("finished_at", UTC_TIMESTAMP, "When the run ended (UTC); null while running.", nullable=True),
        _field("wall_time_s", pa.float64(), "Wall-clock seconds spent so far (all attempts)."),
        _field("peak_memory_mb", pa.float64(), "Peak memory of the cell's process in MiB: max RSS on CPU (getrusage), max allocated on CUDA; NaN when unknown."),
        _field("meta_steps", pa.int64(), "Meta-steps completed."),
        _field("primary_metric", pa.string(), "The suite's headline test metric, e.g. 'accuracy'."),
        _field("transductive", pa.bool_(), "Whether test queries are processed together (transductive)."),
        _field(
            "query_batch",
            pa.string(),
            "How test queries pass through BatchNorm, e.g. 'n_way (one per class)' or 'n/a'.",
        ),
        _field("n_test_tasks", pa.int32(), "Number of fixed test tasks evaluated."),
        _field("config", pa.string(), "JSON of the fully resolved run configuration."),
        _field("metabench_version", pa.string(), "metabench version that produced the run."),
        _field("torch_version", pa.string(), "torch version that produced the run."),
        _field("error", pa.string(), "One-sentence error for failed/diverged runs; else null.", nullable=True),
        # -- schema version 2 (issue 20) --
        _field(
            "variant",
            pa.string(),
            "Leaderboard entry the run is a seed of: the algorithm plus its overrides of the preset, "
            "e.g. 'maml[inner_steps=3]'; the plain algorithm name when there are none.",
        ),
        _field(
            "overrides",
            pa.string(),
            "JSON of the fields that differ from the preset: {\"config\": {...}, \"loop\": {...}}; '{}' when none.",
        ),
        _field(
            "origin",
            pa.string(),
            "Where the algorithm came from: 'built-in', 'PACKAGE VERSION' (an entry point) or "
            "'module pkg.mod:Class'.",
        ),
        _field(
            "contract_version",
            pa.int32(),
            "Algorithm contract version the class was written against; null for runs written before it was recorded.",
            nullable=True,
        ),
        _field(
            "tasks_fingerprint",
            pa.string(),
            "sha256 fingerprint of the fixed test tasks the run was evaluated on "
            "(metabench.suites.fingerprint); runs are paired only when it agrees; null until the "
            "test phase and for runs written before it was recorded.",
            nullable=True,
        ),
    ]
)

CURVES = pa.schema(
    [
        _field("run_id", pa.string(), "Run the point belongs to (joins runs.run_id)."),
        _field("step", pa.int64(), "Meta-step at which the value was measured."),
        _field("wall_time_s", pa.float64(), "Wall-clock seconds since the run started."),
        _field("split", pa.string(), "Meta-split measured: 'train' or 'val'."),
        _field("metric", pa.string(), "Metric name, base name optionally followed by '@k'."),
        _field("value", pa.float64(), "Measured value (NaN allowed, e.g. for a diverged loss)."),
    ]
)

TASKS = pa.schema(
    [
        _field("run_id", pa.string(), "Run the value belongs to (joins runs.run_id)."),
        _field("split", pa.string(), "Meta-split measured: always 'test' for now."),
        _field("task_id", pa.int32(), "Index into the suite's fixed test tasks; same id = same task."),
        _field("metric", pa.string(), "Metric name, base name optionally followed by '@k'."),
        _field("value", pa.float64(), "Value of the metric on this task (averaged over its queries)."),
        _field("descriptors", pa.string(), "JSON object of the task's descriptors (alphabet, amplitude...)."),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"runs": RUNS, "curves": CURVES, "tasks": TASKS}

#: Version of the results tables this metabench writes (see the module docstring for the history).
SCHEMA_VERSION = 2
#: Footer key-value metadata key holding a file's schema version (absent = version 1).
SCHEMA_VERSION_KEY = "metabench.schema_version"

#: Columns that files of an older schema version may lack, per table, and the value they take
#: then: ``("column", name)`` = the value of another column of the same row, ``("value", v)`` = a
#: constant. A reader fills them in (``writer.read_table``, the DuckDB loading in ``query``), and
#: a writer fills them in for rows that omit them (rows built by an older caller).
LEGACY_DEFAULTS: dict[str, dict[str, tuple[str, object]]] = {
    "runs": {
        "variant": ("column", "algorithm"),
        "overrides": ("value", "{}"),
        "origin": ("value", "built-in"),
        "contract_version": ("value", None),
        "tasks_fingerprint": ("value", None),
    },
    "curves": {},
    "tasks": {},
}

#: File-name globs (relative to the results folder) that select each table's files. Writers use
#: hidden temporary names (leading dot), which these never match.
GLOBS: dict[str, str] = {
    "runs": "**/runs.parquet",
    "curves": "**/curves-*.parquet",
    "tasks": "**/tasks*.parquet",
}


def schema_for(table: str) -> pa.Schema:
    """The schema of ``table`` ('runs', 'curves' or 'tasks')."""
    try:
        return SCHEMAS[table]
    except KeyError:
        raise ConfigError(
            f"Unknown results table {table!r}; expected one of {', '.join(SCHEMAS)}."
        ) from None


def curves_file_name(step: int) -> str:
    """Name of the curves part that starts at meta-step ``step``: ``curves-00000100.parquet``."""
    return f"curves-{step:08d}.parquet"
