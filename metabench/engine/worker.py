"""Entry point of a cell's own process: `python -m metabench.engine.worker --cell JSON ...`.

Each cell runs in a fresh process so that the engine can set the allocator and thread count for
it, so that a crash in one cell cannot take down the grid, and so that peak memory is per cell.
Progress goes to `RESULTS/<run_id>/progress.json` (atomically, at most once a second); the
job process turns it into progress bars and the job's status.json.

Only one process at a time runs a cell: the worker holds an exclusive lock on
`RESULTS/<run_id>/.lock` (released by the kernel when the process dies, even by SIGKILL), so two
jobs sharing a results folder, or a resumed job and an orphan of the old one, never write the same
files. A busy cell exits with BUSY; `--wait-lock` waits instead (the Ray executor).

The cell stops at the next step boundary (checkpointed, status `cancelled`) on SIGTERM or SIGINT,
or when its job's cancel file `RESULTS/jobs/<job_id>/cancel` appears; on Linux it also gets
SIGTERM when its parent (the job process) dies.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from metabench.fsutil import atomic_write_json

BUSY = 75  # EX_TEMPFAIL: another process holds the cell's lock; try again later
NOT_STARTED = 4  # the job was cancelled before this cell began; nothing was written
FINAL = ("finished", "diverged")


def _die_with_parent() -> None:
    """Ask Linux to send us SIGTERM when the process that started us dies (no orphans)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    except OSError:
        pass


def lock_cell(run_dir: Path, wait: bool):
    """An open file holding the cell's exclusive lock, or None if another process holds it."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        f.close()
        return None
    return f


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="metabench-worker")
    ap.add_argument("--cell", required=True, help="the cell as JSON")
    ap.add_argument("--results-dir", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--job-id", default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--wait-lock", action="store_true", help="wait for a cell another process is running")
    ap.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    args = ap.parse_args(argv)

    stop = {"signal": None, "checked": 0.0, "cancel": False}

    def on_signal(signum, frame) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _die_with_parent()

    from metabench.errors import MetabenchError
    from metabench.spec import Cell, check_id

    try:
        cell = Cell.from_json(json.loads(args.cell))
        if args.job_id is not None:
            check_id(args.job_id)
    except MetabenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = Path(args.results_dir)
    lock = lock_cell(results / cell.run_id, args.wait_lock)
    if lock is None:
        print(f"error: {cell.run_id} is being run by another process", file=sys.stderr)
        return BUSY

    from metabench.engine.jobstore import cell_status

    if cell_status(results, cell.run_id) in FINAL:  # finished by another job meanwhile
        return 0
    cancel_file = results / "jobs" / args.job_id / "cancel" if args.job_id else None
    if cancel_file is not None and cancel_file.exists():
        return NOT_STARTED

    import torch

    from metabench.engine.cell import CellRunner
    from metabench.engine.schedule import ThreadSchedule, request_path

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        # cuBLAS needs a fixed workspace for reproducible results (read when CUDA initialises)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    progress_path = results / cell.run_id / "progress.json"
    last = [0.0]

    def progress(info: dict) -> None:
        t = time.monotonic()
        if info["phase"] == "train" and t - last[0] < 1.0:
            return
        last[0] = t
        atomic_write_json(progress_path, {**info, "run_id": cell.run_id, "updated": time.time()})

    def should_stop() -> bool:
        if stop["signal"] is not None:
            return True
        t = time.monotonic()
        if cancel_file is not None and t - stop["checked"] >= 0.2:  # a stat at most 5x a second
            stop["checked"] = t
            stop["cancel"] = cancel_file.exists()
        return stop["cancel"]

    threads = ThreadSchedule(request_path(results, args.job_id, cell.run_id) if args.job_id else None)
    try:
        runner = CellRunner(cell, results, args.data_dir, job_id=args.job_id, progress=progress,
                            should_stop=should_stop, threads=threads)
        status = runner.run()
    except MetabenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the traceback is in the cell's error.log
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0 if status == "finished" else 3


if __name__ == "__main__":
    sys.exit(main())
