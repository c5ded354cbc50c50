"""Jobs: a validated RunSpec run cell by cell, each cell in its own worker process.

A job has a folder `RESULTS/jobs/<job_id>/` with its spec and status.  Cells already finished
(same run id) are skipped, so running the same command again resumes an interrupted grid.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from metabench.engine.cell import cell_status
from metabench.fsutil import atomic_write_json, read_json
from metabench.errors import DataUnavailable, ResultsError
from metabench.spec import Cell, RunSpec

# glibc hands every freed block over 32 MiB back to the kernel, so each meta-step page-faults its
# activations back in; keeping them made the MAML loop 1.26x faster here (../shared/perf/RESULTS.md).
MALLOC_TUNING = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
FINAL = ("finished", "diverged")


@dataclass
class JobReport:
    job_id: str
    finished: list[str] = field(default_factory=list)
    skipped_done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    incompatible: list[tuple[str, str, str]] = field(default_factory=list)
    unavailable: list[tuple[str, str]] = field(default_factory=list)


def check_results_dir(results_dir: Path) -> Path:
    """Create the results folder if needed and prove it is writable (ResultsError otherwise)."""
    results_dir = Path(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        probe = results_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ResultsError(f"cannot write to the results folder {results_dir} ({exc.strerror}); "
                           f"choose another with --results-dir") from None
    return results_dir


def check_data(suites: list[str], data_root, allow_download: bool, progress: bool) -> dict[str, str]:
    """suite id -> one-sentence reason, for suites whose data is missing and cannot be fetched.
    Decodes (and caches) each dataset once here, so worker processes start fast."""
    from metabench.suites import make_suite

    missing: dict[str, str] = {}
    checked: dict[str, str | None] = {}
    for s in suites:
        suite = make_suite(s)
        why = suite.unavailable()   # e.g. an optional extra that is not installed
        if why:
            missing[s] = why
            continue
        need = suite.needs_data
        if need is None:
            continue
        # One check per dataset and suite class (omniglot-lake-runs also needs all_runs.zip).
        key = f"{need}/{type(suite).__name__}"
        if key not in checked:
            checked[key] = None
            try:
                if type(suite).__name__ == "Omniglot":
                    from metabench.suites.omniglot_data import load_omniglot

                    load_omniglot(data_root, allow_download=allow_download, progress=progress)
                else:
                    suite.prepare(data_root, "cpu", allow_download=allow_download, progress=progress)
            except DataUnavailable as exc:
                checked[key] = str(exc)
        if checked[key]:
            missing[s] = checked[key]
    return missing


def worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    if sys.platform.startswith("linux"):
        env.setdefault("GLIBC_TUNABLES", MALLOC_TUNING)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    # OpenMP threads that spin at barriers collapse when another process holds a core: a MAML
    # step on this 2-core machine went from 0.46 s to 4.5 s with one busy neighbour; sleeping
    # waiters keep it at 0.46 s (measured with benchmarks-style timing, see the issue-2 note).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_job(spec: RunSpec, results_dir: Path, data_root=None, *, allow_download: bool = True,
            progress: bool = True, say: Callable[[str], None] = print) -> JobReport:
    results_dir = check_results_dir(Path(results_dir))
    cells, incompatible = spec.plan()
    job_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    report = JobReport(job_id, incompatible=incompatible)
    for s, a, reason in incompatible:
        say(f"skip {a} on {s}: {reason}")
    missing = check_data(sorted({c.suite for c in cells}), data_root, allow_download, progress)
    for s, reason in missing.items():
        say(f"skip {s}: {reason}")
        report.unavailable.append((s, reason))
    cells = [c for c in cells if c.suite not in missing]

    job_dir = results_dir / "jobs" / job_id
    atomic_write_json(job_dir / "spec.json", {"spec": asdict(spec), "cells": [c.to_json() for c in cells]})
    status_path = job_dir / "status.json"
    atomic_write_json(status_path, {"status": "running", "pid": os.getpid(), "total": len(cells), "done": 0})

    threads = max(1, os.cpu_count() or 1)
    bar = _bar(len(cells), "grid", progress, position=0)
    try:
        for cell in cells:
            if cell_status(results_dir, cell.run_id) in FINAL:
                report.skipped_done.append(cell.run_id)
                say(f"{cell.run_id}: already finished (delete its folder to run it again)")
                bar.update(1)
                continue
            status, err = _run_cell_process(cell, results_dir, data_root, job_id, threads, progress)
            if status == "finished":
                report.finished.append(cell.run_id)
            elif status == "diverged":
                report.diverged.append(cell.run_id)
            else:
                report.failed.append((cell.run_id, err))
                say(f"{cell.run_id}: failed: {err} (details: {results_dir / cell.run_id / 'error.log'})")
            bar.update(1)
            atomic_write_json(status_path, {"status": "running", "pid": os.getpid(), "total": len(cells),
                                            "done": bar.n})
    except KeyboardInterrupt:
        atomic_write_json(status_path, {"status": "interrupted", "total": len(cells), "done": bar.n})
        raise
    finally:
        bar.close()
    atomic_write_json(status_path, {"status": "failed" if report.failed else "finished",
                                    "total": len(cells), "done": len(cells)})
    return report


def _bar(total: int, desc: str, enabled: bool, position: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, position=position, leave=position == 0,
                dynamic_ncols=True, file=sys.stderr)


def _run_cell_process(cell: Cell, results_dir: Path, data_root, job_id: str, threads: int,
                      progress: bool) -> tuple[str, str]:
    cmd = [sys.executable, "-m", "metabench.engine.worker", "--cell", json.dumps(cell.to_json()),
           "--results-dir", str(results_dir), "--job-id", job_id, "--threads", str(threads)]
    if data_root is not None:
        cmd += ["--data-dir", str(data_root)]
    progress_path = results_dir / cell.run_id / "progress.json"
    bar = _bar(1, cell.run_id, progress, position=1)
    # Argument list, never a shell string: nothing user-typed reaches a shell.
    proc = subprocess.Popen(cmd, env=worker_env(threads), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        while proc.poll() is None:
            time.sleep(0.5)
            _update_bar(bar, read_json(progress_path))
        _update_bar(bar, read_json(progress_path))
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=30)
        raise
    finally:
        bar.close()
    stderr = (proc.stderr.read() if proc.stderr else "").strip()
    status = cell_status(results_dir, cell.run_id) or "failed"
    err = stderr.splitlines()[-1].removeprefix("error: ") if stderr else f"worker exited with {proc.returncode}"
    return status, err


def _update_bar(bar, info) -> None:
    if not info or bar.disable:
        return
    if bar.total != info.get("total"):
        bar.total = info.get("total") or 1
    bar.n = info.get("step", 0)
    shown = {k: v for k, v in (info.get("metrics") or {}).items()}
    shown.update({f"val_{k}": v for k, v in (info.get("val") or {}).items()
                  if k in ("accuracy", "mse")})
    bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items() if isinstance(v, (int, float))}, refresh=False)
    bar.set_description(f"{info.get('run_id', '')} [{info.get('phase')}]", refresh=False)
    bar.refresh()
