"""The shipped reference set (issue 21 §1): it verifies, it covers its manifest, the manifest follows
the registries, `metabench reference add` ships only finished, verified, current runs (backfilling
the test-task fingerprint exactly as the engine records it), and the README's table is generated."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metabench.reference import reference_dir
from metabench.reference import manifest
from metabench.reference.add import add_runs, standalone_fingerprint
from metabench.results.verify import verify_results
from metabench.results.writer import read_table, write_table

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_set_verifies_and_holds_only_parquet_tables():
    report = verify_results(reference_dir())
    assert report.ok, [str(p) for p in report.bad]
    files = [p for p in reference_dir().rglob("*") if p.is_file() and p.name != ".keep"]
    assert files and all(p.suffix == ".parquet" for p in files), "no checkpoints, progress or logs ship"
    assert sum(p.stat().st_size for p in files) < 20 * 2**20


def test_the_shipped_set_covers_the_manifests_finished_cells_and_the_manifest_follows_the_registries():
    cells = manifest.read_manifest()
    assert [c["run_id"] for c in cells.values()] == [c.run_id for c in manifest.intended_cells()], \
        "the manifest is out of date: run `metabench reference status --write`"
    shipped = manifest.shipped_states(reference_dir())
    for run_id, c in cells.items():
        assert (c["state"] == "finished") == (shipped.get(run_id) == "finished"), run_id
    tier1 = {(c.suite, c.algorithm) for c in manifest.intended_cells() if c.tier == 1}
    for name in manifest.builtin_algorithms():   # every built-in has a tier-1 cell (rfs, simpleshot too)
        assert any(a == name for _, a in tier1), name
    assert ("omniglot-5w1s", "cosine-protonet") not in tier1   # plugins are not part of the set


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Smoke runs of random on bandit-k5-n10 and maml on sinusoid-5shot, as the engine writes them."""
    from metabench.engine.cell import CellRunner
    from metabench.spec import Cell

    root = tmp_path_factory.mktemp("smoke")
    for suite, algo in (("bandit-k5-n10", "random"), ("sinusoid-5shot", "maml")):
        assert CellRunner(Cell(suite, algo, 0, "smoke", "cpu"), root, allow_download=False).run() == "finished"
    return root


def _row(folder: Path, run_id: str) -> dict:
    return read_table(folder / run_id / "runs.parquet", "runs").iloc[0].to_dict()


@pytest.mark.parametrize("run_id", ["bandit-k5-n10--random--smoke--seed0", "sinusoid-5shot--maml--smoke--seed0"])
def test_the_standalone_fingerprint_equals_what_the_engine_records(smoke, run_id):
    row = _row(smoke, run_id)
    assert row["tasks_fingerprint"].startswith("tasks-sha256-v1:")
    assert standalone_fingerprint(row) == row["tasks_fingerprint"]


def test_add_ships_tables_only_merges_curves_backfills_the_fingerprint_and_refuses_with_a_sentence(smoke, tmp_path):
    src, dest = tmp_path / "src", tmp_path / "ref"
    shutil.copytree(smoke, src)
    ok, legacy, diverged, stale, running = (f"{s}--smoke--seed0" for s in (
        "bandit-k5-n10--random", "sinusoid-5shot--maml", "d", "s", "r"))
    row = _row(src, legacy)
    recorded = row["tasks_fingerprint"]
    write_table([{**row, "tasks_fingerprint": None}], src / legacy / "runs.parquet", "runs")  # recorded before fingerprints
    for name, change in ((diverged, {"status": "diverged", "error": "non-finite loss at step 3"}),
                         (running, {"status": "running", "finished_at": None}),
                         (stale, {"config": json.dumps({**json.loads(row["config"]), "algorithm": {
                             **json.loads(row["config"])["algorithm"], "inner_lr": 0.123}})})):
        shutil.copytree(src / legacy, src / name)
        write_table([{**row, **change, "run_id": name}], src / name / "runs.parquet", "runs")
        for table in ("tasks", *(p.stem for p in (src / name).glob("curves-*.parquet"))):
            path = src / name / f"{table}.parquet"
            if path.exists():
                kind = "curves" if table.startswith("curves") else "tasks"
                write_table(read_table(path, kind).assign(run_id=name), path, kind)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}

    refused = add_runs(src, [ok], dest=dest)[0]
    assert refused.action == "refused" and "smoke run" in refused.message and not any(dest.iterdir())
    outcomes = {o.run_id: o for o in add_runs(src, dest=dest, allow_smoke=True)}
    assert outcomes[ok].action == "added" and outcomes[legacy].action == "added"
    assert "backfilled" in outcomes[legacy].message
    assert outcomes[running].action == "running"
    assert outcomes[diverged].action == "refused" and "diverged, not finished" in outcomes[diverged].message
    assert outcomes[stale].action == "refused" and "stale" in outcomes[stale].message \
        and "algorithm.inner_lr" in outcomes[stale].message
    assert sorted(p.name for p in dest.iterdir()) == sorted([ok, legacy])
    assert _row(dest, legacy)["tasks_fingerprint"] == recorded          # the engine's value, recomputed
    assert not list(dest.rglob("checkpoints")) and not list(dest.rglob("*.json"))
    assert verify_results(dest).ok
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before   # the source is only read
    # the run's curve parts ship as one file, named after the last part, with the parts' rows
    parts = sorted((src / legacy).glob("curves-*.parquet"))
    assert len(parts) > 1 and [p.name for p in (dest / legacy).glob("curves-*.parquet")] == [parts[-1].name]
    pd.testing.assert_frame_equal(read_table(dest / legacy / parts[-1].name, "curves"),
                                  pd.concat([read_table(p, "curves") for p in parts], ignore_index=True))
    assert [o.action for o in add_runs(src, [ok, legacy], dest=dest, allow_smoke=True)] == ["unchanged"] * 2


def test_the_readme_table_is_generated_from_the_shipped_set():
    from metabench.reference.table import current_block, markdown_table, readme_block

    block = current_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block is not None, "README.md lacks the reference-table markers"
    assert block == readme_block(markdown_table()), "run `metabench reference table --write`"


def test_reproduce_finds_a_shipped_run_and_reports_identical_rows(tmp_path, run_cli):
    run_id = "bandit-k5-n100--greedy--quick--seed0"   # a classical row: no training, seconds
    before = {p: p.read_bytes() for p in (reference_dir() / run_id).iterdir()}
    rc, out, err = run_cli(["reproduce", run_id, "--results-dir", str(tmp_path / "mine"),
                            "--scratch", str(tmp_path / "scratch"), "--quiet"])
    assert rc == 0, err
    assert f"{run_id}: identical: all 3000 (task, metric) rows" in out and "fingerprints agree" in out
    assert "the shipped reference set" in out
    assert {p: p.read_bytes() for p in (reference_dir() / run_id).iterdir()} == before
    rc, out, err = run_cli(["reproduce", "bandit-k5-n100--nosuch--quick--seed0", "--results-dir", str(tmp_path)])
    assert rc == 2 and "nor in the shipped reference set" in err


def test_reference_status_and_table_commands(run_cli, tmp_path):
    rc, out, err = run_cli(["reference", "status"])
    assert rc == 0, err
    n1 = sum(c.tier == 1 for c in manifest.intended_cells())
    assert f"tier 1: {n1} cells, " in out and "finished" in out
    from metabench.reference.table import markdown_table

    rc, out, err = run_cli(["reference", "table", "--markdown"])
    assert rc == 0 and out == markdown_table()
    rc, out, err = run_cli(["reference", "add", str(tmp_path / "nowhere")])
    assert rc == 2 and "no results folder at" in err


def test_the_shipped_fingerprints_match_on_this_machine(shared_data):
    """Issue 21 §3: pairing a user's run with the shipped rows is honest only if this machine draws
    the same fixed test tasks; recompute each shipped suite's fingerprint here (CI's clean clone is
    a second machine) and compare it with what the shipped runs recorded."""
    from metabench.reference import reference_dir
    from metabench.results.writer import read_table

    cache: dict = {}
    rows = [read_table(p, "runs").iloc[0].to_dict() for p in sorted(reference_dir().glob("*/runs.parquet"))]
    assert rows, "the shipped set is empty"
    for row in rows:
        assert row["tasks_fingerprint"] == standalone_fingerprint(row, shared_data, cache=cache), row["run_id"]


def test_a_smoke_run_shows_as_yours_beside_the_shipped_rows_and_pairs_only_on_the_same_tasks(shared_data, tmp_path):
    """Issue 21: the README's first run (protonet, omniglot-5w1s, smoke) in a new results folder is
    a 'yours' row beside every shipped row, but not paired with them: a smoke run tests fewer fixed
    tasks, so its fingerprint differs. A run of the shipped tasks (same fingerprint) is paired."""
    from metabench.engine.cell import CellRunner
    from metabench.results import ResultsDB
    from metabench.spec import Cell

    suite, shipped_id = "omniglot-5w1s", "omniglot-5w1s--protonet--quick--seed0"
    mine = tmp_path / "smoke"
    cell = Cell(suite, "protonet", 0, "smoke", "cpu")
    assert CellRunner(cell, mine, shared_data, allow_download=False).run() == "finished"
    shipped = ResultsDB(tmp_path / "empty", reference=reference_dir()).leaderboard(suite)
    board = ResultsDB(mine, reference=reference_dir()).leaderboard(suite)
    assert board["source"].value_counts().to_dict() == {"reference": len(shipped), "yours": 1}
    ref = board[board["source"] == "reference"].drop(columns=["rank"]).reset_index(drop=True)
    assert ref["entry"].tolist() == shipped["entry"].tolist()   # the shipped rows, untouched by yours
    row = board[board["source"] == "yours"].iloc[0]
    best = board.iloc[0]
    assert (row["algorithm"], row["preset"], best["source"]) == ("protonet", "smoke", "reference")
    assert row["n_tasks"] < best["n_tasks"] and row["tasks_fingerprint"] != best["tasks_fingerprint"]
    assert row["vs_best"] == "unpaired" and pd.isna(row["p_vs_best"]) and pd.isna(row["prob_improvement"])
    assert row["note"].startswith("not paired with the best entry: different fixed test tasks")
    # The same tasks as the shipped protonet run (its tables under another run id, every other
    # task's value lower): paired with it, by a test on those tasks.
    same = tmp_path / "same-tasks"
    run_id = f"{shipped_id}-mine"
    (same / run_id).mkdir(parents=True)
    for path in (reference_dir() / shipped_id).glob("*.parquet"):
        table = "curves" if path.name.startswith("curves-") else path.stem
        df = read_table(path, table).assign(run_id=run_id)
        if table == "tasks":
            df["value"] = df["value"] - 0.05 * (np.arange(len(df)) % 2)
        write_table(df.to_dict("records"), same / run_id / path.name, table)
    board = ResultsDB(same, reference=reference_dir()).leaderboard(suite)
    row = board[board["source"] == "yours"].iloc[0]
    assert row["tasks_fingerprint"] == best["tasks_fingerprint"] and row["note"] == ""
    assert row["vs_best"] == "worse" and row["p_vs_best"] < 0.001 and row["prob_improvement"] < 0.5


@pytest.mark.parametrize("suite,algo", [("bandit-k5-n10", "thompson"), ("bandit-k5-n10", "epsilon-greedy"),
                                        ("tabular-mdp-n10", "psrl"), ("navigation2d", "random"),
                                        ("omniglot-5w1s", "pixel-centroid")])
def test_a_row_that_does_not_meta_train_gives_the_same_rows_for_every_seed(shared_data, tmp_path, suite, algo):
    """Why the manifest gives rows that do not meta-train seed 0 only: their noise (Thompson's
    posterior draws, epsilon's coin, a random policy) is seeded by the test-task ids, so seed 1
    repeats seed 0 exactly. The stochastic rows are the ones chosen here."""
    from metabench.algorithms import ALGORITHMS
    from metabench.engine.cell import CellRunner
    from metabench.spec import Cell

    assert not ALGORITHMS.get(algo).needs_training
    tables = []
    for seed in (0, 1):
        cell = Cell(suite, algo, seed, "smoke", "cpu")
        assert CellRunner(cell, tmp_path, shared_data, allow_download=False).run() == "finished"
        tables.append(read_table(tmp_path / cell.run_id / "tasks.parquet", "tasks").drop(columns="run_id"))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    seeds = {c.seed for c in manifest.intended_cells() if c.algorithm == algo}
    assert seeds == {0}, f"the manifest intends seeds {seeds} of {algo}"
