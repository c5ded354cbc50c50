"""`metabench reproduce RUN_ID` (issue 21 §4): a stored cell re-run from its configuration."""
from __future__ import annotations

import json

import pytest

from metabench.engine.reproduce import reproduce
from metabench.errors import ConfigError
from metabench.results.writer import read_table, write_table
from metabench.overrides import parse_sets
from metabench.spec import RunSpec


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Smoke runs of maml (seeds 0 and 1) and of a maml variant on sinusoid-5shot."""
    from metabench.engine.cell import CellRunner

    root = tmp_path_factory.mktemp("reproduce")
    spec = RunSpec(("sinusoid-5shot",), ("maml",), (0, 1), "smoke", "cpu", overrides=parse_sets(["maml.inner_steps=1,2"]))
    for cell in spec.plan()[0]:
        assert CellRunner(cell, root, allow_download=False).run() == "finished"
    return root


def test_a_stored_run_reproduces_bit_for_bit(folder, tmp_path, run_cli):
    run_id = "sinusoid-5shot--maml--smoke--seed0"
    rc, out, err = run_cli(["reproduce", run_id, "--results-dir", str(folder), "--scratch", str(tmp_path), "--quiet"])
    assert rc == 0, err
    assert f"{run_id}: identical: all " in out and "same fixed test tasks (fingerprints agree)" in out
    variant = next(p.name for p in folder.iterdir() if p.name.startswith(run_id + "-"))   # maml[inner_steps=2]
    assert reproduce(folder, variant, scratch=tmp_path / "v").identical


def test_a_different_result_is_measured_against_the_seed_spread(folder, tmp_path, run_cli):
    """The stored rows are shifted by +5 (as if another machine had produced them): the rerun is
    5 lower on every task, with a zero-width CI, and outside the two seeds' spread."""
    import shutil

    shutil.copytree(folder, tmp_path / "r")
    path = tmp_path / "r" / "sinusoid-5shot--maml--smoke--seed0" / "tasks.parquet"
    rows = read_table(path, "tasks")
    rows["value"] = rows["value"] + 5.0
    write_table(rows.to_dict("records"), path, "tasks")
    result = reproduce(tmp_path / "r", "sinusoid-5shot--maml--smoke--seed0", scratch=tmp_path / "s")
    assert not result.identical and result.metric == "mse"
    assert result.mean_diff == pytest.approx(-5.0) and result.ci95 == pytest.approx(0.0, abs=1e-9)
    assert result.spread is not None and result.inside_spread is False
    assert "not identical: mse differs by -5" in result.summary() and "OUTSIDE the seed-to-seed spread" in result.summary()
    rc, out, _ = run_cli(["reproduce", "sinusoid-5shot--maml--smoke--seed0", "--results-dir", str(tmp_path / "r"),
                       "--scratch", str(tmp_path / "s2"), "--quiet"])
    assert rc == 1 and "not identical" in out


def test_a_run_this_metabench_would_compute_differently_is_refused(folder, tmp_path):
    import shutil

    shutil.copytree(folder, tmp_path / "r")
    path = tmp_path / "r" / "sinusoid-5shot--maml--smoke--seed1" / "runs.parquet"
    row = read_table(path, "runs")
    config = json.loads(row["config"].iloc[0])
    config["loop"]["meta_steps"] = 99
    row["config"] = json.dumps(config)
    write_table(row.to_dict("records"), path, "runs")
    with pytest.raises(ConfigError, match=r"cannot be reproduced by this metabench.*loop\.meta_steps"):
        reproduce(tmp_path / "r", "sinusoid-5shot--maml--smoke--seed1", scratch=tmp_path / "s")


def test_bad_run_ids_are_one_sentence(folder, run_cli):
    for run_id, message in (("nope", "no run 'nope' in"), ("../etc", "run id")):
        rc, _, err = run_cli(["reproduce", run_id, "--results-dir", str(folder), "--quiet"])
        assert rc == 2 and err.count("error:") == 1 and message in err, err


def test_metrics_added_since_the_stored_run_are_named_not_compared(folder, tmp_path):
    """A stored run that predates a metric (here: its mse@1 rows removed, as for runs written
    before a common budget was reported) still reproduces identically on the rows it has."""
    import shutil

    shutil.copytree(folder, tmp_path / "r")
    path = tmp_path / "r" / "sinusoid-5shot--maml--smoke--seed0" / "tasks.parquet"
    rows = read_table(path, "tasks")
    write_table(rows[rows["metric"] != "mse@1"].to_dict("records"), path, "tasks")
    result = reproduce(tmp_path / "r", "sinusoid-5shot--maml--smoke--seed0", scratch=tmp_path / "s")
    assert result.identical and result.new_metrics == ["mse@1"]
    assert "also reports mse@1" in result.summary()
