"""The reference result set that ships with metabench (issue 21).

`reference_dir()` is a folder laid out exactly like a results folder (one `<run_id>/` per cell
with `runs.parquet`, `curves-*.parquet` and `tasks.parquet`; no checkpoints), produced by
metabench itself and read-only to users.  The query layer reads it beside the user's own
results folder; every row from it is marked `source = "reference"`.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def reference_dir() -> Path:
    """The shipped reference results folder (inside the installed package)."""
    return Path(str(resources.files("metabench.reference").joinpath("runs")))
