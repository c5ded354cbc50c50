"""The metrics registry: which way is better for each metric, and how to show its values.

A metric name is a base name optionally followed by ``@k``, meaning "after k adaptation steps"
(``accuracy``, ``mse@1``, ``mse@10``). Direction and display depend on the base name only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from metabench.errors import ConfigError

Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class Metric:
    """How one base metric is compared and displayed."""

    direction: Direction
    """Whether a higher or a lower value is better."""
    percent: bool = False
    """Stored as a fraction in [0, 1], shown as a percentage with two decimals (97.31%)."""
    description: str = ""


METRICS: dict[str, Metric] = {
    "accuracy": Metric("higher", percent=True, description="fraction of query points classified correctly"),
    "success_rate": Metric("higher", percent=True, description="fraction of episodes reaching the goal"),
    "loss": Metric("lower", description="training objective"),
    "nll": Metric("lower", description="negative log-likelihood of the query targets"),
    "mse": Metric("lower", description="mean squared error on the query points"),
    "mae": Metric("lower", description="mean absolute error on the query points"),
    "return": Metric("higher", description="undiscounted episode return"),
    "reward": Metric("higher", description="mean reward per step"),
    "trial_return": Metric("higher", description="total reward over a meta-RL trial (all its episodes)"),
    "regret": Metric("lower", description="expected reward of always playing the best arm minus the reward earned"),
    "normalized_score": Metric("higher", description="score rescaled so that uniform-random play is 0 and the optimal policy 1"),
    "oracle_ratio": Metric("higher", description="trial return divided by the optimal policy's mean return (SNAIL's normalisation)"),
}
# MANN's accuracy by instance number (Santoro et al. 2016, Table 1): at the k-th presentation of a class.
METRICS.update({f"accuracy_inst{k}": Metric("higher", percent=True,
                                            description=f"accuracy at presentation number {k} of a class in a sequence")
                for k in (1, 2, 3, 4, 5, 10)})

_NAME = re.compile(r"^(?P<base>[a-z][a-z0-9_]*)(?:@(?P<k>\d+))?$")


def parse(metric: str) -> tuple[str, int | None]:
    """Split ``"mse@10"`` into ``("mse", 10)`` and ``"accuracy"`` into ``("accuracy", None)``."""
    match = _NAME.match(metric) if isinstance(metric, str) else None
    if match is None:
        raise ConfigError(
            f"Metric name {metric!r} is not valid; expected a lower-case base name optionally "
            "followed by '@k' (for example 'accuracy' or 'mse@10')."
        )
    k = match.group("k")
    return match.group("base"), None if k is None else int(k)


def spec(metric: str) -> Metric:
    """The registry entry of ``metric``'s base name; unknown base names raise ConfigError."""
    base, _ = parse(metric)
    try:
        return METRICS[base]
    except KeyError:
        raise ConfigError(
            f"Unknown metric {metric!r}; expected one of {', '.join(sorted(METRICS))} "
            "(optionally followed by '@k'). Add it to metabench.results.metrics.METRICS."
        ) from None


def direction(metric: str) -> Direction:
    """``"higher"`` or ``"lower"``: which way is better for ``metric`` (``@k`` is ignored)."""
    return spec(metric).direction


def label(metric: str) -> str:
    """An axis title naming the metric, its unit and its direction: 'accuracy (%), higher is better'."""
    m = spec(metric)
    unit = " (%)" if m.percent else ""
    return f"{metric}{unit}, {m.direction} is better"


def display_scale(metric: str) -> float:
    """Factor from stored to displayed values: 100 for percentages, else 1."""
    return 100.0 if spec(metric).percent else 1.0


def format_value(metric: str, value: float | None) -> str:
    """Format one value of ``metric``: accuracy 0.97312 -> '97.31%', mse 0.012345 -> '0.0123'.

    Percentages get two decimals; everything else three significant digits (whole numbers
    from 1000 up). Missing values
    (None or NaN) are shown as 'n/a'.
    """
    m = spec(metric)
    try:  # None, pandas' NA and NaN of any float type (numpy float32 included) -> 'n/a'
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(value):
        return "n/a"
    if m.percent:
        return f"{value * 100:.2f}%"
    if abs(value) >= 1000:  # returns in the thousands: '1234', not '1.23e+03'
        return f"{value:.0f}"
    return f"{value:#.3g}".rstrip(".")
