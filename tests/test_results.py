"""metabench.results: writer, schema validation, queries, statistics and export."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from metabench.errors import ConfigError, ResultsError
from metabench.results import (
    LEADERBOARD_COLUMNS,
    ResultsDB,
    format_leaderboard,
    mean_ci,
    read_table,
    seed_task_summary,
    write_fixture_results,
    write_table,
)
from metabench import fsutil
from metabench.results import metrics, writer
from metabench.results.query import fingerprint

# Student t quantiles from a printed table: t(0.975, df=9) and t(0.975, df=2).
T9 = 2.2621571627982
T2 = 4.3026527299112


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> Path:
    return write_fixture_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def db(fixture_dir) -> ResultsDB:
    return ResultsDB(fixture_dir)


def _tasks_rows(run_id="r1", n=4):
    return [
        {"run_id": run_id, "split": "test", "task_id": i, "metric": "accuracy", "value": 0.5 + i / 10,
         "descriptors": json.dumps({"amplitude": i})}
        for i in range(n)
    ]  # fmt: skip


def _runs_row(**overrides):
    row = {
        "run_id": "r1", "job_id": None, "suite": "sinusoid-5shot", "suite_version": 1,
        "split_scheme": "-", "algorithm": "maml", "family": "optimization", "seed": 0,
        "preset": "smoke", "status": "running", "device": "cpu",
        "started_at": datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc),
        "finished_at": None, "wall_time_s": 1.5, "peak_memory_mb": float("nan"), "meta_steps": 7,
        "primary_metric": "mse@10", "transductive": False, "query_batch": "n/a", "n_test_tasks": 10,
        "config": "{}", "metabench_version": "0.1.0", "torch_version": "2.5.1", "error": None,
    }  # fmt: skip
    row.update(overrides)
    return row


# -- writer --------------------------------------------------------------------------------------


def test_round_trip_same_rows_in_duckdb_pandas_and_pyarrow(tmp_path):
    path = write_table(pd.DataFrame(_tasks_rows()), tmp_path / "r1" / "tasks.parquet", "tasks")
    ours = read_table(path, "tasks")
    via_pandas = pd.read_parquet(path)
    via_arrow = pq.read_table(path).to_pandas()
    via_duckdb = duckdb.connect().execute("SELECT * FROM read_parquet(?) ORDER BY task_id", [str(path)]).df()
    for other in (via_pandas, via_arrow, via_duckdb):
        pd.testing.assert_frame_equal(ours, other, check_dtype=False)
    assert ours["value"].tolist() == [0.5, 0.6, 0.7, 0.8]
    assert str(pq.read_schema(path).field("task_id").type) == "int32"


def test_runs_row_round_trip_keeps_timestamps_nulls_and_nan(tmp_path):
    path = write_table(_runs_row(), tmp_path / "runs.parquet", "runs")
    row = read_table(path, "runs").iloc[0]
    assert row["started_at"] == pd.Timestamp("2025-01-02 03:04:05.123456", tz="UTC")
    assert pd.isna(row["finished_at"]) and pd.isna(row["job_id"]) and pd.isna(row["error"])
    assert math.isnan(row["peak_memory_mb"])  # NaN is kept as a value, not turned into null
    schema = pq.read_schema(path)
    assert str(schema.field("started_at").type) == "timestamp[us, tz=UTC]"
    assert pq.ParquetFile(path).metadata.num_rows == 1


def test_failed_write_leaves_old_file_intact_and_no_temporary(tmp_path, monkeypatch):
    path = write_table(_tasks_rows(), tmp_path / "tasks.parquet", "tasks")
    before = path.read_bytes()

    with pytest.raises(ResultsError):  # fails validation, before any file is opened
        write_table([{"run_id": "r1"}], path, "tasks")

    def disk_full(fd):  # the temporary file holds the bytes; making them durable fails
        raise OSError(28, "disk full")

    monkeypatch.setattr(fsutil.os, "fsync", disk_full)
    with pytest.raises(ResultsError, match="disk full"):
        write_table(_tasks_rows(n=2), path, "tasks")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.parquet"]


def test_leftovers_of_a_killed_writer_are_ignored_and_removable(fixture_dir, tmp_path):
    # The fixture holds a hidden half-written temporary file; no table glob may read it.
    assert list(fixture_dir.rglob(".tasks.parquet.*.tmp"))
    assert ResultsDB(fixture_dir).leaderboard("omniglot-5w1s")["n_seeds"].tolist() == [2, 2]
    write_table(_tasks_rows(), tmp_path / "tasks.parquet", "tasks")
    (tmp_path / ".tasks.parquet.k1ll3d.tmp").write_bytes(b"PAR1 half")
    (tmp_path / "notes.tmp").write_text("not ours")
    assert writer.remove_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "tasks.parquet"]


def test_schema_mismatch_names_the_column(tmp_path):
    rows = _tasks_rows()
    for row in rows:
        del row["descriptors"]
    with pytest.raises(ResultsError, match="missing column.*descriptors"):
        write_table(rows, tmp_path / "t.parquet", "tasks")
    with pytest.raises(ResultsError, match="unexpected column.*colour"):
        write_table([{**r, "colour": "red"} for r in _tasks_rows()], tmp_path / "t.parquet", "tasks")
    with pytest.raises(ResultsError, match="'status'.*'done'"):
        write_table(_runs_row(status="done"), tmp_path / "runs.parquet", "runs")
    with pytest.raises(ResultsError, match="'suite'.*required"):
        write_table(_runs_row(suite=None), tmp_path / "runs.parquet", "runs")
    with pytest.raises(ResultsError, match="'seed'"):
        write_table(_runs_row(seed="zero"), tmp_path / "runs.parquet", "runs")
    with pytest.raises(ConfigError, match="runs, curves, tasks"):
        write_table(_tasks_rows(), tmp_path / "t.parquet", "task")
    assert not any(tmp_path.iterdir())


def test_corrupted_file_is_detected_not_read(tmp_path):
    rows = [{**r, "task_id": i, "value": float(i)} for i, r in enumerate(_tasks_rows(n=1) * 2000)]
    path = write_table(rows, tmp_path / "tasks.parquet", "tasks")
    data = bytearray(path.read_bytes())
    data[len(data) // 4] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ResultsError, match="corrupted"):
        read_table(path, "tasks")


# -- metrics -------------------------------------------------------------------------------------


def test_metric_direction_and_format():
    assert metrics.direction("accuracy") == "higher"
    assert metrics.direction("mse@10") == "lower"
    assert metrics.direction("return@3") == "higher"
    assert metrics.format_value("accuracy", 0.97312) == "97.31%"
    assert metrics.format_value("mse@1", 0.012345) == "0.0123"
    assert metrics.format_value("mse", 0.3) == "0.300"
    assert metrics.format_value("loss", float("nan")) == "n/a"
    with pytest.raises(ConfigError, match="Unknown metric 'f1'"):
        metrics.direction("f1")
    with pytest.raises(ConfigError, match="not valid"):
        metrics.direction("mse@")


# -- queries -------------------------------------------------------------------------------------


def test_leaderboard_matches_hand_computation(db):
    lb = db.leaderboard("omniglot-5w1s")
    assert list(lb.columns) == LEADERBOARD_COLUMNS
    assert lb["algorithm"].tolist() == ["protonet", "maml"]  # higher accuracy ranks first
    assert lb["rank"].tolist() == [1, 2]
    proto, maml = lb.iloc[0], lb.iloc[1]
    # protonet: tasks 0.98 ± 0.01 alternating, seeds ± 0.005 -> sd over tasks 0.01*sqrt(10/9)
    assert proto["mean"] == pytest.approx(0.98)
    assert proto["ci95"] == pytest.approx(T9 * 0.01 / 3)
    assert proto["std_seeds"] == pytest.approx(0.005 * math.sqrt(2))
    assert maml["mean"] == pytest.approx(0.95)
    assert maml["ci95"] == pytest.approx(T9 * 0.02 / 3)
    assert (maml["ci_low"], maml["ci_high"]) == pytest.approx((0.95 - T9 * 0.02 / 3, 0.95 + T9 * 0.02 / 3))
    assert maml["std_seeds"] == pytest.approx(0.01 * math.sqrt(2))
    assert lb["n_seeds"].tolist() == [2, 2] and lb["n_tasks"].tolist() == [10, 10]
    assert set(lb["metric"]) == {"accuracy"} and set(lb["direction"]) == {"higher"}
    assert lb["transductive"].tolist() == [False, True]
    assert lb["query_batch"].tolist() == ["n/a", "n_way (one per class)"]
    assert set(lb["split_scheme"]) == {"vinyals"}


def test_leaderboard_excludes_older_versions_and_unfinished_runs(db):
    lb = db.leaderboard("omniglot-5w1s")
    # The version-1 protonet run (0.50) and the failed maml seed 2 (0.20) would move the means.
    assert set(lb["suite_version"]) == {2}
    assert "snail" not in set(lb["algorithm"])  # running, no test results
    assert lb["n_seeds"].max() == 2


def test_leaderboard_lower_is_better_and_other_metric(db):
    lb = db.leaderboard("sinusoid-5shot")  # primary metric mse@10
    assert lb["algorithm"].tolist() == ["maml", "reptile"]
    assert lb["mean"].tolist() == pytest.approx([0.30, 0.50])
    assert lb["ci95"].tolist() == pytest.approx([T9 * 0.05 / 3, T9 * 0.10 / 3])
    assert set(lb["direction"]) == {"lower"} and set(lb["metric"]) == {"mse@10"}
    at1 = db.leaderboard("sinusoid-5shot", metric="mse@1")
    assert at1["mean"].tolist() == pytest.approx([1.20, 1.50])
    assert at1["std_seeds"].tolist() == pytest.approx([0.05 * math.sqrt(2), 0.10 * math.sqrt(2)])
    assert db.metrics("sinusoid-5shot") == ["mse@10", "mse@1"]
    with pytest.raises(ConfigError):
        db.leaderboard("sinusoid-5shot", metric="f1")


def test_leaderboard_agrees_with_seed_task_summary(db):
    tasks = db.tasks("omniglot-5w1s", "accuracy")
    maml = tasks[tasks["algorithm"] == "maml"].pivot(index="seed", columns="task_id", values="value")
    expected = seed_task_summary(maml.to_numpy())
    row = db.leaderboard("omniglot-5w1s").set_index("algorithm").loc["maml"]
    assert row["mean"] == pytest.approx(expected.mean)
    assert row["ci95"] == pytest.approx(expected.ci95)
    assert row["std_seeds"] == pytest.approx(expected.std_seeds)


def test_summary_runs_curves_tasks(db):
    s = db.summary()
    assert (s["n_runs"], s["n_finished"], s["running"]) == (11, 9, 1)
    assert s["suites"] == ["omniglot-5w1s", "sinusoid-5shot"] == db.suites()
    assert s["algorithms"] == ["maml", "protonet", "reptile", "snail"]
    assert s["last_run_at"] == pd.Timestamp("2025-03-01 19:00", tz="UTC")  # the running run started
    assert len(db.runs()) == 11 and len(db.runs("sinusoid-5shot")) == 4
    curves = db.curves("omniglot-5w1s", "accuracy", "val")
    assert set(curves["suite_version"]) == {2}
    assert curves.groupby("algorithm")["run_id"].nunique().to_dict() == {"maml": 3, "protonet": 2, "snail": 1}
    tasks = db.tasks("sinusoid-5shot", "mse@10")
    assert len(tasks) == 2 * 2 * 10
    assert json.loads(tasks["descriptors"].iloc[0]).keys() == {"amplitude", "phase"}


def test_parameters_are_bound_not_formatted(db):
    assert db.leaderboard("x' OR 1=1 --", metric="accuracy").empty
    assert db.runs("omniglot-5w1s' OR '1'='1").empty


def test_empty_or_missing_folder_gives_empty_frames(tmp_path):
    for folder in (tmp_path, tmp_path / "does-not-exist"):
        db = ResultsDB(folder)
        lb = db.leaderboard("omniglot-5w1s")
        assert lb.empty and list(lb.columns) == LEADERBOARD_COLUMNS
        assert db.summary()["n_runs"] == 0 and db.suites() == []
        assert db.runs().empty and db.curves("a", "accuracy").empty and db.tasks("a", "mse").empty
    # Runs but no test results yet: still empty, not an error.
    write_table(_runs_row(), tmp_path / "r1" / "runs.parquet", "runs")
    assert ResultsDB(tmp_path).leaderboard("sinusoid-5shot").empty


def test_fingerprint_changes_when_results_change(tmp_path):
    empty = fingerprint(tmp_path)
    write_table(_runs_row(), tmp_path / "r1" / "runs.parquet", "runs")
    one = fingerprint(tmp_path)
    assert one != empty and one[0] == 1
    write_table(_tasks_rows(), tmp_path / "r1" / "tasks.parquet", "tasks")
    assert fingerprint(tmp_path)[0] == 2


# -- statistics ----------------------------------------------------------------------------------


def test_mean_ci_hand_computed():
    point, (low, high) = mean_ci([1.0, 2.0, 3.0])  # mean 2, sd 1, n 3
    assert point == 2.0
    assert (low, high) == pytest.approx((2 - T2 / math.sqrt(3), 2 + T2 / math.sqrt(3)))
    point, (low, high) = mean_ci([5.0])
    assert point == 5.0 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ConfigError, match=r"\(n_tasks,\)"):
        mean_ci(np.ones((2, 2)))


def test_seed_task_summary_hand_computed():
    s = seed_task_summary([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    # task means [2, 3, 4] -> mean 3, sd 1; seed means [2, 4] -> std sqrt(2)
    assert s.mean == 3.0 and (s.n_seeds, s.n_tasks) == (2, 3)
    assert s.ci95 == pytest.approx(T2 / math.sqrt(3))
    assert (s.ci_low, s.ci_high) == pytest.approx((3 - s.ci95, 3 + s.ci95))
    assert s.std_seeds == pytest.approx(math.sqrt(2))
    assert math.isnan(seed_task_summary([[1.0, 2.0]]).std_seeds)
    with pytest.raises(ConfigError, match=r"\(n_seeds, n_tasks\)"):
        seed_task_summary([1.0, 2.0])


# -- export --------------------------------------------------------------------------------------


def test_export_formats(db):
    lb = db.leaderboard("omniglot-5w1s")
    table = format_leaderboard(lb, "table")
    lines = table.splitlines()
    assert "accuracy mean ± 95% CI" in lines[0]
    assert "98.00% ± 0.75%" in lines[2] and "protonet" in lines[2]
    assert "95.00% ± 1.51%" in lines[3] and "1.41%" in lines[3]
    assert len({line.index("protonet") if "protonet" in line else line.index("maml") for line in lines[2:4]}) == 1
    # issue 22: the transductive entry carries a dagger, explained under the table; budgets are a column
    assert "maml† " in lines[3] and "protonet†" not in lines[2] and lines[4].startswith("† transductive")
    assert "3 inner steps" in lines[3] and "1 support pass" in lines[2] and "budget" in lines[0]

    md = format_leaderboard(lb, "markdown").splitlines()
    assert md[0].startswith("*omniglot-5w1s (version 2), accuracy (higher is better): mean ± 95% CI over 10 fixed")
    assert md[2].startswith("| rank |") and md[3].startswith("|---:|")
    assert md[4].startswith("| 1 | **98.00% ± 0.75%** | protonet |")  # the best in bold
    assert md[5].startswith("| 2 | 95.00% ± 1.51% | maml† |") and "† transductive" in md[0]
    assert md[5].endswith("| worse (p<0.001) | 0.00 | 98.70% ± 0.40% |")  # MAML paper, same protocol

    csv = pd.read_csv(__import__("io").StringIO(format_leaderboard(lb, "csv")))
    assert list(csv.columns) == LEADERBOARD_COLUMNS
    assert csv["entry"].tolist() == ["protonet", "maml†"] and csv["budget"].tolist() == ["1 support pass", "3 inner steps"]
    assert r"maml$^\dagger$ & optimization" in format_leaderboard(lb, "latex")
    only = db.leaderboard("omniglot-5w1s", transductive=False)
    assert only["variant"].tolist() == ["protonet"] and only["rank"].tolist() == [1]
    assert db.leaderboard("omniglot-5w1s", transductive=True)["entry"].tolist() == ["maml†"]
    assert csv["mean"].tolist() == pytest.approx([0.98, 0.95])

    sinusoid = format_leaderboard(db.leaderboard("sinusoid-5shot"), "table")
    assert "0.300 ± 0.0377" in sinusoid
    with pytest.raises(ConfigError, match="table, csv, markdown, latex"):
        format_leaderboard(lb, "xml")


# -- dependencies --------------------------------------------------------------------------------


def test_nothing_above_the_engine_imports_torch():
    """The one no-torch check (DESIGN.md: nothing under pages/ or dashboard/ imports torch): in a
    fresh interpreter, metabench with its Gymnasium ids, every module of metabench.results and
    metabench.dashboard and the job store the Launch page reads import without torch; app.py and
    the pages (scripts Streamlit runs, not importable here) name no torch import."""
    import ast

    root = Path(__file__).resolve().parents[1]
    code = (
        "import importlib, pkgutil, sys, gymnasium, metabench, metabench.results, metabench.dashboard\n"
        "assert any(i.startswith('metabench/') for i in gymnasium.registry), 'no metabench/ Gymnasium ids'\n"
        "names = ['metabench.engine.jobstore'] + [f'{p.__name__}.{m.name}' for p in (metabench.results, "
        "metabench.dashboard) for m in pkgutil.iter_modules(p.__path__)]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "    assert 'torch' not in sys.modules, f'importing {name} imported torch'\n"
        "print(len(names))"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) > 20   # the walk found the modules
    for path in [root / "app.py", *(root / "pages").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f"{path.name} imports torch"


def test_in_memory_tables_follow_the_folder_file_by_file(tmp_path):
    import shutil

    folder = write_fixture_results(tmp_path / "r")
    db = ResultsDB(folder, auto_refresh=False)  # walks only on refresh(), as the dashboard does
    live = ResultsDB(folder)  # walks before every query (the CLI)
    assert db.leaderboard("sinusoid-5shot")["algorithm"].tolist() == ["maml", "reptile"]
    reptile = [p for p in folder.iterdir() if "reptile" in p.name]
    assert reptile
    for p in reptile:
        shutil.rmtree(p)
    assert db.leaderboard("sinusoid-5shot")["algorithm"].tolist() == ["maml", "reptile"]  # not refreshed
    assert live.leaderboard("sinusoid-5shot")["algorithm"].tolist() == ["maml"]
    stamp = db.refresh()
    assert stamp == fingerprint(folder)
    assert db.leaderboard("sinusoid-5shot")["algorithm"].tolist() == ["maml"]
    # Rewritten files (new mtimes) replace their rows instead of adding to them.
    write_fixture_results(folder)
    db.refresh()
    board = db.leaderboard("sinusoid-5shot")
    assert board["algorithm"].tolist() == ["maml", "reptile"]
    assert board["n_seeds"].tolist() == [2, 2] and board["mean"].tolist() == pytest.approx([0.30, 0.50])
    # the same numbers as a fresh read (rows load in another order, so sums may differ in the last bit)
    pd.testing.assert_frame_equal(db.leaderboard("sinusoid-5shot"), live.leaderboard("sinusoid-5shot"))


def test_filters_select_entries_of_the_same_scan(fixture_dir):
    db = ResultsDB(fixture_dir)
    full = db.leaderboard("omniglot-5w1s")
    metric_only = db.leaderboard("omniglot-5w1s", families=["metric"])
    assert metric_only["algorithm"].tolist() == ["protonet"] and metric_only["vs_best"].tolist() == ["best"]
    assert db.leaderboard("omniglot-5w1s", families=[]).empty
    opt = db.leaderboard("omniglot-5w1s", families=["optimization"])
    # maml is best once protonet is filtered out: rank and comparison are within the selection.
    assert opt["rank"].tolist() == [1] and opt["mean"].item() == pytest.approx(full["mean"].iloc[1])
    assert db.task_values("omniglot-5w1s", "accuracy", presets=["nope"]).empty
    assert set(db.run_costs("omniglot-5w1s", "accuracy", families=["metric"])["algorithm"]) == {"protonet"}
    curves = db.curve_summary("omniglot-5w1s", "accuracy", families=["optimization"])
    assert set(curves["algorithm"]) == {"maml"} and curves["n_seeds"].max() == 2  # failed seed 2 left out
    assert db.curve_excluded_runs("omniglot-5w1s")[["algorithm", "seed"]].values.tolist() == [["maml", 2]]


def test_queries_from_several_threads_agree(fixture_dir):
    """The dashboard's sessions query one ResultsDB from several threads while it refreshes."""
    from concurrent.futures import ThreadPoolExecutor

    db = ResultsDB(fixture_dir, auto_refresh=False)
    db.refresh()
    db.preload()  # a background load racing the queries below
    expected = ResultsDB(fixture_dir).leaderboard("omniglot-5w1s")

    def work(i: int) -> pd.DataFrame:
        if i % 3 == 0:
            db.refresh()
        db.curve_summary("omniglot-5w1s", "accuracy")
        return db.leaderboard("omniglot-5w1s", families=None if i % 2 else ["metric", "optimization"])

    with ThreadPoolExecutor(4) as pool:
        boards = list(pool.map(work, range(12)))
    for board in boards:
        pd.testing.assert_frame_equal(board, expected)


def test_a_task_that_diverged_at_test_time_is_counted_not_hidden(tmp_path):
    """One test task of one seed without a finite value (adaptation diverged: NaN): the entry keeps
    all its seeds, the task is left out of the mean and CI, and the row's note says so; the
    across-suites run scores stay finite."""
    import numpy as np

    from metabench.results.query import ResultsDB
    from metabench.results.writer import read_table, write_table

    root = write_fixture_results(tmp_path / "r")
    path = root / "sinusoid-5shot-v1-maml-s0" / "tasks.parquet"
    tasks = read_table(path, "tasks")
    first = tasks.index[(tasks["metric"] == "mse@10")][0]
    tasks.loc[first, "value"] = float("nan")
    write_table(tasks.to_dict("records"), path, "tasks")
    db = ResultsDB(root, reference=False)
    board = db.leaderboard("sinusoid-5shot", metric="mse@10")
    row = board[board["algorithm"] == "maml"].iloc[0]
    assert row["n_seeds"] == 2
    assert row["n_tasks"] == tasks.loc[tasks["metric"] == "mse@10", "task_id"].nunique() - 1
    assert "1 test task(s) without a finite value" in row["note"]
    assert np.isfinite(row["mean"])
    scores = db.run_scores()
    assert np.isfinite(scores.loc[scores["algorithm"] == "maml", "value"]).all()
