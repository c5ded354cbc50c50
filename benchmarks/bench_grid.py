"""The default `metabench run` grid under each scheduling policy, timed side by side (issue 23).

    python benchmarks/bench_grid.py                  # every cell's loop x 0.1: ~15 min on 2 cores
    python benchmarks/bench_grid.py --scale 1        # the full default grid: ~2 h on 2 cores

The grid is the README's main command (`metabench run`: maml and protonet on omniglot-5w1s and
sinusoid-5shot, `quick`, seed 0). Each policy runs the same cells from scratch into its own
results folder, one policy after the other, through the real job process
(`python -m metabench.engine.job`):

* `static`: one fixed thread count per worker for the whole cell (the engine before issue 23;
  `METABENCH_SCHEDULE=static`);
* `adaptive`: the default; when nothing waits to start, the cores of finished cells go to the
  cells still running (metabench.engine.schedule).

At `--scale S` every cell's meta-steps and test tasks are multiplied by S (at least 1 and 20);
the validation, log and checkpoint intervals stay, so their counts scale with the steps and each
phase keeps roughly its share of the full cell. Printed: each policy's wall time and its ratio to `static`; per cell its
wall time, the thread schedule it recorded, and the share of its time that is not meta-training
(setup, sampling, validation, checkpoints, logging, test; from `runs.config.phase_times_s`).
The machine should be quiet: the table says how much CPU other processes used meanwhile.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # measure the checkout's metabench, not some installed copy
    sys.path.insert(0, str(REPO))

SUITES = ["omniglot-5w1s", "sinusoid-5shot"]   # the defaults of `metabench run`
ALGORITHMS = ["maml", "protonet"]
POLICIES = ("static", "adaptive")
TRAINING = ("train",)                          # phase_times_s keys that are meta-training


def scaled_cells(cells, scale: float):
    """The cells with their quick loop scaled by ``scale`` (see the module docstring)."""
    from metabench.algorithms import ALGORITHMS as REGISTRY
    from metabench.spec import Cell, loop_for
    from metabench.suites import make_suite

    out = []
    for c in cells:
        if scale == 1:
            out.append(c)
            continue
        suite = make_suite(c.suite)
        loop = loop_for(REGISTRY.get(c.algorithm), c.preset, suite)

        def s(v: int, least: int = 1) -> int:
            return max(least, round(v * scale))

        n_test = loop.n_test_tasks or suite.n_test_tasks
        # validation, log and checkpoint intervals stay: their counts scale with the steps
        over = {"meta_steps": s(loop.meta_steps), "n_test_tasks": s(n_test, 20)}
        out.append(Cell(c.suite, c.algorithm, c.seed, c.preset, c.device, {**c.overrides, "loop": over}))
    return out


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def run_policy(policy: str, scale: float, data_root: str, workdir: Path) -> dict:
    from metabench.engine.job import create_job
    from metabench.engine.jobstore import job_dir, read_spec
    from metabench.fsutil import atomic_write_json
    from metabench.spec import Cell, RunSpec

    results = workdir / policy
    spec = RunSpec(suites=SUITES, algorithms=ALGORITHMS, seeds=[0], preset="quick")
    job_id, _ = create_job(spec, results, data_root, allow_download=False)
    jdir = job_dir(results, job_id)
    saved = read_spec(jdir)
    saved["cells"] = [c.to_json() for c in scaled_cells([Cell.from_json(c) for c in saved["cells"]], scale)]
    atomic_write_json(jdir / "spec.json", saved)
    env = {**os.environ, "METABENCH_SCHEDULE": policy, "METABENCH_REFERENCE": "off",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    before = os.times()
    busy0, total0 = cpu_ticks()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "metabench.engine.job", "--results-dir", str(results), "--job-id", job_id],
                   env=env, check=True)
    wall = time.perf_counter() - t0
    busy1, total1 = cpu_ticks()
    after = os.times()
    ticks = os.sysconf("SC_CLK_TCK")
    ours = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    machine = (busy1 - busy0) / ticks
    return {"policy": policy, "wall": wall, "cpu_ours": ours, "cpu_others": max(0.0, machine - ours),
            "cells": read_cells(results), "schedule": read_spec(jdir).get("schedules", [{}])[-1]}


def read_cells(results: Path) -> list[dict]:
    import pandas as pd

    rows = []
    for path in sorted(results.glob("*/runs.parquet")):
        row = pd.read_parquet(path).iloc[0]
        config = json.loads(row["config"])
        phases = config.get("phase_times_s") or {}
        total = sum(phases.values()) or float("nan")
        rows.append({"run_id": row["run_id"], "status": row["status"], "wall": float(row["wall_time_s"]),
                     "threads": config.get("threads"), "phases": phases,
                     "not_training": 1 - sum(phases.get(k, 0.0) for k in TRAINING) / total})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.1, help="multiply every cell's loop by this (default 0.1)")
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma list of " + ", ".join(POLICIES))
    ap.add_argument("--data-dir", default=os.environ.get("METABENCH_DATA"), help="the data folder (Omniglot)")
    ap.add_argument("--keep", default=None, help="keep the results folders under this folder")
    ap.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    args = ap.parse_args(argv)
    if not 0 < args.scale <= 1:
        ap.error("--scale must be in (0, 1]")
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        ap.error(f"unknown policy {bad[0]!r}; choose from {', '.join(POLICIES)}")
    import platform

    import torch

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-grid-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"# bench_grid: default grid, quick x {args.scale:g}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n", flush=True)
    measured = [run_policy(p, args.scale, args.data_dir, workdir) for p in policies]
    base = next((m["wall"] for m in measured if m["policy"] == "static"), measured[0]["wall"])
    print("| policy | wall | vs static | CPU s (grid) | CPU s (other processes) | workers x threads |")
    print("|---|---|---|---|---|---|")
    for m in measured:
        plan = m["schedule"]
        print(f"| {m['policy']} | {m['wall'] / 60:.2f} min | {m['wall'] / base:.3f}x | {m['cpu_ours']:.0f} | "
              f"{m['cpu_others']:.0f} | {plan.get('workers')} x {plan.get('threads_per_worker')} |")
    print("\n| policy | cell | status | wall | threads [step, n] | not meta-training | biggest non-training phases |")
    print("|---|---|---|---|---|---|---|")
    for m in measured:
        for c in m["cells"]:
            rest = sorted(((v, k) for k, v in c["phases"].items() if k not in TRAINING), reverse=True)[:3]
            print(f"| {m['policy']} | {c['run_id']} | {c['status']} | {c['wall'] / 60:.2f} min | {c['threads']} | "
                  f"{100 * c['not_training']:.1f}% | {', '.join(f'{k} {v:.0f} s' for v, k in rest)} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"scale": args.scale, "runs": measured}, indent=1, default=str))
    print(f"\nresults folders: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
