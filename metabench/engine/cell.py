"""One cell: meta-train one algorithm on one suite with one seed, validate, test, record.

Everything the cell measures goes to Parquet under `RESULTS/<run_id>/`:
`runs.parquet` (one row, rewritten as the status changes), `curves-<step>.parquet` (the training
and validation rows since the previous checkpoint, flushed right before each checkpoint) and
`tasks.parquet` (one row per fixed test task and metric).  A cell killed at any moment resumes
from its last good checkpoint; curve parts written after that checkpoint are removed and
recomputed (the loop is deterministic given the checkpointed generator state), so nothing is lost
or duplicated.  A cell asked to stop (`should_stop()` true: a cancelled job, SIGTERM) stops at the
next step boundary, flushes its curves, checkpoints (with the partial averaging window, so the
resumed rows are identical) and is recorded as `cancelled`.

Why one module of ~400 lines: `CellRunner.run` is the cell's one loop, and what makes it resumable
(checkpoints, curve parts, divergence, cancellation) reads best next to it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import platform
import re
import resource
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

import metabench
from metabench import fsutil
from metabench.algorithms import ALGORITHMS
from metabench.engine.checkpoint import load_latest, save_checkpoint
from metabench.engine.device import resolve_device
from metabench.engine.schedule import ThreadSchedule
from metabench.errors import ConfigError
from metabench.results.ids import check_run_id
from metabench.results.writer import read_table, remove_temporaries, write_table
from metabench.spec import Cell, Loop, loop_for
from metabench.suites import make_suite
from metabench.suites.fingerprint import Fingerprinter

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]
_PART = re.compile(r"curves-(\d{8})\.parquet$")
EVAL_BATCH = 25


def now() -> datetime:
    return datetime.now(timezone.utc)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024 if platform.system() == "Linux" else kb / 2**20


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def cell_status(results_dir: Path, run_id: str) -> str | None:
    """The status recorded in a cell's runs.parquet, or None if there is none (or it is unreadable)."""
    path = Path(results_dir) / run_id / "runs.parquet"
    if not path.exists():
        return None
    try:
        return str(read_table(path, "runs")["status"].iloc[0])
    except Exception:
        return None


#: Loop settings that only decide what is watched while a cell trains (validation cadence and
#: size, curve averaging, checkpoint interval): the model and its test rows do not depend on them
#: (the whole smoke grid run with other values gives bit-identical test rows), so a stored run
#: that differs only in these is still the same computation.
MONITORING = frozenset({"eval_every", "n_val_tasks", "log_every", "checkpoint_every"})


def config_differences(stored: dict[str, Any], current: dict[str, Any],
                       added: dict[str, Any] | None = None) -> list[str]:
    """The fields (``algorithm.inner_lr``, ``loop.meta_steps``, ``suite.version``) in which a run's
    stored ``config`` differs from ``CellRunner.resolved_config()``; a field missing on one side
    differs too (a Config field added since may have changed what the code computes), unless it
    is in ``added`` (the algorithm's ``ADDED_FIELDS``) and its current value is the one given
    there, the value that computes what runs stored without it computed. ``MONITORING`` loop
    fields never count."""
    current = json.loads(json.dumps(current, sort_keys=True))   # tuples as JSON lists, as stored
    added = json.loads(json.dumps(added or {}))
    missing = object()

    defaults = {"algorithm": added, "loop": {}}   # ADDED_FIELDS are Config (algorithm) fields

    def same(part: str, key: str) -> bool:
        old, new = (stored.get(part) or {}).get(key, missing), current[part].get(key, missing)
        return old == new or (old is missing and key in defaults[part] and new == defaults[part][key])

    changed = [f"{part}.{key}" for part in ("algorithm", "loop")
               for key in sorted(set(stored.get(part) or {}) | set(current[part]))
               if not same(part, key) and not (part == "loop" and key in MONITORING)]
    if (stored.get("suite") or {}).get("version") != current["suite"]["version"]:
        changed.append("suite.version")
    return changed


def stored_config_conflict(runner: "CellRunner") -> str | None:
    """One sentence when the cell's folder already holds a run of another configuration than the
    cell resolves to now (its preset or a Config field changed since, e.g. in a newer metabench,
    or the suite's version did), else None. Such a run is neither skipped as done nor resumed:
    its rows would be reported under today's settings."""
    path = runner.run_dir / "runs.parquet"
    if not path.exists():
        return None
    try:
        stored = json.loads(read_table(path, "runs")["config"].iloc[0])
    except Exception:   # unreadable: `metabench results verify` reports it; the resume logic copes
        return None
    changed = runner.config_differences(stored)
    if not changed:
        return None
    shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    return (f"{runner.run_dir} holds a run of another configuration than {runner.cell.variant} "
            f"({runner.cell.preset} preset) resolves to now ({shown} differ; the preset or the code "
            f"changed since it ran): move or delete that folder, or use another --results-dir")


def _train_seed(seed: int) -> int:
    return seed * 1_000_003 + 17


class CellRunner:
    """Runs one cell to completion (or divergence), resuming from its last checkpoint."""

    def __init__(self, cell: Cell, results_dir: Path, data_root=None, *, job_id: str | None = None,
                 allow_download: bool = True, progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None, threads: ThreadSchedule | None = None):
        self.cell, self.job_id = cell, job_id
        #: Applies and records the torch thread count between steps (metabench.engine.schedule).
        self.threads = threads or ThreadSchedule()
        #: Seconds spent per phase (setup, sample, train, validate, checkpoint, log, test), kept
        #: across resumes: what of a cell's wall time is not meta-training (issue 23).
        self.phase_times: dict[str, float] = {}
        self.should_stop = should_stop or (lambda: False)
        self.run_dir = Path(results_dir) / cell.run_id
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.data_root, self.allow_download = data_root, allow_download
        self.progress = progress or (lambda info: None)
        check_run_id(cell.run_id)  # a folder name under results_dir, never a path out of it
        self.device = resolve_device(cell.device)
        if data_root is not None:   # image-folder suites declared under the data folder
            from metabench.suites import add_data_root

            add_data_root(data_root)
        self.suite = make_suite(cell.suite)
        self.algo_cls = ALGORITHMS.get(cell.algorithm)
        ok, reason = self.algo_cls.fits(self.suite)
        if not ok:
            raise ConfigError(reason)
        self.config = self.algo_cls.preset_config(cell.preset, self.suite, cell.overrides.get("config"))
        loop = loop_for(self.algo_cls, cell.preset, self.suite)
        if cell.overrides.get("loop"):
            loop = dataclasses.replace(loop, **cell.overrides["loop"])
            loop.validate()
        self.loop: Loop = loop
        self.n_test = loop.n_test_tasks or self.suite.n_test_tasks
        #: The fixed test tasks' fingerprint, set while the test split is evaluated (`_evaluate`).
        self.tasks_fingerprint: str | None = None

    def config_differences(self, stored: dict[str, Any]) -> list[str]:
        """The fields in which a stored run's ``config`` differs from what this cell resolves to now
        (``config_differences``, with the algorithm's ``ADDED_FIELDS``)."""
        return config_differences(stored, self.resolved_config(), self.algo_cls.ADDED_FIELDS)

    def log(self, message: str) -> None:
        """One line in the cell's `events.log` (resumes, skipped checkpoints) and on stderr."""
        line = f"{now().isoformat(timespec='seconds')} {message}\n"
        with open(self.run_dir / "events.log", "a", encoding="utf-8") as f:
            f.write(line)
        print(f"{self.cell.run_id}: {message}", file=sys.stderr)

    def resolved_config(self) -> dict[str, Any]:
        """What identifies the cell's computation: the algorithm's Config, the loop settings and
        the suite's description (with its version), as stored in ``runs.config``."""
        return {"algorithm": dataclasses.asdict(self.config), "loop": dataclasses.asdict(self.loop),
                "suite": self.suite.describe()}

    # --- records ------------------------------------------------------------------------------
    def _runs_row(self, status: str, *, started_at, finished_at=None, wall=0.0, steps=0,
                  error: str | None = None) -> dict[str, Any]:
        algo = getattr(self, "algo", None)
        protocol = algo.protocol if algo else {"transductive": False, "query_batch": "n/a"}
        config = {"algorithm": dataclasses.asdict(self.config), "loop": dataclasses.asdict(self.loop),
                  "suite": self.suite.describe(), "batching": getattr(algo, "batching", None),
                  "batching_timings_s": getattr(algo, "batching_timings", None) or None,
                  # [step, torch threads] from that step on: a rerun replays it (engine.schedule)
                  "threads": self.threads.record or None,
                  "phase_times_s": {k: round(v, 3) for k, v in sorted(self.phase_times.items())} or None,
                  # CUDA results are bit-reproducible only with these on (`--deterministic`)
                  "deterministic": torch.are_deterministic_algorithms_enabled(),
                  # what published numbers are matched against (issue 22; results.published)
                  "protocol": algo.recorded_protocol() if algo else None}
        return {
            "run_id": self.cell.run_id, "job_id": self.job_id, "suite": self.suite.id,
            "suite_version": self.suite.version, "split_scheme": self.suite.split_scheme,
            "algorithm": self.cell.algorithm, "family": self.algo_cls.family, "seed": self.cell.seed,
            "preset": self.cell.preset, "status": status, "device": device_label(self.device),
            "started_at": started_at, "finished_at": finished_at, "wall_time_s": float(wall),
            "peak_memory_mb": peak_memory_mb(self.device), "meta_steps": int(steps),
            "primary_metric": self.suite.primary_metric, "transductive": bool(protocol["transductive"]),
            "query_batch": protocol["query_batch"], "n_test_tasks": int(self.n_test),
            "config": json.dumps(config, sort_keys=True), "metabench_version": metabench.__version__,
            "torch_version": torch.__version__, "error": error,
            # Which entry the run is a seed of, and where its algorithm came from (issue 20).
            "variant": self.cell.variant, "overrides": json.dumps(self.cell.overrides, sort_keys=True),
            "origin": ALGORITHMS.origin(self.cell.algorithm),
            "contract_version": int(self.algo_cls.contract_version),
            # Which fixed test tasks the rows are on: runs pair only when this agrees (issue 21).
            "tasks_fingerprint": self.tasks_fingerprint,
        }

    def _write_runs(self, **kw) -> None:
        write_table([self._runs_row(**kw)], self.run_dir / "runs.parquet", "runs")

    def _flush_curves(self, rows: list[dict[str, Any]], step: int) -> None:
        if rows:
            write_table(rows, self.run_dir / f"curves-{step:08d}.parquet", "curves")
            rows.clear()

    def _drop_curve_parts_after(self, step: int) -> None:
        for p in self.run_dir.glob("curves-*.parquet"):
            m = _PART.search(p.name)
            if m and int(m.group(1)) > step:
                p.unlink()

    # --- evaluation ---------------------------------------------------------------------------
    def _evaluate(self, split: str, n: int) -> dict[str, list[tuple[int, float, dict]]]:
        """metric -> [(task_id, value, descriptors)] over the suite's fixed tasks of `split`; on
        the test split also sets `tasks_fingerprint` (metabench.suites.fingerprint), hashed before
        the algorithm sees each batch."""
        out: dict[str, list] = {}
        fp = Fingerprinter(self.suite, n) if split == "test" else None
        for batch in self.suite.fixed_tasks(split, n, batch_size=getattr(self.suite, "eval_batch_size", EVAL_BATCH)):
            if fp is not None:
                fp.add(batch)
            metrics = self.algo.evaluate(batch)
            for name, values in metrics.items():
                vals = values.detach().cpu().tolist()
                out.setdefault(name, []).extend(
                    zip(batch.task_ids, vals, batch.descriptors or [{}] * len(vals)))
        if fp is not None:
            self.tasks_fingerprint = fp.value()
        return out

    # --- the loop -----------------------------------------------------------------------------
    def run(self) -> str:
        """Run (or resume) the cell; returns the final status."""
        conflict = stored_config_conflict(self)
        if conflict:
            raise ConfigError(conflict)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_temporaries(self.run_dir)   # left by a process killed in the middle of a write
        t_setup = time.perf_counter()
        self.suite.prepare(self.data_root, self.device, allow_download=self.allow_download, progress=False)
        self.algo = self.algo_cls(self.suite, self.config, self.device, self.cell.seed)
        self.algo.total_meta_steps = self.loop.meta_steps
        gen = torch.Generator().manual_seed(_train_seed(self.cell.seed))
        step, elapsed, started_at = 0, 0.0, now()
        # The training-metric average in progress (steps since the last curve row): checkpointed
        # too, so a cell stopped between two log steps resumes with identical curve rows.
        acc: dict[str, float] = {}
        n_acc = 0
        had_checkpoints = any(self.ckpt_dir.glob("ckpt-*.pt"))
        state = load_latest(self.ckpt_dir, map_location=self.device, log=self.log)
        if state is not None:
            self.algo.load_state_dict(state["algo"])
            gen.set_state(state["generator"])
            step, elapsed = int(state["step"]), float(state["elapsed"])
            started_at = datetime.fromisoformat(state["started_at"])
            acc, n_acc = dict(state.get("acc", {})), int(state.get("n_acc", 0))
            self.threads.restore(state.get("threads"), step)
            self.phase_times = dict(state.get("phase_times", {}))
            self.log(f"resumed from the checkpoint of step {step}")
        elif had_checkpoints:
            self.log("no usable checkpoint left; restarting the cell from step 0")
        self._drop_curve_parts_after(step)
        self._write_runs(status="running", started_at=started_at, wall=elapsed, steps=step)

        L, request = self.loop, self.algo.train_request()
        t0 = time.perf_counter() - elapsed
        rows: list[dict[str, Any]] = []
        last_val: dict[str, float] = {}
        saved_at = step if state is not None else -1
        # Rows that do not meta-train (classical baselines): no training loop, one validation
        # point at step 0 so that learning-curve plots can show them as a flat reference.
        trains = getattr(self.algo_cls, "needs_training", True)
        total_steps = L.meta_steps if trains else 0
        self._add_time("setup", t_setup)
        try:
            if not trains and not any(self.run_dir.glob("curves-*.parquet")):
                self.threads.at(0)
                t = time.perf_counter()
                val = self._evaluate("val", L.n_val_tasks)
                last_val = {k: sum(v for _, v, _ in items) / len(items) for k, items in val.items()}
                rows += [self._curve(0, time.perf_counter() - t0, "val", k, v) for k, v in last_val.items()]
                self._flush_curves(rows, 0)
                self._add_time("validate", t)
            while step < total_steps:
                self.threads.at(step)
                if self.should_stop():
                    if saved_at != step:
                        self._flush_curves(rows, step)
                        self._checkpoint(step, gen, t0, started_at, acc, n_acc)
                    wall = time.perf_counter() - t0
                    self._write_runs(status="cancelled", started_at=started_at, finished_at=now(), wall=wall,
                                     steps=step, error=f"cancelled at step {step}; resume continues from here")
                    self.progress({"phase": "cancelled", "step": step, "total": total_steps, "elapsed": wall,
                                   "metrics": {}, "val": last_val})
                    return "cancelled"
                t = time.perf_counter()
                batch = self.suite.sample("train", request.n_tasks, gen, n_way=request.n_way,
                                          n_shot=request.n_shot, n_query=request.n_query)
                t = self._add_time("sample", t)
                metrics = self.algo.meta_train_step(batch)
                t = self._add_time("train", t)
                step += 1
                bad = [k for k, v in metrics.items() if not math.isfinite(v)]
                if bad:
                    return self._diverged(rows, step, started_at, t0, bad, metrics)
                for k, v in metrics.items():
                    acc[k] = acc.get(k, 0.0) + v
                n_acc += 1
                wall = time.perf_counter() - t0
                if step % L.log_every == 0 or step == total_steps:
                    rows += [self._curve(step, wall, "train", k, v / n_acc) for k, v in acc.items()]
                    acc, n_acc = {}, 0
                if step % L.eval_every == 0 or step == total_steps:
                    t = time.perf_counter()
                    val = self._evaluate("val", L.n_val_tasks)
                    last_val = {k: sum(v for _, v, _ in items) / len(items) for k, items in val.items()}
                    rows += [self._curve(step, wall, "val", k, v) for k, v in last_val.items()]
                    self._add_time("validate", t)
                t = time.perf_counter()
                if step % L.checkpoint_every == 0 or step == total_steps:
                    self._flush_curves(rows, step)
                    self._checkpoint(step, gen, t0, started_at, acc, n_acc)
                    saved_at = step
                    t = self._add_time("checkpoint", t)
                self.progress({"phase": "train", "step": step, "total": total_steps,
                               "elapsed": time.perf_counter() - t0, "metrics": metrics, "val": last_val})
                self._add_time("log", t)

            self.threads.at(step)
            self.progress({"phase": "test", "step": step, "total": total_steps,
                           "elapsed": time.perf_counter() - t0, "metrics": {}, "val": last_val})
            t = time.perf_counter()
            results = self._evaluate("test", self.n_test)
            self._add_time("test", t)
            task_rows = [{"run_id": self.cell.run_id, "split": "test", "task_id": int(tid), "metric": name,
                          "value": float(v), "descriptors": json.dumps(desc, sort_keys=True)}
                         for name, items in results.items() for tid, v, desc in items]
            write_table(task_rows, self.run_dir / "tasks.parquet", "tasks")
            wall = time.perf_counter() - t0
            self._write_runs(status="finished", started_at=started_at, finished_at=now(), wall=wall, steps=step)
            primary = results.get(self.suite.primary_metric, [])
            summary = sum(v for _, v, _ in primary) / max(len(primary), 1)
            self.progress({"phase": "done", "step": step, "total": total_steps, "elapsed": wall,
                           "metrics": {self.suite.primary_metric: summary}, "val": last_val})
            return "finished"
        except Exception as exc:
            self._write_runs(status="failed", started_at=started_at, wall=time.perf_counter() - t0,
                             steps=step, error=f"{type(exc).__name__}: {exc}")
            (self.run_dir / "error.log").write_text(traceback.format_exc())
            raise

    def _checkpoint(self, step, gen, t0, started_at, acc, n_acc) -> None:
        save_checkpoint(self.ckpt_dir, step, {
            "algo": self.algo.state_dict(), "generator": gen.get_state(), "step": step,
            "elapsed": time.perf_counter() - t0, "started_at": started_at.isoformat(),
            "acc": dict(acc), "n_acc": int(n_acc), "threads": self.threads.record,
            "phase_times": dict(self.phase_times)})

    def _add_time(self, phase: str, since: float) -> float:
        """Add the seconds since ``since`` to ``phase_times[phase]``; returns now."""
        t = time.perf_counter()
        self.phase_times[phase] = self.phase_times.get(phase, 0.0) + t - since
        return t

    def _curve(self, step: int, wall: float, split: str, metric: str, value: float) -> dict[str, Any]:
        return {"run_id": self.cell.run_id, "step": step, "wall_time_s": wall, "split": split,
                "metric": metric, "value": float(value)}

    def _diverged(self, rows, step, started_at, t0, bad, metrics) -> str:
        """A non-finite training metric: record it as a result (status `diverged`), keep the curves."""
        wall = time.perf_counter() - t0
        rows += [self._curve(step, wall, "train", k, v) for k, v in metrics.items() if math.isfinite(v)]
        self._flush_curves(rows, step)
        self._write_runs(status="diverged", started_at=started_at, finished_at=now(), wall=wall, steps=step,
                         error=f"non-finite {', '.join(bad)} at step {step}")
        return "diverged"
