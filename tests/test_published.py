"""The published-numbers table, its lookup, and the leaderboard's published column."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from metabench.results.export import format_leaderboard
from metabench.results.published import (PROTOCOL_FIELDS, PUBLISHED_COLUMNS, attach_published, protocol_mismatches,
                                         published_for)
from metabench.suites import SUITES


def test_table_is_well_formed():
    df = published_for()
    assert list(df.columns) == PUBLISHED_COLUMNS and len(df) >= 40
    assert set(df["suite"]) <= set(SUITES.names()), "every published row names a registered suite"
    assert df["value"].between(0, 1).all() and (df["ci95"].dropna() > 0).all()
    assert df["check"].isin(["P", "S", "U"]).all() and (df["citation"].str.len() > 10).all() and (df["source"] != "").all()
    runs = df[df["algorithm"] != "human"]
    assert (runs["preset"] == "paper").all(), "every published number is for the paper preset"
    assert (runs["backbone"] != "").all(), "every published row names its backbone"
    assert df["transductive"].isin([True, False]).all()
    key = ["suite", "split_scheme", "algorithm", "variant"]
    assert not df.duplicated(key).any()


@pytest.mark.parametrize("suite, algorithm, variant, value, ci95", [
    ("omniglot-5w1s", "maml", "", 0.987, 0.004),                 # MAML Table 1
    ("omniglot-5w1s", "protonet", "", 0.988, math.nan),          # ProtoNets Table 1
    ("omniglot-5w1s", "reptile", "transductive", 0.9768, 0.0004),
    ("omniglot-5w1s", "reptile", "non-transductive", 0.9539, 0.0009),
    ("miniimagenet-5w1s", "maml", "", 0.4870, 0.0184),
    ("miniimagenet-5w1s", "protonet", "", 0.4942, 0.0078),
    ("miniimagenet-5w1s", "matchingnet", "full-context embeddings (FCE)", 0.4356, 0.0084),
    ("omniglot-lake-runs", "human", "people (Amazon Mechanical Turk)", 0.955, math.nan),
])
def test_numbers_from_the_reference(suite, algorithm, variant, value, ci95):
    df = published_for(suite)
    row = df[(df["algorithm"] == algorithm) & (df["variant"] == variant)]
    assert len(row) == 1
    assert row["value"].iloc[0] == pytest.approx(value)
    assert (math.isnan(ci95) and math.isnan(row["ci95"].iloc[0])) or row["ci95"].iloc[0] == pytest.approx(ci95)


def _config(**protocol) -> str:
    """A runs.config JSON holding a recorded protocol (the engine writes the same object)."""
    return json.dumps({"algorithm": {}, "protocol": protocol})


MAML_OMNIGLOT = _config(train_way=5, train_shot=1, train_query=None, test_steps=3, backbone="conv4-strided-64")
PROTONET_OMNIGLOT = _config(train_way=60, train_shot=1, train_query=5, test_steps=None, backbone="conv4-pool-64")
REPTILE_OMNIGLOT = _config(train_way=5, train_shot=10, train_query=None, test_steps=50, backbone="conv4-strided-64")


def test_split_filter_and_attach_only_on_matching_protocol():
    assert set(published_for("omniglot-5w1s", "santoro")["algorithm"]) == {"mann"}
    board = pd.DataFrame({"rank": [1, 2, 3, 4], "algorithm": ["maml", "maml", "protonet", "reptile"],
                          "split_scheme": ["vinyals", "vinyals", "lake", "vinyals"], "preset": "paper",
                          "config": [MAML_OMNIGLOT, MAML_OMNIGLOT, PROTONET_OMNIGLOT, REPTILE_OMNIGLOT],
                          "transductive": [True, False, False, False], "metric": "accuracy"})
    out = attach_published(board, "omniglot-5w1s")
    assert out["published"].iloc[0] == pytest.approx(0.987) and out["published_ci95"].iloc[0] == pytest.approx(0.004)
    assert math.isnan(out["published"].iloc[1])      # non-transductive MAML: no published match
    assert math.isnan(out["published"].iloc[2])      # other split
    assert out["published"].iloc[3] == pytest.approx(0.9539)


def test_formatted_leaderboard_shows_the_published_column():
    board = pd.DataFrame({"rank": [1, 2], "algorithm": ["maml", "pixel-centroid"], "family": "x",
                          "mean": [0.95, 0.5], "ci95": [0.01, 0.02], "std_seeds": [math.nan] * 2, "n_seeds": [1, 1],
                          "n_tasks": [600, 600], "metric": "accuracy", "split_scheme": "vinyals",
                          "transductive": [True, False], "query_batch": "n/a", "vs_best": ["best", "worse"],
                          "p_vs_best": [math.nan, 0.001], "prob_improvement": [math.nan, 0.1],
                          "direction": "higher", "suite": "omniglot-5w1s", "suite_version": 1,
                          "ci_low": [0.94, 0.48], "ci_high": [0.96, 0.52], "preset": "paper",
                          "config": [MAML_OMNIGLOT, _config(backbone="pixels")]})
    text = format_leaderboard(attach_published(board, "omniglot-5w1s"), "markdown")
    header = next(line for line in text.splitlines() if line.startswith("|"))
    assert "published" in header and "98.70% ± 0.40%" in text


def _recorded(algorithm: str, suite_id: str, preset: str, **overrides) -> str:
    """The runs.config JSON a cell of `algorithm` on `suite_id` under `preset` records (no data needed:
    the networks are built, nothing is trained)."""
    from metabench.algorithms import ALGORITHMS
    from metabench.suites import make_suite

    suite = make_suite(suite_id)
    cls = ALGORITHMS.get(algorithm)
    algo = cls(suite, cls.preset_config(preset, suite, overrides or None), "cpu", 0)
    return json.dumps({"protocol": algo.recorded_protocol()})


def _published(algorithm: str, suite_id: str, preset: str, config: str) -> float:
    from metabench.suites import make_suite

    suite = make_suite(suite_id)
    board = pd.DataFrame({"algorithm": [algorithm], "variant": [algorithm], "split_scheme": [suite.split_scheme],
                          "transductive": [algorithm in ("maml", "fomaml", "metasgd", "anil")],
                          "metric": ["accuracy"], "preset": [preset], "config": [config]})
    return float(attach_published(board, suite_id)["published"].iloc[0])


@pytest.mark.parametrize("algorithm, suite_id, value", [
    ("maml", "miniimagenet-5w1s", 0.487), ("maml", "miniimagenet-5w5s", 0.6311),
    ("fomaml", "miniimagenet-5w1s", 0.4807), ("protonet", "miniimagenet-5w1s", 0.4942),
    ("protonet", "miniimagenet-5w5s", 0.682), ("maml", "omniglot-5w1s", 0.987), ("protonet", "omniglot-20w5s", 0.989),
])
def test_a_paper_run_with_the_papers_protocol_gets_the_number(algorithm, suite_id, value):
    assert _published(algorithm, suite_id, "paper", _recorded(algorithm, suite_id, "paper")) == pytest.approx(value)


@pytest.mark.parametrize("algorithm, suite_id", [
    ("maml", "miniimagenet-5w1s"), ("protonet", "miniimagenet-5w1s"), ("maml", "omniglot-5w1s"),
    ("reptile", "miniimagenet-5w5s"),
])
def test_a_quick_run_never_shows_a_published_number(algorithm, suite_id):
    config = _recorded(algorithm, suite_id, "quick")
    assert math.isnan(_published(algorithm, suite_id, "quick", config))
    # on miniImageNet the quick protocol itself differs too (queries, way), whatever preset it claimed
    if algorithm in ("maml", "protonet") and suite_id.startswith("miniimagenet"):
        assert math.isnan(_published(algorithm, suite_id, "paper", config))


def test_omniglot_settings_on_miniimagenet_never_show_a_published_number():
    """Before issue 22 the image suites silently got the Omniglot settings (MAML: step 0.4, one step,
    strided 64-filter Conv-4; ProtoNets: 5-way episodes) and were shown MAML's 48.70% and
    ProtoNets' 49.42%."""
    maml = _recorded("maml", "miniimagenet-5w1s", "paper", inner_lr=0.4, inner_steps=1, test_inner_steps=3,
                     meta_batch_size=32, n_query=None, arch="strided", hidden=64)
    assert math.isnan(_published("maml", "miniimagenet-5w1s", "paper", maml))
    protonet = _recorded("protonet", "miniimagenet-5w1s", "paper", train_way=5, n_query=5)
    assert math.isnan(_published("protonet", "miniimagenet-5w1s", "paper", protonet))
    assert math.isnan(_published("maml", "miniimagenet-5w1s", "paper", json.dumps({"algorithm": {}})))  # none recorded


def test_protocol_mismatches_names_the_fields():
    row = published_for("miniimagenet-5w1s").query("algorithm == 'maml'").iloc[0].to_dict()
    run = {"preset": "paper", "train_way": 5, "train_shot": 1, "train_query": 1, "test_steps": 3,
           "backbone": "conv4-strided-64"}
    assert protocol_mismatches(row, run) == ["train_query", "test_steps", "backbone"]
    assert protocol_mismatches(row, None) == [f for f in PROTOCOL_FIELDS if f != "model"]
    mn = published_for("miniimagenet-5w1s").query("algorithm == 'matchingnet'").iloc[0].to_dict()
    assert protocol_mismatches(mn, {"preset": "paper", "backbone": "conv4-pool-64", "model": "fce"}) == []  # 'conv4' prefix
    assert protocol_mismatches(mn, {"preset": "paper", "backbone": "resnet12", "model": "fce"}) == ["backbone"]


#: Published rows a plain `paper` run is not, with the overrides that make it so: matchingnet's
#: `paper` preset is the FCE model, and Vinyals et al. report Omniglot (and a miniImageNet ablation)
#: without FCE (see metabench/algorithms/matchingnet.py).
PAPER_VARIANTS = {("matchingnet", "no-fce"): {"fce": False}}
#: Other models than ours, which no run matches (tested below): RFS's ResNet-12, Ravi & Larochelle's
#: fine-tuning.
OTHER_MODELS = {("rfs", "resnet12"), ("finetune", "conv4")}


def test_every_published_protocol_is_a_paper_preset():
    """Each published row of a registered algorithm is the protocol its `paper` preset records
    (way, shot and queries of training episodes, test-time steps, backbone, model), so a paper run
    shows the published number beside it; a paper preset that drifts from its paper fails here."""
    from metabench.algorithms import ALGORITHMS

    checked = 0
    for row in published_for().to_dict("records"):
        key = (row["algorithm"], row["backbone"])
        if row["algorithm"] not in ALGORITHMS or key in OTHER_MODELS:
            continue
        overrides = PAPER_VARIANTS.get((row["algorithm"], row["model"]), {})
        run = json.loads(_recorded(row["algorithm"], row["suite"], "paper", **overrides))["protocol"]
        assert protocol_mismatches(row, {"preset": "paper", **run}) == [], (row["suite"], row["algorithm"],
                                                                             row["variant"], run)
        checked += 1
    assert checked >= 45


def test_resnet_rows_match_no_conv4_run():
    rfs = published_for("miniimagenet-5w1s").query("algorithm == 'rfs'")
    assert len(rfs) == 1 and rfs["value"].iloc[0] == pytest.approx(0.6202) and rfs["backbone"].iloc[0] == "resnet12"
    assert protocol_mismatches(rfs.iloc[0].to_dict(), {"preset": "paper", "backbone": "conv4-pool-64"}) == ["backbone"]


def test_every_published_number_was_read_in_a_source():
    """No number quoted from memory: every row was read in the paper (P) or a named secondary source (S)."""
    table = published_for()
    assert set(table["check"]) <= {"P", "S"}, table[~table["check"].isin(["P", "S"])][["suite", "algorithm", "check"]]
    assert published_for("miniimagenet-5w1s").query("algorithm == 'simpleshot'").empty


def test_ravi_larochelle_finetuning_is_not_our_finetune():
    row = published_for("miniimagenet-5w1s").query("algorithm == 'finetune'").iloc[0].to_dict()
    assert protocol_mismatches(row, {"preset": "paper", "backbone": "conv4-pool-64", "model": None}) == ["model"]
