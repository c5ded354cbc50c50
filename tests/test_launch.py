"""The Launch page, driven headlessly with AppTest: fill the form, launch a real (smoke) job, watch
it finish and show up in the leaderboard; read-only mode, the token, bad input."""

from __future__ import annotations

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
    assert "**protonet** handles classification tasks; sinusoid-5shot is regression" in _texts(at)
    assert launch.fitting(launch.catalog(), ["sinusoid-5shot", "omniglot-5w1s"])[1]["rl2"] == (
        "rl2 handles rl-continuous, rl-discrete tasks; sinusoid-5shot is regression; omniglot-5w1s is classification")
    at.multiselect(key="launch_algorithms").set_value(["maml"]).run()
    at.selectbox(key="launch_preset").select("smoke").run()
    at.selectbox(key="launch_device").select("cpu").run()
    assert "No finished smoke runs of this grid here yet" in _texts(at)
    at.button(key="launch_go").click().run()
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
    at.button(key="launch_go").click().run()
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


# --- overrides and sweeps (issue 20) ------------------------------------------------------------
def test_set_args_only_changed_fields_and_sweeps():
    preset = {"inner_lr": 0.01, "inner_steps": 1, "n_query": 10, "alpha_init": [0.005, 0.1], "arch": "strided"}
    same = {"inner_lr": 0.01, "inner_steps": 1, "n_query": 10, "alpha_init": "0.005:0.1", "arch": "strided"}
    assert launch.set_args("maml", same, preset) == []
    changed = {**same, "inner_lr": 0.1, "n_query": None, "alpha_init": "0.01:0.2"}
    assert launch.set_args("maml", changed, preset) == [
        "--set=maml.inner_lr=0.1", "--set=maml.n_query=none", "--set=maml.alpha_init=0.01:0.2"]
    # a swept field ignores its input; 'maml.' in front of the field is allowed
    assert launch.set_args("maml", changed, preset, "maml.inner_lr = 0.1,0.4;\ninner_steps=1,3") == [
        "--set=maml.n_query=none", "--set=maml.alpha_init=0.01:0.2", "--set=maml.inner_lr=0.1,0.4",
        "--set=maml.inner_steps=1,3"]
    with pytest.raises(MetabenchError, match=r"a sweep is FIELD = VALUE,VALUE"):
        launch.parse_sweep("inner_steps 1,3")
    argv = launch.run_argv(Path("r"), ["sinusoid-5shot"], ["maml"], "0", "smoke", sets=["--set=maml.inner_steps=1,3"])
    assert argv[-1] == "--set=maml.inner_steps=1,3" and "--results-dir=r" in argv


def test_prefill_across_suites_says_which_differ():
    cat = launch.catalog()
    values, differ = launch.prefill(cat, "maml", "smoke", ["sinusoid-5shot", "omniglot-5w1s"])
    assert values["hidden"] == 16 and values["inner_lr"] == 0.01   # the first suite's (regression)
    assert differ["hidden"] == {"sinusoid-5shot": 16, "omniglot-5w1s": 8}
    assert "inner_steps" not in differ
    values, differ = launch.prefill(cat, "maml", "smoke", ["omniglot-5w1s", "sinusoid-5shot"])
    assert values["hidden"] == 8
    loop, differ = launch.loop_prefill(cat, ["maml", "protonet"], "quick", ["sinusoid-5shot"])
    assert loop["meta_steps"] == 12_000 and not differ   # protonet does not fit sinusoid


def _maml_smoke(monkeypatch, folder: Path) -> AppTest:
    at = _launch_page(monkeypatch, folder)
    at.multiselect(key="launch_algorithms").set_value(["maml"]).run()
    at.selectbox(key="launch_preset").select("smoke").run()
    assert not at.exception, at.exception
    return at


def test_the_form_passes_only_changed_fields_as_set_arguments(monkeypatch, tmp_path):
    at = _maml_smoke(monkeypatch, tmp_path)
    assert [e.label for e in at.expander][-2:] == ["maml settings", "Loop settings (every algorithm)"]
    # prefilled with the smoke preset on sinusoid-5shot, each field's doc as its help
    assert at.number_input(key="cfg_maml_hidden").value == 16
    assert at.number_input(key="cfg_maml_inner_lr").value == 0.01
    assert at.number_input(key="cfg_maml_train_shot").value is None
    assert at.selectbox(key="cfg_maml_batching").value == "loop"
    assert at.selectbox(key="cfg_maml_batching").options == ["loop", "vmap", "auto"]
    assert at.checkbox(key="cfg_maml_first_order").value is False
    assert at.number_input(key="loop_meta_steps").value == 6
    assert "Inner steps during meta-training." in at.number_input(key="cfg_maml_inner_steps").help
    calls = []
    monkeypatch.setattr(launch, "launch", lambda *a, **k: calls.append((a, k)) or "20260101-000000-abcdef")
    at.button(key="launch_go").click().run()
    assert calls[-1][0][-1] == []   # nothing changed: no overrides
    at.number_input(key="cfg_maml_inner_steps").set_value(3).run()
    at.number_input(key="loop_meta_steps").set_value(8).run()
    at.text_input(key="cfg_maml_sweep").input("hidden = 8,16").run()
    assert "Overrides: `maml.inner_steps=3` `maml.hidden=8,16` `loop.meta_steps=8`" in _texts(at)
    at.button(key="launch_go").click().run()
    assert calls[-1][0][-1] == ["--set=maml.inner_steps=3", "--set=maml.hidden=8,16", "--set=loop.meta_steps=8"]
    assert calls[-1][0][1:5] == (["sinusoid-5shot"], ["maml"], "0", "smoke")
    # another preset: the inputs show its values again, the typed sweep stays
    at.selectbox(key="launch_preset").select("quick").run()
    assert at.number_input(key="cfg_maml_inner_steps").value == 1
    assert at.number_input(key="loop_meta_steps").value == 12_000
    assert at.text_input(key="cfg_maml_sweep").value == "hidden = 8,16"


def test_preview_lists_the_sweep_cells(monkeypatch, tmp_path):
    at = _maml_smoke(monkeypatch, tmp_path)
    at.text_input(key="cfg_maml_sweep").input("inner_steps = 1,2").run()
    at.button(key="launch_preview").click().run()
    assert not at.error, _texts(at)
    cells = at.dataframe[0].value
    assert cells["entry"].tolist() == ["maml", "maml[inner_steps=2]"]
    assert cells["state"].tolist() == ["to run", "to run"]
    assert cells["run id"].iloc[0] == "sinusoid-5shot--maml--smoke--seed0"
    assert not (tmp_path / "jobs").exists()   # a preview runs nothing


@pytest.mark.parametrize(("change", "sentence"), [
    (("text_input", "cfg_maml_sweep", "inner_steps = 1,x"), "--set for maml: inner_steps is an integer, got 'x'"),
    (("text_input", "cfg_maml_sweep", "inner_step = 1,2"), "maml has no Config field 'inner_step'. Did you mean 'inner_steps'?"),
    (("number_input", "cfg_maml_inner_steps", 0), "inner_steps must be at least 1, got 0"),
])
def test_a_bad_value_shows_the_cli_sentence(monkeypatch, tmp_path, change, sentence):
    at = _maml_smoke(monkeypatch, tmp_path)
    kind, key, value = change
    widget = getattr(at, kind)(key=key)
    (widget.input(value) if kind == "text_input" else widget.set_value(value)).run()
    at.button(key="launch_preview").click().run()
    assert [e.value for e in at.error] and sentence in at.error[0].value, _texts(at)
    assert "\n" not in at.error[0].value and "Traceback" not in at.error[0].value
    at.button(key="launch_go").click().run()
    assert not at.success and sentence in at.error[0].value
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())


def test_a_malformed_sweep_disables_launch(monkeypatch, tmp_path):
    at = _maml_smoke(monkeypatch, tmp_path)
    at.text_input(key="cfg_maml_sweep").input("inner_steps").run()
    assert "a sweep is FIELD = VALUE,VALUE,... (e.g. inner_steps = 1,3), got 'inner_steps'" in at.error[0].value
    assert at.button(key="launch_go").disabled and at.button(key="launch_preview").disabled
