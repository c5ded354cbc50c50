"""The engine end to end: the CLI in a subprocess, Parquet out, a kill in the middle and a resume."""
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

from metabench.results.writer import read_table
from metabench.spec import Cell

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def metabench(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "metabench.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"metabench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_all(results: Path, table: str) -> pd.DataFrame:
    files = sorted(results.glob(f"*/{table}*.parquet"))
    return pd.concat([read_table(f, table) for f in files], ignore_index=True) if files else pd.DataFrame()


def test_run_smoke_grid_end_to_end(tmp_path, shared_data):
    res = tmp_path / "results"
    out = metabench("run", "--suites", "sinusoid-5shot,omniglot-5w1s", "--algorithms", "maml,protonet",
                    "--seeds", "0", "--preset", "smoke", "--results-dir", str(res), "--data-dir",
                    str(shared_data), "--quiet")
    assert "skip protonet on sinusoid-5shot: protonet handles classification tasks" in out.stderr
    assert "3 cell(s) finished" in out.stdout and "metabench leaderboard" in out.stdout
    runs = read_all(res, "runs")
    assert len(runs) == 3 and set(runs["status"]) == {"finished"}
    assert set(runs["device"]) == {"cpu"} and (runs["wall_time_s"] > 0).all() and (runs["peak_memory_mb"] > 50).all()
    cfg = json.loads(runs.loc[runs["algorithm"] == "maml"].iloc[0]["config"])
    # smoke pins the batching (bit-reproducible rows); quick/paper measure both ('auto')
    assert cfg["algorithm"]["batching"] == "loop" and cfg["batching"] == "loop"
    assert not cfg["batching_timings_s"]
    maml_og = runs[(runs.algorithm == "maml") & (runs.suite == "omniglot-5w1s")].iloc[0]
    assert bool(maml_og["transductive"]) and maml_og["query_batch"] == "n_way (one per class)"
    tasks = read_all(res, "tasks")
    # smoke: 10 fixed test tasks per cell; every task id present once per (run, metric)
    acc = tasks[tasks.metric == "accuracy"]
    assert acc.groupby("run_id")["task_id"].apply(sorted).map(tuple).nunique() == 1
    assert acc.groupby("run_id").size().eq(10).all()
    assert acc["value"].between(0, 1).all()
    d = json.loads(acc.iloc[0]["descriptors"])
    assert len(d["alphabets"]) == 5
    mse = tasks[tasks.metric == "mse@1"]
    assert len(mse) == 10 and (mse["value"] >= 0).all()
    assert "amplitude" in json.loads(mse.iloc[0]["descriptors"])
    curves = read_all(res, "curves")
    assert {"train", "val"} <= set(curves["split"])
    assert not curves.duplicated(["run_id", "step", "split", "metric"]).any()
    # The same tables through DuckDB's glob, as the README promises.
    import duckdb
    n = duckdb.connect().execute("select count(*) from read_parquet(?)", [f"{res}/**/tasks*.parquet"]).fetchone()[0]
    assert n == len(tasks)
    board = metabench("leaderboard", "--results-dir", str(res), "--format", "csv").stdout
    assert "maml" in board and "protonet" in board
    again = metabench("run", "--suites", "sinusoid-5shot", "--algorithms", "maml", "--seeds", "0,1", "--preset",
                      "smoke", "--results-dir", str(res), "--quiet")
    assert "1 cell(s) finished, 1 already done" in again.stdout
    assert len(read_all(res, "runs")) == 4


CELL = {"suite": "sinusoid-5shot", "algorithm": "maml", "seed": 4, "preset": "smoke", "device": "cpu",
        "overrides": {"config": {"batching": "loop"}, "loop": {"meta_steps": 600, "checkpoint_every": 20, "eval_every": 100, "log_every": 5,
                               "n_test_tasks": 20}}}


def worker(results: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "metabench.engine.worker", "--cell", json.dumps(CELL),
                             "--results-dir", str(results), "--threads", "1"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _tables(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    curves = read_all(results, "curves").drop(columns="wall_time_s").sort_values(["step", "split", "metric"])
    tasks = read_all(results, "tasks").sort_values(["metric", "task_id"])
    return curves.reset_index(drop=True), tasks.reset_index(drop=True)


def test_kill_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    ref = tmp_path / "uninterrupted"
    assert worker(ref).wait(timeout=600) == 0
    res = tmp_path / "killed"
    run_dir = res / Cell.from_json(CELL).run_id
    kills = 0
    for target in (100, 350):
        proc = worker(res)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            steps = [int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("ckpt-*.pt")]
            if steps and max(steps) >= target:
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
        assert read_table(run_dir / "runs.parquet", "runs")["status"].iloc[0] == "running"
        assert not (run_dir / "tasks.parquet").exists()
    assert kills == 2, "the run finished before it could be killed; raise meta_steps"
    assert worker(res).wait(timeout=600) == 0
    assert read_table(run_dir / "runs.parquet", "runs")["status"].iloc[0] == "finished"
    c_ref, t_ref = _tables(ref)
    c_res, t_res = _tables(res)
    assert len(c_res) == len(c_ref) and not c_res.duplicated(["step", "split", "metric"]).any()
    # bit-identical on CPU: model, optimiser and generator state are all checkpointed
    pd.testing.assert_frame_equal(c_res, c_ref, check_exact=True)
    pd.testing.assert_frame_equal(t_res, t_ref, check_exact=True)
    assert not list(res.rglob("*.tmp")), "temporary files were left behind"
    assert len(list((run_dir / "checkpoints").glob("ckpt-*.pt"))) == 2  # the last two are kept


def test_a_folder_of_another_configuration_is_neither_skipped_nor_resumed(tmp_path):
    """A finished run whose stored config is not what the cell resolves to now (its preset changed
    since, e.g. in a newer metabench) is reported with one sentence, never counted as done."""
    import json as _json

    from metabench.engine.cell import CellRunner
    from metabench.engine.job import run_job
    from metabench.errors import ConfigError
    from metabench.results.writer import read_table, write_table
    from metabench.spec import RunSpec

    spec = RunSpec(("sinusoid-5shot",), ("maml",), (0,), "smoke", "cpu")
    (cell,), _ = spec.plan()
    assert CellRunner(cell, tmp_path, allow_download=False).run() == "finished"
    again = run_job(spec, tmp_path, progress=False, say=lambda m: None)
    assert again.skipped_done == [cell.run_id] and not again.failed      # same configuration: done
    path = tmp_path / cell.run_id / "runs.parquet"
    row = read_table(path, "runs")
    config = _json.loads(row["config"].iloc[0])
    config["algorithm"]["inner_lr"] *= 2                                   # as if the preset had changed
    row["config"] = _json.dumps(config, sort_keys=True)
    write_table(row.to_dict("records"), path, "runs")
    report = run_job(spec, tmp_path, progress=False, say=lambda m: None)
    assert not report.skipped_done and [r for r, _ in report.failed] == [cell.run_id]
    message = report.failed[0][1]
    assert "algorithm.inner_lr differ" in message and "another --results-dir" in message and "\n" not in message
    with pytest.raises(ConfigError, match="another configuration"):
        CellRunner(cell, tmp_path, allow_download=False).run()
    assert read_table(path, "runs")["status"].iloc[0] == "finished"          # the old run is left as it was


def test_a_field_added_with_its_old_behaviour_does_not_make_a_run_stale():
    """MAML's `inner_loss` came after runs were recorded; 'mean' computes what they computed, so a
    stored config without it matches a current 'mean', and no other value (or field) does."""
    from metabench.algorithms.maml import MAML
    from metabench.engine.cell import config_differences

    current = {"algorithm": {"inner_lr": 0.4, "inner_loss": "mean"}, "loop": {"meta_steps": 5}, "suite": {"version": 1}}
    stored = {"algorithm": {"inner_lr": 0.4}, "loop": {"meta_steps": 5}, "suite": {"version": 1}}
    assert MAML.ADDED_FIELDS == {"inner_loss": "mean"}
    assert config_differences(stored, current, MAML.ADDED_FIELDS) == []
    assert config_differences(stored, current) == ["algorithm.inner_loss"]          # without the declaration
    sum_k = {**current, "algorithm": {"inner_lr": 0.4, "inner_loss": "sum/K"}}
    assert config_differences(stored, sum_k, MAML.ADDED_FIELDS) == ["algorithm.inner_loss"]
    extra = {**current, "algorithm": {**current["algorithm"], "new_field": 1}}
    assert config_differences(stored, extra, MAML.ADDED_FIELDS) == ["algorithm.new_field"]


def test_monitoring_settings_do_not_make_a_run_stale():
    """Validation cadence and size, curve averaging and the checkpoint interval only decide what is
    watched: a stored run differing in them is the same computation; meta-steps or test tasks are not."""
    from metabench.engine.cell import MONITORING, config_differences

    current = {"algorithm": {"inner_lr": 0.4}, "suite": {"version": 1},
               "loop": {"meta_steps": 5, "eval_every": 1000, "n_val_tasks": 50, "log_every": 20,
                        "checkpoint_every": 100, "n_test_tasks": None}}
    stored = {**current, "loop": {**current["loop"], "eval_every": 500, "n_val_tasks": 200, "log_every": 10,
                                  "checkpoint_every": 50}}
    assert MONITORING == {"eval_every", "n_val_tasks", "log_every", "checkpoint_every"}
    assert config_differences(stored, current) == []
    more_steps = {**current, "loop": {**current["loop"], "meta_steps": 6, "n_test_tasks": 100}}
    assert config_differences(stored, more_steps) == ["loop.meta_steps", "loop.n_test_tasks"]
