"""`metabench reference add RESULTS_DIR [RUN_ID...]`: copy finished, verified runs into the shipped set.

A run is added only when it is *finished* and not a smoke run, every one of its results files passes the checks of
`metabench results verify`, it came from a built-in algorithm, its stored configuration is what
this metabench resolves the same cell to (not *stale*: ``config_differences``), and its fixed
test tasks' fingerprint equals the one this metabench computes for the suite now. Only its Parquet
tables are copied (``runs.parquet``, ``curves-*.parquet``, ``tasks.parquet``), never checkpoints,
progress or log files, and its curve parts (one per flush during training) become one file; the
copy is made in a temporary folder and renamed into place, so the shipped folder holds a run whole
or not at all. The source folder is only read.

Runs recorded before fingerprints existed lack ``tasks_fingerprint``: it is computed standalone
(``standalone_fingerprint``: the suite prepared on the CPU, the run's number of test tasks, the
engine's evaluation batch size) and written into the *copy's* ``runs.parquet``. The standalone
value equals what the engine records while it evaluates (tested on a smoke run).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from metabench.errors import ConfigError
from metabench.results.ids import check_run_id
from metabench.results.writer import read_table, write_table

#: The tables that ship; everything else in a run folder (checkpoints, progress, logs) stays behind.
SHIPPED = ("runs.parquet", "tasks.parquet", "curves-*.parquet")


@dataclasses.dataclass(frozen=True)
class Outcome:
    run_id: str
    action: str
    """added | replaced | unchanged | running | refused"""
    message: str = ""

    def __str__(self) -> str:
        return f"{self.action:<9} {self.run_id}" + (f": {self.message}" if self.message else "")


def shipped_files(run_dir: Path) -> list[Path]:
    """The files of a run folder that ship, sorted."""
    return sorted(p for pattern in SHIPPED for p in Path(run_dir).glob(pattern) if p.is_file())


def _runner(row: dict[str, Any], data_root=None):
    from metabench.engine.cell import CellRunner
    from metabench.engine.reproduce import cell_of

    return CellRunner(cell_of(row, "cpu"), Path(tempfile.gettempdir()), data_root, allow_download=False)


def standalone_fingerprint(row: dict[str, Any], data_root=None, cache: dict | None = None) -> str:
    """The fixed test tasks' fingerprint of a stored run's cell, computed without running it: the
    suite prepared on the CPU, hashed over ``row['n_test_tasks']`` tasks in the engine's
    evaluation batches (the value does not depend on the batch size; the same batches keep it
    obviously the engine's). ``cache`` keys on (suite, version, n)."""
    from metabench.engine.cell import EVAL_BATCH
    from metabench.suites.fingerprint import fingerprint

    key = (str(row["suite"]), int(row["suite_version"]), int(row["n_test_tasks"]))
    if cache is not None and key in cache:
        return cache[key]
    suite = _runner(row, data_root).suite
    suite.prepare(data_root, "cpu", allow_download=False, progress=False)
    value = fingerprint(suite, key[2], batch_size=getattr(suite, "eval_batch_size", EVAL_BATCH))
    if cache is not None:
        cache[key] = value
    return value


def check_run(run_dir: Path, data_root=None, cache: dict | None = None,
              allow_smoke: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """(the run's ``runs`` row, None) when it may ship, else (row or None, one sentence why not).
    The row's ``tasks_fingerprint`` is filled in when the run recorded none. ``allow_smoke``: for
    tests, which ship smoke runs into a scratch folder."""
    from metabench.algorithms import ALGORITHMS
    from metabench.results.verify import check_results_file

    run_dir = Path(run_dir)
    if not (run_dir / "runs.parquet").exists():
        return None, f"{run_dir} holds no runs.parquet: not a run folder"
    for path in shipped_files(run_dir):
        table = "curves" if path.name.startswith("curves-") else path.stem
        problem = check_results_file(path, table)
        if problem is not None:
            return None, f"{path.name} is bad ({problem.what}); redo the cell"
    row = read_table(run_dir / "runs.parquet", "runs").iloc[0].to_dict()
    if row["status"] != "finished":
        return row, (f"it is {row['status']}, not finished; only finished runs ship"
                     + (f" ({row['error']})" if isinstance(row.get("error"), str) and row["error"] else ""))
    if not (run_dir / "tasks.parquet").exists():
        return row, "it is marked finished but has no tasks.parquet; redo the cell"
    if row["preset"] == "smoke" and not allow_smoke:
        return row, "it is a smoke run (a few steps, to check that things run); the set holds quick or paper runs"
    if str(row.get("origin") or "built-in") != "built-in" or row["algorithm"] not in ALGORITHMS.names() \
            or ALGORITHMS.origin(row["algorithm"]) != "built-in":
        return row, f"its algorithm {row['algorithm']!r} ({row.get('origin')}) is not a built-in; the set holds built-ins only"
    try:
        runner = _runner(row, data_root)
    except ConfigError as exc:
        return row, f"this metabench cannot rebuild its cell: {exc}"
    differ = runner.config_differences(json.loads(row["config"]))
    if differ:
        return row, (f"it is stale: its stored configuration differs from what {row['variant']} "
                     f"({row['preset']} preset) resolves to now ({', '.join(differ[:6])}); rerun the cell")
    try:
        now = standalone_fingerprint(row, data_root, cache)
    except Exception as exc:   # data missing, suite cannot be prepared: say so, do not ship blind
        return row, f"its suite's fixed test tasks could not be fingerprinted here ({type(exc).__name__}: {exc})"
    stored = row.get("tasks_fingerprint")
    if isinstance(stored, str) and stored:
        if stored != now:
            return row, (f"it is stale: its fixed test tasks' fingerprint ({stored[:28]}...) differs from this "
                         f"metabench's for {row['suite']} v{row['suite_version']} ({now[:28]}...); rerun the cell")
    else:
        row["tasks_fingerprint"] = now   # backfilled: recorded before fingerprints existed
    return row, None


def _same_files(a: Path, b: Path) -> bool:
    fa, fb = shipped_files(a), shipped_files(b)
    return [p.name for p in fa] == [p.name for p in fb] and all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))


def merge_curves(parts: list[Path], path: Path) -> Path:
    """Write the rows of a run's curve parts (``curves-<step>.parquet``, one per flush while the
    run trained, in step order) as one curves file at ``path``: the queries read every
    ``curves-*.parquet`` of a run alike, so they see the same rows, from one file instead of
    dozens (the shipped set stays small in files as well as bytes)."""
    return write_table(pd.concat([read_table(p, "curves") for p in parts], ignore_index=True), path, "curves")


def copy_run(run_dir: Path, row: dict[str, Any], dest: Path) -> str:
    """Copy a checked run's shipped tables into ``dest/<run_id>`` (whole or not at all), with
    ``row`` (its fingerprint backfilled) as its runs.parquet and its curve parts merged into one
    file named after the last part; 'added', 'replaced' or 'unchanged'."""
    run_id = row["run_id"]
    check_run_id(run_id)
    target = Path(dest) / run_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=dest))
    try:
        files = shipped_files(run_dir)
        curves = [p for p in files if p.name.startswith("curves-")]
        for path in files:
            if path.name != "runs.parquet" and (path not in curves or len(curves) == 1):
                shutil.copyfile(path, tmp / path.name)
        if len(curves) > 1:
            merge_curves(curves, tmp / curves[-1].name)
        stored = read_table(run_dir / "runs.parquet", "runs").iloc[0].to_dict()
        if stored.get("tasks_fingerprint") == row["tasks_fingerprint"]:
            shutil.copyfile(run_dir / "runs.parquet", tmp / "runs.parquet")   # byte for byte
        else:
            write_table([row], tmp / "runs.parquet", "runs")
        tmp.chmod(0o755)   # mkdtemp's 0700 would hide a shipped run from other users of a checkout
        for path in tmp.iterdir():
            path.chmod(0o644)
        if target.exists():
            if _same_files(tmp, target):
                return "unchanged"
            old = Path(tempfile.mkdtemp(prefix=f".{run_id}.old.", dir=dest))
            target.rename(old / run_id)
            tmp.rename(target)
            shutil.rmtree(old)
            return "replaced"
        tmp.rename(target)
        return "added"
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def add_runs(results_dir: str | Path, run_ids: list[str] | None = None, dest: str | Path | None = None,
             data_root=None, say: Callable[[Outcome], None] | None = None, allow_smoke: bool = False) -> list[Outcome]:
    """Check and copy runs of ``results_dir`` (every run folder in it, or ``run_ids``) into
    ``dest`` (default: the shipped folder). Runs still running are reported as such (the manifest
    marks them running); every other refusal says why in one sentence."""
    from metabench.reference import reference_dir

    results_dir = Path(results_dir)
    dest = Path(dest) if dest is not None else reference_dir()
    if not results_dir.is_dir():
        raise ConfigError(f"no results folder at {results_dir}")
    if results_dir.resolve() == dest.resolve():
        raise ConfigError(f"{results_dir} is the reference folder itself; pass the results folder the runs are in")
    if run_ids:
        for r in run_ids:
            check_run_id(r)
            if not (results_dir / r).is_dir():
                raise ConfigError(f"no run {r!r} in {results_dir}")
        folders = [results_dir / r for r in run_ids]
    else:
        folders = sorted(p.parent for p in results_dir.glob("*/runs.parquet"))
    dest.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    outcomes = []
    for folder in folders:
        row, problem = check_run(folder, data_root, cache, allow_smoke)
        if problem is None:
            outcome = Outcome(folder.name, copy_run(folder, row, dest),
                              "tasks_fingerprint backfilled" if not _recorded_fingerprint(folder) else "")
        elif row is not None and row["status"] == "running":
            outcome = Outcome(folder.name, "running", "not finished yet; the manifest marks it running")
        else:
            outcome = Outcome(folder.name, "refused", problem)
        outcomes.append(outcome)
        if say:
            say(outcome)
    return outcomes


def _recorded_fingerprint(folder: Path) -> bool:
    value = read_table(folder / "runs.parquet", "runs")["tasks_fingerprint"].iloc[0]
    return isinstance(value, str) and bool(value)
