"""The Ray executor on a real local Ray (one cluster for the module): same numbers as local."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace

import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs `pip install 'metabench[ray]'`")

from metabench.engine import jobstore  # noqa: E402
from metabench.engine.job import run_job  # noqa: E402
from metabench.results.writer import read_table  # noqa: E402
from metabench.spec import RunSpec  # noqa: E402

pytestmark = pytest.mark.slow  # Ray's start-up alone takes 10-30 s here


@pytest.fixture(scope="module")
def ray_address():
    # A local test cluster: loopback only (otherwise Ray advertises a non-loopback address), no token.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _tables(results) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    def read(table):
        files = sorted(results.glob(f"*/{table}*.parquet"))
        return pd.concat([read_table(f, table) for f in files], ignore_index=True)

    curves = read("curves").drop(columns="wall_time_s").sort_values(["run_id", "step", "split", "metric"])
    tasks = read("tasks").sort_values(["run_id", "metric", "task_id"])
    return read("runs"), curves.reset_index(drop=True), tasks.reset_index(drop=True)


def test_ray_executor_gives_the_same_numbers_as_local(ray_address, tmp_path):
    spec = RunSpec(("sinusoid-5shot",), ("maml",), (0, 1), "smoke", "cpu", "ray", 0, ray_address)
    # Through the CLI, detached, joining the module's cluster by address: what a user does.
    out = subprocess.run([sys.executable, "-m", "metabench.cli", "run", "--suites=sinusoid-5shot", "--algorithms=maml",
                          "--seeds=0,1", "--preset=smoke", "--device=cpu", "--executor=ray",
                          f"--ray-address={ray_address}", f"--results-dir={tmp_path / 'ray'}", "--detach"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.split()[1]
    jdir = tmp_path / "ray" / "jobs" / job_id
    deadline = time.time() + 400
    while jobstore.read_status(jdir)["state"] not in ("finished", "failed", "dead"):
        assert time.time() < deadline, jobstore.log_tail(jdir)
        time.sleep(0.5)
    assert jobstore.read_status(jdir)["state"] == "finished", jobstore.log_tail(jdir)
    assert "ray: 2 CPU(s), 0 GPU(s)" in jobstore.log_tail(jdir)

    report = run_job(replace(spec, executor="local", workers=2, ray_address=None), tmp_path / "local",
                     progress=False, say=lambda m: None)
    assert len(report.finished) == 2
    runs_r, curves_r, tasks_r = _tables(tmp_path / "ray")
    runs_l, curves_l, tasks_l = _tables(tmp_path / "local")
    assert set(runs_r["status"]) == {"finished"} and len(runs_r) == 2
    assert set(runs_r["job_id"]) == {job_id}
    pd.testing.assert_frame_equal(curves_r, curves_l, check_exact=True)
    pd.testing.assert_frame_equal(tasks_r, tasks_l, check_exact=True)


def test_ray_executor_in_process_reuses_ray_and_skips_finished_cells(ray_address, tmp_path):
    """run_job with executor ray inside a process where Ray is already initialised reuses it."""
    spec = RunSpec(("sinusoid-5shot",), ("maml",), (2,), "smoke", "cpu", "ray")
    report = run_job(spec, tmp_path, progress=False, say=lambda m: None)
    assert len(report.finished) == 1 and ray.is_initialized()
    again = run_job(spec, tmp_path, progress=False, say=lambda m: None)
    assert again.skipped_done == report.finished  # nothing re-run, nothing duplicated
