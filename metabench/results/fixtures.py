"""A small, deterministic fake results folder, written through ``write_table``.

Used by the tests and the browser tests, and handy for working on the dashboard without
training anything::

    python -c "from metabench.results import write_fixture_results as w; w('/tmp/fake-results')"
    METABENCH_RESULTS=/tmp/fake-results streamlit run app.py

Values are chosen so every leaderboard number can be checked by hand. For each finished
(suite, algorithm) there are 10 test tasks and seeds 0 and 1; task ``i`` has the per-task mean
``m_i = base + e`` for even ``i`` and ``base - e`` for odd ``i``; seed 0 stores ``m_i + d`` and
seed 1 stores ``m_i - d``. Hence, with ``t9 = scipy.stats.t.ppf(0.975, 9)``:

    mean = base,   ci95 = t9 * e * sqrt(10/9) / sqrt(10) = t9 * e / 3,   std_seeds = d * sqrt(2)

=============  ==============  ========  =====  ======  =======
suite          algorithm       metric    base   e       d
=============  ==============  ========  =====  ======  =======
omniglot-5w1s  protonet        accuracy  0.98   0.01    0.005
omniglot-5w1s  maml            accuracy  0.95   0.02    0.01
sinusoid-5shot maml            mse@10    0.30   0.05    0.02
sinusoid-5shot reptile         mse@10    0.50   0.10    0.04
sinusoid-5shot maml            mse@1     1.20   0.10    0.05
sinusoid-5shot reptile         mse@1     1.50   0.20    0.10
=============  ==============  ========  =====  ======  =======

Runs that a leaderboard must leave out: a finished protonet run of omniglot-5w1s *version 1*
(every task 0.50), a *failed* maml seed-2 run (every task 0.20, tasks file present on purpose),
and a *running* snail run (curves only). The folder also holds a ``jobs/`` folder, a checkpoint
``.pt`` file and a leftover hidden temporary file, all of which readers must ignore.

``write_variant_fixture`` adds, on top of that folder, two *variants* of maml on sinusoid-5shot
(issue 20) with the same seeds 0 and 1 as the plain maml runs, which the leaderboard must keep
apart (never average with maml):

======================================  =================================  ======  ====  ====  ====
variant                                 changes (overrides)                metric  base  e     d
======================================  =================================  ======  ====  ====  ====
maml[inner_steps=3]                     inner_steps=3                      mse@10  0.20  0.04  0.01
maml[inner_steps=3]                     inner_steps=3                      mse@1   1.00  0.08  0.05
maml[inner_steps=3,loop.meta_steps=40]  inner_steps=3, loop.meta_steps=40  mse@10  0.40  0.05  0.02
maml[inner_steps=3,loop.meta_steps=40]  inner_steps=3, loop.meta_steps=40  mse@1   1.30  0.10  0.05
======================================  =================================  ======  ====  ====  ====
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from metabench.overrides import variant_label
from metabench.results.schema import curves_file_name
from metabench.results.writer import write_table

N_TASKS = 10
_T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)

# suite -> (version, primary metric, split scheme)
_SUITES = {
    "omniglot-5w1s": (2, "accuracy", "vinyals"),
    "sinusoid-5shot": (1, "mse@10", "-"),
}
# (suite, algorithm) -> family, transductive, query_batch, {metric: (base, e, d)}
_CELLS: dict[tuple[str, str], tuple[str, bool, str, dict[str, tuple[float, float, float]]]] = {
    ("omniglot-5w1s", "protonet"): ("metric", False, "n/a", {"accuracy": (0.98, 0.01, 0.005)}),
    ("omniglot-5w1s", "maml"): (
        "optimization", True, "n_way (one per class)", {"accuracy": (0.95, 0.02, 0.01)},
    ),
    ("sinusoid-5shot", "maml"): (
        "optimization", False, "n/a", {"mse@10": (0.30, 0.05, 0.02), "mse@1": (1.20, 0.10, 0.05)},
    ),
    ("sinusoid-5shot", "reptile"): (
        "optimization", False, "n/a", {"mse@10": (0.50, 0.10, 0.04), "mse@1": (1.50, 0.20, 0.10)},
    ),
}  # fmt: skip


def write_fixture_results(results_dir: str | os.PathLike) -> Path:
    """Write the fake results folder described in the module docstring; returns its path."""
    root = Path(results_dir)
    root.mkdir(parents=True, exist_ok=True)
    index = 0
    for (suite, algorithm), (family, transductive, query_batch, values) in _CELLS.items():
        for seed in (0, 1):
            sign = 1.0 if seed == 0 else -1.0
            tasks = {m: [_task_mean(base, e, i) + sign * d for i in range(N_TASKS)]
                     for m, (base, e, d) in values.items()}  # fmt: skip
            _write_run(root, index, suite, algorithm, family, seed, "finished", tasks,
                       transductive=transductive, query_batch=query_batch)  # fmt: skip
            index += 1

    # Runs the leaderboard must exclude.
    _write_run(root, index, "omniglot-5w1s", "protonet", "metric", 0, "finished",
               {"accuracy": [0.50] * N_TASKS}, version=1)  # fmt: skip
    _write_run(root, index + 1, "omniglot-5w1s", "maml", "optimization", 2, "failed",
               {"accuracy": [0.20] * N_TASKS}, transductive=True,
               query_batch="n_way (one per class)",
               error="The loss became NaN at meta-step 37; lower outer_lr.")  # fmt: skip
    _write_run(root, index + 2, "omniglot-5w1s", "snail", "model", 0, "running", None)

    # Things that live under a results folder but are not results tables.
    (root / "jobs" / "job-0001").mkdir(parents=True, exist_ok=True)
    (root / "jobs" / "job-0001" / "spec.json").write_text('{"suites": ["omniglot-5w1s"]}\n')
    checkpoint = root / _run_id("omniglot-5w1s", "snail", 0, 2) / "checkpoints"
    checkpoint.mkdir(parents=True, exist_ok=True)
    (checkpoint / "step-00000050.pt").write_bytes(b"not a real checkpoint")
    (root / _run_id("omniglot-5w1s", "maml", 0, 2) / ".tasks.parquet.abc123.tmp").write_bytes(b"half a file")
    return root


#: The variants ``write_variant_fixture`` adds: (overrides, {metric: (base, e, d)}).
VARIANTS: list[tuple[dict[str, dict[str, Any]], dict[str, tuple[float, float, float]]]] = [
    ({"config": {"inner_steps": 3}}, {"mse@10": (0.20, 0.04, 0.01), "mse@1": (1.00, 0.08, 0.05)}),
    ({"config": {"inner_steps": 3}, "loop": {"meta_steps": 40}},
     {"mse@10": (0.40, 0.05, 0.02), "mse@1": (1.30, 0.10, 0.05)}),
]  # fmt: skip


def write_variant_fixture(results_dir: str | os.PathLike) -> Path:
    """``write_fixture_results`` plus the ``VARIANTS`` of maml on sinusoid-5shot (seeds 0 and 1,
    like the plain maml runs; see the module docstring); returns the folder."""
    root = write_fixture_results(results_dir)
    index = 20
    for overrides, values in VARIANTS:
        for seed in (0, 1):
            sign = 1.0 if seed == 0 else -1.0
            tasks = {m: [_task_mean(base, e, i) + sign * d for i in range(N_TASKS)]
                     for m, (base, e, d) in values.items()}  # fmt: skip
            _write_run(root, index, "sinusoid-5shot", "maml", "optimization", seed, "finished", tasks,
                       overrides=overrides)  # fmt: skip
            index += 1
    return root


def _task_mean(base: float, e: float, i: int) -> float:
    return base + e if i % 2 == 0 else base - e


def _run_id(suite: str, algorithm: str, seed: int, version: int, overrides: dict | None = None) -> str:
    extra = ""
    if overrides:  # as metabench.spec.Cell.run_id: one folder per set of overrides
        extra = "-" + hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
    return f"{suite}-v{version}-{algorithm}-s{seed}{extra}"


def _write_run(
    root: Path,
    index: int,
    suite: str,
    algorithm: str,
    family: str,
    seed: int,
    status: str,
    tasks: dict[str, list[float]] | None,
    *,
    version: int | None = None,
    transductive: bool = False,
    query_batch: str = "n/a",
    error: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> None:
    default_version, primary, split_scheme = _SUITES[suite]
    version = default_version if version is None else version
    overrides = overrides or {}
    run_id = _run_id(suite, algorithm, seed, version, overrides)
    folder = root / run_id
    started = _T0 + timedelta(hours=index)
    steps = list(range(0, 100, 10)) if status != "running" else list(range(0, 50, 10))
    wall = 36.0 * (index + 1) + 4.0 * steps[-1]
    config = {"suite": suite, "algorithm": algorithm, "seed": seed, "preset": "paper",
              "meta_steps": 100, "outer_lr": 1e-3, "protocol": _PROTOCOLS.get((suite, algorithm))}  # fmt: skip
    write_table(
        {
            "run_id": run_id,
            "job_id": "job-0001",
            "suite": suite,
            "suite_version": version,
            "split_scheme": split_scheme,
            "algorithm": algorithm,
            "family": family,
            "seed": seed,
            "preset": "paper",
            "status": status,
            "device": "cpu",
            "started_at": started,
            "finished_at": None if status == "running" else started + timedelta(seconds=wall),
            "wall_time_s": wall,
            "peak_memory_mb": 512.0 + 64 * index,
            "meta_steps": steps[-1] + (10 if status == "finished" else 0),
            "primary_metric": primary,
            "transductive": transductive,
            "query_batch": query_batch,
            "n_test_tasks": N_TASKS,
            "config": json.dumps(config, sort_keys=True),
            "metabench_version": "0.1.0",
            "torch_version": "2.5.1",
            "error": error,
            "variant": variant_label(algorithm, overrides),
            "overrides": json.dumps(overrides, sort_keys=True),
            "origin": "built-in",
            "contract_version": 1,
            # One suite version = one set of fixed test tasks, so every fixture run of it pairs.
            "tasks_fingerprint": "tasks-sha256-v1:" + hashlib.sha256(f"fixture/{suite}/v{version}".encode()).hexdigest(),
        },
        folder / "runs.parquet",
        "runs",
    )
    # Curves in parts of 5 points, as the engine appends them.
    final = 0.9 if primary == "accuracy" else 0.4
    for start in range(0, len(steps), 5):
        rows: list[dict[str, Any]] = []
        for step in steps[start : start + 5]:
            progress = 1.0 - math.exp(-step / 30.0)
            val = 0.2 + (final - 0.2) * progress if primary == "accuracy" else 2.0 - 1.6 * progress
            rows.append({"run_id": run_id, "step": step, "wall_time_s": 4.0 * step, "split": "train",
                         "metric": "loss", "value": 1.6 * (1.0 - progress) + 0.1 + 0.01 * seed})
            rows.append({"run_id": run_id, "step": step, "wall_time_s": 4.0 * step, "split": "val",
                         "metric": primary, "value": val + 0.01 * seed})  # fmt: skip
        write_table(rows, folder / curves_file_name(steps[start]), "curves")
    if tasks is None:
        return
    rows = [
        {"run_id": run_id, "split": "test", "task_id": i, "metric": metric, "value": value,
         "descriptors": json.dumps(_descriptors(suite, i))}
        for metric, values in tasks.items()
        for i, value in enumerate(values)
    ]  # fmt: skip
    write_table(rows, folder / "tasks.parquet", "tasks")


#: The protocol each fixture run records (``runs.config['protocol']``, as the engine writes it): the
#: omniglot rows are the papers' protocols, so the leaderboard shows MAML's and ProtoNets' published
#: numbers beside them (``metabench.results.published``).
_PROTOCOLS: dict[tuple[str, str], dict[str, Any]] = {
    ("omniglot-5w1s", "maml"): {"train_way": 5, "train_shot": 1, "train_query": None, "test_steps": 3,
                                "adaptation_budget": 3, "adaptation_unit": "inner steps",
                                "backbone": "conv4-strided-64", "model": None},
    ("omniglot-5w1s", "protonet"): {"train_way": 60, "train_shot": 1, "train_query": 5, "test_steps": None,
                                    "adaptation_budget": 1, "adaptation_unit": "support passes",
                                    "backbone": "conv4-pool-64", "model": None},
    ("sinusoid-5shot", "maml"): {"train_way": None, "train_shot": 10, "train_query": 10, "test_steps": 10,
                                 "adaptation_budget": 10, "adaptation_unit": "inner steps",
                                 "backbone": "mlp-40x2", "model": None},
    ("sinusoid-5shot", "reptile"): {"train_way": None, "train_shot": 10, "train_query": None, "test_steps": 10,
                                    "adaptation_budget": 10, "adaptation_unit": "inner steps",
                                    "backbone": "mlp-40x2", "model": None},
}


def _descriptors(suite: str, task_id: int) -> dict[str, Any]:
    if suite.startswith("omniglot"):
        alphabet = ["Greek", "Latin", "Korean", "Hebrew", "Bengali"][task_id % 5]
        return {
            "alphabets": [alphabet] * 5,
            "characters": [f"{alphabet}/character{(task_id * 5 + k) % 20 + 1:02d}" for k in range(5)],
            "rotations": [(90 * (task_id + k)) % 360 for k in range(5)],
        }
    return {"amplitude": round(0.1 + 0.5 * task_id, 2), "phase": round(0.3 * task_id, 2)}

