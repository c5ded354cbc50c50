"""The aggregate view across suites: mean rank, IQM of normalised scores, performance profiles.

Input is ``ResultsDB.run_scores``: one row per (suite, entry, seed) with the seed's mean of the
suite's primary metric over the fixed test tasks. Each suite's scores are normalised by its rule
in ``normalize`` (suites without a rule are left out and listed), so 0 = chance / baseline and
1 = perfect / oracle, higher always better. Following rliable (Agarwal et al., 2021), a suite is
a "task" and a seed a "run": the IQM pools every (seed, suite) score of an entry and its 95%
interval is a stratified bootstrap over seeds within each suite. Where an entry's suites have
different numbers of seeds, each suite weighs the same (a score weighs 1/its suite's seeds, in
the IQM and in the profile), which rliable, built for equal runs per task, does not need to say.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from metabench.results.normalize import normalisation
from metabench.results.stats import iqm, performance_profile, stratified_bootstrap_ci, weighted_iqm

#: Columns that tell entries apart, in the order they are appended to a label when they differ.
DISTINGUISHING = ("preset", "split_scheme", "transductive", "query_batch", "source")
#: Bootstrap replicates for the IQM interval (rliable's plots use 2000 for profiles).
REPS = 2000


def entry_labels(df: pd.DataFrame) -> pd.Series:
    """One label per row: the variant (``maml[inner_steps=3]``; the algorithm when ``df`` has no
    ``variant`` column), plus whichever of ``DISTINGUISHING`` sets its rows apart (only columns
    present in ``df`` and varying within one variant)."""
    if df.empty:
        return pd.Series([], dtype=object, index=df.index)
    name = df["variant"].fillna(df["algorithm"]) if "variant" in df else df["algorithm"]
    present = [c for c in DISTINGUISHING if c in df]
    varying = [c for c in present if df.groupby(name)[c].nunique(dropna=False).max() > 1]
    labels = name.astype(str)
    for column in varying:
        values = df[column].map(
            lambda v: ("transductive" if v else "inductive") if isinstance(v, (bool, np.bool_)) else str(v)
        )
        labels = labels + " · " + values.astype(str)
    return labels


def _statistic(strata: list[np.ndarray]):
    """The IQM of an entry's scores laid out as ``strata`` (one array per suite, concatenated in
    order): rliable's pooled ``iqm`` when every suite has as many seeds; otherwise
    ``weighted_iqm`` with each score weighing 1/(its suite's seeds), so a suite run with three
    seeds does not outvote one run with one (the reference set has three seeds on sinusoid and
    one elsewhere)."""
    sizes = [len(s) for s in strata]
    if len(set(sizes)) == 1:
        return iqm
    weights = np.concatenate([np.full(n, 1.0 / n) for n in sizes])
    # the weights follow the scores' last axis: a pooled 1-D array, or (replicates, scores)
    return lambda x, axis=-1: weighted_iqm(x, weights, axis=-1 if axis is None else axis)


@dataclass(frozen=True)
class Aggregate:
    """The aggregate view: a table per entry, the profile curves, and what was normalised how."""

    table: pd.DataFrame
    """entry, algorithm, family, n_suites, mean_rank, iqm, iqm_low, iqm_high, n_scores; best first."""
    profile: pd.DataFrame
    """entry, tau, fraction (of the entry's normalised run scores above tau)."""
    rules: pd.DataFrame
    """suite, metric, normalisation (text), n_entries."""
    left_out: list[str]
    """Suites with results but no normalisation rule for their primary metric."""


def aggregate(scores: pd.DataFrame, reps: int = REPS, seed: int = 0) -> Aggregate:
    """The aggregate view of a ``run_scores`` frame (see the module docstring)."""
    empty = Aggregate(
        pd.DataFrame(columns=["entry", "algorithm", "family", "n_suites", "mean_rank", "iqm", "iqm_low",
                              "iqm_high", "n_scores"]),  # fmt: skip
        pd.DataFrame(columns=["entry", "tau", "fraction"]),
        pd.DataFrame(columns=["suite", "metric", "normalisation", "n_entries"]),
        [],
    )
    if scores.empty:
        return empty
    # An entry is a variant (an algorithm plus its overrides) and preset: its protocol (e.g.
    # transductive) is part of how it runs on each suite, so it may differ between suites without
    # making two entries. Variants of one algorithm are separate entries, never pooled.
    df = scores.copy()
    # A user's runs and the reference runs of the same variant are separate entries (issue 21).
    df["entry"] = entry_labels(df[[c for c in ("algorithm", "variant", "preset", "source") if c in df]])
    df = df.groupby(["suite", "metric", "entry", "seed"], as_index=False).agg(
        algorithm=("algorithm", "first"), family=("family", "first"), value=("value", "mean"))
    rules, left_out, parts = [], [], []
    for (suite, metric), part in df.groupby(["suite", "metric"], sort=True):
        rule = normalisation(str(suite), str(metric))
        if rule is None:
            left_out.append(str(suite))
            continue
        part = part.assign(score=rule.fn(part["value"].to_numpy(float)))
        rules.append({"suite": suite, "metric": metric, "normalisation": rule.description,
                      "n_entries": part["entry"].nunique()})  # fmt: skip
        parts.append(part)
    if not parts:
        return Aggregate(empty.table, empty.profile, empty.rules, sorted(set(left_out)))
    df = pd.concat(parts, ignore_index=True)
    # Rank per suite on the mean normalised score over seeds (1 = best; ties share the mean rank).
    per_suite = df.groupby(["suite", "entry"], as_index=False)["score"].mean()
    per_suite["rank"] = per_suite.groupby("suite")["score"].rank(ascending=False, method="average")
    ranks = per_suite.groupby("entry").agg(mean_rank=("rank", "mean"), n_suites=("suite", "nunique"))
    rows = []
    lo, hi = float(df["score"].min()), float(df["score"].max())
    # From just below the lowest score (the profile starts at 1: every run scores above it) to 1.
    margin = 0.02 * (max(1.0, hi) - min(0.0, lo))
    taus = np.linspace(min(0.0, lo - margin), max(1.0, hi), 101)
    profiles = []
    for entry, part in df.groupby("entry", sort=True):
        strata = [g["score"].to_numpy(float) for _, g in part.groupby("suite", sort=True)]
        point, (low, high) = stratified_bootstrap_ci(strata, _statistic(strata), reps=reps, seed=seed)
        rows.append({"entry": entry, "algorithm": part["algorithm"].iloc[0], "family": part["family"].iloc[0],
                     "iqm": point, "iqm_low": low, "iqm_high": high, "n_scores": len(part)})  # fmt: skip
        # each suite weighs the same: the mean over suites of the fraction of its seeds above tau
        # (rliable's pooled fraction when every suite has as many seeds)
        fraction = np.mean([performance_profile(stratum, taus) for stratum in strata], axis=0)
        profiles.append(pd.DataFrame({"entry": entry, "tau": taus, "fraction": fraction}))
    table = pd.DataFrame(rows).join(ranks, on="entry")
    table = table.sort_values(["iqm", "mean_rank"], ascending=[False, True], kind="stable").reset_index(drop=True)
    table = table[["entry", "algorithm", "family", "n_suites", "mean_rank", "iqm", "iqm_low", "iqm_high", "n_scores"]]
    return Aggregate(table, pd.concat(profiles, ignore_index=True), pd.DataFrame(rules), sorted(set(left_out)))
