"""The published-numbers table, its lookup, and the leaderboard's published column."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from metabench.results.export import format_leaderboard
from metabench.results.published import PUBLISHED_COLUMNS, attach_published, published_for
from metabench.suites import SUITES


def test_table_is_well_formed():
    df = published_for()
    assert list(df.columns) == PUBLISHED_COLUMNS and len(df) >= 40
    assert set(df["suite"]) <= set(SUITES.names()), "every published row names a registered suite"
    assert df["value"].between(0, 1).all() and (df["ci95"].dropna() > 0).all()
    assert df["check"].isin(["P", "S"]).all() and (df["citation"].str.len() > 10).all() and (df["source"] != "").all()
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


def test_split_filter_and_attach_only_on_matching_protocol():
    assert set(published_for("omniglot-5w1s", "santoro")["algorithm"]) == {"mann"}
    board = pd.DataFrame({"rank": [1, 2, 3, 4], "algorithm": ["maml", "maml", "protonet", "reptile"],
                          "split_scheme": ["vinyals", "vinyals", "lake", "vinyals"],
                          "transductive": [True, False, False, False], "metric": "accuracy"})
    out = attach_published(board, "omniglot-5w1s")
    assert out["published"].iloc[0] == pytest.approx(0.987) and out["published_ci95"].iloc[0] == pytest.approx(0.004)
    assert math.isnan(out["published"].iloc[1])      # non-transductive MAML: no published match
    assert math.isnan(out["published"].iloc[2])      # other split
    assert out["published"].iloc[3] == pytest.approx(0.9539)


def test_formatted_leaderboard_shows_the_published_column():
    board = pd.DataFrame({"rank": [1, 2], "algorithm": ["maml", "pixel-centroid"], "family": "x", "preset": "quick",
                          "mean": [0.95, 0.5], "ci95": [0.01, 0.02], "std_seeds": [math.nan] * 2, "n_seeds": [1, 1],
                          "n_tasks": [600, 600], "metric": "accuracy", "split_scheme": "vinyals",
                          "transductive": [True, False], "query_batch": "n/a", "vs_best": ["best", "worse"],
                          "p_vs_best": [math.nan, 0.001], "prob_improvement": [math.nan, 0.1],
                          "direction": "higher", "suite": "omniglot-5w1s", "suite_version": 1,
                          "ci_low": [0.94, 0.48], "ci_high": [0.96, 0.52]})
    text = format_leaderboard(attach_published(board, "omniglot-5w1s"), "markdown")
    header = next(line for line in text.splitlines() if line.startswith("|"))
    assert "published" in header and "98.70% ± 0.40%" in text
