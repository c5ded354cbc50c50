"""The local executor: one worker process per cell on this machine, and how many at once.

`local_plan` decides how many cells run at once with how many torch threads each: on CPU one cell
per core (workers x threads = cores); with GPUs several cells per GPU when memory allows
(`cells_per_gpu`), dealt round-robin through CUDA_VISIBLE_DEVICES. `LocalExecutor` starts each
cell as `python -m metabench.engine.worker` (an argument list, never a shell string) with the
environment of `worker_env`, polls the processes, and, when nothing waits to start, gives the
cores of finished cells to the running ones (`rebalance`; see `metabench.engine.schedule`). The
job process (`metabench.engine.job`) drives it; `metabench.engine.ray_executor` is the other
executor with the same methods.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from metabench.engine.jobstore import read_spec
from metabench.engine.schedule import (busy_elsewhere, plan_threads, request_path, schedule_policy, wait_policy,
                                       write_request)
from metabench.errors import ConfigError
from metabench.spec import Cell, RunSpec

# glibc hands every freed block over 32 MiB back to the kernel, so each meta-step page-faults its
# activations back in; keeping them made the MAML loop 1.26x faster on this project's 2-core machines.
MALLOC_TUNING = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


def worker_env(threads: int, wait: str = "PASSIVE") -> dict[str, str]:
    """The worker's environment: allocator tuning, thread count and the OpenMP wait policy
    (``metabench.engine.schedule.wait_policy``); a user's own OMP_* settings win."""
    env = dict(os.environ)
    if sys.platform.startswith("linux"):
        env.setdefault("GLIBC_TUNABLES", MALLOC_TUNING)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("OMP_WAIT_POLICY", wait)
    return env


def worker_argv(cell: Cell, results_dir: Path, data_root, job_id: str, threads: int,
                wait_lock: bool = False, deterministic: bool = False) -> list[str]:
    """The worker's command line: an argument list built from validated names, never a shell string."""
    cmd = [sys.executable, "-m", "metabench.engine.worker", "--cell", json.dumps(cell.to_json()),
           "--results-dir", str(results_dir), "--job-id", job_id, "--threads", str(threads)]
    if data_root is not None:
        cmd += ["--data-dir", str(data_root)]
    if wait_lock:
        cmd.append("--wait-lock")
    if deterministic:
        cmd.append("--deterministic")
    return cmd


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu_ids() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return (visible or [str(i) for i in range(n)])[:n]


#: GPU memory budgeted per cell when packing cells onto GPUs: a Conv-4 Omniglot cell needs well
#: under 2 GiB; second-order MAML with the miniImageNet paper protocol several.
GIB_PER_GPU_CELL = 8
MAX_CELLS_PER_GPU = 8


def cells_per_gpu(cores: int, n_gpus: int, gpu_memory_gib: float | None) -> int:
    """How many cells share one GPU: ``METABENCH_CELLS_PER_GPU`` if set, else as many as the
    smallest GPU's memory holds at ``GIB_PER_GPU_CELL`` each, at most one per CPU core and
    ``MAX_CELLS_PER_GPU`` (a small cell uses a fraction of a modern GPU; issue 23 §2)."""
    raw = os.environ.get("METABENCH_CELLS_PER_GPU", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"METABENCH_CELLS_PER_GPU must be a positive integer, got {raw!r}")
        return int(raw)
    by_memory = int((gpu_memory_gib or GIB_PER_GPU_CELL) // GIB_PER_GPU_CELL)
    return max(1, min(by_memory, cores // max(n_gpus, 1), MAX_CELLS_PER_GPU))


def gpu_memory_gib() -> float | None:
    """The smallest visible GPU's memory in GiB (None without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return min(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())) / 2**30


def local_plan(spec: RunSpec, n_cells: int, cores: int | None = None,
               gpus: list[str] | None = None) -> tuple[int, int, list[str]]:
    """(workers, torch threads per worker, GPUs to hand out) for the local executor."""
    cores = cpu_cores() if cores is None else cores
    gpus = (gpu_ids() if spec.device != "cpu" else []) if gpus is None else gpus
    if gpus:
        per_gpu = cells_per_gpu(cores, len(gpus), gpu_memory_gib())
        workers = spec.workers or max(1, min(n_cells, len(gpus) * per_gpu))
    else:
        workers = spec.workers or max(1, min(n_cells, cores))
    return workers, max(1, cores // workers), gpus


class LocalExecutor:
    """One worker process per cell, at most `workers` at once, on this machine."""

    def __init__(self, spec: RunSpec, results_dir: Path, data_root, job_id: str, n_cells: int, jdir: Path):
        self.results_dir, self.data_root, self.job_id = results_dir, data_root, job_id
        self.cores = cpu_cores()
        self.workers, self.threads, self.gpus = local_plan(spec, max(n_cells, 1), cores=self.cores)
        self.policy = schedule_policy()
        self.deterministic = bool(read_spec(jdir).get("deterministic", False))
        self.logs = jdir / "workers"
        self.logs.mkdir(exist_ok=True)
        self.free = list(range(self.workers))
        self.procs: dict[str, tuple[Cell, subprocess.Popen, int, Any]] = {}
        self.assigned: dict[str, int] = {}   # run id -> torch threads the worker was last given
        self.waits: dict[str, str] = {}      # run id -> OMP_WAIT_POLICY it started with

    def describe(self) -> dict[str, Any]:
        return {"workers": self.workers, "threads_per_worker": self.threads, "gpus": self.gpus,
                "cores": self.cores, "schedule": "static" if self.gpus else self.policy,
                "deterministic": self.deterministic}

    @property
    def running(self) -> bool:
        return bool(self.procs)

    def running_cells(self) -> list[Cell]:
        return [c for c, *_ in self.procs.values()]

    def has_room(self) -> bool:
        return bool(self.free)

    def start(self, cell: Cell) -> None:
        slot = self.free.pop(0)
        wait = wait_policy(self.threads, busy_elsewhere(sum(self.assigned.values())))
        env = worker_env(self.threads, wait)
        self.assigned[cell.run_id], self.waits[cell.run_id] = self.threads, env["OMP_WAIT_POLICY"]
        request_path(self.results_dir, self.job_id, cell.run_id).unlink(missing_ok=True)   # an old job's
        if self.gpus and cell.device != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        err = open(self.logs / f"{cell.run_id}.log", "ab")
        proc = subprocess.Popen(worker_argv(cell, self.results_dir, self.data_root, self.job_id, self.threads,
                                            deterministic=self.deterministic),
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        self.procs[cell.run_id] = (cell, proc, slot, err)

    def poll(self, timeout: float) -> list[tuple[Cell, int, str]]:
        time.sleep(timeout)
        done = []
        for run_id, (cell, proc, slot, err) in list(self.procs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            err.close()
            del self.procs[run_id]
            self.assigned.pop(run_id, None)
            self.free.append(slot)
            done.append((cell, rc, _last_error(self.logs / f"{run_id}.log", rc)))
        return done

    def rebalance(self, tell: Callable[..., None]) -> None:
        """Share the machine's cores among the running CPU cells (nothing waits to start); each
        worker applies its new count at its next step and records it (engine.schedule)."""
        if self.policy != "adaptive" or self.gpus:
            return
        for run_id, n in plan_threads(self.cores, sorted(self.procs)).items():
            if self.assigned.get(run_id) != n:
                write_request(request_path(self.results_dir, self.job_id, run_id), n)
                tell(f"{run_id}: {n} thread(s) from its next step ({len(self.procs)} cell(s) running "
                     f"on {self.cores} cores)", terminal=False)
                self.assigned[run_id] = n

    def threads_of(self, run_id: str) -> dict[str, Any]:
        return {"threads": self.assigned.get(run_id), "omp_wait_policy": self.waits.get(run_id)}

    def wait_all(self, timeout: float) -> None:
        deadline = time.time() + timeout
        for _, proc, _, _ in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()

    def kill_all(self) -> None:
        for _, proc, _, _ in self.procs.values():
            proc.terminate()
        self.wait_all(timeout=30)

    def shutdown(self) -> None:
        for _, _, _, err in self.procs.values():
            err.close()


def _last_error(log: Path, rc: int) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("error: ")]
    except OSError:
        lines = []
    if lines:
        return lines[-1].removeprefix("error: ")
    return f"worker exited with {rc}" + (" (killed by a signal)" if rc < 0 else "")
