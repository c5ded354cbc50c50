"""Durable jobs: detached processes, cancel, kill -9 and resume, two jobs on one folder, crafted ids.

Jobs are driven through the real CLI in subprocesses. The cancel and kill tests lengthen the smoke
cells through the cells' own `overrides` (written into the job's spec.json before it starts), so
there is time to stop them mid-run; the results are compared row by row with the same cells run
uninterrupted through the same job machinery.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from metabench.engine import jobstore
from metabench.errors import ConfigError
from metabench.fsutil import atomic_write_json
from metabench.results.writer import read_table
from metabench.spec import Cell, RunSpec, check_id

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
# Long enough to stop mid-run; log_every does not divide checkpoint_every, so a stop between
# two curve rows must carry the partial average in the checkpoint for identical rows.
LONG = {"config": {"batching": "loop"},
        "loop": {"meta_steps": 600, "checkpoint_every": 40, "eval_every": 200, "log_every": 7, "n_test_tasks": 20}}


def metabench(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "metabench.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"metabench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_all(results: Path, table: str) -> pd.DataFrame:
    files = sorted(results.glob(f"*/{table}*.parquet"))
    return pd.concat([read_table(f, table) for f in files], ignore_index=True) if files else pd.DataFrame()


def long_job(results: Path, seeds=(0, 1), workers: int = 2) -> str:
    """A created (not started) job whose cells are lengthened by LONG."""
    from metabench.engine.job import create_job

    spec = RunSpec(("sinusoid-5shot",), ("maml",), tuple(seeds), "smoke", "cpu", "local", workers)
    job_id, _ = create_job(spec, results)
    path = results / "jobs" / job_id / "spec.json"
    saved = json.loads(path.read_text())
    saved["cells"] = [{**c, "overrides": LONG} for c in saved["cells"]]
    atomic_write_json(path, saved)
    return job_id


def wait_for(pred, timeout: float = 240, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def steps(results: Path, job_id: str) -> list[int]:
    st = jobstore.read_status(results / "jobs" / job_id)
    return [c.get("step") or 0 for c in (st.get("cells") or {}).values()]


def tables(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    curves = read_all(results, "curves").drop(columns="wall_time_s")
    curves = curves.sort_values(["run_id", "step", "split", "metric"]).reset_index(drop=True)
    tasks = read_all(results, "tasks").sort_values(["run_id", "metric", "task_id"]).reset_index(drop=True)
    return curves, tasks


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The LONG cells (seeds 0 and 1) run uninterrupted through a job, in the foreground."""
    res = tmp_path_factory.mktemp("reference")
    job_id = long_job(res)
    metabench("jobs", "resume", job_id, "--results-dir", str(res), "--quiet")
    return tables(res)


def assert_complete_and_identical(results: Path, job_id: str, reference) -> None:
    runs = read_all(results, "runs")
    assert len(runs) == 2 and set(runs["status"]) == {"finished"}, runs[["run_id", "status"]]
    curves, tasks = tables(results)
    assert not curves.duplicated(["run_id", "step", "split", "metric"]).any()
    pd.testing.assert_frame_equal(curves, reference[0], check_exact=True)
    pd.testing.assert_frame_equal(tasks, reference[1], check_exact=True)
    assert not list(results.rglob("*.tmp")), "temporary files were left behind"
    assert jobstore.read_status(results / "jobs" / job_id)["state"] == "finished"


@pytest.mark.slow
def test_cancel_then_resume_completes_without_duplicates(tmp_path, reference):
    res = tmp_path / "results"
    job_id = long_job(res)
    out = metabench("jobs", "resume", job_id, "--detach", "--results-dir", str(res)).stdout
    assert f"job {job_id} resumed in the background" in out
    wait_for(lambda: (s := steps(res, job_id)) and len(s) == 2 and min(s) >= 3, what="both cells stepping")
    assert "cancel requested" in metabench("jobs", "cancel", job_id, "--results-dir", str(res)).stdout
    wait_for(lambda: jobstore.read_status(res / "jobs" / job_id)["state"] == "cancelled", what="the job to cancel")
    runs = read_all(res, "runs")
    assert set(runs["status"]) == {"cancelled"}
    assert (runs["meta_steps"] < 600).all()  # stopped mid-run, at a step boundary
    shown = metabench("jobs", "show", job_id, "--results-dir", str(res)).stdout
    assert shown.count("cancelled") >= 3  # the job and both cells
    metabench("jobs", "resume", job_id, "--results-dir", str(res), "--quiet")
    assert_complete_and_identical(res, job_id, reference)


@pytest.mark.slow
def test_cancel_with_cells_still_queued_ends_the_job(tmp_path):
    """One worker: the second cell is still queued when the cancel comes. The job process must end
    (it once kept polling its queue forever, shown `cancelling`), leaving that cell pending."""
    res = tmp_path / "results"
    job_id = long_job(res, workers=1)
    metabench("jobs", "resume", job_id, "--detach", "--results-dir", str(res))
    wait_for(lambda: max(steps(res, job_id) or [0]) >= 3, what="the first cell stepping")
    metabench("jobs", "cancel", job_id, "--results-dir", str(res))
    wait_for(lambda: jobstore.read_status(res / "jobs" / job_id)["state"] == "cancelled", timeout=60,
             what="the job to end as cancelled")
    cells = jobstore.read_status(res / "jobs" / job_id)["cells"]
    assert sorted(c["state"] for c in cells.values()) == ["cancelled", "pending"], cells
    metabench("jobs", "resume", job_id, "--results-dir", str(res), "--quiet")
    assert set(read_all(res, "runs")["status"]) == {"finished"}


@pytest.mark.slow
def test_kill_9_job_is_detected_dead_then_resumes(tmp_path, reference):
    res = tmp_path / "results"
    job_id = long_job(res)
    metabench("jobs", "resume", job_id, "--detach", "--results-dir", str(res))
    wait_for(lambda: (s := steps(res, job_id)) and len(s) == 2 and min(s) >= 45, what="a checkpoint in both cells")
    assert "running" in metabench("jobs", "list", "--results-dir", str(res)).stdout
    pid = jobstore.read_status(res / "jobs" / job_id)["pid"]
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the job and its workers: a crash or a power cut
    wait_for(lambda: jobstore.read_status(res / "jobs" / job_id)["state"] == "dead", timeout=10, what="dead")
    assert set(read_all(res, "runs")["status"]) == {"running"}  # what the killed cells left behind
    shown = metabench("jobs", "show", job_id, "--results-dir", str(res)).stdout
    assert f"job {job_id}: dead" in shown and shown.count("interrupted") == 2
    assert "dead" in metabench("jobs", "list", "--results-dir", str(res)).stdout
    metabench("jobs", "resume", job_id, "--results-dir", str(res), "--quiet")
    assert_complete_and_identical(res, job_id, reference)


@pytest.mark.slow
def test_two_jobs_on_one_results_folder(tmp_path):
    res = tmp_path / "results"
    ids = []
    for seeds in ("0,1", "1,2"):  # seed 1 is in both: one job runs it, the other waits and skips it
        out = metabench("run", "--suites", "sinusoid-5shot", "--algorithms", "maml", "--seeds", seeds,
                        "--preset", "smoke", "--device", "cpu", "--workers", "1", "--detach",
                        "--results-dir", str(res)).stdout
        ids.append(out.split()[1])
    assert ids[0] != ids[1]
    for job_id in ids:
        wait_for(lambda: jobstore.read_status(res / "jobs" / job_id)["state"] == "finished", timeout=300,
                 what=f"job {job_id}")
    runs = read_all(res, "runs")
    assert sorted(runs["seed"]) == [0, 1, 2] and set(runs["status"]) == {"finished"}
    curves, tasks = tables(res)
    assert not curves.duplicated(["run_id", "step", "split", "metric"]).any()
    assert not tasks.duplicated(["run_id", "metric", "task_id"]).any()
    assert not list(res.rglob("*.tmp"))


def test_stop_at_a_step_boundary_then_resume_gives_identical_rows(tmp_path):
    """In-process and fast: a cell stopped between two curve rows (log_every 7) and resumed
    writes exactly the rows of an uninterrupted run; its status goes running -> cancelled -> finished."""
    from metabench.engine.cell import CellRunner

    overrides = {"config": {"batching": "loop"},
                 "loop": {"meta_steps": 30, "checkpoint_every": 10, "eval_every": 15, "log_every": 7, "n_test_tasks": 10}}
    cell = Cell("sinusoid-5shot", "maml", 3, "smoke", "cpu", overrides)
    assert CellRunner(cell, tmp_path / "ref").run() == "finished"
    calls = {"n": 0}

    def stop_after_13() -> bool:
        calls["n"] += 1
        return calls["n"] > 13

    res = tmp_path / "stopped"
    assert CellRunner(cell, res, should_stop=stop_after_13).run() == "cancelled"
    row = read_table(res / cell.run_id / "runs.parquet", "runs").iloc[0]
    assert row["status"] == "cancelled" and row["meta_steps"] == 13
    assert CellRunner(cell, res).run() == "finished"
    got, ref = tables(res), tables(tmp_path / "ref")
    pd.testing.assert_frame_equal(got[0], ref[0], check_exact=True)
    pd.testing.assert_frame_equal(got[1], ref[1], check_exact=True)


@pytest.mark.parametrize("bad", ["../../etc", "a/b", "..", ".hidden", "x" * 201, "", "a b", "job;rm -rf ~"])
def test_crafted_ids_are_refused(bad, tmp_path):
    with pytest.raises(ConfigError, match="job id must be letters, digits"):
        jobstore.job_dir(tmp_path, bad)
    with pytest.raises(ConfigError, match="run id must be"):
        check_id(bad, "run id")


def test_crafted_ids_on_the_command_line(tmp_path):
    for action in ("show", "cancel", "resume"):
        proc = metabench("jobs", action, "../../etc", "--results-dir", str(tmp_path), check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "job id must be letters, digits" in proc.stderr
    assert not (tmp_path.parent.parent / "etc" / "spec.json").exists()
    with pytest.raises(ConfigError, match="run id"):
        Cell.from_json({"suite": "../../x", "algorithm": "maml", "seed": 0, "preset": "smoke"})


def test_spec_from_json_validates(tmp_path):
    ok = RunSpec.from_json({"suites": ["sinusoid-5shot"], "algorithms": ["maml"], "seeds": [0, 1],
                            "preset": "smoke", "workers": 2})
    assert ok.seeds == (0, 1) and ok.workers == 2
    for bad, msg in [({"suites": ["sinusoid-5shot"], "algorithms": ["maml"], "workers": -1}, "--workers"),
                     ({"suites": ["sinusoid-5shot"], "algorithms": ["maml"], "executor": "slurm"}, "--executor"),
                     ({"suites": ["sinusoid-5shot"], "algorithms": ["maml"], "executor": "ray",
                       "ray_address": "h:1; rm -rf /"}, "--ray-address"),
                     ({"suites": ["sinusoid-5shot"], "algorithms": ["maml"], "ray_address": "h:1"}, "only applies"),
                     ({"suites": ["sinusoid-5shot"]}, "needs 'algorithms'"),
                     ({"suites": ["sinusoid-5shot"], "algorithms": ["maml"], "oops": 1}, "unknown run spec key")]:
        with pytest.raises(ConfigError, match=msg):
            RunSpec.from_json(bad)


def test_dead_job_detection_uses_process_start_time(tmp_path):
    me = jobstore.identity()
    assert jobstore.is_alive({**me, "heartbeat": 0})
    # Same pid, different start time: the pid was reused by another process -> dead.
    assert not jobstore.is_alive({**me, "pid_start": "1", "heartbeat": time.time()})
    assert not jobstore.is_alive({**me, "pid": 2**22 + 7, "heartbeat": time.time()})
    # Another host: only the heartbeat can tell.
    assert jobstore.is_alive({**me, "host": "elsewhere", "heartbeat": time.time()})
    assert not jobstore.is_alive({**me, "host": "elsewhere", "heartbeat": time.time() - 120})


def test_local_plan_splits_cores_and_gpus():
    from metabench.engine.local_executor import local_plan

    spec = RunSpec(("sinusoid-5shot",), ("maml",), (0, 1, 2), "smoke")
    assert local_plan(spec, 3, cores=8, gpus=[]) == (3, 2, [])  # 3 workers x 2 threads <= 8 cores
    assert local_plan(spec, 1, cores=8, gpus=[]) == (1, 8, [])
    assert local_plan(spec, 12, cores=8, gpus=[]) == (8, 1, [])
    assert local_plan(spec, 12, cores=16, gpus=["0", "1"]) == (2, 8, ["0", "1"])  # one cell per GPU
    from dataclasses import replace

    assert local_plan(replace(spec, workers=4), 12, cores=8, gpus=[]) == (4, 2, [])
