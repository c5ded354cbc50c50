"""Overrides and sweeps (issue 20): `--set ALGO.FIELD=VALUE`, `loop.FIELD`, comma lists, bracketed
variants, spec files in JSON and TOML, `--dry-run`; every bad input is one ConfigError sentence."""
from __future__ import annotations

import dataclasses
import json

import pytest

from metabench.errors import ConfigError
from metabench.overrides import coerce, field_types, format_value, parse_algorithm_ref, parse_sets, variant_label
from metabench.spec import RunSpec, load_spec


def _plan(*sets: str, algorithms=("maml",), suites=("sinusoid-5shot",), seeds=(0,), preset="smoke"):
    return RunSpec(tuple(suites), tuple(algorithms), tuple(seeds), preset, overrides=parse_sets(sets)).plan()


def test_values_are_parsed_by_the_field_type():
    from metabench.algorithms.maml import Config as MAMLConfig
    from metabench.algorithms.metasgd import Config as MetaSGDConfig

    types = field_types(MAMLConfig)
    assert coerce("5", types["inner_steps"], "f") == 5 and isinstance(coerce("5", types["inner_steps"], "f"), int)
    assert coerce("0.01", types["inner_lr"], "f") == 0.01
    assert coerce("TRUE", types["first_order"], "f") is True and coerce("no", types["first_order"], "f") is False
    assert coerce(" vmap ", types["batching"], "f") == "vmap"
    assert coerce("0.005:0.2", field_types(MetaSGDConfig)["alpha_init"], "f") == (0.005, 0.2)
    optional = [f for f, t in types.items() if "None" in str(t)]
    assert optional and coerce("none", types[optional[0]], "f") is None
    for value, type_ in (("1.5", int), ("yes please", bool), ("nan", float), ("inf", float), ("", str),
                         ("0.1", tuple[float, float]), (True, int)):
        with pytest.raises(ConfigError):
            coerce(value, type_, "maml.field")


def test_a_comma_list_is_a_sweep_over_the_product():
    cells, _ = _plan("maml.inner_steps=2,3", "maml.inner_lr=0.1,0.2", seeds=(0, 1))
    assert len(cells) == 2 * 2 * 2
    assert {c.variant for c in cells} == {f"maml[inner_lr={lr},inner_steps={k}]" for lr in (0.1, 0.2) for k in (2, 3)}
    assert len({c.run_id for c in cells}) == len(cells)          # every combination has its own folder


def test_a_value_equal_to_the_preset_is_the_plain_entry():
    from metabench.algorithms import ALGORITHMS
    from metabench.suites import make_suite

    preset_steps = ALGORITHMS.get("maml").preset_config("smoke", make_suite("sinusoid-5shot")).inner_steps
    cells, _ = _plan(f"maml.inner_steps={preset_steps},{preset_steps + 2}")
    assert [c.variant for c in cells] == ["maml", f"maml[inner_steps={preset_steps + 2}]"]
    plain = RunSpec(("sinusoid-5shot",), ("maml",), (0,), "smoke").plan()[0][0]
    assert cells[0] == plain and cells[0].run_id == "sinusoid-5shot--maml--smoke--seed0"  # same folder: resumes


def test_loop_settings_and_bracketed_variants():
    cells, _ = _plan("loop.meta_steps=4", algorithms=("maml[inner_steps=3]", "maml"))
    assert [c.variant for c in cells] == ["maml[inner_steps=3,loop.meta_steps=4]", "maml[loop.meta_steps=4]"]
    assert cells[0].overrides == {"config": {"inner_steps": 3}, "loop": {"meta_steps": 4}}
    # What the leaderboard shows can be typed back in.
    again = RunSpec(("sinusoid-5shot",), (cells[0].variant,), (0,), "smoke").plan()[0]
    assert again == [cells[0]]
    assert parse_algorithm_ref("mypkg.algos:MyMAML[tau=0.5]") == ("mypkg.algos:MyMAML", {"tau": "0.5"})


def test_loop_settings_do_not_apply_to_rows_without_training():
    cells, _ = _plan("loop.meta_steps=4", algorithms=("random", "rl2"), suites=("bandit-k5-n10",))
    assert {c.algorithm: c.overrides for c in cells} == {"random": {}, "rl2": {"loop": {"meta_steps": 4}}}


def test_variant_labels_are_stable_and_short():
    overrides = {"loop": {"meta_steps": 10}, "config": {"inner_steps": 5, "first_order": True, "inner_lr": 0.1}}
    assert variant_label("maml", overrides) == "maml[first_order=true,inner_lr=0.1,inner_steps=5,loop.meta_steps=10]"
    assert variant_label("maml", {}) == variant_label("maml", None) == "maml"
    assert format_value(1e-4) == "0.0001" and format_value(0.1 + 0.2) == repr(0.1 + 0.2)  # never rounds a value away


@pytest.mark.parametrize("sets, message", [
    (["maml.no_such_field=1"], "maml has no Config field 'no_such_field'"),
    (["maml.inner_stepz=1"], "Did you mean 'inner_steps'?"),
    (["maml.inner_steps=two"], "inner_steps is an integer, got 'two'"),
    (["maml.inner_steps=0"], "inner_steps must be at least 1"),
    (["maml.inner_lr=-1"], "positive"),
    (["mamll.inner_steps=1"], "Did you mean 'maml'?"),
    (["protonet.n_way=5"], "not among the algorithms of this run"),
    (["loop.meta_step=3"], "Did you mean 'meta_steps'?"),
    (["loop.eval_every=0"], "eval_every must be an integer >= 1"),
    (["maml.inner_steps"], "has no value"),
    (["inner_steps=3"], "ALGO.FIELD=VALUE"),
    (["maml.inner_steps=1", "maml.inner_steps=2"], "set twice"),
])
def test_bad_overrides_are_one_sentence(sets, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")) as info:
        _plan(*sets)
    assert "\n" not in str(info.value)


def test_cli_dry_run_lists_the_cells_and_what_is_finished(tmp_path, run_cli):
    rc, out, err = run_cli(["run", "--suites", "sinusoid-5shot", "--algorithms", "maml,protonet", "--set",
                         "maml.inner_steps=1,3", "--preset", "smoke", "--dry-run", "--results-dir", str(tmp_path)])
    assert rc == 0, err
    assert "2 cell(s)" in out and "maml[inner_steps=3]" in out and "skip protonet on sinusoid-5shot" in out
    assert "0 of 2 already finished" in out and not list(tmp_path.iterdir())   # nothing was written


def test_cli_unknown_field_exits_2_with_a_did_you_mean(tmp_path, run_cli):
    rc, _, err = run_cli(["run", "--suites", "sinusoid-5shot", "--algorithms", "maml", "--set", "maml.inner_stepz=1",
                       "--preset", "smoke", "--results-dir", str(tmp_path)])
    assert rc == 2 and err.count("error:") == 1 and "Did you mean 'inner_steps'?" in err


def test_spec_files_in_toml_and_json_take_the_same_overrides(tmp_path):
    toml = tmp_path / "spec.toml"
    toml.write_text('suites = ["sinusoid-5shot"]\nalgorithms = "maml"\npreset = "smoke"\n'
                    '[overrides]\n"maml.inner_steps" = [1, 3]\n"loop.meta_steps" = 4\n')
    js = tmp_path / "spec.json"
    js.write_text(json.dumps({"suites": ["sinusoid-5shot"], "algorithms": ["maml"], "preset": "smoke",
                              "overrides": ["maml.inner_steps=1,3", "loop.meta_steps=4"]}))
    a, b = load_spec(toml).plan()[0], load_spec(js).plan()[0]
    assert [c.run_id for c in a] == [c.run_id for c in b] and len(a) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("suites = [\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_spec(bad)


def test_a_job_spec_round_trips_through_its_json(tmp_path):
    spec = RunSpec(("sinusoid-5shot",), ("maml",), (0,), "smoke", overrides=parse_sets(["maml.inner_steps=1,3"]))
    again = RunSpec.from_json(json.loads(json.dumps(dataclasses.asdict(spec))))   # what spec.json holds
    assert again.plan() == spec.plan()


def test_named_variants_stand_for_their_bracket_entry():
    from metabench.algorithms import ALGORITHMS, named_variant

    entry = named_variant("rl2-aux-privileged")
    assert entry == ALGORITHMS.get("rl2").VARIANTS["rl2-aux-privileged"] and entry.startswith("rl2[")
    (cell,), _ = RunSpec(("tabular-mdp-n10",), ("rl2-aux-privileged",), (0,), "quick").plan()
    assert cell.variant == entry and cell.algorithm == "rl2"       # the leaderboard shows the entry
    with pytest.raises(ConfigError, match="Did you mean 'rl2-aux-privileged'"):
        RunSpec(("tabular-mdp-n10",), ("rl2-aux-privilegd",), (0,), "quick").plan()


def test_metabench_list_names_the_variants(run_cli):
    rc, out, _ = run_cli(["list"])
    assert rc == 0 and "Named variants" in out
    assert any(line.split() == ["rl2-aux-privileged", "rl2[aux_reward_coef=0.5,hidden=256,privileged_value=true,trial_progress=true]"]
               for line in out.splitlines())
    rc, out, _ = run_cli(["list", "--json"])
    algos = {a["name"]: a for a in json.loads(out)["algorithms"]}
    assert algos["rl2"]["variants"]["rl2-progress"] == "rl2[trial_progress=true]" and algos["maml"]["variants"] == {}


def test_dry_run_json_is_what_tools_read(tmp_path, run_cli):
    rc, out, err = run_cli(["run", "--suites", "sinusoid-5shot", "--algorithms", "maml,protonet", "--set",
                            "maml.inner_steps=1,3", "--preset", "smoke", "--dry-run", "--json", "--results-dir", str(tmp_path)])
    assert rc == 0, err
    got = json.loads(out)
    assert [c["entry"] for c in got["cells"]] == ["maml", "maml[inner_steps=3]"] and {c["state"] for c in got["cells"]} == {"to run"}
    assert got["skipped"] == [{"suite": "sinusoid-5shot", "algorithm": "protonet",
                               "reason": "protonet handles classification tasks; sinusoid-5shot is regression"}]
    rc, _, err = run_cli(["run", "--suites", "sinusoid-5shot", "--algorithms", "maml", "--json", "--results-dir", str(tmp_path)])
    assert rc == 2 and "--json only applies with --dry-run" in err


def test_textbook_bandit_constants_are_named_variants_beside_the_tuned_rows():
    cells, _ = RunSpec(("bandit-k5-n100",), ("ucb1", "ucb1-textbook", "epsilon-greedy", "epsilon-greedy-textbook"),
                       (0,), "quick").plan()
    assert [c.variant for c in cells] == ["ucb1", "ucb1[c=1]", "epsilon-greedy", "epsilon-greedy[epsilon=0.1]"]
    assert cells[1].overrides == {"config": {"c": 1.0}} and cells[3].overrides == {"config": {"epsilon": 0.1}}
