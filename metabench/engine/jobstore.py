"""Job folders and what they say, without importing torch (the dashboard reads them).

A job's folder is `RESULTS/jobs/<job_id>/`:

    spec.json            the validated RunSpec, its cells and the incompatible pairs (written once)
    status.json          written atomically by the job process at least every 2 s: state,
                         identity (pid, process start time, boot id, host), heartbeat, cells
                         done/total, and per cell its state, step, latest metrics and ETA
    job.log              what the job process says, appended
    cancel               present = cancel requested; cells stop at their next step boundary
    workers/<run_id>.log the stderr of each cell's worker process

A job is *alive* while the process named in status.json runs: same host and boot, and a process
with that pid and the same start time (a pid alone can be reused after the process dies), or, for
a job started on another host, a heartbeat younger than STALE_S. A job recorded as running that is
not alive is reported `dead`, and the cells it left `running` in runs.parquet `interrupted`;
`metabench jobs resume` continues both.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metabench.errors import ConfigError
from metabench import fsutil
from metabench.fsutil import atomic_write_json, read_json
from metabench.spec import Cell, check_id

JOBS = "jobs"
STALE_S = 30.0
"""A heartbeat older than this means the job process is gone (when its pid cannot be checked)."""
LIVE = ("starting", "running", "cancelling")
FINAL_CELL = ("finished", "diverged")


def new_job_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def job_dir(results_dir: Path, job_id: str) -> Path:
    """The folder of `job_id` (ConfigError for an id that is not a plain folder name)."""
    return Path(results_dir) / JOBS / check_id(job_id, "job id")


def existing_job_dir(results_dir: Path, job_id: str) -> Path:
    d = job_dir(results_dir, job_id)
    if not (d / "spec.json").is_file():
        known = [j["job_id"] for j in list_jobs(results_dir)[:5]]
        hint = f" Recent jobs: {', '.join(known)}." if known else " There are no jobs there."
        raise ConfigError(f"no job {job_id!r} in {Path(results_dir) / JOBS}.{hint} See `metabench jobs list`.")
    return d


# -- process identity ----------------------------------------------------------------------------

def process_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, from /proc), or None."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in (...) may hold spaces


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def identity(pid: int | None = None) -> dict[str, Any]:
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "pid_start": process_start(pid), "boot_id": boot_id(), "host": socket.gethostname()}


def is_alive(status: dict[str, Any], now: float | None = None) -> bool:
    """Whether the process that wrote `status` still runs (see the module docstring)."""
    now = time.time() if now is None else now
    beat = float(status.get("heartbeat") or 0)
    pid = status.get("pid")
    if pid is None:  # written by the launcher before the job process started
        return now - beat < STALE_S
    if status.get("host") == socket.gethostname() and status.get("boot_id") == boot_id():
        if status.get("pid_start") is not None:
            return process_start(int(pid)) == status["pid_start"]
        try:  # no /proc (macOS): the pid, and a fresh heartbeat against pid reuse
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return now - beat < STALE_S
    return now - beat < STALE_S


# -- reading jobs --------------------------------------------------------------------------------

def read_status(jdir: Path) -> dict[str, Any]:
    """status.json with `state` made honest: a job recorded live whose process is gone is `dead`."""
    status = read_json(Path(jdir) / "status.json", {}) or {}
    recorded = status.get("state", "unknown")
    status["recorded_state"] = recorded
    if recorded in LIVE and not is_alive(status):
        status["state"] = "dead"
    elif recorded in ("starting", "running") and (Path(jdir) / "cancel").exists():
        status["state"] = "cancelling"
    return status


def read_spec(jdir: Path) -> dict[str, Any]:
    return read_json(Path(jdir) / "spec.json", {}) or {}


def cell_status(results_dir: Path, run_id: str) -> str | None:
    """The status recorded in a cell's runs.parquet, or None if there is none (or it is unreadable)."""
    path = Path(results_dir) / run_id / "runs.parquet"
    if not path.exists():
        return None
    try:
        import pyarrow.parquet as pq

        return str(pq.read_table(path, columns=["status"]).column("status")[0].as_py())
    except Exception:
        return None


def cell_states(results_dir: Path, jdir: Path, status: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One dict per cell of the job: run_id, state, and the live progress fields when running.

    state is the runs.parquet status, except: `pending` (never started), `interrupted` (runs.parquet
    says running but no live job is running it: the process was killed; resume continues it).
    """
    status = read_status(jdir) if status is None else status
    alive = status.get("state") in LIVE
    live = status.get("cells") or {}
    out = []
    for c in read_spec(jdir).get("cells", []):
        try:
            run_id = Cell.from_json(c).run_id
        except (ConfigError, TypeError):  # a hand-edited spec.json: show nothing rather than a bad path
            continue
        recorded = cell_status(results_dir, run_id)
        info = dict(live.get(run_id) or {})
        state = recorded or "pending"
        if alive and info.get("state") == "running":
            state = "running"
        elif recorded == "running":
            state = "interrupted"
        info.update({"run_id": run_id, "state": state})
        if state != "running":
            for k in ("eta_s",):
                info.pop(k, None)
        out.append(info)
    return out


def list_jobs(results_dir: Path) -> list[dict[str, Any]]:
    """Every job under the results folder, newest first: job_id, state, done, total, created, spec."""
    root = Path(results_dir) / JOBS
    out = []
    if not root.is_dir():
        return out
    for d in root.iterdir():
        try:
            check_id(d.name)
        except ConfigError:
            continue
        if not (d / "spec.json").is_file():
            continue
        spec = read_spec(d)
        st = read_status(d)
        out.append({"job_id": d.name, "state": st.get("state", "unknown"), "done": st.get("done", 0),
                    "total": st.get("total", len(spec.get("cells", []))), "created": spec.get("created", ""),
                    "spec": spec.get("spec", {}), "counts": st.get("counts", {}), "status": st})
    out.sort(key=lambda j: (j["created"], j["job_id"]), reverse=True)
    return out


def log_tail(jdir: Path, n: int = 20) -> str:
    try:
        with open(Path(jdir) / "job.log", "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


# -- acting on jobs ------------------------------------------------------------------------------

def request_cancel(results_dir: Path, job_id: str) -> str:
    """Ask a job to stop: its cells stop at the next step boundary and are recorded as cancelled.
    Returns the job's state before the request."""
    from metabench.reference import refuse_if_reference

    refuse_if_reference(results_dir, "cancel a job in")
    jdir = existing_job_dir(results_dir, job_id)
    state = read_status(jdir).get("state")
    if state in LIVE or state == "cancelling":
        atomic_write_json(jdir / "cancel", {"requested_at": time.time()})
    return state


def python_argv(*args: str) -> list[str]:
    """`python -m ...` with this interpreter; always an argument list, never a shell string."""
    return [sys.executable, *args]


def launch_detached(results_dir: Path, job_id: str) -> int:
    """Start the job process for `job_id` in its own session (it outlives the caller: a closed
    terminal, a reloaded page, a restarted dashboard); its output goes to job.log. Returns its pid."""
    jdir = existing_job_dir(results_dir, job_id)
    state = read_status(jdir).get("state")
    if state in LIVE:
        raise ConfigError(f"job {job_id} is still {state}; wait for it, or `metabench jobs cancel {job_id}` first")
    # Written before the process starts, so it is listed at once; the process overwrites it.
    atomic_write_json(jdir / "status.json", {"job_id": job_id, "state": "starting", "heartbeat": time.time(),
                                             "total": len(read_spec(jdir).get("cells", [])), "done": 0})
    argv = python_argv("-m", "metabench.engine.job", "--results-dir", str(Path(results_dir).absolute()),
                       "--job-id", job_id)
    with open(jdir / "job.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc.pid


def remove_stale_temporaries(results_dir: Path, run_ids) -> int:
    """Delete temporary files whose writer is dead, in the jobs folders and the given run folders.

    A process killed in the middle of a write leaves its temporary file behind; a cell that is
    resumed cleans its own folder, but a cell that had already finished (killed while writing
    its last progress.json) or a killed job process (status.json) would keep them forever.
    """
    results_dir = Path(results_dir)
    folders = [*(results_dir / "jobs").glob("*"), *(results_dir / r for r in run_ids),
               *(results_dir / r / "checkpoints" for r in run_ids)]
    return sum(len(fsutil.remove_temporaries(f)) for f in folders)
