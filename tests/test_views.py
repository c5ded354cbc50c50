"""The Streamlit-free data behind the dashboard's views (metabench.results.views), on small frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metabench.results import views


def _runs(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"run_id": [f"r{i}" for i in range(n)], "job_id": [None] * n, "status": ["finished"] * n}
    return pd.DataFrame({**base, **columns})


def test_run_states_marks_running_runs_of_dead_jobs_interrupted(tmp_path):
    from metabench.engine import jobstore
    from metabench.fsutil import atomic_write_json

    jdir = tmp_path / jobstore.JOBS / "job-0001"
    jdir.mkdir(parents=True)
    atomic_write_json(jdir / "spec.json", {})
    atomic_write_json(jdir / "status.json", {"state": "running", "pid": 2**22 + 12345,
                                             "cells": {"r1": {"state": "running"}}})  # fmt: skip
    runs = _runs(status=["finished", "running", "running"], job_id=[None, "job-0001", None])
    states = views.run_states(runs, tmp_path)
    # r1's job process is not alive -> interrupted; r2 has no job folder -> stays running
    assert states.tolist() == ["finished", "interrupted", "running"]
    assert runs["status"].tolist() == ["finished", "running", "running"]  # the input is untouched


def test_suites_overview_counts_by_status():
    t = pd.Timestamp("2025-03-01 18:00", tz="UTC")
    runs = _runs(
        suite=["b", "a", "a", "a"], suite_version=[1, 1, 2, 2], algorithm=["maml", "protonet", "maml", "maml"],
        preset=["smoke", "quick", "quick", "smoke"], status=["finished", "interrupted", "failed", "finished"],
        started_at=[t] * 4, finished_at=[t, pd.NaT, t + pd.Timedelta(hours=1), pd.NaT],
    )  # fmt: skip
    table = views.suites_overview(runs)
    assert table["Suite"].tolist() == ["a", "b"]
    a = table.iloc[0]
    assert (a["Versions"], a["Runs"], a["Finished"], a["Interrupted"], a["Failed / diverged"]) == ("1, 2", 3, 1, 1, 1)
    assert (a["Algorithms"], a["Presets"], a["Last run"]) == ("maml, protonet", "quick, smoke", "2025-03-01 19:00 UTC")


def test_smooth_curves_ema_and_thinning():
    steps = np.arange(10)
    df = pd.DataFrame({"algorithm": "maml", "variant": "maml", "step": steps, "mean": [0.0, 1.0] * 5,
                       "ci_low": 0.0, "ci_high": 1.0})  # fmt: skip
    assert views.smooth_curves(df, 0.0).equals(df)  # off, and fewer points than the limit
    smooth = views.smooth_curves(df, 0.5)
    assert smooth["mean"].iloc[1] == pytest.approx((0.5 * 0 + 1 * 1) / 1.5)  # pandas ewm, adjust=True
    thin = views.smooth_curves(df, 0.0, max_points=4)
    assert thin["step"].tolist() == [0, 3, 6, 9]  # every 3rd step, the last kept


def test_entry_costs_and_time_unit():
    runs = pd.DataFrame({"entry": ["b", "a", "a"], "wall_time_s": [10.0, 100.0, 300.0],
                         "peak_memory_mb": [1.0, 2.0, 4.0], "value": [0.5, 0.8, 0.9], "seed": [0, 0, 1],
                         "meta_steps": [10, 20, 20]})  # fmt: skip
    out = views.entry_costs(runs)
    assert out["entry"].tolist() == ["a", "b"]
    assert out.iloc[0][["wall_time_s", "peak_memory_mb", "value", "seeds"]].tolist() == pytest.approx([200, 3, 0.85, 2])
    assert [views.time_unit(s) for s in (60, 600, 10_000)] == [("s", 1), ("min", 60), ("h", 3600)]


def test_paired_summary_counts_wins():
    values = pd.DataFrame({"entry": ["a"] * 3 + ["b"] * 3, "task_id": [0, 1, 2] * 2,
                           "value": [0.9, 0.5, 0.7, 0.8, 0.5, 0.9]})  # fmt: skip
    out = views.paired_summary(values, "a", "b", higher_is_better=True)
    assert (out.wins_a, out.wins_b) == (1, 1)
    assert out.table["winner"].tolist() == ["a", "tie", "b"]
    assert out.comparison.prob_improvement == pytest.approx(0.5)
    assert out.comparison.mean_diff == pytest.approx((0.1 + 0 - 0.2) / 3)
