"""The Ray executor: each cell is a Ray task (`pip install 'metabench[ray]'`).

A task runs the same worker process as the local executor (`python -m metabench.engine.worker`),
so a cell gives the same numbers under either executor, and peak memory is per cell even in a
long-lived Ray worker. A task asks for one CPU, and for one GPU when the cell's device is `cuda`
(or `auto` on a cluster that has GPUs); Ray sets CUDA_VISIBLE_DEVICES for it. A task whose worker
or node dies is retried (`max_retries`); the retry continues from the cell's last checkpoint,
and the cell's lock makes a retry wait for a surviving orphan instead of writing beside it.
Every node must see the results folder at the same path (shared storage): that is where the cells
write, checkpoint and report progress, and where a cancel request is read.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from metabench.errors import ConfigError
from metabench.spec import Cell, RunSpec

MAX_RETRIES = 3


def _run_cell(argv: list[str], threads: int) -> tuple[int, str]:
    """Inside a Ray worker: run one cell's worker process; (exit code, last error line)."""
    from metabench.engine.local_executor import worker_env

    proc = subprocess.run(argv, env=worker_env(threads), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    err = errors[-1].removeprefix("error: ") if errors else (proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode, err or f"worker exited with {proc.returncode}"


class RayExecutor:
    def __init__(self, spec: RunSpec, results_dir: Path, data_root, job_id: str, jdir: Path, tell):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'metabench[ray]'") from None
        self.ray = ray
        self.results_dir, self.data_root, self.job_id = results_dir, data_root, job_id
        from metabench.engine.jobstore import read_spec

        self.deterministic = bool(read_spec(jdir).get("deterministic", False))
        self.owns = not ray.is_initialized()
        if self.owns:
            if spec.ray_address is None:
                # A private local Ray: loopback only, no token (see the README's cluster section).
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(address=spec.ray_address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        self.cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
        # several cells share a GPU through fractional num_gpus (this machine's GPU memory stands
        # in for the cluster's; METABENCH_CELLS_PER_GPU overrides)
        from metabench.engine.local_executor import cells_per_gpu, gpu_memory_gib

        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.per_gpu = cells_per_gpu(cpus, self.cluster_gpus, gpu_memory_gib()) if self.cluster_gpus else 1
        self.limit = spec.workers or None
        self.remote = ray.remote(_run_cell)
        self.refs: dict[Any, Cell] = {}
        tell(f"ray: {cpus} CPU(s), {self.cluster_gpus} GPU(s), {self.per_gpu} cell(s) per GPU")

    def describe(self) -> dict[str, Any]:
        return {"workers": self.limit or 0, "threads_per_worker": 1, "cluster_gpus": self.cluster_gpus,
                "cells_per_gpu": self.per_gpu}

    @property
    def running(self) -> bool:
        return bool(self.refs)

    def running_cells(self) -> list[Cell]:
        return list(self.refs.values())

    def has_room(self) -> bool:
        return self.limit is None or len(self.refs) < self.limit

    def start(self, cell: Cell) -> None:
        gpu = cell.device == "cuda" or (cell.device == "auto" and self.cluster_gpus > 0)
        if cell.device == "cuda" and not self.cluster_gpus:
            raise ConfigError("--device cuda was asked for, but the Ray cluster has no GPU; "
                              "use --device auto or --device cpu")
        from metabench.engine.local_executor import worker_argv

        argv = worker_argv(cell, self.results_dir, self.data_root, self.job_id, threads=1, wait_lock=True,
                           deterministic=self.deterministic)
        ref = self.remote.options(num_cpus=1, num_gpus=1 / self.per_gpu if gpu else 0, max_retries=MAX_RETRIES,
                                  retry_exceptions=False, name=f"metabench:{cell.run_id}").remote(argv, 1)
        self.refs[ref] = cell

    def poll(self, timeout: float) -> list[tuple[Cell, int, str]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=timeout)
        done = []
        for ref in ready:
            cell = self.refs.pop(ref)
            try:
                rc, err = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:  # retries exhausted (node lost, ...)
                rc, err = 1, f"Ray task failed after {MAX_RETRIES} retries: {type(exc).__name__}: {exc}"
            done.append((cell, rc, err))
        return done

    def wait_all(self, timeout: float) -> None:
        if self.refs:
            self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=timeout)

    def kill_all(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        if self.owns:
            self.ray.shutdown()
