"""benchmarks/rl_side_run.py, the side-run driver behind the rl2 preset comments: a tiny run
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
