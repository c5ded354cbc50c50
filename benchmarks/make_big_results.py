"""Write a results folder with about 1 million result rows (tasks + curves) through the real writer.

    python benchmarks/make_big_results.py /tmp/big-results [--rows 1000000]

2 suites (omniglot-5w1s, sinusoid-5shot) x 8 algorithms x 5 seeds = 80 finished runs; each run
has 600 test tasks (2 metrics for sinusoid) and a learning curve of train loss + val metric.
The number of curve steps is chosen so the total is about --rows.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from metabench.results.schema import curves_file_name
from metabench.results.writer import write_table

ALGORITHMS = [("maml", "optimization"), ("fomaml", "optimization"), ("reptile", "optimization"),
              ("anil", "optimization"), ("protonet", "metric"), ("matchingnet", "metric"),
              ("relationnet", "metric"), ("snail", "model")]  # fmt: skip
SUITES = {"omniglot-5w1s": ("accuracy", ["accuracy"], "vinyals"), "sinusoid-5shot": ("mse@10", ["mse@10", "mse@1"], "-")}
SEEDS, TASKS, PARTS = 5, 600, 10


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    root = Path(args.folder)
    n_runs = len(SUITES) * len(ALGORITHMS) * SEEDS
    task_rows = SEEDS * len(ALGORITHMS) * TASKS * sum(len(m) for _, m, _ in SUITES.values())
    steps = max(PARTS, (args.rows - task_rows) // (n_runs * 2))  # 2 curve rows per step
    rng = np.random.default_rng(0)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    total = 0
    for s_i, (suite, (primary, metrics, split)) in enumerate(SUITES.items()):
        for a_i, (algorithm, family) in enumerate(ALGORITHMS):
            skill = 0.5 + 0.06 * a_i
            for seed in range(SEEDS):
                run_id = f"{suite}-{algorithm}-s{seed}"
                folder = root / run_id
                wall = 60.0 * (1 + a_i) * (1 + 0.05 * seed)
                write_table({
                    "run_id": run_id, "job_id": "big", "suite": suite, "suite_version": 1, "split_scheme": split,
                    "algorithm": algorithm, "family": family, "seed": seed, "preset": "quick",
                    "status": "finished", "device": "cpu", "started_at": t0 + timedelta(hours=s_i * 100 + a_i * 10 + seed),
                    "finished_at": t0 + timedelta(hours=s_i * 100 + a_i * 10 + seed, seconds=wall),
                    "wall_time_s": wall, "peak_memory_mb": 300.0 + 90 * a_i, "meta_steps": steps,
                    "primary_metric": primary, "transductive": family == "optimization", "query_batch": "n/a",
                    "n_test_tasks": TASKS, "config": "{}", "metabench_version": "0.1.0", "torch_version": "2.13.0",
                    "error": None,
                }, folder / "runs.parquet", "runs")  # fmt: skip
                task_ids = np.arange(TASKS)
                rows = []
                for metric in metrics:
                    if metric == "accuracy":
                        values = np.clip(skill + 0.4 + rng.normal(0, 0.04, TASKS), 0, 1)
                    else:
                        values = np.abs((2.0 - skill) * (1 + rng.normal(0, 0.3, TASKS))) * (3 if metric == "mse@1" else 1)
                    for i in task_ids:
                        desc = ({"alphabets": [f"alphabet{(i * 7 + k) % 13:02d}" for k in range(5)], "rotations": [0, 90, 180, 270, 0]}
                                if suite.startswith("omniglot") else {"amplitude": 0.1 + 4.9 * (i % 50) / 49, "phase": math.pi * (i % 31) / 30})  # fmt: skip
                        rows.append({"run_id": run_id, "split": "test", "task_id": int(i), "metric": metric,
                                     "value": float(values[i]), "descriptors": json.dumps(desc)})  # fmt: skip
                write_table(rows, folder / "tasks.parquet", "tasks")
                total += len(rows)
                per_part = math.ceil(steps / PARTS)
                for start in range(0, steps, per_part):
                    st = np.arange(start, min(steps, start + per_part))
                    progress = 1 - np.exp(-st / (steps / 4))
                    val = (0.2 + (skill + 0.3) * progress) if primary == "accuracy" else (2.0 - 1.5 * skill * progress)
                    part = {"run_id": [run_id] * (2 * len(st)), "step": np.concatenate([st, st]),
                            "wall_time_s": np.concatenate([st, st]) * wall / steps,
                            "split": ["train"] * len(st) + ["val"] * len(st),
                            "metric": ["loss"] * len(st) + [primary] * len(st),
                            "value": np.concatenate([1.5 * (1 - progress) + 0.1, val + rng.normal(0, 0.01, len(st))])}  # fmt: skip
                    import pandas as pd

                    write_table(pd.DataFrame(part), folder / curves_file_name(int(start)), "curves")
                    total += 2 * len(st)
    print(f"wrote {total:,} result rows in {n_runs} runs under {root}")


if __name__ == "__main__":
    main()
