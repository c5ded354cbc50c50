"""Variants are entries (issue 20): runs with the same seed and different overrides of the preset
are separate leaderboard entries, never averaged, in every query, export and view; results from
before variants (runs files without the new columns) still read as plain entries."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from metabench.results import ResultsDB, format_leaderboard, read_table, write_fixture_results
from metabench.results.aggregate import aggregate
from metabench.results.export import leaderboard_bytes
from metabench.results.fixtures import _write_run, write_variant_fixture
from metabench.results.query import LEADERBOARD_COLUMNS
from metabench.results.schema import LEGACY_DEFAULTS, RUNS, SCHEMA_VERSION, SCHEMA_VERSION_KEY
from metabench.results.variants import changes_text
from metabench.results.verify import verify_results
from metabench.results.writer import parquet_bytes, schema_version, to_arrow

T9 = 2.2621571627982  # Student t(0.975, df=9), from a printed table
V3 = "maml[inner_steps=3]"
V3L = "maml[inner_steps=3,loop.meta_steps=40]"
NEW_COLUMNS = ["variant", "overrides", "origin", "contract_version", "tasks_fingerprint"]


@pytest.fixture(scope="module")
def variant_dir(tmp_path_factory) -> Path:
    return write_variant_fixture(tmp_path_factory.mktemp("variants"))


@pytest.fixture(scope="module")
def db(variant_dir) -> ResultsDB:
    return ResultsDB(variant_dir)


# -- the leaderboard -----------------------------------------------------------------------------


def test_same_seed_different_overrides_are_two_entries_never_averaged(db):
    lb = db.leaderboard("sinusoid-5shot")  # mse@10, lower is better
    assert list(lb.columns) == LEADERBOARD_COLUMNS
    assert lb["variant"].tolist() == [V3, "maml", V3L, "reptile"]
    assert lb["algorithm"].tolist() == ["maml", "maml", "maml", "reptile"]
    # Each entry's own numbers (see metabench.results.fixtures): averaging the three maml entries'
    # seed-0 runs together would give 0.30 with 6 "seeds"; instead each keeps its 2 seeds.
    assert lb["mean"].tolist() == pytest.approx([0.20, 0.30, 0.40, 0.50])
    assert lb["ci95"].tolist() == pytest.approx([T9 * e / 3 for e in (0.04, 0.05, 0.05, 0.10)])
    assert lb["std_seeds"].tolist() == pytest.approx([d * math.sqrt(2) for d in (0.01, 0.02, 0.02, 0.04)])
    assert lb["n_seeds"].tolist() == [2, 2, 2, 2] and lb["n_tasks"].tolist() == [10] * 4
    assert lb["changes"].tolist() == ["inner_steps=3", "", "inner_steps=3, loop.meta_steps=40", ""]
    assert lb["rank"].tolist() == [1, 2, 3, 4] and lb["vs_best"].tolist()[0] == "best"
    at1 = db.leaderboard("sinusoid-5shot", metric="mse@1")
    assert dict(zip(at1["variant"], at1["mean"])) == pytest.approx(
        {V3: 1.00, "maml": 1.20, V3L: 1.30, "reptile": 1.50})


def test_plain_results_look_as_before(db):
    # omniglot has no variants: the same board as the plain fixture, variant = algorithm.
    lb = db.leaderboard("omniglot-5w1s")
    assert lb["variant"].tolist() == lb["algorithm"].tolist() == ["protonet", "maml"]
    assert lb["changes"].tolist() == ["", ""]
    assert lb["mean"].tolist() == pytest.approx([0.98, 0.95])


def test_published_numbers_attach_only_to_plain_rows(tmp_path):
    root = write_fixture_results(tmp_path)
    for seed in (0, 1):  # maml on omniglot with an override: not the paper's setting
        _write_run(root, 30 + seed, "omniglot-5w1s", "maml", "optimization", seed, "finished",
                   {"accuracy": [0.92 if i % 2 == 0 else 0.89 for i in range(10)]}, transductive=True,
                   query_batch="n_way (one per class)", overrides={"config": {"inner_steps": 3}})  # fmt: skip
    lb = ResultsDB(root).leaderboard("omniglot-5w1s").set_index("variant")
    assert lb.loc["maml", "published"] == pytest.approx(0.987)  # the MAML paper, same protocol
    assert math.isnan(lb.loc[V3, "published"]) and pd.isna(lb.loc[V3, "published_source"])
    assert lb.loc[V3, "algorithm"] == "maml" and lb.loc[V3, "n_seeds"] == 2


# -- every other query ---------------------------------------------------------------------------


def test_task_values_tasks_costs_and_facets_keep_variants_apart(db):
    values = db.task_values("sinusoid-5shot", "mse@10")
    assert values.groupby("variant").size().to_dict() == {V3: 10, V3L: 10, "maml": 10, "reptile": 10}
    assert set(values["n_seeds"]) == {2}
    v3 = values[values["variant"] == V3].set_index("task_id")["value"]
    assert v3.tolist() == pytest.approx([0.24 if i % 2 == 0 else 0.16 for i in range(10)])
    assert set(values.loc[values["variant"] == V3, "algorithm"]) == {"maml"}

    tasks = db.tasks("sinusoid-5shot", "mse@10")
    assert "variant" in tasks
    per = tasks.groupby("variant").agg(runs=("run_id", "nunique"), seeds=("seed", "nunique"), rows=("value", "size"))
    assert per.loc[V3].tolist() == [2, 2, 20] and per.loc["maml"].tolist() == [2, 2, 20]

    costs = db.run_costs("sinusoid-5shot", "mse@10")
    assert costs.groupby("variant")["seed"].apply(sorted).to_dict() == {
        V3: [0, 1], V3L: [0, 1], "maml": [0, 1], "reptile": [0, 1]}  # fmt: skip
    seed0 = costs[(costs["seed"] == 0) & (costs["algorithm"] == "maml")].set_index("variant")["value"]
    assert seed0.to_dict() == pytest.approx({V3: 0.21, "maml": 0.32, V3L: 0.42})

    assert db.facets("sinusoid-5shot")["variants"] == sorted(["maml", "reptile", V3, V3L])


def test_curve_summary_and_curves_keep_variants_apart(db):
    summary = db.curve_summary("sinusoid-5shot", "mse@10")
    assert set(summary["variant"]) == {"maml", "reptile", V3, V3L}
    assert summary.groupby("variant")["n_seeds"].max().to_dict() == {"maml": 2, "reptile": 2, V3: 2, V3L: 2}
    assert summary.groupby("variant")["step"].size().to_dict() == {"maml": 10, "reptile": 10, V3: 10, V3L: 10}
    curves = db.curves("sinusoid-5shot", "mse@10")
    assert curves.groupby("variant")["run_id"].nunique().to_dict() == {"maml": 2, "reptile": 2, V3: 2, V3L: 2}


def test_aggregate_pools_per_variant(db):
    scores = db.run_scores()
    assert {V3, V3L} <= set(scores["variant"])
    agg = aggregate(scores, reps=200)
    entries = set(agg.table["entry"])
    assert {"maml", V3, V3L, "protonet", "reptile"} <= entries
    # the variants ran on sinusoid only; plain maml on both suites
    suites = agg.table.set_index("entry")["n_suites"]
    assert suites[V3] == 1 and suites["maml"] == 2


def test_exports_name_entries_by_variant(db):
    lb = db.leaderboard("sinusoid-5shot")
    table = format_leaderboard(lb, "table").splitlines()
    assert table[0].split()[:5] == ["rank", "mse@10", "mean", "±", "95%"]
    assert V3 in table[2] and " maml " in table[3] and V3L in table[4]
    md = format_leaderboard(lb, "markdown")
    assert f"| 1 | **0.200 ± 0.0302** | {V3} |" in md
    latex = format_leaderboard(lb, "latex")
    assert r"maml[inner\_steps=3] & optimization" in latex
    assert r"maml[inner\_steps=3,loop.meta\_steps=40] & optimization" in latex
    csv = pd.read_csv(io.StringIO(format_leaderboard(lb, "csv")), keep_default_na=False)
    assert list(csv.columns) == LEADERBOARD_COLUMNS
    assert csv["variant"].tolist() == [V3, "maml", V3L, "reptile"]
    assert csv["changes"].tolist() == ["inner_steps=3", "", "inner_steps=3, loop.meta_steps=40", ""]
    parquet = pd.read_parquet(io.BytesIO(leaderboard_bytes(lb, "parquet")))
    assert parquet["variant"].tolist() == [V3, "maml", V3L, "reptile"]


def test_cli_leaderboard_shows_variants(variant_dir, capsys):
    from metabench import cli

    assert cli.main(["leaderboard", "--results-dir", str(variant_dir), "--suite", "sinusoid-5shot"]) == 0
    out = capsys.readouterr().out
    assert V3 in out and V3L in out and "0.200 ± 0.0302" in out


def test_changes_text():
    assert changes_text("{}") == "" and changes_text(None) == ""
    assert changes_text(json.dumps({"loop": {"meta_steps": 4}, "config": {"inner_steps": 3, "inner_lr": 0.1}})) == \
        "inner_lr=0.1, inner_steps=3, loop.meta_steps=4"
    assert changes_text({"config": {"first_order": True}}) == "first_order=true"


# -- results from before variants ----------------------------------------------------------------


def _strip_new_columns(path: Path, *, checksum: bool) -> None:
    """Rewrite a runs file as metabench wrote it before schema version 2: no variant, overrides,
    origin or contract_version column (with our checksum, or as plain pyarrow wrote old files)."""
    arrow = to_arrow(read_table(path, "runs"), "runs").drop_columns(NEW_COLUMNS)
    if checksum:
        path.write_bytes(parquet_bytes(arrow))  # what a version-1 writer with checksums produced
        return
    pq.write_table(arrow, path)


def test_old_format_runs_still_appear_as_plain_entries(tmp_path):
    root = write_fixture_results(tmp_path / "old")
    for i, path in enumerate(sorted(root.glob("*/runs.parquet"))):
        _strip_new_columns(path, checksum=bool(i % 2))
    assert all(NEW_COLUMNS[0] not in pq.read_schema(p).names for p in root.glob("*/runs.parquet"))
    # read_table and verify accept them, filling in the defaults
    some = sorted(root.glob("*/runs.parquet"))[0]
    row = read_table(some, "runs").iloc[0]
    assert list(read_table(some, "runs").columns) == RUNS.names
    assert (row["variant"], row["overrides"], row["origin"]) == (row["algorithm"], "{}", "built-in")
    assert pd.isna(row["contract_version"])
    report = verify_results(root, clean=True)  # (clean: the fixture's leftover temporary file)
    assert report.ok, [str(p) for p in report.bad]
    db = ResultsDB(root)
    assert db.problems() == []
    lb = db.leaderboard("omniglot-5w1s")
    assert lb["variant"].tolist() == lb["algorithm"].tolist() == ["protonet", "maml"]
    assert lb["changes"].tolist() == ["", ""] and lb["mean"].tolist() == pytest.approx([0.98, 0.95])
    assert lb["published"].notna().all()  # plain rows keep their published numbers
    runs = db.runs()
    assert (runs["variant"] == runs["algorithm"]).all() and set(runs["overrides"]) == {"{}"}
    assert set(runs["origin"]) == {"built-in"} and runs["contract_version"].isna().all()


def test_old_and_new_files_read_together(tmp_path):
    """Old plain maml runs (no new columns) beside new variant runs of the same seeds: one DuckDB
    read of both still tells them apart."""
    root = write_variant_fixture(tmp_path / "mixed")
    for path in root.glob("sinusoid-5shot-v1-maml-s?/runs.parquet"):  # the plain maml runs only
        _strip_new_columns(path, checksum=True)
    lb = ResultsDB(root).leaderboard("sinusoid-5shot")
    assert lb["variant"].tolist() == [V3, "maml", V3L, "reptile"]
    assert lb["mean"].tolist() == pytest.approx([0.20, 0.30, 0.40, 0.50])
    assert lb["n_seeds"].tolist() == [2, 2, 2, 2]


def test_files_record_the_schema_version(variant_dir):
    path = sorted(variant_dir.glob("*/runs.parquet"))[0]
    metadata = pq.ParquetFile(path).metadata.metadata
    assert metadata[SCHEMA_VERSION_KEY.encode()] == str(SCHEMA_VERSION).encode()
    assert schema_version(metadata) == SCHEMA_VERSION == 2
    assert schema_version({b"ARROW:schema": b""}) == 1  # before versions were recorded
    assert set(LEGACY_DEFAULTS["runs"]) == set(NEW_COLUMNS) and RUNS.names[-5:] == NEW_COLUMNS


# -- the engine ----------------------------------------------------------------------------------


def test_real_smoke_runs_with_one_seed_are_two_entries(tmp_path, monkeypatch):
    """``metabench run --set maml.inner_steps=1,3 --preset smoke``: two cells with seed 0, two
    leaderboard rows (about 20 s on a CPU)."""
    from metabench.algorithms import CONTRACT_VERSION
    from metabench.engine.cell import CellRunner
    from metabench.spec import RunSpec

    spec = RunSpec(suites=("sinusoid-5shot",), algorithms=("maml",), seeds=(0,), preset="smoke", device="cpu",
                   overrides={"maml.inner_steps": (1, 3)})  # fmt: skip
    cells, skipped = spec.plan()
    assert not skipped and sorted(c.variant for c in cells) == ["maml", V3]
    for cell in cells:
        assert CellRunner(cell, tmp_path, allow_download=False).run() == "finished"
    runs = ResultsDB(tmp_path).runs().set_index("variant")
    assert runs.loc[V3, "overrides"] == '{"config": {"inner_steps": 3}}'
    assert runs.loc["maml", "overrides"] == "{}"
    assert set(runs["origin"]) == {"built-in"} and set(runs["contract_version"]) == {CONTRACT_VERSION}
    assert set(runs["seed"]) == {0} and set(runs["algorithm"]) == {"maml"}
    db = ResultsDB(tmp_path)
    lb = db.leaderboard("sinusoid-5shot")
    assert sorted(lb["variant"]) == ["maml", V3] and lb["n_seeds"].tolist() == [1, 1]
    assert dict(zip(lb["variant"], lb["changes"])) == {"maml": "", V3: "inner_steps=3"}
    # each row is its own run's mean over the test tasks, not the average of the two
    tasks = db.tasks("sinusoid-5shot", lb["metric"].iloc[0])
    means = tasks.groupby("variant")["value"].mean()
    assert dict(zip(lb["variant"], lb["mean"])) == pytest.approx(means.to_dict())
    assert means[V3] != pytest.approx(means["maml"])
    assert set(db.task_values("sinusoid-5shot", lb["metric"].iloc[0])["variant"]) == {"maml", V3}
    curves = db.curve_summary("sinusoid-5shot", db.curve_metrics("sinusoid-5shot")[0][1],
                              db.curve_metrics("sinusoid-5shot")[0][0])  # fmt: skip
    assert set(curves["variant"]) == {"maml", V3} and set(curves["n_seeds"]) == {1}
