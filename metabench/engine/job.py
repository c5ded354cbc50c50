"""Jobs: a validated RunSpec, stored under `RESULTS/jobs/<job_id>/`, run by an executor.

`create_job` validates the spec, plans its cells and writes the job folder (see
`metabench.engine.jobstore` for the layout). `execute_job` is the job process: it holds the job's
lock, runs every unfinished cell through an executor, and writes status.json (progress, ETA,
heartbeat) atomically every second. `metabench run` calls both in the foreground; `--detach`, the
Launch page and `metabench jobs resume` start `python -m metabench.engine.job` in its own session
instead, so the job outlives the terminal or browser tab that started it.

Executors: `local` runs one worker process per cell (`metabench.engine.worker`), at most `workers`
at once: on a machine with GPUs several per GPU when memory allows (`cells_per_gpu`; the cells are
dealt round-robin through CUDA_VISIBLE_DEVICES), on CPU chosen so that workers x torch threads =
cores (and `metabench.engine.schedule` hands freed cores to running cells). `ray` submits each cell as a Ray task
(`metabench.engine.ray_executor`). Either way a cell already finished (same run id) is skipped and
an unfinished one continues from its checkpoint, so resuming a job re-runs only what is missing.

Why one module of ~410 lines: it is a job's whole life, `create_job`'s checks and `execute_job`,
the job process from lock to last status write (schedule, executor, heartbeat, cancellation,
stale cells); its private helpers serve those two alone.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from metabench.engine.jobstore import (cell_status, existing_job_dir, identity, job_dir, new_job_id,
                                       read_spec, read_status, remove_stale_temporaries)
from metabench.engine.local_executor import LocalExecutor
from metabench.engine.schedule import expected_seconds
from metabench.engine.worker import BUSY, FINAL, NOT_STARTED
from metabench.errors import ConfigError, DataUnavailable, MetabenchError, ResultsError
from metabench.fsutil import atomic_write_json, read_json
from metabench.spec import Cell, RunSpec

STATUS_EVERY_S = 1.0


@dataclass
class JobReport:
    job_id: str
    finished: list[str] = field(default_factory=list)
    skipped_done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    incompatible: list[tuple[str, str, str]] = field(default_factory=list)
    unavailable: list[tuple[str, str]] = field(default_factory=list)


def check_results_dir(results_dir: Path) -> Path:
    """Create the results folder if needed and prove it is writable (ResultsError otherwise);
    the read-only reference set is refused (ConfigError, ``metabench.reference``)."""
    from metabench.reference import refuse_if_reference

    results_dir = Path(results_dir)
    refuse_if_reference(results_dir, "write runs into")
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
                    from metabench.suites.omniglot_images import load_omniglot

                    load_omniglot(data_root, allow_download=allow_download, progress=progress)
                else:
                    suite.prepare(data_root, "cpu", allow_download=allow_download, progress=progress)
            except DataUnavailable as exc:
                checked[key] = str(exc)
        if checked[key]:
            missing[s] = checked[key]
    return missing


def create_job(spec: RunSpec, results_dir: Path, data_root=None, *, allow_download: bool = True,
               deterministic: bool = False) -> tuple[str, list]:
    """Validate and plan `spec`, write its job folder; returns (job id, incompatible pairs).
    ``deterministic``: every cell runs with torch's deterministic algorithms (``--deterministic``)."""
    results_dir = check_results_dir(Path(results_dir))
    cells, incompatible = spec.plan()
    job_id = new_job_id()
    jdir = job_dir(results_dir, job_id)
    atomic_write_json(jdir / "spec.json", {
        "job_id": job_id, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spec": asdict(spec), "cells": [c.to_json() for c in cells],
        "incompatible": [list(x) for x in incompatible],
        "data_root": None if data_root is None else str(Path(data_root).absolute()),
        "allow_download": allow_download, "deterministic": bool(deterministic)})
    atomic_write_json(jdir / "status.json", {"job_id": job_id, "state": "created", "total": len(cells), "done": 0})
    return job_id, incompatible


def run_job(spec: RunSpec, results_dir: Path, data_root=None, *, allow_download: bool = True,
            progress: bool = True, say: Callable[[str], None] = print, deterministic: bool = False) -> JobReport:
    """Create a job for `spec` and run it in this process (what `metabench run` does)."""
    job_id, incompatible = create_job(spec, results_dir, data_root, allow_download=allow_download,
                                      deterministic=deterministic)
    for s, a, reason in incompatible:
        say(f"skip {a} on {s}: {reason}")
    return execute_job(results_dir, job_id, progress=progress, say=say)


# -- the job process -----------------------------------------------------------------------------

class _Log:
    def __init__(self, path: Path, say: Callable[[str], None]):
        self.f = open(path, "a", encoding="utf-8")
        self.say = say

    def __call__(self, msg: str, terminal: bool = True) -> None:
        if terminal:
            self.say(msg)
        self.f.write(f"{datetime.now().strftime('%H:%M:%S')} {msg}\n")
        self.f.flush()


def _lock_job(jdir: Path):
    import fcntl

    f = open(jdir / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        st = read_status(jdir)
        raise ConfigError(f"job {jdir.name} is already running (pid {st.get('pid')}); "
                          f"wait for it or `metabench jobs cancel {jdir.name}`") from None
    return f


def _cell_progress(results_dir: Path, run_id: str) -> dict[str, Any]:
    info = read_json(results_dir / run_id / "progress.json", {}) or {}
    out = {k: info.get(k) for k in ("phase", "step", "total", "elapsed", "metrics", "val", "updated")}
    step, total, elapsed = info.get("step") or 0, info.get("total") or 0, info.get("elapsed") or 0.0
    if info.get("phase") == "train" and step > 0 and total:
        out["eta_s"] = elapsed / step * (total - step)
    return out


def execute_job(results_dir: Path, job_id: str, *, progress: bool = False,
                say: Callable[[str], None] = print) -> JobReport:
    """Run (or resume) job `job_id`: every cell that is not finished, through the job's executor."""
    from metabench.reference import refuse_if_reference

    results_dir = Path(results_dir).absolute()
    refuse_if_reference(results_dir, "run a job in")
    jdir = existing_job_dir(results_dir, job_id)
    lock = _lock_job(jdir)
    tell = _Log(jdir / "job.log", say)
    saved = read_spec(jdir)
    data_root = saved.get("data_root")
    if data_root is not None:   # image-folder suites declared under the job's data folder
        from metabench.suites import add_data_root

        add_data_root(data_root)
    spec = RunSpec.from_json(saved["spec"])
    cells = [Cell.from_json(c) for c in saved["cells"]]
    remove_stale_temporaries(results_dir, [c.run_id for c in cells])  # left by killed processes
    report = JobReport(job_id, incompatible=[tuple(x) for x in saved.get("incompatible", [])])
    (jdir / "cancel").unlink(missing_ok=True)  # a resumed job starts afresh
    me = identity()
    started = time.time()
    states: dict[str, dict[str, Any]] = {c.run_id: {"state": "pending"} for c in cells}
    meta = {"job_id": job_id, **me, "started_at": started, "executor": spec.executor, "total": len(cells)}

    def write_status(state: str, **extra) -> None:
        done = sum(1 for s in states.values() if s["state"] in ("finished", "diverged", "skipped", "failed",
                                                                  "unavailable"))
        counts: dict[str, int] = {}
        for s in states.values():
            counts[s["state"]] = counts.get(s["state"], 0) + 1
        atomic_write_json(jdir / "status.json", {**meta, "state": state, "heartbeat": time.time(),
                                                 "done": done, "counts": counts, "cells": states, **extra})

    write_status("running")
    executor = None
    try:
        tell(f"job {job_id}: {len(cells)} cell(s), executor {spec.executor}, pid {me['pid']}", terminal=False)
        missing = check_data(sorted({c.suite for c in cells}), data_root, saved.get("allow_download", True),
                             progress) if cells else {}
        for s, reason in missing.items():
            tell(f"skip {s}: {reason}")
            report.unavailable.append((s, reason))
        queue: deque[tuple[float, Cell]] = deque()
        cost = expected_seconds(cells) if len(cells) > 1 else {}
        for c in sorted(cells, key=lambda c: -cost.get(c.run_id, 0.0)):   # longest first (stable)
            if c.suite in missing:
                states[c.run_id] = {"state": "unavailable", "error": missing[c.suite]}
            else:
                queue.append((0.0, c))
        executor = _make_executor(spec, results_dir, data_root, job_id, len(queue), jdir, tell)
        meta.update(executor.describe())
        _record_schedule(jdir, executor.describe(), [c.run_id for _, c in queue], cost)
        grid = _bar(len(cells), "grid", progress, 0)
        grid.update(len(cells) - len(queue))
        bars: dict[str, Any] = {}
        last_write = 0.0
        while queue or executor.running:
            cancel = (jdir / "cancel").exists()
            if cancel and not executor.running:
                break   # the queued cells stay pending; `jobs resume` runs them
            now = time.time()
            while queue and not cancel and executor.has_room():
                not_before, cell = queue[0]
                if not_before > now:
                    queue.rotate(-1)
                    if all(nb > now for nb, _ in queue):
                        break
                    continue
                queue.popleft()
                if cell_status(results_dir, cell.run_id) in FINAL:
                    if conflict := _stale(cell, results_dir, data_root):
                        report.failed.append((cell.run_id, conflict))
                        states[cell.run_id] = {"state": "failed", "error": conflict}
                        tell(f"{cell.run_id}: {conflict}")
                        grid.update(1)
                        continue
                    report.skipped_done.append(cell.run_id)
                    states[cell.run_id] = {"state": "skipped"}
                    tell(f"{cell.run_id}: already finished (delete its folder to run it again)")
                    grid.update(1)
                    continue
                executor.start(cell)
                states[cell.run_id] = {"state": "running", "started": time.time()}
                bars[cell.run_id] = _bar(1, cell.run_id, progress, len(bars) + 1)
                tell(f"start {cell.run_id}", terminal=False)
            if not queue and hasattr(executor, "rebalance"):
                executor.rebalance(tell)   # nothing waits: the running cells share the cores
            for cell, rc, err in executor.poll(timeout=0.25):
                bar = bars.pop(cell.run_id, None)
                if bar is not None:
                    _update_bar(bar, read_json(results_dir / cell.run_id / "progress.json"))
                    bar.close()
                if rc == BUSY:
                    tell(f"{cell.run_id}: another process is running it; trying again later")
                    states[cell.run_id] = {"state": "pending", "note": "busy in another job"}
                    queue.append((time.time() + 2.0, cell))
                    continue
                if rc == NOT_STARTED:
                    states[cell.run_id] = {"state": "pending"}
                    continue
                status = cell_status(results_dir, cell.run_id) or "failed"
                info = {**_cell_progress(results_dir, cell.run_id), "state": status}
                info.pop("eta_s", None)
                if status == "finished":
                    report.finished.append(cell.run_id)
                elif status == "diverged":
                    report.diverged.append(cell.run_id)
                elif status == "cancelled":
                    report.cancelled.append(cell.run_id)
                else:
                    info["state"] = "failed"
                    info["error"] = err
                    report.failed.append((cell.run_id, err))
                states[cell.run_id] = info
                failed = info["state"] == "failed"
                tell(f"{cell.run_id}: {info['state']}" + (f": {err} (details: {results_dir / cell.run_id / 'error.log'}"
                                                          f" and {jdir / 'workers' / (cell.run_id + '.log')})"
                                                          if failed else ""), terminal=failed)
                if status != "cancelled":
                    grid.update(1)
            if time.time() - last_write >= STATUS_EVERY_S:
                for cell in executor.running_cells():
                    states[cell.run_id] = {**states[cell.run_id], **_cell_progress(results_dir, cell.run_id),
                                           **(executor.threads_of(cell.run_id) if hasattr(executor, "threads_of")
                                              else {}), "state": "running"}
                    if cell.run_id in bars:
                        _update_bar(bars[cell.run_id], read_json(results_dir / cell.run_id / "progress.json"))
                write_status("cancelling" if cancel else "running")
                last_write = time.time()
        grid.close()
    except KeyboardInterrupt:
        atomic_write_json(jdir / "cancel", {"requested_at": time.time(), "by": "interrupt"})
        tell("interrupted: stopping the running cells at their next step")
        if executor is not None:
            executor.wait_all(timeout=120)
        _finish_states(results_dir, states)
        write_status("cancelled")
        raise
    except BaseException as exc:
        tell(f"job failed: {type(exc).__name__}: {exc}", terminal=False)
        if not isinstance(exc, MetabenchError):
            (jdir / "error.log").write_text(traceback.format_exc())
        if executor is not None:
            executor.kill_all()
        write_status("failed", error=f"{type(exc).__name__}: {exc}" if not isinstance(exc, MetabenchError) else str(exc))
        raise
    finally:
        if executor is not None:
            executor.shutdown()
        lock.close()
    cancelled = (jdir / "cancel").exists() and any(s["state"] in ("cancelled", "pending") for s in states.values())
    final = "cancelled" if cancelled else "failed" if report.failed else "finished"
    write_status(final)
    tell(f"job {job_id} {final}: {len(report.finished)} finished, {len(report.skipped_done)} already done, "
         f"{len(report.failed)} failed, {len(report.diverged)} diverged, {len(report.cancelled)} cancelled",
         terminal=False)
    return report


def _finish_states(results_dir: Path, states: dict[str, dict[str, Any]]) -> None:
    for run_id, s in states.items():
        if s["state"] == "running":
            s["state"] = cell_status(results_dir, run_id) or "pending"


def _stale(cell: Cell, results_dir: Path, data_root) -> str | None:
    """Why a finished cell's folder does not hold this cell's configuration (None if it does)."""
    from metabench.engine.cell import CellRunner, stored_config_conflict

    try:
        return stored_config_conflict(CellRunner(cell, results_dir, data_root, allow_download=False))
    except MetabenchError:
        return None   # the cell cannot be set up here; skipping it as done is what happened before


def _record_schedule(jdir: Path, plan: dict[str, Any], order: list[str], cost: dict[str, float]) -> None:
    """Append this execution's scheduling choice to the job's spec.json (a resumed job may run
    on another machine with another plan, so each execution adds one entry)."""
    saved = read_spec(jdir)
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **plan, "order": order,
             "expected_s": {k: round(v, 1) for k, v in cost.items()}}
    atomic_write_json(jdir / "spec.json", {**saved, "schedules": [*saved.get("schedules", []), entry]})


def _make_executor(spec, results_dir, data_root, job_id, n_cells, jdir, tell):
    if spec.executor == "ray":
        from metabench.engine.ray_executor import RayExecutor

        return RayExecutor(spec, results_dir, data_root, job_id, jdir, tell)
    return LocalExecutor(spec, results_dir, data_root, job_id, n_cells, jdir)


def _bar(total: int, desc: str, enabled: bool, position: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, position=position, leave=position == 0,
                dynamic_ncols=True, file=sys.stderr)


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


def main(argv: list[str] | None = None) -> int:
    """The detached job process: `python -m metabench.engine.job --results-dir DIR --job-id ID`."""
    ap = argparse.ArgumentParser(prog="metabench-job")
    ap.add_argument("--results-dir", required=True)
    ap.add_argument("--job-id", required=True)
    args = ap.parse_args(argv)

    def on_term(signum, frame):
        raise KeyboardInterrupt  # a graceful cancel: the cells checkpoint and stop

    signal.signal(signal.SIGTERM, on_term)
    try:
        report = execute_job(Path(args.results_dir), args.job_id, progress=False, say=lambda m: None)
    except MetabenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
