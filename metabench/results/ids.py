"""Names that become paths: run ids and export file names, checked or cleaned in one place.

A run id is also the name of its folder under the results root, so anything that turns an id
into a path (queries, ``metabench results verify``, exports, the engine) goes through
``run_dir``: an id must be a plain name (letters, digits and ``._+=@-``, no ``..``, not
starting with a dot, at most 200 characters), so ``../../etc`` or ``/etc/passwd`` is refused
before any file is touched.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from metabench.errors import ConfigError

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]{0,199}")


def check_run_id(run_id: object) -> str:
    """``run_id`` if it is a safe run id, else ConfigError saying what is allowed."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ConfigError(
            f"Invalid run id {run_id!r}: expected a folder name of letters, digits and ._+=@- "
            "(no '..', no '/', not starting with a dot, at most 200 characters), e.g. "
            "'sinusoid-5shot--maml--smoke--seed0'."
        )
    return run_id


def run_dir(results_dir: str | os.PathLike, run_id: object) -> Path:
    """The folder of run ``run_id`` inside ``results_dir`` (checked, never outside it)."""
    root = Path(results_dir).absolute()
    path = root / check_run_id(run_id)
    if path.parent != root:  # cannot happen for a checked id; a second guard costs nothing
        raise ConfigError(f"Run id {run_id!r} points outside the results folder {root}.")
    return path


def safe_file_name(stem: str, ext: str) -> str:
    """A file name for an export: ``stem`` with anything but letters, digits and ``._+=@-``
    replaced by ``_`` (leading dots and ``..`` removed, at most 120 characters) plus ``.ext``."""
    if not re.fullmatch(r"[a-z0-9]{1,8}", ext):
        raise ConfigError(f"Invalid export extension {ext!r}: expected e.g. 'csv' or 'tex'.")
    clean = re.sub(r"[^A-Za-z0-9._+=@-]+", "_", str(stem)).replace("..", "_").lstrip("._")[:120]
    return f"{clean or 'export'}.{ext}"
