"""How a job uses the machine (metabench.engine.schedule, issue 23): thread shares, the recorded
thread schedule and its replay, the OpenMP wait policy and the longest-first order."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from metabench.engine.local_executor import LocalExecutor
from metabench.engine.reproduce import reproduce
from metabench.engine.schedule import (ThreadSchedule, expected_seconds, plan_threads, request_path,
                                       wait_policy, write_request)
from metabench.results.writer import read_table
from metabench.spec import Cell, RunSpec


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_plan_threads_shares_every_core():
    assert plan_threads(2, ["a"]) == {"a": 2}
    assert plan_threads(2, ["a", "b"]) == {"a": 1, "b": 1}
    assert plan_threads(8, ["a", "b", "c"]) == {"a": 3, "b": 3, "c": 2}
    assert plan_threads(2, ["a", "b", "c"]) == {"a": 1, "b": 1, "c": 1}   # never 0 threads
    assert plan_threads(4, []) == {}


def test_wait_policy_spins_only_alone_with_a_team():
    assert wait_policy(2, busy_elsewhere=0.1) == "ACTIVE"
    assert wait_policy(2, busy_elsewhere=1.0) == "PASSIVE"   # a busy neighbour: sleeping waiters
    assert wait_policy(1, busy_elsewhere=0.0) == "PASSIVE"   # no team to wait in


def test_schedule_applies_requests_and_records_them(tmp_path):
    req = tmp_path / "cell.threads"
    sched = ThreadSchedule(req)
    torch.set_num_threads(1)
    assert sched.at(0) == 1 and sched.record == [[0, 1]]
    write_request(req, 2)
    sched._checked = float("-inf")   # the 0.2 s rate limit would skip the next look
    assert sched.at(7) == 2
    sched._checked = float("-inf")
    assert sched.at(8) == 2          # the same request is not re-applied or re-recorded
    write_request(req, 1)
    sched._checked = float("-inf")
    sched.at(12)
    assert sched.record == [[0, 1], [7, 2], [12, 1]]
    resumed = ThreadSchedule(req)
    resumed.restore(sched.record, step=10)   # a checkpoint of step 10: step 12 is computed again
    assert resumed.record == [[0, 1], [7, 2]]


def test_replay_follows_the_record_not_requests(tmp_path):
    req = tmp_path / "cell.threads"
    write_request(req, 2)
    sched = ThreadSchedule(req, replay=[[0, 1], [3, 2]])
    for step in range(6):
        sched.at(step)
        assert torch.get_num_threads() == (1 if step < 3 else 2)
    assert sched.record == [[0, 1], [3, 2]]


def test_a_thread_change_mid_cell_is_recorded_and_reproduced_bit_for_bit(tmp_path, shared_data):
    """A cell whose thread count changes at step 3 (as when the job gives it a finished cell's
    core) stores that schedule; `metabench reproduce` replays it and gets identical rows."""
    from metabench.engine.cell import CellRunner

    cell = Cell("omniglot-5w1s", "maml", 0, "smoke", "cpu", {})
    runner = CellRunner(cell, tmp_path / "res", shared_data, allow_download=False,
                        threads=ThreadSchedule(replay=[[0, 1], [3, 2]]))
    assert runner.run() == "finished"
    row = read_table(tmp_path / "res" / cell.run_id / "runs.parquet", "runs").iloc[0]
    config = json.loads(row["config"])
    assert config["threads"] == [[0, 1], [3, 2]]
    assert set(config["phase_times_s"]) >= {"setup", "sample", "train", "validate", "checkpoint", "test"}
    torch.set_num_threads(2)   # the rerun starts from another count: only the replay makes it equal
    result = reproduce(tmp_path / "res", cell.run_id, scratch=tmp_path / "scratch", data_root=shared_data,
                       allow_download=False)
    assert result.identical, result.summary()
    assert torch.get_num_threads() == 2   # reproduce gives the caller its thread count back


def test_longest_expected_cell_starts_first():
    ref = pd.DataFrame({"suite": ["s", "s", "t"], "algorithm": ["long", "short", "x"],
                        "preset": ["quick"] * 3, "meta_steps": [100, 100, 10], "wall_time_s": [900.0, 30.0, 5.0]})
    cells = [Cell("s", "short", 0, "quick", "cpu", {}), Cell("s", "long", 0, "quick", "cpu", {}),
             Cell("s", "long", 1, "quick", "cpu", {"loop": {"meta_steps": 10}})]
    cost = expected_seconds(cells, reference=ref)
    assert cost[cells[1].run_id] == 900.0
    assert cost[cells[2].run_id] == pytest.approx(90.0)   # scaled by its meta-steps
    assert cost[cells[0].run_id] == 30.0
    unknown = Cell("s", "new-method", 0, "quick", "cpu", {"loop": {"meta_steps": 50}})
    assert expected_seconds([unknown], reference=ref)[unknown.run_id] == pytest.approx(50 * 4.65)


def test_executor_gives_freed_cores_to_the_running_cells(tmp_path, monkeypatch):
    monkeypatch.setattr("metabench.engine.local_executor.cpu_cores", lambda: 4)
    (tmp_path / "jobs" / "j1").mkdir(parents=True)
    ex = LocalExecutor(RunSpec(suites=["sinusoid-5shot"], algorithms=["maml"], device="cpu"), tmp_path, None,
                       "j1", 4, tmp_path / "jobs" / "j1")
    assert (ex.workers, ex.threads) == (4, 1)
    ex.procs = {"a": None, "b": None}   # two cells still running, two finished
    ex.assigned = {"a": 1, "b": 1}
    said = []
    ex.rebalance(lambda msg, terminal=True: said.append(msg))
    assert request_path(tmp_path, "j1", "a").read_text().strip() == "2"
    assert request_path(tmp_path, "j1", "b").read_text().strip() == "2"
    assert len(said) == 2
    monkeypatch.setenv("METABENCH_SCHEDULE", "static")
    static = LocalExecutor(RunSpec(suites=["sinusoid-5shot"], algorithms=["maml"], device="cpu"), tmp_path, None,
                           "j1", 4, tmp_path / "jobs" / "j1")
    static.procs, static.assigned = {"c": None}, {"c": 1}
    static.rebalance(lambda msg, terminal=True: said.append(msg))
    assert not request_path(tmp_path, "j1", "c").exists()


def test_deterministic_runs_record_it(tmp_path, shared_data):
    """`metabench run --deterministic` turns torch's deterministic algorithms on in every worker
    and each run records whether they were on (CUDA results are not bit-reproducible without)."""
    from metabench.cli import main

    args = ["run", "--suites", "sinusoid-5shot", "--algorithms", "maml", "--preset", "smoke", "--quiet",
            "--no-download", "--data-dir", str(shared_data)]
    assert main([*args, "--results-dir", str(tmp_path / "det"), "--deterministic"]) == 0
    assert main([*args, "--results-dir", str(tmp_path / "plain")]) == 0
    on = read_table(tmp_path / "det" / "sinusoid-5shot--maml--smoke--seed0" / "runs.parquet", "runs").iloc[0]
    off = read_table(tmp_path / "plain" / "sinusoid-5shot--maml--smoke--seed0" / "runs.parquet", "runs").iloc[0]
    assert json.loads(on["config"])["deterministic"] is True
    assert json.loads(off["config"])["deterministic"] is False


def test_cells_share_a_gpu_when_memory_allows(monkeypatch):
    from metabench.engine import local_executor as job

    monkeypatch.delenv("METABENCH_CELLS_PER_GPU", raising=False)
    assert job.cells_per_gpu(cores=16, n_gpus=1, gpu_memory_gib=139.0) == 8     # capped
    assert job.cells_per_gpu(cores=16, n_gpus=1, gpu_memory_gib=24.0) == 3      # by memory, 8 GiB each
    assert job.cells_per_gpu(cores=4, n_gpus=2, gpu_memory_gib=80.0) == 2       # a core per cell
    assert job.cells_per_gpu(cores=16, n_gpus=1, gpu_memory_gib=6.0) == 1
    monkeypatch.setattr(job, "gpu_memory_gib", lambda: 80.0)
    spec = RunSpec(suites=["omniglot-5w1s"], algorithms=["maml"], device="cuda")
    workers, threads, gpus = job.local_plan(spec, n_cells=20, cores=16, gpus=["0", "1"])
    assert (workers, threads, gpus) == (16, 1, ["0", "1"])                     # 8 per GPU, dealt round-robin
    assert job.local_plan(spec, n_cells=3, cores=16, gpus=["0"])[0] == 3       # never more workers than cells
    monkeypatch.setenv("METABENCH_CELLS_PER_GPU", "1")
    assert job.local_plan(spec, n_cells=20, cores=16, gpus=["0", "1"])[0] == 2  # one cell per GPU, as before
    monkeypatch.setenv("METABENCH_CELLS_PER_GPU", "zero")
    with pytest.raises(Exception, match="METABENCH_CELLS_PER_GPU must be a positive integer"):
        job.local_plan(spec, n_cells=2, cores=16, gpus=["0"])
