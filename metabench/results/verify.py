"""Check a results folder: every Parquet file, every checkpoint, and leftovers of killed writers.

``metabench results verify`` prints ``verify_results``; ``ResultsDB`` uses ``check_results_file``
(cached on the file's size, mtime and inode, so an unchanged file is read once per process) to
leave bad files out of every query and to list them for the dashboard's banner.

A results file is good when its footer parses, its whole-file sha256 (``writer.parquet_bytes``)
matches, every page's CRC matches on a full read, its columns have the table's names and types,
its values are valid (statuses, splits, required columns) and its run ids are safe folder names.
A file of an older results schema version may lack the columns that have a default
(``schema.LEGACY_DEFAULTS``, e.g. ``runs.variant``); it is good, and readers fill them in.
Truncated, zero-byte and bit-flipped files all fail one of these. A checkpoint is good when its
bytes match the sha256 beside it. Nothing here imports torch or unpickles anything.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from metabench.errors import MetabenchError
from metabench.fsutil import is_temporary
from metabench.results.schema import GLOBS, LEGACY_DEFAULTS, SCHEMA_VERSION, SCHEMAS

Severity = Literal["bad", "note"]


@dataclass(frozen=True)
class Problem:
    """One file that is not as it should be: what is wrong and what to do about it."""

    path: Path
    what: str
    action: str
    severity: Severity = "bad"

    def __str__(self) -> str:
        return f"{self.path}: {self.what}. {self.action}"


@dataclass
class VerifyReport:
    results_dir: Path
    checked: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def bad(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "bad"]

    @property
    def ok(self) -> bool:
        return not self.bad


def _redo(path: Path, results_dir: Path | None = None) -> str:
    """The action for a bad results file: redo its cell."""
    folder = path.parent
    where = f" (inside {results_dir})" if results_dir else ""
    return (f"Queries skip it. Delete the run folder {folder}{where} and run the same `metabench run` "
            "command again to redo that cell")


def check_results_file(path: str | os.PathLike, table: str) -> Problem | None:
    """Read ``path`` fully and check it as a ``table`` file; None when it is good."""
    from metabench.results.writer import _check_values, file_checksum_ok, schema_version

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Problem(path, f"cannot be read ({exc.strerror or exc})",
                       "Check its permissions; queries skip it until it can be read")
    if not data:
        return Problem(path, "is empty (0 bytes): its write never completed or the disk lost it",
                       _redo(path))
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        whole = file_checksum_ok(data, pf.metadata.metadata)
        if whole is False:
            return Problem(path, "is corrupted: its whole-file sha256 does not match its bytes "
                                 "(a bit changed on disk or the file was cut short)", _redo(path))
        arrow = pf.read()
        version = schema_version(pf.metadata.metadata)
    except (OSError, pa.ArrowException, ValueError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Problem(path, f"is corrupted or truncated: it cannot be read as Parquet ({first})",
                       _redo(path))
    problem = _check_schema(path, arrow, table)
    if problem:
        return problem
    try:
        _check_values(arrow, table)
    except MetabenchError as exc:
        return Problem(path, f"holds invalid values: {exc}", _redo(path))
    if version > SCHEMA_VERSION:
        return Problem(path, f"was written by a newer metabench (results schema version {version}; this "
                             f"one reads up to {SCHEMA_VERSION}); the columns this version knows were verified",
                       "Nothing to do; upgrade metabench to see what the newer columns hold", severity="note")
    if whole is None:
        return Problem(path, "has no whole-file checksum (written by an older metabench); its pages "
                             "and schema were verified", "Nothing to do; rerun the cell for a fully "
                             "checksummed file", severity="note")
    return None


def _check_schema(path: Path, arrow: pa.Table, table: str) -> Problem | None:
    expected = SCHEMAS[table]
    got = {f.name: f.type for f in arrow.schema}
    defaults = LEGACY_DEFAULTS.get(table, {})  # an older schema version's file lacks these: fine
    missing = [n for n in expected.names if n not in got and n not in defaults]
    wrong = [f"{f.name} is {got[f.name]}, expected {f.type}" for f in expected
             if f.name in got and got[f.name] != f.type]
    if not missing and not wrong:
        return None
    version = ""
    if "metabench_version" in got and arrow.num_rows:
        version = f" (it says metabench {arrow.column('metabench_version')[0].as_py()})"
    parts = ([f"column(s) {', '.join(missing)} missing"] if missing else []) + wrong
    return Problem(
        path,
        f"is not a {table} table of this metabench version{version}: {'; '.join(parts)}",
        f"Queries skip it. Read it with the metabench version that wrote it, or delete the run folder "
        f"{path.parent} and run the same `metabench run` command again to redo that cell",
    )


# -- the cached check the query layer uses ------------------------------------------------------

_cache: dict[tuple[str, str], tuple[tuple[int, int, int, int], Problem | None]] = {}
_cache_lock = threading.Lock()


def check_results_file_cached(path: str | os.PathLike, table: str) -> Problem | None:
    """``check_results_file``, remembered per (path, table) while size, mtime and inode stay."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        return Problem(path, f"cannot be read ({exc.strerror or exc})", "It may have just been replaced; retry")
    key, stamp = (str(path), table), (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    with _cache_lock:
        hit = _cache.get(key)
    if hit and hit[0] == stamp:
        return hit[1]
    problem = check_results_file(path, table)
    with _cache_lock:
        _cache[key] = (stamp, problem)
    return problem


# -- checkpoints and leftovers -----------------------------------------------------------------


def check_checkpoint(path: str | os.PathLike) -> Problem | None:
    """A checkpoint is good when its bytes match the sha256 written beside it."""
    path = Path(path)
    sidecar = path.with_suffix(".sha256")
    action = ("Harmless: resuming skips it and falls back to the previous checkpoint (or restarts the "
              "cell); delete it to silence this")
    try:
        expected = sidecar.read_text().strip()
    except FileNotFoundError:
        return Problem(path, f"has no checksum file {sidecar.name}, so it cannot be trusted", action)
    except OSError as exc:
        return Problem(path, f"its checksum file cannot be read ({exc.strerror or exc})", action)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return Problem(path, f"cannot be read ({exc.strerror or exc})", action)
    if digest != expected:
        return Problem(path, "is corrupted: its sha256 does not match the checksum file "
                             "(truncated, bit-flipped or overwritten)", action)
    return None


def verify_results(results_dir: str | os.PathLike, *, clean: bool = False) -> VerifyReport:
    """Check every results file and checkpoint under ``results_dir`` and list leftovers.

    With ``clean``, temporary files whose writer is no longer running (on this machine) and
    checksum files without their checkpoint are deleted instead of listed.
    """
    from metabench.fsutil import _writer_alive

    root = Path(results_dir)
    if not root.is_dir():
        raise MetabenchError(f"no results folder at {root}; pass --results-dir DIR")
    if clean:  # checking the reference set is fine; deleting anything under it is not
        from metabench.reference import refuse_if_reference

        refuse_if_reference(root, "delete files under", holding=True)
    report = VerifyReport(root)
    for table, pattern in GLOBS.items():
        files = sorted(root.glob(pattern))
        report.checked[table] = len(files)
        for path in files:
            problem = check_results_file(path, table)
            if problem:
                report.problems.append(problem)
    ckpts = sorted(root.glob("**/checkpoints/ckpt-*.pt"))
    report.checked["checkpoints"] = len(ckpts)
    for path in ckpts:
        problem = check_checkpoint(path)
        if problem:
            report.problems.append(problem)
    for sidecar in sorted(root.glob("**/checkpoints/ckpt-*.sha256")):
        if not sidecar.with_suffix(".pt").exists():
            if clean:
                sidecar.unlink(missing_ok=True)
            else:
                report.problems.append(Problem(sidecar, "is a checksum file without its checkpoint (a "
                                               "checkpoint write or clean-up was interrupted)",
                                               "Harmless; delete it or run verify with --clean", "note"))
    for path in sorted(p for p in root.rglob("*") if is_temporary(p) and p.is_file()):
        alive = _writer_alive(path)
        if clean and not alive:
            path.unlink(missing_ok=True)
            continue
        what = ("is a temporary file of a write in progress" if alive else
                "is a temporary file left by a writer that was killed mid-write")
        report.problems.append(Problem(path, what, "Harmless (never read); delete it or run verify with "
                                       "--clean" if not alive else "Leave it; its writer is running",
                                       "note" if alive else "bad"))
    return report


def format_report(report: VerifyReport) -> str:
    c = report.checked
    n = sum(v for k, v in c.items() if k != "checkpoints")
    lines = [f"checked {n} results file(s) ({c.get('runs', 0)} runs, {c.get('curves', 0)} curves, "
             f"{c.get('tasks', 0)} tasks) and {c.get('checkpoints', 0)} checkpoint(s) in {report.results_dir}"]
    for p in report.problems:
        lines.append(f"{'BAD ' if p.severity == 'bad' else 'note'} {p}")
    bad = len(report.bad)
    lines.append(f"{bad} bad file(s)." if bad else "all good.")
    return "\n".join(lines)
