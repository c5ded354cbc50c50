"""Reference and your own runs side by side (issue 21 §2): sources, pairing, read-only guard.

The reference folder here is a fixture folder of our own passed in place of the shipped one
(``ResultsDB(..., reference=DIR)``), so these tests do not depend on what the package ships.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from metabench.errors import ConfigError
from metabench.results import ResultsDB, write_fixture_results
from metabench.results.writer import read_table, write_table

SUITE = "omniglot-5w1s"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return write_fixture_results(tmp_path_factory.mktemp("reference"))


def _protonet_run(reference: Path) -> Path:
    """The folder of the fixture's finished protonet seed-0 run of the newest suite version."""
    found = []
    for path in reference.glob("*/runs.parquet"):
        row = read_table(path, "runs").iloc[0]
        if (row["suite"], row["algorithm"], row["seed"], row["status"]) == (SUITE, "protonet", 0, "finished"):
            found.append((int(row["suite_version"]), path.parent))
    return max(found)[1]


def _user_smoke_run(reference: Path, folder: Path, *, fingerprint: str | None = None, shift: float = -0.2) -> str:
    """Copy the reference protonet seed-0 run into ``folder`` as a user's smoke run (its own run
    id and preset, every task ``shift`` lower); optionally with another test-task fingerprint."""
    src = _protonet_run(reference)
    run_id = src.name.replace("quick", "smoke").replace("paper", "smoke") + "-mine"
    dst = folder / run_id
    dst.mkdir(parents=True)
    runs = read_table(src / "runs.parquet", "runs")
    runs["run_id"], runs["preset"] = run_id, "smoke"
    if fingerprint is not None:
        runs["tasks_fingerprint"] = fingerprint
    write_table(runs.to_dict("records"), dst / "runs.parquet", "runs")
    tasks = read_table(src / "tasks.parquet", "tasks")
    tasks["run_id"] = run_id
    tasks["value"] = tasks["value"] + shift
    write_table(tasks.to_dict("records"), dst / "tasks.parquet", "tasks")
    for curve in src.glob("curves-*.parquet"):
        c = read_table(curve, "curves")
        c["run_id"] = run_id
        write_table(c.to_dict("records"), dst / curve.name, "curves")
    return run_id


def test_rows_carry_their_source_and_the_switch_hides_the_reference(reference, tmp_path):
    _user_smoke_run(reference, tmp_path)
    db = ResultsDB(tmp_path, reference=reference)
    board = db.leaderboard(SUITE)
    assert set(board["source"]) == {"reference", "yours"}
    mine = board[board["source"] == "yours"]
    assert mine["preset"].tolist() == ["smoke"] and mine["n_seeds"].tolist() == [1]
    # the reference protonet entry keeps both its seeds: the user's run is a separate entry
    ref = board[(board["source"] == "reference") & (board["algorithm"] == "protonet")]
    assert ref["n_seeds"].tolist() == [2]
    for frame in (db.runs(SUITE), db.tasks(SUITE, "accuracy"), db.task_values(SUITE, "accuracy"),
                  db.run_costs(SUITE, "accuracy"), db.curve_summary(SUITE, "accuracy"), db.run_scores()):
        assert set(frame["source"]) == {"reference", "yours"}, frame.columns
    hidden = ResultsDB(tmp_path, reference=False)
    assert hidden.leaderboard(SUITE)["source"].tolist() == ["yours"]
    assert hidden.summary()["n_runs"] == 1


def test_pairs_with_the_reference_only_when_fingerprints_agree(reference, tmp_path):
    same, other = tmp_path / "same", tmp_path / "other"
    _user_smoke_run(reference, same)
    _user_smoke_run(reference, other, fingerprint="tasks-sha256-v1:" + "ab" * 32)
    board = ResultsDB(same, reference=reference).leaderboard(SUITE)
    assert board.iloc[0][["source", "algorithm"]].tolist() == ["reference", "protonet"]  # the best entry
    mine = board[board["source"] == "yours"].iloc[0]
    assert mine["vs_best"] == "worse" and mine["p_vs_best"] < 0.001 and mine["prob_improvement"] == 0.0
    assert mine["note"] == ""
    board = ResultsDB(other, reference=reference).leaderboard(SUITE)
    mine = board[board["source"] == "yours"].iloc[0]
    assert mine["vs_best"] == "unpaired" and pd.isna(mine["p_vs_best"]) and pd.isna(mine["prob_improvement"])
    assert mine["note"].startswith("not paired with the best entry: different fixed test tasks")
    # the reference entries still pair with each other
    assert board[board["source"] == "reference"]["vs_best"].tolist() == ["best", "worse"]


def test_a_run_in_both_folders(reference, tmp_path):
    src = _protonet_run(reference)
    shutil.copytree(src, tmp_path / src.name)  # the same run, same config: the user's copy wins
    db = ResultsDB(tmp_path, reference=reference)
    runs = db.runs(SUITE)
    assert runs.loc[runs["run_id"] == src.name, "source"].tolist() == ["yours"]
    board = db.leaderboard(SUITE)
    protonet = board[board["algorithm"] == "protonet"].set_index("source")["n_seeds"]
    assert protonet.to_dict() == {"reference": 1, "yours": 1}
    # another config under the same run id: both stay, as separate entries
    path = tmp_path / src.name / "runs.parquet"
    row = read_table(path, "runs")
    row["config"] = json.dumps({**json.loads(row["config"].item()), "lr": 0.5})
    write_table(row.to_dict("records"), path, "runs")
    runs = ResultsDB(tmp_path, reference=reference).runs(SUITE)
    assert sorted(runs.loc[runs["run_id"] == src.name, "source"]) == ["reference", "yours"]
    board = ResultsDB(tmp_path, reference=reference).leaderboard(SUITE)
    assert board[board["algorithm"] == "protonet"].set_index("source")["n_seeds"].to_dict() == {
        "reference": 2, "yours": 1}


def test_runs_summary_of_the_reference_set(reference, tmp_path):
    from metabench.results.views import runs_summary

    runs = ResultsDB(tmp_path / "none", reference=reference).runs()
    assert set(runs["source"]) == {"reference"}
    s = runs_summary(runs)
    assert s["n_runs"] == len(runs) and s["n_finished"] == int((runs["status"] == "finished").sum())
    assert s["suites"] == ["omniglot-5w1s", "sinusoid-5shot"] and "protonet" in s["algorithms"]
    assert s["metabench_versions"] == sorted(set(runs["metabench_version"]))
    assert s["devices"] == sorted(set(runs["device"]))
    assert s["last_run_at"] == pd.Timestamp("2025-03-01 19:00", tz="UTC")
    empty = runs_summary(runs.iloc[0:0])
    assert (empty["n_runs"], empty["suites"], empty["last_run_at"]) == (0, [], None)


# -- the command line -------------------------------------------------------------------------


def test_leaderboard_command_shows_and_hides_the_reference(reference, tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("METABENCH_REFERENCE", str(reference))
    _user_smoke_run(reference, tmp_path)
    rc, out, err = run_cli(["leaderboard", "--suite", SUITE, "--results-dir", str(tmp_path)])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[1].split()[-1] == "source" and any(ln.rstrip().endswith("yours") for ln in lines)
    assert sum(ln.rstrip().endswith("reference") for ln in lines) == 2  # protonet and maml
    rc, out, err = run_cli(["leaderboard", "--suite", SUITE, "--results-dir", str(tmp_path), "--no-reference"])
    assert rc == 0, err
    assert "reference" not in out and "source" not in out.splitlines()[1]
    # a new user without a results folder still sees the reference leaderboard
    rc, out, err = run_cli(["leaderboard", "--suite", SUITE, "--results-dir", str(tmp_path / "none")])
    assert rc == 0 and "reference" in out, err
    rc, out, err = run_cli(["leaderboard", "--results-dir", str(tmp_path / "none"), "--no-reference"])
    assert rc != 0 and "no results folder" in err


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_destructive_commands_refuse_the_reference_set(tmp_path, monkeypatch, run_cli):
    from metabench.engine import jobstore
    from metabench.fsutil import atomic_write_json

    ref = write_fixture_results(tmp_path / "ref")
    monkeypatch.setenv("METABENCH_REFERENCE", str(ref))
    (ref / "some-run" ).mkdir()
    (ref / "some-run" / ".tasks.parquet.tmp-999999999").write_bytes(b"x")  # a leftover verify --clean would delete
    jdir = ref / jobstore.JOBS / "job-0002"
    jdir.mkdir(parents=True)
    atomic_write_json(jdir / "spec.json", {"job_id": "job-0002", "spec": {}, "cells": []})
    atomic_write_json(jdir / "status.json", {"job_id": "job-0002", "state": "running"})
    before = _snapshot(ref)
    attempts = [
        ["run", "--suites", "sinusoid-5shot", "--algorithms", "maml", "--preset", "smoke", "--results-dir", str(ref)],
        ["run", "--suites", "sinusoid-5shot", "--algorithms", "maml", "--preset", "smoke", "--detach",
         "--results-dir", str(ref / "sub")],
        ["results", "verify", "--clean", "--results-dir", str(ref)],
        ["results", "verify", "--clean", "--results-dir", str(tmp_path)],  # a folder holding the reference set
        ["jobs", "cancel", "job-0002", "--results-dir", str(ref)],
        ["jobs", "resume", "job-0002", "--results-dir", str(ref)],
    ]
    for argv in attempts:
        rc, out, err = run_cli(argv)
        assert rc != 0 and "reference result set, which is read-only" in err, (argv, rc, out, err)
    assert _snapshot(ref) == before and not (ref / "sub").exists()
    # reading it is fine: verify without --clean, the leaderboard
    rc, out, err = run_cli(["results", "verify", "--results-dir", str(ref)])
    assert "read-only" not in err
    assert _snapshot(ref) == before


def test_the_guard(tmp_path, monkeypatch):
    from metabench.reference import is_reference, refuse_if_reference, reference_dir

    monkeypatch.setenv("METABENCH_REFERENCE", str(tmp_path / "ref"))
    assert is_reference(reference_dir()) and is_reference(reference_dir() / "run-1" / "tasks.parquet")
    assert is_reference(tmp_path / "ref") and is_reference(tmp_path / "ref" / "x")
    assert not is_reference(tmp_path) and is_reference(tmp_path, holding=True)
    assert not is_reference(tmp_path / "results", holding=True)
    with pytest.raises(ConfigError, match="read-only"):
        refuse_if_reference(tmp_path / "ref" / "x", "write into")
    monkeypatch.setenv("METABENCH_WRITE_REFERENCE", "1")  # producing the shipped set
    refuse_if_reference(tmp_path / "ref" / "x", "write into")


# -- the dashboard ----------------------------------------------------------------------------


def test_dashboard_marks_sources_and_the_switch_hides_the_reference(reference, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from metabench.dashboard import data, state

    monkeypatch.setenv("METABENCH_REFERENCE", str(reference))
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    _user_smoke_run(reference, tmp_path)
    app = str(Path(__file__).resolve().parents[1] / "app.py")
    at = AppTest.from_file(app, default_timeout=60).run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Reference runs"] == str(len(list(reference.glob("*/runs.parquet"))))
    assert metrics["Runs"] == "1" and metrics["Reference suites"] == "2"
    assert any(state.FIRST_RUN in m.value for m in at.markdown)
    at.query_params["suite"] = SUITE
    at.switch_page("pages/leaderboard.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert sorted(table["Source"]) == ["reference", "reference", "yours"]
    assert table.set_index("Source").loc["yours", "vs best"].startswith("worse")
    # the sidebar switch (AppTest shows the sidebar of a session's first page only: switch on Home)
    at = AppTest.from_file(app, default_timeout=60).run()
    at.toggle(key="url_reference").set_value(False).run()
    assert not at.exception and at.query_params["reference"] == "0"
    assert "Reference runs" not in {m.label for m in at.metric}
    at.query_params["suite"] = SUITE
    at.switch_page("pages/leaderboard.py").run()
    assert at.dataframe[0].value["Source"].tolist() == ["yours"]
    # a shared link with ?reference=0 opens the same view
    at = AppTest.from_file(app, default_timeout=60)
    at.query_params["reference"] = "0"
    at.query_params["suite"] = SUITE
    at.switch_page("pages/leaderboard.py").run()
    assert at.dataframe[0].value["Source"].tolist() == ["yours"]


def test_home_lists_the_fullest_leaderboards_first():
    """Home's suite links: most algorithms first (the reference set's omniglot-5w1s before the
    tier-2 suites that hold one row), ties by name, not the alphabet's bandit-k10-n100 first."""
    from metabench.dashboard.state import suite_order

    counts = pd.DataFrame({"algorithms": [7, 1, 13, 7]},
                          index=["sinusoid-5shot", "omniglot-5w5s", "omniglot-5w1s", "bandit-k10-n100"])
    assert suite_order(counts) == ["omniglot-5w1s", "bandit-k10-n100", "sinusoid-5shot", "omniglot-5w5s"]
