"""The reference result set that ships with metabench (issue 21).

`reference_dir()` is a folder laid out exactly like a results folder (one `<run_id>/` per cell
with `runs.parquet`, `curves-*.parquet` and `tasks.parquet`; no checkpoints), produced by
metabench itself and read-only to users.  The query layer reads it beside the user's own
results folder; every row from it is marked `source = "reference"`.

- ``active_reference_dir()``: the folder the query layer reads by default: ``reference_dir()``,
  or ``$METABENCH_REFERENCE`` when set (a folder, or ``off`` for none; the tests set ``off`` so
  their fixture folders are read alone).
- ``refuse_if_reference(path, action)``: the guard every command that writes or deletes calls
  first; it refuses a folder inside (or holding) the reference set. Producing the set itself is
  the one exception: ``METABENCH_WRITE_REFERENCE=1``.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from metabench.errors import ConfigError

#: A folder to read as the reference set instead of the shipped one; "off" (or "none", "0") = none.
REFERENCE_VAR = "METABENCH_REFERENCE"
#: Set to 1 to allow writing into the reference set (only to produce the shipped set).
WRITE_VAR = "METABENCH_WRITE_REFERENCE"


def reference_dir() -> Path:
    """The shipped reference results folder (inside the installed package)."""
    return Path(str(resources.files("metabench.reference").joinpath("runs")))


def active_reference_dir() -> Path | None:
    """The reference folder the query layer reads by default: ``$METABENCH_REFERENCE`` when set
    (None for "off"), else ``reference_dir()``."""
    value = os.environ.get(REFERENCE_VAR, "").strip()
    if not value:
        return reference_dir()
    if value.lower() in ("off", "none", "0", "false"):
        return None
    return Path(value).expanduser().absolute()


def _protected() -> list[Path]:
    dirs = [reference_dir(), active_reference_dir()]
    return [Path(os.path.realpath(d)) for d in dict.fromkeys(dirs) if d is not None]


def is_reference(path: str | os.PathLike, holding: bool = False) -> bool:
    """Whether ``path`` is a reference folder or inside one; with ``holding``, also whether it
    is a folder that holds one (so a recursive clean-up under it would reach the reference set)."""
    p = Path(os.path.realpath(Path(path).expanduser().absolute()))
    return any(p == ref or ref in p.parents or (holding and p in ref.parents) for ref in _protected())


def refuse_if_reference(path: str | os.PathLike, action: str, holding: bool = False) -> None:
    """ConfigError when ``path`` is the read-only reference set or inside it (with ``holding``:
    or holds it), saying what to do instead; ``action`` names what was refused, e.g. 'run into'.
    ``METABENCH_WRITE_REFERENCE=1`` lifts the guard (to produce the shipped set)."""
    if os.environ.get(WRITE_VAR) == "1" or not is_reference(path, holding):
        return
    raise ConfigError(
        f"Refusing to {action} {path}: it is (or holds) metabench's reference result set, which is "
        "read-only. Use your own results folder (--results-dir results, the default); the reference "
        "runs are shown beside yours anyway."
    )
