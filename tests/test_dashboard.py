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
    assert counts["Running"] == "1"
    assert counts["Suites"] == "2"
    assert counts["Algorithms"] == "4"
    assert any("last run 2025-03-01 19:00 UTC" in m.value for m in at.markdown)
    assert at.sidebar.text_input[0].value == str(fixture_dir)


def test_leaderboard_numbers_match_hand_computation(monkeypatch, fixture_dir):
    at = _leaderboard(_app(monkeypatch, fixture_dir).run())
    table = at.dataframe[0].value
    assert table["Algorithm"].tolist() == ["protonet", "maml"]
    assert table["Rank"].tolist() == [1, 2]
    # Accuracy is shown in percent.
    assert table["Mean"].tolist() == pytest.approx([98.0, 95.0])
    # mean ± t9 * e / 3 with e = 1% and 2% (see metabench.results.fixtures)
    expected = [f"{m - T9 * e / 3:.2f}% – {m + T9 * e / 3:.2f}%" for m, e in ((98, 1), (95, 2))]
    assert table["95% CI"].tolist() == expected == ["97.25% – 98.75%", "93.49% – 96.51%"]
    assert table["Std (seeds)"].tolist() == pytest.approx([0.5 * math.sqrt(2), math.sqrt(2)])
    assert table["Seeds"].tolist() == [2, 2] and table["Tasks"].tolist() == [10, 10]
    assert table["Transductive"].tolist() == [False, True]
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
