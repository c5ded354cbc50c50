"""The fixed-test-task fingerprint (issue 21): stable across processes and batch sizes, and any
real change of a task (one pixel) changes it."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from metabench.suites import make_suite
from metabench.suites.fingerprint import SCHEME, fingerprint, task_digests


def _prepared(suite_id: str, data_root=None):
    return make_suite(suite_id).prepare(data_root, "cpu", allow_download=False, progress=False)


@pytest.mark.parametrize("suite_id", ["sinusoid-5shot", "bandit-k5-n10", "navigation2d"])
def test_fingerprint_does_not_depend_on_the_batch_size(suite_id):
    s = _prepared(suite_id)
    a, b = fingerprint(s, 30, batch_size=30), fingerprint(s, 30, batch_size=7)
    assert a == b and a.startswith(SCHEME + ":") and len(a) == len(SCHEME) + 1 + 64
    assert fingerprint(s, 29) != a                       # the number of tasks is part of it


def test_fingerprint_is_the_same_in_another_process():
    code = ("from metabench.suites import make_suite; from metabench.suites.fingerprint import fingerprint; "
            "s = make_suite('sinusoid-5shot').prepare(None, 'cpu'); print(fingerprint(s, 40))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == fingerprint(_prepared("sinusoid-5shot"), 40)


def test_one_pixel_changes_the_fingerprint(shared_data):
    s = _prepared("omniglot-5w1s", shared_data)
    before = fingerprint(s, 3)
    task = next(s.fixed_tasks("test", 1, batch_size=1))
    # Find the decoded image behind task 0's first support example, and change one pixel of it.
    name, rotation = task.descriptors[0]["characters"][0], task.descriptors[0]["rotations"][0]
    c = s._characters.index(name)
    target = task.support_x[0, 0, 0]
    drawer = next(d for d in range(s._images.shape[1])
                  if torch.equal(torch.rot90(s._images[c, d].float() / 255, rotation // 90, dims=(-2, -1)), target))
    original = s._images.clone()
    try:
        s._images[c, drawer, 14, 14] = 255 - int(s._images[c, drawer, 14, 14])
        assert fingerprint(s, 3) != before
    finally:
        s._images = original
    assert fingerprint(s, 3) == before


def test_each_task_is_hashed_on_its_own():
    s = _prepared("sinusoid-5shot")
    batch = next(s.fixed_tasks("test", 4, batch_size=4))
    one = next(s.fixed_tasks("test", 3, batch_size=1, start=2))
    assert task_digests(batch)[2] == task_digests(one)[0] and len(set(task_digests(batch))) == 4


def test_runs_record_the_fingerprint_and_pair_only_when_it_agrees(tmp_path):
    """Real smoke cells store the fingerprint of the tasks they were tested on; an entry whose
    fingerprint differs from the best entry's is shown unpaired, with a one-line note."""
    from metabench.engine.cell import CellRunner
    from metabench.results.query import ResultsDB
    from metabench.results.writer import read_table, write_table
    from metabench.spec import RunSpec

    cells, _ = RunSpec(("sinusoid-5shot",), ("maml", "fomaml"), (0,), "smoke", "cpu").plan()
    for cell in cells:
        assert CellRunner(cell, tmp_path, allow_download=False).run() == "finished"
    runs = ResultsDB(tmp_path).runs()
    expected = fingerprint(_prepared("sinusoid-5shot"), 10)       # the smoke preset tests 10 tasks
    assert set(runs["tasks_fingerprint"]) == {expected}
    lb = ResultsDB(tmp_path).leaderboard("sinusoid-5shot")
    assert set(lb["vs_best"]) <= {"best", "tie", "worse"} and set(lb["note"]) == {""}

    # The second-ranked entry's run claims other test tasks: it is not paired with the best.
    other = lb["variant"].iloc[1]
    path = tmp_path / next(c.run_id for c in cells if c.variant == other) / "runs.parquet"
    row = read_table(path, "runs")
    row["tasks_fingerprint"] = f"{SCHEME}:{'ab' * 32}"
    write_table(row.to_dict("records"), path, "runs")
    lb = ResultsDB(tmp_path).leaderboard("sinusoid-5shot").set_index("variant")
    assert lb.loc[other, "vs_best"] == "unpaired" and lb.loc[other, "p_vs_best"] != lb.loc[other, "p_vs_best"]
    assert "different fixed test tasks" in lb.loc[other, "note"] and "\n" not in lb.loc[other, "note"]


def test_unpaired_entries_are_explained_in_the_cli_and_the_dashboard(tmp_path, monkeypatch):
    import contextlib
    import io
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from metabench import cli
    from metabench.dashboard import widgets
    from metabench.results import write_fixture_results
    from metabench.results.writer import read_table, write_table

    write_fixture_results(tmp_path)
    for path in tmp_path.glob("sinusoid-5shot*reptile*/runs.parquet"):   # reptile: other test tasks
        row = read_table(path, "runs")
        row["tasks_fingerprint"] = f"{SCHEME}:{'cd' * 32}"
        write_table(row.to_dict("records"), path, "runs")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["leaderboard", "--suite", "sinusoid-5shot", "--results-dir", str(tmp_path)]) == 0
    assert "note: reptile: not paired with the best entry: different fixed test tasks" in out.getvalue()
    monkeypatch.setenv(widgets.ENV_VAR, str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.query_params["suite"] = "sinusoid-5shot"
    at.switch_page("pages/leaderboard.py").run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == [
        "**reptile**: not paired with the best entry: different fixed test tasks (fingerprint "
        "cdcdcdcdcdcd vs " + read_table(next(tmp_path.glob("sinusoid-5shot*maml*/runs.parquet")), "runs")
        ["tasks_fingerprint"].iloc[0].split(":")[1][:12] + ")."]
    assert at.dataframe[0].value["vs best"].tolist() == ["best", "unpaired"]
