"""The Streamlit dashboard, driven headlessly with AppTest over the fixture results folder."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from metabench.dashboard import widgets
from metabench.results import write_fixture_results

APP = str(Path(__file__).resolve().parents[1] / "app.py")
T9 = 2.2621571627982  # Student t(0.975, df=9), from a printed table


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> Path:
    return write_fixture_results(tmp_path_factory.mktemp("results"))


def _app(monkeypatch, folder: Path) -> AppTest:
    monkeypatch.setenv(widgets.ENV_VAR, str(folder))
    monkeypatch.setenv(widgets.VALIDATE_VAR, "1")  # every chart drawn is checked against Vega-Lite's schema
    return AppTest.from_file(APP, default_timeout=60)


def _leaderboard(at: AppTest) -> AppTest:
    at.switch_page("pages/leaderboard.py").run()
    assert not at.exception, at.exception
    return at


def test_home_shows_counts(monkeypatch, fixture_dir):
    at = _app(monkeypatch, fixture_dir).run()
    assert not at.exception, at.exception
    counts = {m.label: m.value for m in at.metric}
    assert counts["Runs"] == "11"
    assert counts["Finished"] == "9"
    # The running snail run's job (jobs/job-0001) has no live process: interrupted, not running.
    assert counts["Running"] == "0"
    assert counts["Interrupted"] == "1"
    assert counts["Suites"] == "2"
    assert counts["Algorithms"] == "4"
    assert any("last run 2025-03-01 19:00 UTC" in m.value for m in at.markdown)
    assert at.sidebar.text_input[0].value == str(fixture_dir)


def test_home_counts_a_run_as_running_only_while_its_job_lives(monkeypatch, tmp_path):
    import os
    import time

    from metabench.engine import jobstore
    from metabench.fsutil import atomic_write_json
    from metabench.results import ResultsDB

    folder = write_fixture_results(tmp_path)
    runs = ResultsDB(folder).runs()
    run_id = runs.loc[runs["status"] == "running", "run_id"].item()
    status = tmp_path / "jobs" / "job-0001" / "status.json"
    # A job process that is alive (this test's own pid and start time) and runs the cell.
    atomic_write_json(status, {"state": "running", "heartbeat": time.time(), **jobstore.identity(os.getpid()),
                               "cells": {run_id: {"state": "running", "step": 40}}})  # fmt: skip
    at = _app(monkeypatch, folder).run()
    assert not at.exception, at.exception
    counts = {m.label: m.value for m in at.metric}
    assert (counts["Running"], counts["Interrupted"]) == ("1", "0")
    overview = at.dataframe[0].value.set_index("Suite")
    assert overview.loc["omniglot-5w1s", "Running"] == 1
    # The same job recorded by a process that is gone (another pid start time): interrupted.
    atomic_write_json(status, {"state": "running", "heartbeat": time.time(), **jobstore.identity(os.getpid()),
                               "pid_start": "1", "cells": {run_id: {"state": "running", "step": 40}}})  # fmt: skip
    at.run()
    counts = {m.label: m.value for m in at.metric}
    assert (counts["Running"], counts["Interrupted"]) == ("0", "1")
    assert at.dataframe[0].value.set_index("Suite").loc["omniglot-5w1s", "Interrupted"] == 1


def test_leaderboard_numbers_match_hand_computation(monkeypatch, fixture_dir):
    at = _leaderboard(_app(monkeypatch, fixture_dir).run())
    table = at.dataframe[0].value
    assert table["Algorithm"].tolist() == ["protonet", "maml†"]   # † = transductive (issue 22)
    assert table["Rank"].tolist() == [1, 2]
    # Accuracy is shown in percent.
    assert table["Mean"].tolist() == pytest.approx([98.0, 95.0])
    # mean ± t9 * e / 3 with e = 1% and 2% (see metabench.results.fixtures)
    expected = [f"{m - T9 * e / 3:.2f}% – {m + T9 * e / 3:.2f}%" for m, e in ((98, 1), (95, 2))]
    assert table["95% CI"].tolist() == expected == ["97.25% – 98.75%", "93.49% – 96.51%"]
    assert table["Std (seeds)"].tolist() == [f"{0.5 * math.sqrt(2):.2f}%", f"{math.sqrt(2):.2f}%"]
    # The paired comparison with the best: maml is below protonet on every task (10 of 10).
    assert table["vs best"].tolist() == ["best", "worse (p<0.001)"]
    assert table["P(beats best)"].tolist() == ["–", "0.00"]
    # Published numbers sit beside ours where the protocol (split, transductive, metric) matches.
    published = dict(zip(table["Algorithm"], table["Published"]))
    assert published["maml†"].startswith("98.70% ± 0.40% (Finn")
    assert published["protonet"].startswith("98.80% (Snell")
    assert table["Seeds"].tolist() == [2, 2] and table["Test tasks"].tolist() == [10, 10]
    assert table["Transductive"].tolist() == [False, True]
    assert table["Test tasks"].tolist() == [10, 10] and table["Split"].tolist() == ["vinyals"] * 2
    assert at.query_params["suite"] == "omniglot-5w1s"
    assert any("t(0.975, n_tasks − 1)" in c.value for c in at.caption)


def test_choosing_the_other_suite_changes_the_numbers(monkeypatch, fixture_dir):
    at = _leaderboard(_app(monkeypatch, fixture_dir).run())
    at.selectbox(key="url_suite").select("sinusoid-5shot").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert table["Algorithm"].tolist() == ["maml", "reptile"]  # lower mse ranks first
    assert table["Mean"].tolist() == pytest.approx([0.30, 0.50])
    expected = [f"{m - T9 * e / 3:.3f} – {m + T9 * e / 3:.3f}" for m, e in ((0.30, 0.05), (0.50, 0.10))]
    assert table["95% CI"].tolist() == expected == ["0.262 – 0.338", "0.425 – 0.575"]
    assert at.query_params["suite"] == "sinusoid-5shot"
    assert at.query_params["metric"] == "mse@10"

    at.selectbox(key="url_metric").select("mse@1").run()
    assert at.dataframe[0].value["Mean"].tolist() == pytest.approx([1.20, 1.50])


def test_suite_in_the_url_is_preselected(monkeypatch, fixture_dir):
    at = _app(monkeypatch, fixture_dir)
    at.query_params["suite"] = "sinusoid-5shot"
    at.switch_page("pages/leaderboard.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="url_suite").value == "sinusoid-5shot"
    assert at.dataframe[0].value["Algorithm"].tolist() == ["maml", "reptile"]


def test_empty_results_folder_says_what_to_run(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path).run()
    assert not at.exception, at.exception
    assert any(widgets.FIRST_RUN in i.value for i in at.info)
    at = _leaderboard(at)
    assert not at.dataframe
    assert any(widgets.FIRST_RUN in i.value for i in at.info)



def test_leaderboard_filters_transductive_entries(monkeypatch, fixture_dir):
    """Issue 22: both kinds on omniglot-5w1s (maml† and protonet), so the filter row offers the choice."""
    at = _leaderboard(_app(monkeypatch, fixture_dir).run())
    assert any("† transductive" in c.value for c in at.caption)
    at.selectbox(key="url_transductive").set_value("only non-transductive").run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value["Algorithm"].tolist() == ["protonet"]
    at.selectbox(key="url_transductive").set_value("only transductive (†)").run()
    assert at.dataframe[0].value["Algorithm"].tolist() == ["maml†"]

def _page(monkeypatch, folder: Path, page: str, **params: str) -> AppTest:
    at = _app(monkeypatch, folder)
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_leaderboard_family_filter_and_url(monkeypatch, fixture_dir):
    at = _page(monkeypatch, fixture_dir, "pages/leaderboard.py")
    at.multiselect(key="url_family").unselect("optimization").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert table["Algorithm"].tolist() == ["protonet"] and table["vs best"].tolist() == ["best"]
    assert at.query_params["family"] == "metric"
    # A shared link with the filter opens the same view.
    at = _page(monkeypatch, fixture_dir, "pages/leaderboard.py", suite="sinusoid-5shot", family="optimization",
               metric="mse@1")  # fmt: skip
    assert at.dataframe[0].value["Mean"].tolist() == pytest.approx([1.20, 1.50])
    # A filter that selects nothing says so and what to run.
    at = _page(monkeypatch, fixture_dir, "pages/leaderboard.py", preset="none")
    assert any("No finished `omniglot-5w1s` run matches" in i.value for i in at.info)


def test_across_suites_page(monkeypatch, fixture_dir):
    at = _page(monkeypatch, fixture_dir, "pages/across_suites.py")
    agg = at.dataframe[0].value
    assert agg["Entry"].tolist() == ["protonet", "maml", "reptile"]
    assert agg["Suites"].tolist() == [1, 2, 1]
    assert agg["Mean rank"].tolist() == pytest.approx([1.0, 1.5, 2.0])
    # Per-seed normalised scores (fixture seed means: mean ± e-free offsets d):
    # protonet (0.985-0.2)/0.8, (0.975-0.2)/0.8 -> IQM of two values = their mean 0.975
    b = 4.251666666666667  # E[A^2]/2 of the sinusoid amplitudes, the zero-prediction MSE
    maml = sorted([(0.96 - 0.2) / 0.8, (0.94 - 0.2) / 0.8, 1 - 0.32 / b, 1 - 0.28 / b])
    reptile = [1 - 0.54 / b, 1 - 0.46 / b]
    assert agg["IQM"].tolist() == pytest.approx([0.975, (maml[1] + maml[2]) / 2, sum(reptile) / 2])
    rules = at.dataframe[1].value
    assert rules["Suite"].tolist() == ["omniglot-5w1s", "sinusoid-5shot"]
    assert rules["Normalised score"].iloc[0].startswith("(accuracy − 1/5) / (1 − 1/5)")


def test_curves_page(monkeypatch, fixture_dir):
    at = _page(monkeypatch, fixture_dir, "pages/curves.py")
    assert at.selectbox(key="url_curve").value == "val · accuracy"
    # The failed maml seed-2 run is left out of the lines and listed on its own.
    assert any("Seeds per entry: maml 2, protonet 2, snail 1." in c.value for c in at.caption)
    assert at.expander[0].label == "Left out of the lines: 1 failed or diverged run(s)"
    left_out = at.dataframe[0].value
    assert left_out[["algorithm", "seed", "status"]].values.tolist() == [["maml", 2, "failed"]]
    assert "NaN at meta-step 37" in left_out["error"].item()
    at.toggle(key="url_logy").set_value(True).run()
    assert not at.exception and at.query_params["logy"] == "1"
    at.selectbox(key="url_suite").select("sinusoid-5shot").run()
    assert any("Seeds per entry: maml 2, reptile 2." in c.value for c in at.caption)


def test_per_task_page(monkeypatch, fixture_dir):
    at = _page(monkeypatch, fixture_dir, "pages/per_task.py")
    assert at.selectbox(key="url_descriptor").value == "alphabets (category)"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["protonet better on"] == "10 tasks" and metrics["maml better on"] == "0 tasks"
    assert metrics["Mean A − B"] == "+3.00 pts"
    at.selectbox(key="url_suite").select("sinusoid-5shot").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="url_descriptor").value == "amplitude (numeric)"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["maml better on"] == "10 tasks" and metrics["Mean A − B"] == "-0.200"


def test_cost_page(monkeypatch, fixture_dir):
    at = _page(monkeypatch, fixture_dir, "pages/cost.py")
    table = at.dataframe[0].value.set_index("Entry")
    # fixture wall times: protonet runs 396 s and 432 s, maml 468 s and 504 s
    assert table.loc["protonet", "Wall time (min)"] == pytest.approx(414 / 60)
    assert table.loc["maml", "Wall time (min)"] == pytest.approx(486 / 60)
    assert table.loc["protonet", "accuracy"] == "98.00%"
    assert any("Pareto front" in c.value and c.value.endswith(": protonet.") for c in at.caption)


def test_export_page_shows_the_filtered_table(monkeypatch, fixture_dir):
    at = _page(monkeypatch, fixture_dir, "pages/export.py")
    latex = at.code[0].value
    assert r"\textbf{98.00 $\pm$ 0.75}" in latex and "10 fixed test tasks" in latex
    assert "maml$^\\dagger$ & optimization & 95.00 $\\pm$ 1.51" in latex   # † = transductive (issue 22)
    at.multiselect(key="url_family").unselect("metric").run()
    latex = at.code[0].value
    assert "protonet" not in latex and r"\textbf{95.00 $\pm$ 1.51}" in latex


def test_pages_and_dashboard_have_no_torch_import():
    """No module under pages/ or metabench/dashboard/ (nor app.py) imports torch (static check)."""
    import ast

    root = Path(__file__).resolve().parents[1]
    files = [root / "app.py", *(root / "pages").glob("*.py"), *(root / "metabench" / "dashboard").glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f"{path} imports torch"


@pytest.mark.slow
def test_pages_do_not_import_torch():
    """Every page renders in a fresh interpreter without importing torch (about 25 s)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = f"""
import os, sys, tempfile
from streamlit.testing.v1 import AppTest
from metabench.results import write_fixture_results
os.environ["METABENCH_RESULTS"] = str(write_fixture_results(tempfile.mkdtemp()))
for page in {[p.path for p in widgets.available_pages()]!r}:
    at = AppTest.from_file({str(root / "app.py")!r}, default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, (page, at.exception)
assert "torch" not in sys.modules, "torch was imported"
"""
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]


def test_corrupt_file_banner_names_it_and_pages_still_work(monkeypatch, fixture_dir, tmp_path):
    import shutil

    folder = shutil.copytree(fixture_dir, tmp_path / "results")
    bad = sorted(folder.glob("omniglot-5w1s-v2-maml-s*/tasks.parquet"))[0]
    bad.write_bytes(bad.read_bytes()[:-50])  # truncated
    at = _app(monkeypatch, folder).run()
    assert not at.exception, at.exception
    banner = [w.value for w in at.warning]
    assert len(banner) == 1 and str(bad) in banner[0] and "run the same `metabench run` command" in banner[0]
    assert {m.label: m.value for m in at.metric}["Runs"] == "11"
    at = _leaderboard(at)  # (AppTest runs the page alone; the server runs app.py, banner included)
    assert at.dataframe  # the leaderboard works on the remaining files


@pytest.fixture(scope="module")
def variant_dir(tmp_path_factory) -> Path:
    from metabench.results.fixtures import write_variant_fixture

    return write_variant_fixture(tmp_path_factory.mktemp("variants"))


def test_pages_label_entries_by_variant(monkeypatch, fixture_dir, variant_dir):
    """Issue 20: runs with overrides are their own entries, named by variant on every page; plain
    results show no Changes column (the table as before)."""
    v3, v3l = "maml[inner_steps=3]", "maml[inner_steps=3,loop.meta_steps=40]"
    at = _page(monkeypatch, fixture_dir, "pages/leaderboard.py")
    assert "Changes" not in at.dataframe[0].value.columns or not at.dataframe[0].value["Changes"].any()
    at = _page(monkeypatch, variant_dir, "pages/leaderboard.py", suite="sinusoid-5shot")
    table = at.dataframe[0].value
    assert table["Algorithm"].tolist() == [v3, "maml", v3l, "reptile"]
    assert table["Mean"].tolist() == pytest.approx([0.20, 0.30, 0.40, 0.50])
    assert table["Changes"].tolist() == ["inner_steps=3", "", "inner_steps=3, loop.meta_steps=40", ""]
    assert table["Seeds"].tolist() == [2, 2, 2, 2]
    assert any("*variant*" in c.value for c in at.caption)
    at = _page(monkeypatch, variant_dir, "pages/across_suites.py")
    assert {v3, v3l, "maml"} <= set(at.dataframe[0].value["Entry"])  # the aggregate, per variant
    at = _page(monkeypatch, variant_dir, "pages/curves.py", suite="sinusoid-5shot")
    assert any(f"Seeds per entry: maml 2, {v3l} 2, {v3} 2, reptile 2." in c.value for c in at.caption)
    at = _page(monkeypatch, variant_dir, "pages/per_task.py", suite="sinusoid-5shot")
    assert at.selectbox(key="url_a").value == v3 and at.selectbox(key="url_b").value == "maml"
    assert {m.label: m.value for m in at.metric}["Mean A − B"] == "-0.100"
    at = _page(monkeypatch, variant_dir, "pages/cost.py", suite="sinusoid-5shot")
    assert set(at.dataframe[0].value["Entry"]) == {"maml", "reptile", v3, v3l}
    at = _page(monkeypatch, variant_dir, "pages/export.py", suite="sinusoid-5shot")
    assert r"maml[inner\_steps=3] & optimization & \textbf{0.200" in at.code[0].value


def test_every_family_selected_stays_every_family_on_the_next_page(monkeypatch, variant_dir):
    """'All selected' is remembered as all, not as one page's option list: Across suites (every
    suite's families) after a suite's leaderboard filters nothing out; a narrowed filter carries over."""
    at = _app(monkeypatch, variant_dir)
    at.query_params["suite"] = "omniglot-5w1s"
    at.switch_page("pages/leaderboard.py").run()
    assert at.multiselect(key="url_family").value == ["metric", "optimization"]
    at.switch_page("pages/across_suites.py").run()
    assert not at.exception, at.exception
    family = at.multiselect(key="url_family")
    assert family.value == family.options and "family" not in at.query_params
    family.unselect("metric").run()
    at.switch_page("pages/cost.py").run()
    assert at.multiselect(key="url_family").value == ["optimization"]
