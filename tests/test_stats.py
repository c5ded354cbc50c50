"""Statistics of the leaderboard and the aggregate view, against hand-computed cases and rliable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metabench.errors import ConfigError
from metabench.results import normalize
from metabench.results.aggregate import aggregate
from metabench.results.descriptors import features, paired_tasks
from metabench.results.stats import (
    iqm,
    paired_comparison,
    pareto_front,
    performance_profile,
    stratified_bootstrap_ci,
)

# rliable's numbers for a (n_runs=5, n_tasks=3) score matrix M, made by tests/data/make_rliable_oracle.py
# (rliable 1.2.0 in a side environment: its arch does not import under this project's pandas 3; the
# script says how to rerun it, the JSON records the versions). test_agrees_with_rliable_when_installed
# recomputes them live wherever rliable imports.
RLIABLE = json.loads((Path(__file__).parent / "data" / "rliable_oracle.json").read_text())
M = np.array(RLIABLE["M"])
T2 = 4.3026527299112  # t(0.975, df=2)


def test_paired_comparison_hand_computed():
    # diffs [0, 1, 2]: mean 1, sd 1, t = 1 / (1 / sqrt 3) = sqrt 3 with 2 df
    cmp = paired_comparison([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert cmp.mean_diff == 1.0 and cmp.n_tasks == 3
    # two-sided p of t = sqrt(3), df 2: 1 - sqrt(3)/sqrt(3+2) ... = 1 - t / sqrt(t^2 + 2)
    t = math.sqrt(3)
    assert cmp.p_value == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert cmp.prob_improvement == pytest.approx((0.5 + 1 + 1) / 3)  # one tie counts half
    lower = paired_comparison([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], higher_is_better=False)
    assert lower.prob_improvement == pytest.approx(0.5 / 3)
    same = paired_comparison([0.5, 0.7], [0.5, 0.7])
    assert same.p_value == 1.0 and same.prob_improvement == 0.5  # a tie, not "worse"
    assert math.isnan(paired_comparison([1.0], [2.0]).p_value)
    with pytest.raises(ConfigError, match="same shape"):
        paired_comparison([1.0, 2.0], [1.0])


def test_iqm_hand_computed():
    assert iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # middle four of 1..8
    assert iqm([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(3.0)  # int(1.25) = 1 cut per end
    # pooled over runs and tasks, as rliable: the middle 9 of the 15 sorted scores, 0.25 ... 0.8, sum 4.35
    assert iqm(M) == pytest.approx(4.35 / 9) and RLIABLE["aggregate_iqm"] == pytest.approx(4.35 / 9)
    assert iqm(np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 100.0]]), axis=1).tolist() == [2.5, 6.5]
    with pytest.raises(ConfigError):
        iqm([])


def test_stratified_bootstrap_matches_rliable_numbers():
    want = RLIABLE["interval"]   # rliable's get_interval_estimates after np.random.seed(seed)
    point, (low, high) = stratified_bootstrap_ci(M, iqm, reps=want["reps"], seed=want["seed"])
    assert point == pytest.approx(RLIABLE["aggregate_iqm"])
    assert (low, high) == pytest.approx((want["low"], want["high"]), abs=1e-12)
    # Resampling is within each task (column): with one run per task nothing can move.
    one = np.array([[0.2, 0.4, 0.9]])
    assert stratified_bootstrap_ci(one, np.mean, reps=50) == (pytest.approx(0.5), (pytest.approx(0.5), pytest.approx(0.5)))
    # Same seed, same interval; ragged strata (different seed counts per suite) work.
    assert stratified_bootstrap_ci(M, reps=200, seed=3) == stratified_bootstrap_ci(M, reps=200, seed=3)
    p, (lo, hi) = stratified_bootstrap_ci([np.array([1.0, 1.0]), np.array([0.0, 2.0, 4.0])], np.mean, reps=300)
    assert p == pytest.approx(1.6) and lo <= p <= hi
    # a stratum whose values are all equal contributes no spread
    assert stratified_bootstrap_ci([np.array([3.0, 3.0]), np.array([5.0, 5.0, 5.0])], np.mean, reps=20)[1] == (
        pytest.approx(4.2), pytest.approx(4.2))


def test_performance_profile_and_pareto_front():
    want = RLIABLE["performance_profile"]   # rliable's create_performance_profile, and by hand (scores > tau)
    assert performance_profile(M, np.array(want["taus"])) == pytest.approx([14 / 15, 11 / 15, 6 / 15, 4 / 15, 0.0])
    assert performance_profile(M, np.array(want["taus"])) == pytest.approx(want["fraction"], abs=1e-12)
    # cost, score: (1, .5) (2, .9) (3, .8) (1.5, .4) -> front = the first two
    assert pareto_front([1, 2, 3, 1.5], [0.5, 0.9, 0.8, 0.4]).tolist() == [True, True, False, False]
    # lower is better: cheapest-and-lowest wins
    assert pareto_front([1, 2], [0.3, 0.1], higher_is_better=False).tolist() == [True, True]
    assert pareto_front([1, 1, np.nan], [0.5, 0.5, 0.9]).tolist() == [True, True, False]  # equal points both stay


def test_normalisation_rules():
    acc = normalize.normalisation("omniglot-20w5s", "accuracy")
    assert acc.fn(np.array([0.05, 1.0, 0.525])).tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert "1/20" in acc.description
    mse = normalize.normalisation("sinusoid-5shot", "mse@10")
    # E[A^2] / 2 for A ~ U[0.1, 5]: (5^3 - 0.1^3) / (3 * 4.9) / 2
    assert normalize.SINUSOID_ZERO_MSE == pytest.approx(4.2516666666)
    assert mse.fn(np.array([0.0, normalize.SINUSOID_ZERO_MSE])).tolist() == pytest.approx([1.0, 0.0])
    assert normalize.normalisation("sinusoid-5shot", "accuracy") is None
    normalize.add_rule(r"bandit-.*", "return", normalize.identity())  # the meta-RL hook
    try:
        assert normalize.normalisation("bandit-k5", "return").fn(np.array([0.3])).tolist() == [0.3]
    finally:
        normalize._RULES.pop(0)


def test_aggregate_hand_computed():
    scores = pd.DataFrame({
        "suite": ["omniglot-5w1s"] * 4 + ["sinusoid-5shot"] * 2,
        "algorithm": ["a", "a", "b", "b", "a", "a"], "family": ["f"] * 6, "preset": ["quick"] * 6,
        "transductive": [True, True, False, False, False, False], "query_batch": ["x"] * 6,
        "seed": [0, 1, 0, 1, 0, 1], "metric": ["accuracy"] * 4 + ["mse@10"] * 2,
        "value": [0.6, 1.0, 0.2, 0.2, 0.0, 0.0], "n_tasks": [10] * 6,
    })  # fmt: skip
    agg = aggregate(scores, reps=100)
    table = agg.table.set_index("entry")
    # a: omniglot (0.6-0.2)/0.8 = 0.5 and 1.0; sinusoid 1 - 0 = 1, 1 -> IQM of [0.5, 1, 1, 1] = 1
    assert table.loc["a", "iqm"] == pytest.approx(1.0)
    assert table.loc["b", "iqm"] == pytest.approx(0.0)  # chance
    assert table.loc["a", "mean_rank"] == 1.0 and table.loc["b", "mean_rank"] == 2.0
    assert table.loc["a", "n_suites"] == 2 and table.loc["b", "n_suites"] == 1
    assert agg.table["entry"].tolist() == ["a", "b"] and agg.left_out == []


def test_descriptor_features_and_paired_tasks():
    ids = pd.Series([0, 1])
    texts = pd.Series(['{"alphabets": ["Greek", "Greek", "Latin"], "rotations": [0, 90], "amplitude": 2.5}',
                       '{"arm_probs": [0.1, 0.9, 0.6], "goal": [3.0, 4.0]}'])  # fmt: skip
    numeric, categorical = features(ids, texts)
    assert numeric.loc[0, "amplitude"] == 2.5
    assert numeric.loc[1, "arm_probs · top-2 gap"] == pytest.approx(0.3)
    assert numeric.loc[1, "goal · norm"] == pytest.approx(5.0)
    greek = categorical[(categorical["descriptor"] == "alphabets")]
    assert greek["category"].tolist() == ["Greek", "Latin"]  # once per task
    assert categorical[categorical["descriptor"] == "rotations"]["category"].tolist() == ["0", "90"]
    values = pd.DataFrame({"entry": ["A", "A", "B", "B"], "task_id": [0, 1, 0, 1], "value": [0.3, 0.5, 0.4, 0.5]})
    paired = paired_tasks(values, "A", "B", higher_is_better=False)
    assert paired["diff"].tolist() == pytest.approx([-0.1, 0.0]) and paired["winner"].tolist() == ["A", "tie"]


def test_agrees_with_rliable_when_installed():
    try:
        from rliable import library as rly
        from rliable import metrics as rly_metrics
    except Exception as exc:  # noqa: BLE001 - rliable's arch fails to import under pandas 3 (TypeError)
        pytest.skip(f"rliable is not importable here ({type(exc).__name__}: {exc}); its numbers, made by "
                    "tests/data/make_rliable_oracle.py in a side environment, are checked in "
                    "test_stratified_bootstrap_matches_rliable_numbers")
    assert iqm(M) == pytest.approx(rly_metrics.aggregate_iqm(M))
    np.random.seed(11)
    _, ci = rly.get_interval_estimates({"a": M}, lambda x: np.array([rly_metrics.aggregate_iqm(x)]), reps=300)
    _, (low, high) = stratified_bootstrap_ci(M, iqm, reps=300, seed=11)
    assert (low, high) == pytest.approx(tuple(ci["a"].ravel()))


# -- leaderboard ranks and the comparison with the best (issue 24: pure functions) -------------


def test_ranks_are_competition_ranks_with_nan_last():
    from metabench.results.stats import ranks

    assert ranks([0.9, 0.95, 0.9, float("nan"), 0.5]).tolist() == [2, 1, 2, 5, 4]
    assert ranks([0.3, 0.2, 0.2], higher_is_better=False).tolist() == [3, 1, 1]
    # the same ranks as pandas' rank(method="min", ascending=False, na_option="bottom")
    x = pd.Series([3.0, 1.0, float("nan"), 3.0, 2.0, float("nan")])
    assert ranks(x).tolist() == x.rank(method="min", ascending=False, na_option="bottom").astype(int).tolist()


def test_versus_best_pairs_only_matching_fingerprints():
    from metabench.results.stats import TIE_ALPHA, pairing_note, versus_best

    best = [0.9, 0.8, 0.95, 0.85]
    worse = [0.5, 0.4, 0.6, 0.45]  # below the best on every task: p < 0.05, never beats it
    close = [0.91, 0.78, 0.96, 0.83]  # p >= 0.05: a tie
    m = np.array([best, worse, close, worse, [0.1, float("nan"), float("nan"), float("nan")]]).T  # (4 tasks, 5 entries)
    fps = ["s:aa", "s:aa", "s:aa", "s:bb", "s:aa"]
    out = versus_best(m, 0, fps)
    assert [o.verdict for o in out] == ["best", "worse", "tie", "unpaired", "n/a"]
    assert out[1].p_value < TIE_ALPHA <= out[2].p_value and out[1].prob_improvement == 0.0
    assert out[2].prob_improvement == pytest.approx(paired_comparison(close, best).prob_improvement)
    assert out[3].note == pairing_note("s:bb", "s:aa") and "different fixed test tasks" in out[3].note
    assert math.isnan(out[3].p_value) and out[0].note == ""
    # runs from before fingerprints (none recorded) still pair with each other
    assert pairing_note(None, None) == "" and "recorded no test-task fingerprint" in pairing_note(None, "s:aa")
    with pytest.raises(ConfigError, match="one fingerprint per entry"):
        versus_best(m, 0, fps[:2])


def test_weighted_iqm_hand_computed():
    from metabench.results.stats import weighted_iqm

    # equal weights, a count divisible by four: iqm itself, per row too
    assert weighted_iqm(np.arange(1.0, 9.0), 1.0) == pytest.approx(4.5)
    rows = np.random.RandomState(0).rand(4, 8)
    assert weighted_iqm(rows, 1.0, axis=1) == pytest.approx([iqm(r) for r in rows])
    # total weight 2, middle half [0.5, 1.5]: half of the 0 (weight 1) and half of the 1s (weights 1/3)
    assert weighted_iqm([1.0, 0.0, 1.0, 1.0], [1 / 3, 1.0, 1 / 3, 1 / 3]) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        weighted_iqm([1.0], [0.0])


def test_aggregate_weighs_each_suite_the_same_when_seed_counts_differ():
    """Three seeds on one suite must not outvote one seed on another (the reference set has three
    on sinusoid, one elsewhere): pooled, the IQM of [0, 1, 1, 1] would be 1; per suite it is 0.5."""
    scores = pd.DataFrame({
        "suite": ["sinusoid-5shot"] * 3 + ["omniglot-5w1s"], "algorithm": ["a"] * 4, "family": ["f"] * 4,
        "preset": ["quick"] * 4, "seed": [0, 1, 2, 0], "metric": ["mse", "mse", "mse", "accuracy"],
        "value": [0.0, 0.0, 0.0, 0.2], "n_tasks": [10] * 4,
    })  # fmt: skip
    agg = aggregate(scores, reps=200)
    row = agg.table.set_index("entry").loc["a"]
    # the seeds of a suite agree, so resampling them moves nothing
    assert (row["iqm"], row["iqm_low"], row["iqm_high"]) == pytest.approx((0.5, 0.5, 0.5))
    profile = agg.profile.set_index("tau")["fraction"]
    assert profile[profile.index < 0].min() == 1.0
    middle = profile[(profile.index > 0.05) & (profile.index < 0.95)]
    assert len(middle) > 10 and middle.tolist() == pytest.approx([0.5] * len(middle))   # one suite of two above tau
