"""The command line: bad input gets one clear sentence and a non-zero exit, never a traceback."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metabench.cli", *args], capture_output=True, text=True,
                          timeout=300)


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("error: ")
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"


def test_list_json_shows_fits_and_reasons():
    out = json.loads(run("list", "--json").stdout)
    assert {s["id"] for s in out["suites"]} >= {"omniglot-5w1s", "omniglot-20w5s", "sinusoid-5shot", "sinusoid-10shot"}
    assert out["fits"]["maml"]["sinusoid-5shot"]["ok"] is True
    assert out["fits"]["protonet"]["sinusoid-5shot"] == {
        "ok": False, "reason": "protonet handles classification tasks; sinusoid-5shot is regression"}
    text = run("list").stdout
    fits = {line.split()[0]: line.split(None, 1)[1] for line in
            text.split("Fits (")[1].split("Why not")[0].splitlines()[1:] if line.strip()}
    assert "maml" in fits["sinusoid-5shot"].split(", ") and "protonet" not in fits["sinusoid-5shot"]
    assert "ucb1" in fits["bandit-k5-n100"] and "ucb1" not in fits["tabular-mdp-n10"]
    assert "ucb1 is a reference row for bandit suites only: tabular-mdp-n10" in text


@pytest.mark.parametrize("args, needles", [
    (["--suites", "omniglot-5w1", "--algorithms", "maml"], ["Unknown suite 'omniglot-5w1'", "Did you mean 'omniglot-5w1s'"]),
    (["--suites", "sinusoid-5shot", "--algorithms", "protonett"], ["Did you mean 'protonet'"]),
    (["--suites", "sinusoid-5shot", "--algorithms", "maml", "--preset", "fast"], ["Unknown preset 'fast'", "smoke, quick, paper"]),
    (["--suites", "sinusoid-5shot", "--algorithms", "maml", "--seeds", "one"], ["seeds must be non-negative integers"]),
    (["--suites", ",", "--algorithms", "maml"], ["--suites needs at least one value"]),
])
def test_run_rejects_bad_input(args, needles, tmp_path):
    assert_clean_error(run("run", *args, "--results-dir", str(tmp_path)), *needles)


def test_unwritable_results_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run("run", "--suites", "sinusoid-5shot", "--algorithms", "maml", "--preset", "smoke",
               "--results-dir", str(blocker / "results"))
    assert_clean_error(proc, "cannot write to the results folder", "--results-dir")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu(tmp_path):
    proc = run("run", "--suites", "sinusoid-5shot", "--algorithms", "maml", "--preset", "smoke",
               "--device", "cuda", "--results-dir", str(tmp_path), "--quiet")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--device cuda was asked for, but torch sees no CUDA GPU" in proc.stderr


def test_missing_data_offline_skips_that_suite_and_runs_the_rest(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    proc = run("run", "--suites", "omniglot-5w1s,sinusoid-5shot", "--algorithms", "maml", "--preset", "smoke",
               "--results-dir", str(tmp_path / "res"), "--data-dir", str(empty), "--no-download", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    skip = [line for line in proc.stderr.splitlines() if line.startswith("skip omniglot-5w1s")]
    assert len(skip) == 1 and "metabench data fetch omniglot" in skip[0] and str(empty) in skip[0]
    assert "1 cell(s) finished" in proc.stdout and "1 suite(s) without data" in proc.stdout


def test_leaderboard_errors_and_formats(tmp_path):
    assert_clean_error(run("leaderboard", "--results-dir", str(tmp_path / "nope")), "no results folder")
    from metabench.results.fixtures import write_fixture_results

    write_fixture_results(tmp_path / "fx")
    md = run("leaderboard", "--results-dir", str(tmp_path / "fx"), "--format", "markdown")
    assert md.returncode == 0 and "| " in md.stdout and "### omniglot-5w1s" in md.stdout
    assert_clean_error(run("leaderboard", "--results-dir", str(tmp_path / "fx"), "--suite", "omniglot-5w1"),
                       "Did you mean 'omniglot-5w1s'")
    assert_clean_error(run("leaderboard", "--results-dir", str(tmp_path / "fx"), "--format", "xml"))


def test_fetch_rejects_unknown_dataset(tmp_path):
    assert_clean_error(run("data", "fetch", "omniglott", "--data-dir", str(tmp_path)), "omniglot")
