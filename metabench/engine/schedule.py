"""How a job uses the machine: which cells start first, how many torch threads each computes
with, who may change that mid-cell, and the record a rerun replays.

Float rounding in torch's CPU kernels depends on the intra-op thread count: the smoke grid of
`maml`, `protonet` and `reptile` on omniglot-5w1s and sinusoid-5shot, run once with one thread per
cell and once with two, differs in 5 of its 220 test rows. So a cell's thread count is part of what
its rows mean, and changing it mid-cell (the job gives the cores of finished cells to the cells
still running, issue 23) is only honest if it is recorded and can be replayed:

* ``ThreadSchedule.at(step)`` is called by the cell before meta-step ``step + 1`` (and before the
  test evaluation, with ``step`` = the last step). It applies the job's latest request, a file
  holding one integer that the job rewrites (``request_path``), or, when replaying, the
  recorded count for that step; and it appends ``[step, threads]`` to ``record`` whenever the count
  in effect changes. ``record`` goes into every checkpoint (a resumed cell keeps the entries up to
  its checkpoint's step) and into the run's stored config (``runs.config["threads"]``).
* ``metabench reproduce`` passes the stored record as ``replay``, so the rerun computes each step
  with the thread count the original computed it with.

The job side decides:

* **order** (``expected_seconds``): the cells expected to take longest start first (LPT), so the
  short ones fill in at the end instead of a long one running alone. The cost model is the wall
  time of the same (suite, algorithm, preset) in the shipped reference set, scaled by meta-steps
  when a cell overrides them; cells without such a row are costed by their meta-steps at the
  median seconds per step of their suite's reference rows (else of all rows).
* **threads** (``plan_threads``): while cells wait to start, every worker keeps the count it
  started with (one cell per core on CPU: single-threaded cells scale perfectly, two threads on
  one MAML cell gave 1.5x, not 2x); once nothing waits, the machine's cores are shared out among
  the running CPU cells, so no core idles while a cell is still running.
* **OpenMP wait policy** (``wait_policy``): a worker that starts with several threads and nothing
  else busy on the machine spins (``ACTIVE``: `protonet` 6.6 instead of 5.1 episodes/s with two
  threads, issue 23's probe); otherwise waiters sleep (``PASSIVE``: a spinning team collapses
  beside a busy neighbour, 0.46 s to 4.5 s per MAML step on a 2-core machine). A worker started
  with one thread has no team to wait in, and keeps PASSIVE if it is given more threads later.

``METABENCH_SCHEDULE=static`` turns the mid-cell changes off (one fixed count per worker, as
before issue 23); ``benchmarks/bench_grid.py`` runs a grid under each policy and prints ratios.
The choice made is recorded in the job's ``spec.json`` (``schedules``) and ``status.json``.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

SCHEDULES = ("adaptive", "static")


def schedule_policy() -> str:
    """``adaptive`` (default: freed cores go to the running cells) or ``static`` (fixed counts)."""
    value = os.environ.get("METABENCH_SCHEDULE", "adaptive").strip().lower() or "adaptive"
    if value not in SCHEDULES:
        from metabench.errors import ConfigError

        raise ConfigError(f"METABENCH_SCHEDULE must be one of {', '.join(SCHEDULES)}, got {value!r}")
    return value


def request_path(results_dir: Path, job_id: str, run_id: str) -> Path:
    """The file through which job ``job_id`` tells the worker of ``run_id`` its thread count."""
    return Path(results_dir) / "jobs" / job_id / "workers" / f"{run_id}.threads"


def write_request(path: Path, threads: int) -> None:
    from metabench.fsutil import atomic_write_bytes

    atomic_write_bytes(path, f"{int(threads)}\n".encode())


def plan_threads(cores: int, running: list[str]) -> dict[str, int]:
    """run id -> thread count when ``running`` share ``cores`` (the first ones get the remainder)."""
    if not running:
        return {}
    base, extra = divmod(max(cores, len(running)), len(running))
    return {run_id: base + (1 if i < extra else 0) for i, run_id in enumerate(running)}


class ThreadSchedule:
    """The cell's side: apply requested (or replayed) thread counts between steps, and record them."""

    def __init__(self, request: Path | None = None, replay: list[list[int]] | None = None):
        self.request = request
        self.replay = {int(step): int(n) for step, n in replay} if replay else None
        self.record: list[list[int]] = []
        self._seen: int | None = None   # mtime_ns of the request file last read
        self._checked = -math.inf         # time.monotonic() of the last look at it

    def restore(self, record: list[list[int]] | None, step: int) -> None:
        """Resume: keep what was recorded up to the checkpoint's ``step`` (later steps rerun)."""
        self.record = [[int(s), int(n)] for s, n in (record or []) if int(s) <= step]

    def _requested(self) -> int | None:
        if self.request is None:
            return None
        t = time.monotonic()
        if t - self._checked < 0.2:   # a stat at most 5x a second (sinusoid steps take ~13 ms)
            return None
        self._checked = t
        try:
            mtime = os.stat(self.request).st_mtime_ns
            if mtime == self._seen:
                return None
            self._seen = mtime
            value = int(self.request.read_text().strip())
        except (OSError, ValueError):
            return None
        return value if value >= 1 else None

    def at(self, step: int) -> int:
        """Before meta-step ``step + 1`` (or the test evaluation after ``step``): the count in effect."""
        if self.replay is not None:
            target = self.replay.get(step)
        else:
            target = self._requested()
        if target and target != torch.get_num_threads():
            torch.set_num_threads(target)
        now = torch.get_num_threads()
        if not self.record or self.record[-1][1] != now:
            self.record.append([int(step), int(now)])
        return now


def wait_policy(threads: int, busy_elsewhere: float) -> str:
    """OMP_WAIT_POLICY for a worker starting with ``threads`` threads while ``busy_elsewhere``
    cores' worth of other work runs on the machine (load average minus this job's workers)."""
    return "ACTIVE" if threads > 1 and busy_elsewhere < 0.5 else "PASSIVE"


def busy_elsewhere(own_threads: int) -> float:
    """Cores' worth of work on this machine that is not this job's running workers (1-min load)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("inf")   # unknown: assume neighbours, never spin
    return max(0.0, load - own_threads)


def expected_seconds(cells: list, reference: "Any | None" = None) -> dict[str, float]:
    """run id -> expected wall seconds (the cost model in the module docstring). ``reference`` is a
    runs table (suite, algorithm, preset, meta_steps, wall_time_s); default: the shipped set's."""
    if reference is None:
        reference = _reference_runs()
    out: dict[str, float] = {}
    ref = reference[reference["wall_time_s"] > 0] if len(reference) else reference
    trained = ref[ref["meta_steps"] > 0] if len(ref) else ref   # per-step costs: trained rows only
    per_step_all = float((trained["wall_time_s"] / trained["meta_steps"]).median()) if len(trained) else 1.0
    for cell in cells:
        steps = _meta_steps(cell)
        same = ref[(ref["suite"] == cell.suite) & (ref["algorithm"] == cell.algorithm)
                   & (ref["preset"] == cell.preset)] if len(ref) else ref
        if len(same):
            row_steps = float(same["meta_steps"].median())
            wall = float(same["wall_time_s"].median())
            out[cell.run_id] = wall * (steps / row_steps if steps is not None and row_steps > 0 else 1.0)
            continue
        suite_rows = trained[trained["suite"] == cell.suite] if len(trained) else trained
        per_step = (float((suite_rows["wall_time_s"] / suite_rows["meta_steps"]).median())
                    if len(suite_rows) else per_step_all)
        out[cell.run_id] = per_step * (steps if steps is not None else 1000)
    return out


def _meta_steps(cell) -> int | None:
    loop = (cell.overrides or {}).get("loop") or {}
    if "meta_steps" in loop:
        return int(loop["meta_steps"])
    try:
        from metabench.algorithms import ALGORITHMS
        from metabench.spec import loop_for
        from metabench.suites import make_suite

        return loop_for(ALGORITHMS.get(cell.algorithm), cell.preset, make_suite(cell.suite)).meta_steps
    except Exception:   # an unknown plugin or suite: the job reports it when the cell runs
        return None


def _reference_runs():
    """The shipped reference set's runs rows (suite, algorithm, preset, meta_steps, wall_time_s)."""
    import pandas as pd

    from metabench.reference import reference_dir

    cols = ["suite", "algorithm", "preset", "meta_steps", "wall_time_s"]
    frames = []
    for path in sorted(reference_dir().glob("*/runs.parquet")):
        try:
            frames.append(pd.read_parquet(path, columns=cols + ["status"]))
        except Exception:
            continue
    if not frames:
        return pd.DataFrame(columns=cols)
    runs = pd.concat(frames, ignore_index=True)
    return runs[runs["status"] == "finished"][cols]
