"""Normalised scores for the aggregate view across suites: 0 = chance / baseline, 1 = perfect.

Each suite's primary metric is put on one scale so suites can be pooled (interquartile mean,
performance profiles). The rule is defined once per kind of suite, here, and the dashboard
prints its ``description``:

- classification (``<name>-<N>w<K>s``, accuracy): ``(acc - 1/N) / (1 - 1/N)``; 0 = guessing
  one of N classes, 1 = every query right.
- sinusoid regression (MSE): ``1 - mse / BASELINE`` with the baseline the expected MSE of
  predicting 0 everywhere, ``E[A^2] / 2`` for amplitude ``A ~ U[0.1, 5]`` (Finn et al., 2017):
  0 = no better than the zero function, 1 = exact.
- meta-RL suites (``trial_return``, navigation's ``return@1``): ``(x - random) / (oracle - random)``
  with the mean random and optimal-policy scores over the suite's fixed test tasks
  (``RL_REFERENCE_MEANS``); the suites also store this per task as ``normalized_score``.

The rules are affine in the metric, so the mean of normalised task values equals the
normalised mean; the aggregate normalises per-seed means.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metabench.results import metrics as _metrics

#: Expected MSE of predicting 0 for y = A sin(x - phase), A ~ U[0.1, 5.0]: E[A^2] / 2.
SINUSOID_ZERO_MSE = (5.0**3 - 0.1**3) / (3 * (5.0 - 0.1)) / 2


@dataclass(frozen=True)
class Normalisation:
    """How one suite's metric maps to [0 = chance or baseline, 1 = perfect or oracle]."""

    description: str
    """One line shown on the page, e.g. '(accuracy − 1/5) / (1 − 1/5)'."""
    fn: Callable[[np.ndarray], np.ndarray]
    """Vectorised map from raw metric values to normalised scores."""


# (suite-id pattern, metric base name, factory(match) -> Normalisation), tried in order.
_RULES: list[tuple[re.Pattern[str], str, Callable[[re.Match[str]], Normalisation]]] = []


def add_rule(suite_pattern: str, metric_base: str, factory: Callable[[re.Match[str]], Normalisation]) -> None:
    """Register a normalisation for suites whose id fully matches ``suite_pattern`` (a regex)
    and whose metric has base name ``metric_base``. Later rules take precedence."""
    _RULES.insert(0, (re.compile(suite_pattern), metric_base, factory))


def identity(description: str = "stored normalised (random policy = 0, oracle = 1)") -> Callable[
    [re.Match[str]], Normalisation
]:
    """A factory for metrics that are already normalised (the meta-RL hook)."""
    return lambda _match: Normalisation(description, lambda x: np.asarray(x, dtype=np.float64))


def _chance_accuracy(match: re.Match[str]) -> Normalisation:
    n_way = int(match.group("way"))
    chance = 1.0 / n_way
    return Normalisation(
        f"(accuracy − 1/{n_way}) / (1 − 1/{n_way}): 0 = chance, 1 = all correct",
        lambda x: (np.asarray(x, dtype=np.float64) - chance) / (1.0 - chance),
    )


def _sinusoid_mse(_match: re.Match[str]) -> Normalisation:
    b = SINUSOID_ZERO_MSE
    return Normalisation(
        f"1 − MSE / {b:.3f} (the MSE of predicting 0): 0 = the zero function, 1 = exact",
        lambda x: 1.0 - np.asarray(x, dtype=np.float64) / b,
    )


add_rule(r"sinusoid-.*", "mse", _sinusoid_mse)
add_rule(r".*-(?P<way>\d+)w\d+s", "accuracy", _chance_accuracy)


def normalisation(suite: str, metric: str) -> Normalisation | None:
    """The rule for ``(suite, metric)``, or None when no rule applies (left out of aggregates)."""
    base, _ = _metrics.parse(metric)
    for pattern, metric_base, factory in _RULES:
        match = pattern.fullmatch(suite)
        if match and metric_base == base:
            return factory(match)
    return None


#: Meta-RL suites: (mean random, mean oracle) of the primary metric over each suite's fixed test
#: tasks (version 1), the same constants as the suites' stored `normalized_score`, so the aggregate
#: of the primary metric equals the mean normalized_score. Computed by
#: `metabench.suites.rl.RLSuite._test_means` (not importable here: it needs torch);
#: tests/test_rl.py checks that they still agree.
RL_REFERENCE_MEANS = {
    "bandit-k5-n10": (4.991803250949726, 8.328010134102108),
    "bandit-k5-n100": (50.22570358420503, 83.3591637961604),
    "bandit-k10-n100": (49.79637782933286, 91.30617929829074),
    "bandit-k50-n500": (250.13021328842902, 490.2067273710371),
    "tabular-mdp-n10": (99.73757864272035, 218.13505221801364),
    "tabular-mdp-n25": (250.36782053861435, 546.0721393017517),
    "tabular-mdp-n50": (500.7331832707479, 1098.2182831764683),
    "navigation2d": (-62.48174233342478, -0.5069866357573284),
}


def _rl_random_oracle(match: re.Match[str]) -> Normalisation:
    lo, hi = RL_REFERENCE_MEANS[match.group(0)]
    return Normalisation(
        f"(return − {lo:.4g}) / ({hi:.4g} − {lo:.4g}): 0 = random policy, 1 = oracle (test-task means)",
        lambda x: (np.asarray(x, dtype=np.float64) - lo) / (hi - lo),
    )


_RL_IDS = "|".join(re.escape(s) for s in RL_REFERENCE_MEANS)
add_rule(f"(?:{_RL_IDS})", "trial_return", _rl_random_oracle)
add_rule(f"(?:{_RL_IDS})", "return", _rl_random_oracle)
