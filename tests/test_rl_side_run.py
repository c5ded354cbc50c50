"""benchmarks/rl_side_run.py and mdp_behaviour.py, the tools behind the rl2 preset comments: a tiny run
prints its validation table and saves a checkpoint that loads back; bad input is one clear line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rl_side_run.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_side_run_prints_the_validation_table_and_saves_a_loadable_state(tmp_path):
    out = tmp_path / "rl2.pt"
    r = _run("rl2", "bandit-k5-n10", "--steps", "2", "--eval-every", "1", "--val-tasks", "100",
             "--set", "hidden=8", "--save", str(out))
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["0", "1", "2"]
    saved = torch.load(out, weights_only=False)
    assert saved["config"].hidden == 8 and saved["state"]["steps"] == 2


def test_side_run_rejects_an_unknown_field_in_one_line():
    r = _run("rl2", "bandit-k5-n10", "--steps", "1", "--set", "hiddn=8")
    assert r.returncode == 2
    assert r.stderr.startswith("error:") and "hiddn" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_side_run_rejects_an_unknown_device_in_one_line():
    r = _run("rl2", "bandit-k5-n10", "--steps", "1", "--device", "gpu")
    assert r.returncode == 2
    assert r.stderr.startswith("error:") and "--device" in r.stderr and len(r.stderr.strip().splitlines()) == 1


MDP_TOOL = SCRIPT.parent / "mdp_behaviour.py"


def test_mdp_behaviour_heuristics_rank_as_expected():
    """The per-state heuristics' scores: trying one action per state is no better than random
    (~0.46), trying two is clearly better, and every row is a ratio below the oracle's 1."""
    sys.path.insert(0, str(SCRIPT.parent))
    from mdp_behaviour import play_heuristic

    from metabench.suites import make_suite
    suite = make_suite("tabular-mdp-n10").prepare(None, "cpu")
    tasks = next(iter(suite.fixed_tasks("val", 50, batch_size=50)))
    try1, try3 = (play_heuristic(suite, tasks, 4, "try", k) for k in (1, 3))
    assert 0.40 < try1 < 0.52 < try3 < 1.0


def test_mdp_behaviour_reports_a_saved_policy_and_rejects_a_missing_file(tmp_path):
    out = tmp_path / "rl2.pt"
    assert _run("rl2", "tabular-mdp-n10", "--steps", "1", "--val-tasks", "100", "--set", "hidden=8",
                "--save", str(out)).returncode == 0
    r = subprocess.run([sys.executable, str(MDP_TOOL), "policy", str(out), "--val-tasks", "20"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    stats = dict(line.split(": ") for line in r.stdout.splitlines())
    shares = [float(stats[k]) for k in ("untried", "best_tried", "other_tried")]
    assert abs(sum(shares) - 1) < 2e-3 and 1 <= float(stats["actions_tried_state0"]) <= 5
    bad = subprocess.run([sys.executable, str(MDP_TOOL), "policy", str(tmp_path / "none.pt")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error:")
