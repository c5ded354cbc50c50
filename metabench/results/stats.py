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
