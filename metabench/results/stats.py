"""Statistics as pure functions over arrays with a stated shape.

The unit of comparison is the *test task*: every algorithm is evaluated on the same fixed test
tasks, so task ``j`` of one algorithm is paired with task ``j`` of another. Seeds are replicates
of the whole training run; we average them away per task first, then put a Student-t 95%
confidence interval over the tasks. The spread between seeds is reported separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from metabench.errors import ConfigError


def ci_halfwidth(sd: ArrayLike, n: ArrayLike, confidence: float = 0.95) -> np.ndarray:
    """Half-width of the Student-t interval: ``t.ppf((1+confidence)/2, n-1) * sd / sqrt(n)``.

    ``sd`` (sample standard deviation, ddof=1) and ``n`` broadcast together; the result is NaN
    where ``n < 2`` (no spread can be estimated from one value).
    """
    # Imported here: scipy.stats takes about a second to import, and the engine's workers import
    # this package (for the writer) without ever computing an interval.
    from scipy import stats as _scipy_stats

    _check_confidence(confidence)
    sd = np.asarray(sd, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = _scipy_stats.t.ppf((1.0 + confidence) / 2.0, np.where(n >= 2, n - 1, np.nan))
        return t * sd / np.sqrt(n)


def mean_ci(values: ArrayLike, confidence: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean and Student-t confidence interval of ``values``, shape ``(n_tasks,)``.

    Returns ``(point, (low, high))``; with a single value the interval is ``(nan, nan)``.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ConfigError(f"mean_ci expects a non-empty 1-D array (n_tasks,); received shape {x.shape}.")
    point = float(x.mean())
    sd = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    half = float(ci_halfwidth(sd, x.size, confidence))
    return point, (point - half, point + half)


@dataclass(frozen=True)
class SeedTaskSummary:
    """Summary of one (algorithm, protocol) cell from its ``(n_seeds, n_tasks)`` matrix."""

    mean: float
    """Mean over tasks of the per-task seed means (= the grand mean of a full matrix)."""
    ci_low: float
    ci_high: float
    ci95: float
    """Half-width of the confidence interval over tasks (named for the default 95%)."""
    std_seeds: float
    """Standard deviation (ddof=1) of the per-seed means over tasks; NaN with one seed."""
    n_seeds: int
    n_tasks: int


def seed_task_summary(matrix: ArrayLike, confidence: float = 0.95) -> SeedTaskSummary:
    """Summarise a ``(n_seeds, n_tasks)`` matrix of one metric; row = seed, column = test task.

    The interval is over tasks after averaging each task over seeds (paired tasks, seeds as
    replicates); the seed spread is the standard deviation of the row means.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or 0 in m.shape:
        raise ConfigError(
            f"seed_task_summary expects a non-empty 2-D array (n_seeds, n_tasks); received shape {m.shape}."
        )
    n_seeds, n_tasks = m.shape
    point, (low, high) = mean_ci(m.mean(axis=0), confidence)
    std_seeds = float(m.mean(axis=1).std(ddof=1)) if n_seeds > 1 else float("nan")
    return SeedTaskSummary(
        mean=point,
        ci_low=low,
        ci_high=high,
        ci95=high - point,
        std_seeds=std_seeds,
        n_seeds=n_seeds,
        n_tasks=n_tasks,
    )


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be strictly between 0 and 1; received {confidence}.")


# -- paired comparisons --------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedComparison:
    """Entry A against entry B on the same test tasks, from two ``(n_tasks,)`` arrays."""

    mean_diff: float
    """Mean over tasks of ``a - b`` (in the metric's units)."""
    p_value: float
    """Two-sided paired t-test (``scipy.stats.ttest_rel``); NaN with < 2 tasks, 1.0 if a == b."""
    prob_improvement: float
    """P(A better than B) on a task: the fraction of tasks A wins, ties counted half."""
    n_tasks: int


def paired_comparison(a: ArrayLike, b: ArrayLike, higher_is_better: bool = True) -> PairedComparison:
    """Compare two entries on the same tasks; ``a[j]`` and ``b[j]`` are task ``j``'s values.

    The p-value is that of ``scipy.stats.ttest_rel(a, b)`` (two-sided); when every difference
    is zero the test is undefined and we report 1.0 (no evidence of a difference). The
    probability of improvement is rliable's ``P(X > Y)`` (Agarwal et al., 2021) taken over
    test tasks, each task contributing one paired comparison: ``mean(1[a better] + 0.5 *
    1[a == b])``, where "better" follows ``higher_is_better``.
    """
    from scipy import stats as _scipy_stats

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ConfigError(
            "paired_comparison expects two non-empty 1-D arrays of the same shape (n_tasks,); "
            f"received shapes {x.shape} and {y.shape}."
        )
    diff = x - y
    if x.size < 2:
        p = float("nan")
    elif np.all(diff == 0):
        p = 1.0
    else:
        p = float(_scipy_stats.ttest_rel(x, y).pvalue)
    wins = (diff > 0) if higher_is_better else (diff < 0)
    prob = float(np.mean(wins + 0.5 * (diff == 0)))
    return PairedComparison(float(diff.mean()), p, prob, int(x.size))


# -- aggregates across suites (rliable's definitions) --------------------------------------------


def iqm(scores: ArrayLike, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean of ``scores`` (any shape, e.g. ``(n_runs, n_tasks)``).

    rliable's ``aggregate_iqm``: ``scipy.stats.trim_mean(scores, 0.25, axis=None)``, the mean of
    the middle 50% of the pooled values (25% cut from each end, rounded down). With ``axis``,
    one IQM per slice along that axis (used to evaluate bootstrap replicates at once).
    """
    from scipy import stats as _scipy_stats

    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        raise ConfigError("iqm expects at least one score; received an empty array.")
    result = _scipy_stats.trim_mean(x, proportiontocut=0.25, axis=axis)
    return float(result) if axis is None else np.asarray(result)


def weighted_iqm(scores: ArrayLike, weights: ArrayLike, axis: int = -1) -> float | np.ndarray:
    """Interquartile mean of ``scores`` where score i carries weight ``weights[i]``: the weighted
    mean of the middle half of the total weight (a score straddling the 25% or 75% point counts
    with the part of its weight inside). With equal weights and a count divisible by four this
    is ``iqm``. ``weights`` broadcasts against ``scores``; one IQM per slice along ``axis`` (for
    bootstrap replicates), a float for 1-D ``scores``. Used across suites with different
    numbers of seeds, so that each suite weighs the same (``aggregate``)."""
    v = np.asarray(scores, dtype=np.float64)
    if v.size == 0:
        raise ConfigError("weighted_iqm expects at least one score; received an empty array.")
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), v.shape)
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ConfigError("weighted_iqm expects finite positive weights.")
    v, w = np.moveaxis(v, axis, -1), np.moveaxis(w, axis, -1)
    order = np.argsort(v, axis=-1, kind="stable")
    v, w = np.take_along_axis(v, order, -1), np.take_along_axis(w, order, -1)
    upper = np.cumsum(w, axis=-1)
    total = upper[..., -1:]
    inside = np.clip(np.minimum(upper, 0.75 * total) - np.maximum(upper - w, 0.25 * total), 0.0, None)
    result = (v * inside).sum(axis=-1) / (0.5 * total[..., 0])
    return float(result) if result.ndim == 0 else result


def stratified_bootstrap_ci(
    strata: ArrayLike | list[ArrayLike],
    statistic=iqm,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """Point estimate and stratified-bootstrap percentile interval of ``statistic``.

    ``strata`` is a ``(n_runs, n_tasks)`` matrix (rliable's layout: a task, here a suite, is a
    column) or a list of 1-D arrays, one per task, when tasks have different numbers of runs.
    Each replicate resamples runs with replacement *within each task* and pools the resampled
    scores; ``statistic(x, axis=...)`` (like ``iqm`` or ``np.mean``) reduces them. The interval
    is the (alpha/2, 1 - alpha/2) percentiles of the replicates (``np.percentile``, linear
    interpolation). For a matrix this is rliable's ``get_interval_estimates(...,
    method='percentile')`` with its ``StratifiedBootstrap``: the same index draws, one
    ``choice(n_runs, (n_runs, n_tasks))`` per replicate from ``RandomState(seed)``, so rliable
    run after ``np.random.seed(seed)`` returns the same numbers (tested when it is installed).
    Ragged strata draw each stratum's indices in turn (no rliable counterpart).
    """
    _check_confidence(confidence)
    if reps < 1:
        raise ConfigError(f"reps must be at least 1; received {reps}.")
    rng = np.random.RandomState(seed)
    ragged = isinstance(strata, (list, tuple)) and len({np.size(s) for s in strata}) > 1
    if ragged:
        groups = [np.asarray(s, dtype=np.float64).ravel() for s in strata]
        if any(g.size == 0 for g in groups):
            raise ConfigError("stratified_bootstrap_ci: every stratum needs at least one score.")
        point = float(statistic(np.concatenate(groups)))
        # (reps, total): each stratum's values resampled within the stratum
        resampled = np.concatenate([g[rng.choice(g.size, (reps, g.size), replace=True)] for g in groups], axis=1)
    else:
        m = np.asarray(strata, dtype=np.float64)
        if isinstance(strata, (list, tuple)):
            m = m.reshape(len(strata), -1).T  # a list of equal strata -> (n_runs, n_tasks)
        if m.ndim != 2 or 0 in m.shape:
            raise ConfigError(
                "stratified_bootstrap_ci expects a non-empty (n_runs, n_tasks) matrix or a list of "
                f"1-D strata; received shape {m.shape}."
            )
        n_runs, n_tasks = m.shape
        point = float(statistic(m))
        # One call drawing (reps, n_runs, n_tasks) consumes the stream exactly as `reps` calls
        # drawing (n_runs, n_tasks) each, i.e. as rliable does.
        rows = rng.choice(n_runs, (reps, n_runs, n_tasks), replace=True)
        resampled = m[rows, np.arange(n_tasks)[None, None, :]].reshape(reps, -1)
    replicates = np.asarray(statistic(resampled, axis=1), dtype=np.float64)
    alpha = 1.0 - confidence
    low, high = np.percentile(replicates, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return point, (float(low), float(high))


def performance_profile(scores: ArrayLike, taus: ArrayLike) -> np.ndarray:
    """rliable's score distribution: for each ``tau``, the fraction of scores above ``tau``.

    ``scores`` is any array of normalised run scores (``(n_runs, n_tasks)`` in rliable); the
    result has the shape of ``taus``. ``np.mean(scores > tau)`` as ``run_score_deviation``.
    """
    x = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(taus, dtype=np.float64)
    if x.size == 0:
        raise ConfigError("performance_profile expects at least one score; received none.")
    return (x[None, :] > t.reshape(-1, 1)).mean(axis=1).reshape(t.shape)


def pareto_front(cost: ArrayLike, score: ArrayLike, higher_is_better: bool = True) -> np.ndarray:
    """Boolean mask of the points no other point beats: cheaper-or-equal *and* better-or-equal,
    strictly in one. ``cost`` (lower is better) and ``score`` have shape ``(n_points,)``; NaNs
    are never on the front."""
    c = np.asarray(cost, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    if c.shape != s.shape or c.ndim != 1:
        raise ConfigError(
            f"pareto_front expects two 1-D arrays of the same shape; received {c.shape} and {s.shape}."
        )
    if not higher_is_better:
        s = -s
    ok = np.isfinite(c) & np.isfinite(s)
    front = np.zeros(c.shape, dtype=bool)
    for i in np.flatnonzero(ok):
        no_worse = ok & (c <= c[i]) & (s >= s[i])
        strictly = (c < c[i]) | (s > s[i])
        front[i] = not np.any(no_worse & strictly)
    return front


# -- leaderboard: ranks and the comparison with the best entry ----------------------------------

#: p-value at or above which an entry "ties" the best one (``versus_best``).
TIE_ALPHA = 0.05


def ranks(means: ArrayLike, higher_is_better: bool = True) -> np.ndarray:
    """Competition ranks ("1224") of entries by their ``(n_entries,)`` means, best = 1; equal
    means share the lower rank, and NaN means come last, sharing rank ``n_finite + 1``."""
    from scipy import stats as _scipy_stats

    key = np.asarray(means, dtype=np.float64)
    if key.ndim != 1:
        raise ConfigError(f"ranks expects a 1-D array (n_entries,); received shape {key.shape}.")
    key = -key if higher_is_better else key  # rank 1 = smallest key
    finite = ~np.isnan(key)
    out = np.full(key.shape, int(finite.sum()) + 1, dtype=np.int64)
    out[finite] = _scipy_stats.rankdata(key[finite], method="min").astype(np.int64)
    return out


def pairing_note(fingerprint: object, best: object) -> str:
    """'' when an entry's fixed test tasks are the best entry's (same ``tasks_fingerprint``, or
    neither recorded one: runs from before fingerprints), else one sentence saying why the two
    are not paired."""
    known = [isinstance(f, str) and bool(f) for f in (fingerprint, best)]
    if not any(known) or (all(known) and fingerprint == best):
        return ""
    if not known[0]:
        return "not paired with the best entry: this entry's runs recorded no test-task fingerprint"
    if not known[1]:
        return "not paired with the best entry: the best entry's runs recorded no test-task fingerprint"
    return (f"not paired with the best entry: different fixed test tasks (fingerprint "
            f"{str(fingerprint).split(':')[-1][:12]} vs {str(best).split(':')[-1][:12]})")


@dataclass(frozen=True)
class VersusBest:
    """One leaderboard entry against the rank-1 entry."""

    verdict: str
    """'best', 'tie' (paired t-test p >= ``TIE_ALPHA``), 'worse', 'unpaired' (other fixed test
    tasks: see ``note``) or 'n/a' (fewer than two tasks in common)."""
    p_value: float
    """Two-sided ``ttest_rel`` p-value on the tasks both have; NaN unless 'tie' or 'worse'."""
    prob_improvement: float
    """P(this entry beats the best on a task), ties counted half; NaN unless 'tie' or 'worse'."""
    note: str
    """``pairing_note``: '' when the two are paired."""


def versus_best(
    values: ArrayLike, best: int, fingerprints: list[object], higher_is_better: bool = True
) -> list[VersusBest]:
    """Compare every entry with entry ``best`` on the tasks both have.

    ``values`` has shape ``(n_tasks, n_entries)``: column ``e`` holds entry ``e``'s per-task
    values (averaged over seeds), NaN where the entry lacks the task; ``fingerprints[e]`` is its
    ``tasks_fingerprint``. Entries are paired only when their fingerprints agree (``pairing_note``).
    """
    m = np.asarray(values, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != len(fingerprints) or not 0 <= best < m.shape[1]:
        raise ConfigError(
            f"versus_best expects a (n_tasks, n_entries) matrix with one fingerprint per entry and "
            f"0 <= best < n_entries; received shape {m.shape}, {len(fingerprints)} fingerprints, best={best}."
        )
    nan = float("nan")
    out = []
    for e in range(m.shape[1]):
        note = pairing_note(fingerprints[e], fingerprints[best])
        if e == best:
            out.append(VersusBest("best", nan, nan, note))
            continue
        if note:
            out.append(VersusBest("unpaired", nan, nan, note))
            continue
        a, b = m[:, e], m[:, best]
        both = ~(np.isnan(a) | np.isnan(b))
        if both.sum() < 2:
            out.append(VersusBest("n/a", nan, nan, note))
            continue
        cmp = paired_comparison(a[both], b[both], higher_is_better=higher_is_better)
        tied = not cmp.p_value < TIE_ALPHA
        out.append(VersusBest("tie" if tied else "worse", cmp.p_value, cmp.prob_improvement, note))
    return out
