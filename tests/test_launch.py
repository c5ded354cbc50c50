"""The Launch page, driven headlessly with AppTest: fill the form, launch a real (smoke) job, watch
it finish and show up in the leaderboard; read-only mode, the token, bad input."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from metabench.dashboard import launch, widgets
from metabench.engine import jobstore
from metabench.errors import MetabenchError

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _launch_page(monkeypatch, folder: Path, **env: str) -> AppTest:
    monkeypatch.setenv(widgets.ENV_VAR, str(folder))
    for k in (launch.READONLY_VAR, launch.TOKEN_VAR):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/launch.py").run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> str:
    return "\n".join(e.value for kind in (at.markdown, at.caption, at.success, at.error, at.info, at.warning)
                     for e in kind)


def test_launch_a_smoke_job_and_see_it_in_the_leaderboard(monkeypatch, tmp_path):
    at = _launch_page(monkeypatch, tmp_path)
    assert at.multiselect(key="launch_suites").value == ["sinusoid-5shot"]
    from metabench.algorithms import ALGORITHMS
    from metabench.suites import make_suite

    sinusoid = make_suite("sinusoid-5shot")
    fit = sorted(n for n in ALGORITHMS.names() if ALGORITHMS.get(n).fits(sinusoid)[0])
    assert at.multiselect(key="launch_algorithms").options == fit  # protonet does not fit
    assert "maml" in fit and "protonet" not in fit
    assert "protonet handles classification tasks; sinusoid-5shot is regression" in _texts(at)
    at.multiselect(key="launch_algorithms").set_value(["maml"]).run()
    at.selectbox(key="launch_preset").select("smoke").run()
    at.selectbox(key="launch_device").select("cpu").run()
    assert "No finished smoke runs of this grid here yet" in _texts(at)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.success, _texts(at)
    job_id = at.success[0].value.removeprefix("Started job ").rstrip(".")
    jobstore.job_dir(tmp_path, job_id)  # a valid id
    assert job_id in _texts(at)  # listed at once, before it finishes
    deadline = time.time() + 240
    while jobstore.read_status(tmp_path / "jobs" / job_id)["state"] != "finished":
        assert time.time() < deadline, jobstore.log_tail(tmp_path / "jobs" / job_id)
        time.sleep(0.5)
    at.run()
    assert f"**{job_id}** · `finished`" in _texts(at)
    assert "1/1 cells done" in [p.proto.text for p in at.get("progress")][0]
    assert "sinusoid-5shot × maml:" in _texts(at)  # now there is a cell time estimate
    at.switch_page("pages/leaderboard.py").run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value["Algorithm"].tolist() == ["maml"]


def test_bad_seeds_get_the_validation_sentence(monkeypatch, tmp_path):
    at = _launch_page(monkeypatch, tmp_path)
    at.multiselect(key="launch_algorithms").set_value(["maml"]).run()
    at.text_input(key="launch_seeds").input("0, x").run()
    at.button[0].click().run()
    assert not at.success
    assert any("seeds must be non-negative integers" in e.value for e in at.error), _texts(at)
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())


def test_readonly_hides_the_form_and_refuses(monkeypatch, tmp_path):
    at = _launch_page(monkeypatch, tmp_path, METABENCH_READONLY="1")
    assert not at.multiselect and not at.button
    assert "METABENCH_READONLY=1" in _texts(at)
    with pytest.raises(MetabenchError, match="turned off"):
        launch.launch(tmp_path, ["sinusoid-5shot"], ["maml"], "0", "smoke", "cpu", "local", 0)
    with pytest.raises(MetabenchError, match="turned off"):
        launch.resume(tmp_path, "20250101-000000-abcdef")
    assert not (tmp_path / "jobs").exists()


def test_token_is_required_to_launch(monkeypatch, tmp_path):
    at = _launch_page(monkeypatch, tmp_path, METABENCH_TOKEN="s3cret")
    assert not at.multiselect and at.warning
    at.text_input[0].input("wrong").run()
    assert not at.multiselect
    at.text_input[0].input("s3cret").run()
    assert at.multiselect(key="launch_suites").value == ["sinusoid-5shot"]
    with pytest.raises(MetabenchError, match="token"):
        launch.launch(tmp_path, ["sinusoid-5shot"], ["maml"], "0", "smoke", "cpu", "local", 0, token="nope")


def test_the_page_modules_do_not_import_torch():
    code = ("import sys, metabench.dashboard.launch, metabench.engine.jobstore, metabench.dashboard.widgets; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
