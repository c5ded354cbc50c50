"""Crash at any instant: SIGKILL a running grid (or make it die inside a write), resume, repeat;
at the end every cell is finished, the rows equal an uninterrupted run's, nothing partial is left.

Deterministic kill points use the fault hook of ``metabench.fsutil`` (``METABENCH_FAULT=point:n``
makes every process that reaches the n-th ``point`` exit 137 on the spot, e.g. half-way through
writing a Parquet file or a checkpoint); random ones SIGKILL the whole process group (the job
and its worker) after a delay drawn from a fixed seed.

The full harness (``slow``) drives ``metabench run`` on a 6-cell smoke grid; the light version
(default run) kills one cell's worker inside a Parquet write and inside a checkpoint write.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metabench import fsutil
from metabench.results.schema import GLOBS
from metabench.results.verify import verify_results
from metabench.results.writer import read_table


def _env(fault: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("METABENCH_FAULT", None)
    if fault:
        env["METABENCH_FAULT"] = fault
    return env


def _rows(results: Path, table: str, run: str | None = None) -> pd.DataFrame:
    files = sorted(results.glob(f"{run}/{table}*.parquet" if run else GLOBS[table]))
    if not files:
        return pd.DataFrame()
    df = pd.concat([read_table(f, table) for f in files], ignore_index=True).drop(columns="wall_time_s", errors="ignore")
    keys = ["run_id", "step", "split", "metric"] if table == "curves" else ["run_id", "metric", "task_id"]
    return df.sort_values(keys).reset_index(drop=True)


def _assert_clean(results: Path) -> None:
    leftovers = [p for p in results.rglob("*") if fsutil.is_temporary(p)]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    report = verify_results(results)
    assert not report.problems, "\n".join(map(str, report.problems))
    curves = _rows(results, "curves")
    assert not curves.duplicated(["run_id", "step", "split", "metric"]).any()


# -- light: one cell, killed inside a Parquet write and inside a checkpoint write --------------------

CELL = {"suite": "sinusoid-5shot", "algorithm": "maml", "seed": 5, "preset": "smoke", "device": "cpu",
        "overrides": {"config": {"batching": "loop"}}}


def _worker(results: Path, fault: str | None) -> int:
    cmd = [sys.executable, "-m", "metabench.engine.worker", "--cell", json.dumps(CELL), "--results-dir",
           str(results), "--threads", "1"]
    return subprocess.run(cmd, env=_env(fault), capture_output=True, timeout=600).returncode


def test_killed_inside_a_parquet_write_and_a_checkpoint_write_then_resumed(tmp_path):
    from metabench.engine.cell import CellRunner
    from metabench.spec import Cell

    ref = tmp_path / "reference"
    assert CellRunner(Cell(**CELL), ref).run() == "finished"
    res = tmp_path / "killed"
    run = res / Cell(**CELL).run_id
    # 1st and 2nd Parquet writes: runs.parquet ('running'), curves-00000002; dies in the 3rd,
    # curves-00000004, half-way through its temporary file.
    assert _worker(res, "parquet:3") == 137
    assert list(run.glob(".curves-00000004.parquet.*.tmp")) and not (run / "curves-00000004.parquet").exists()
    # Resumes from step 2 and dies half-way through writing checkpoint 4 (its 1st checkpoint; the
    # checksum file is already there).
    assert _worker(res, "checkpoint:1") == 137
    assert (run / "checkpoints" / "ckpt-00000004.sha256").exists()
    assert list((run / "checkpoints").glob(".ckpt-00000004.pt.*.tmp"))
    assert CellRunner(Cell(**CELL), res).run() == "finished"
    for table in ("curves", "tasks"):
        pd.testing.assert_frame_equal(_rows(res, table), _rows(ref, table), check_exact=True)
    assert (run / "events.log").read_text().count("resumed from the checkpoint of step 2") == 2
    _assert_clean(res)


# -- full: a 6-cell grid through the CLI, >= 20 kill points ---------------------------------------------

GRID = ["--suites", "sinusoid-5shot,omniglot-5w1s", "--algorithms", "maml,protonet", "--seeds", "0,1",
        "--preset", "smoke", "--device", "cpu", "--quiet", "--no-download"]
# Deterministic kill points: inside Parquet writes, inside checkpoint writes, inside any atomic
# write (progress.json, the job's status.json), and between a complete temporary file and its rename.
FAULTS = ["parquet:1", "parquet:4", "parquet:9", "checkpoint:1", "checkpoint:3", "write:2", "write:7",
          "rename:3", "rename:10"]
N_RANDOM = 20


def _cli(results: Path, data: Path, fault: str | None = None, kill_after: float | None = None) -> int:
    cmd = [sys.executable, "-m", "metabench.cli", "run", *GRID, "--results-dir", str(results),
           "--data-dir", str(data)]
    jobs = set((results / "jobs").glob("*"))
    proc = subprocess.Popen(cmd, env=_env(fault), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    if kill_after is not None:
        # The delay counts from the job's start (its folder appears after Python's start-up and the
        # data check), so kills land in worker start-up, training, evaluation and writes.
        while proc.poll() is None and not set((results / "jobs").glob("*")) - jobs:
            time.sleep(0.02)
        try:
            return proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the job and its worker, like a crashed machine
    return proc.wait(timeout=1200)


def _batching(results: Path) -> dict[str, str | None]:
    return {p.parent.name: json.loads(read_table(p, "runs")["config"].item()).get("batching")
            for p in results.glob("*/runs.parquet")}


def _finished(results: Path) -> dict[str, pd.Series]:
    runs = {p.parent.name: read_table(p, "runs").iloc[0] for p in results.glob("*/runs.parquet")}
    return runs if len(runs) == 6 and {r["status"] for r in runs.values()} == {"finished"} else {}


def _check_against(res: Path, ref: Path) -> int:
    """The end-of-grid checks; returns how many cells are bit-identical to the reference."""
    assert _finished(res), "not every cell finished"
    _assert_clean(res)
    # maml's batching='auto' times loop vs vmap on the first meta-batch and keeps the faster, so two
    # uninterrupted runs can differ in float rounding; rows are compared bit for bit wherever the
    # choice matches the reference's (it is checkpointed, so a resume keeps it), else to 1e-5.
    same, chosen = _batching(ref), _batching(res)
    exact = [run for run in chosen if same[run] == chosen[run]]
    for table in ("curves", "tasks"):
        a, b = _rows(res, table), _rows(ref, table)
        assert len(a) == len(b)
        cols = [c for c in a.columns if c != "value"]
        pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
        m = a["run_id"].isin(exact).to_numpy()
        assert np.array_equal(a["value"].to_numpy()[m], b["value"].to_numpy()[m], equal_nan=True)
        np.testing.assert_allclose(a["value"].to_numpy()[~m], b["value"].to_numpy()[~m], rtol=1e-5, atol=1e-7)
    return len(exact)


@pytest.mark.slow
def test_grid_survives_kills_at_many_instants(tmp_path, shared_data):
    ref, res = tmp_path / "reference", tmp_path / "killed"
    t0 = time.time()
    assert _cli(ref, shared_data) == 0
    uninterrupted = time.time() - t0
    rng = random.Random(20260101)
    plan = [("fault", f) for f in FAULTS] + [("kill", rng.uniform(0.0, 12.0)) for _ in range(N_RANDOM)]
    rng.shuffle(plan)
    survived, rounds, exact = 0, 0, []
    for kind, arg in plan:
        rc = _cli(res, shared_data, fault=arg) if kind == "fault" else _cli(res, shared_data, kill_after=arg)
        survived += rc != 0  # 137/-9: the job was killed; 1: a worker was, and the job went on
        if _finished(res):  # the grid got done within this attempt: resume once, check, start again
            assert _cli(res, shared_data) == 0
            exact.append(_check_against(res, ref))
            shutil.rmtree(res)
            rounds += 1
    assert _cli(res, shared_data) == 0
    exact.append(_check_against(res, ref))
    assert survived >= 20, f"only {survived} attempts were actually interrupted"
    print(f"\ncrash harness: {survived} of {len(plan)} attempts killed ({len(FAULTS)} fault points inside "
          f"writes, {N_RANDOM} random SIGKILLs of job+worker) over {rounds + 1} full grid(s); every grid "
          f"finished all 6 cells with the reference's rows and nothing partial left; bit-identical cells "
          f"per grid {exact} (others picked another maml batching); uninterrupted grid {uninterrupted:.0f} s, "
          f"harness {time.time() - t0:.0f} s")
