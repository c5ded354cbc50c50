"""Issue 22 section 3: one adaptation budget per comparison. Every gradient-based learner reports its
metric at the suite's common budgets (sinusoid: mse@1 and mse@10) whatever its own test steps, the
headline metric stays at its own steps, and the extra steps change no other number."""
from __future__ import annotations

import json

import pytest
import torch

from metabench.algorithms import ALGORITHMS
from metabench.suites import make_suite

GRADIENT_BASED = ["maml", "fomaml", "metasgd", "anil", "reptile"]


def _evaluate(name: str, common: bool, monkeypatch) -> tuple[dict[str, torch.Tensor], object]:
    suite = make_suite("sinusoid-5shot").prepare()
    cls = ALGORITHMS.get(name)
    monkeypatch.setattr(cls, "reports_common_budgets", common)
    algo = cls(suite, cls.preset_config("smoke", suite), "cpu", 0)
    batch = next(suite.fixed_tasks("test", 4, batch_size=4))
    return algo.evaluate(batch), algo


@pytest.mark.parametrize("name", GRADIENT_BASED)
def test_common_budget_metrics_are_reported(name, monkeypatch):
    metrics, algo = _evaluate(name, True, monkeypatch)
    assert make_suite("sinusoid-5shot").common_budgets == (1, 10)
    assert {"mse@1", "mse@10"} <= set(metrics), sorted(metrics)
    own = algo.config.test_inner_steps
    assert own < 10 and torch.equal(metrics["mse"], metrics[f"mse@{own}"])   # the headline: its own budget
    assert algo.recorded_protocol()["adaptation_budget"] == own
    assert algo.recorded_protocol()["adaptation_unit"] == "inner steps"
    # Stepping on to the common budget changes none of the numbers the learner reported before
    before, _ = _evaluate(name, False, monkeypatch)
    assert "mse@10" not in before
    for key, value in before.items():
        assert torch.equal(metrics[key], value), key


def test_metric_learners_record_one_support_pass():
    suite = make_suite("omniglot-5w1s")
    for name in ("protonet", "matchingnet", "pixel-centroid"):
        cls = ALGORITHMS.get(name)
        protocol = cls(suite, cls.preset_config("smoke", suite), "cpu", 0).recorded_protocol()
        assert (protocol["adaptation_budget"], protocol["adaptation_unit"], protocol["test_steps"]) == \
            (1, "support passes", None), name


def test_cli_leaderboard_marks_and_filters_transductive_entries(tmp_path, run_cli):
    from metabench.results import write_fixture_results

    root = write_fixture_results(tmp_path)
    rc, out, err = run_cli(["leaderboard", "--results-dir", str(root), "--suite", "omniglot-5w1s", "--no-reference"])
    assert rc == 0, err
    assert "maml†" in out and "† transductive" in out and "3 inner steps" in out
    rc, out, err = run_cli(["leaderboard", "--results-dir", str(root), "--suite", "omniglot-5w1s", "--no-reference",
                            "--transductive", "no"])
    assert rc == 0, err
    assert "protonet" in out and "maml" not in out and "†" not in out


def test_runs_stored_before_budgets_were_recorded_show_their_inner_steps():
    """A run whose protocol predates the recorded budget still shows its `test_inner_steps`."""
    from metabench.results.query import _budget

    old = json.dumps({"algorithm": {"test_inner_steps": 3}, "protocol": {"transductive": True}})
    assert _budget(old) == (3, "inner steps")
    new = json.dumps({"algorithm": {"test_inner_steps": 3},
                      "protocol": {"adaptation_budget": 1, "adaptation_unit": "support passes"}})
    assert _budget(new) == (1, "support passes")
    assert _budget(json.dumps({"algorithm": {}})) == (None, None)
    assert _budget("not json") == (None, None)


def test_finetune_counts_its_head_steps_and_reports_the_common_budget(shared_data):
    """finetune adapts by `head_steps` gradient steps on a new head: that is its recorded budget,
    and on Omniglot it also reports accuracy after the common budget of one step, which leaves
    its own accuracy and loss unchanged (the fit only is read at step 1)."""
    suite = make_suite("omniglot-5w1s").prepare(shared_data, "cpu", allow_download=False, progress=False)
    cls = ALGORITHMS.get("finetune")
    algo = cls(suite, cls.preset_config("smoke", suite), "cpu", 0)
    protocol = algo.recorded_protocol()
    assert (protocol["adaptation_budget"], protocol["adaptation_unit"]) == (algo.config.head_steps, "inner steps")
    batch = next(suite.fixed_tasks("test", 4, batch_size=4))
    metrics = algo.evaluate(batch)
    assert set(metrics) == {"accuracy", "loss", "accuracy@1"}
    algo.suite = type("NoBudgets", (), {"common_budgets": ()})()   # the same fit, no step-1 read-out
    plain = algo.evaluate(batch)
    assert set(plain) == {"accuracy", "loss"}
    assert torch.equal(plain["accuracy"], metrics["accuracy"]) and torch.equal(plain["loss"], metrics["loss"])


@pytest.mark.parametrize("old_seed", [0, 1])
def test_an_entry_shows_its_budget_when_an_older_seed_predates_the_recorded_protocol(tmp_path, old_seed):
    """The shipped protonet seed 0 was stored before runs recorded their protocol; its later seeds
    record it. The entry's budget comes from its newest run, whichever seed the scan meets first."""
    import pandas as pd

    from metabench.results import ResultsDB, write_fixture_results
    from metabench.results.writer import read_table, write_table

    root = write_fixture_results(tmp_path)
    for seed in (0, 1):
        path = root / f"omniglot-5w1s-v2-protonet-s{seed}" / "runs.parquet"
        runs = read_table(path, "runs")
        runs["started_at"] = pd.Timestamp("2025-01-01" if seed == old_seed else "2025-06-01", tz="UTC")
        if seed == old_seed:   # stored before the protocol was recorded
            config = json.loads(runs.loc[0, "config"])
            del config["protocol"]
            runs.loc[0, "config"] = json.dumps(config)
        write_table(runs.to_dict("records"), path, "runs")
    board = ResultsDB(root).leaderboard("omniglot-5w1s")
    row = board[board["algorithm"] == "protonet"].iloc[0]
    assert row["n_seeds"] == 2 and row["budget"] == "1 support pass"
