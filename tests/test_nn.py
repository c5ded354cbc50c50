"""The shared pieces under the algorithms: seeds of random streams (metabench.seeding) and the
declared bounds of Config fields (metabench.algorithms.base.check_bounds)."""
from __future__ import annotations

import dataclasses

import pytest

from metabench.algorithms import ALGORITHMS
from metabench.algorithms.base import BoundedConfig, parse_bound
from metabench.errors import ConfigError
from metabench.seeding import stream, task_stream


def test_streams_are_the_integers_every_stored_run_was_seeded_with():
    # the formulas written out before the helper existed (seed * 7919 + k, ...): changing them
    # would change every number of the learners that draw from these streams
    assert [stream(s, 1) for s in (0, 1, 3)] == [1, 7_920, 23_758]          # reptile, mann, rl2
    assert stream(5, 2) == 39_597 and stream(2, 3) == 15_841                 # maml-rl, mql
    assert stream(7, 3, stride=104_729) == 733_106                           # metasgd's alpha
    assert task_stream(4, 17) == 4_000_029                                   # reptile's test mini-batches
    assert task_stream(10 + 1, 12_345) == 1_000_003 * 11 + 12_345            # mann's test sequences


@dataclasses.dataclass(frozen=True)
class _Config(BoundedConfig):
    steps: int = 1
    lr: float = 0.1
    beta: float = 0.5
    way: int | None = None
    at: tuple[float, ...] = (0.5, 0.75)
    mode: str = "loop"
    WHO = "algo"
    BOUNDS = {"steps": ">= 1", "lr": "> 0", "beta": "[0, 1)", "way": ">= 2 (one query per class)",
              "at": "(0, 1) (fractions of training)", "mode": ("loop", "vmap")}


@pytest.mark.parametrize("change, sentence", [
    (dict(steps=0), "algo: steps must be at least 1, got 0"),
    (dict(lr=0.0), "algo: lr must be positive, got 0.0"),
    (dict(beta=1.0), "algo: beta must lie in [0, 1), got 1.0"),
    (dict(way=1), "algo: way must be at least 2 (one query per class), got 1"),
    (dict(at=(0.5, 1.0)), "algo: every entry of at must lie in (0, 1) (fractions of training), got (0.5, 1.0)"),
    (dict(mode="auto"), "algo: mode must be one of loop, vmap, got 'auto'"),
])
def test_a_field_out_of_bounds_is_one_sentence_naming_bound_and_value(change, sentence):
    _Config().validate()                                   # the defaults hold; None passes a rule
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(_Config(), **change).validate()
    assert str(info.value) == sentence


def test_bound_rules_read_as_written():
    says = {rule: parse_bound(rule)[1] for rule in (">= 1", "> 0", "> 0.5", "<= 20", "[1, 20]", "(0, 1]")}
    assert says == {">= 1": "be at least 1", "> 0": "be positive", "> 0.5": "be above 0.5",
                    "<= 20": "be at most 20", "[1, 20]": "lie in [1, 20]", "(0, 1]": "lie in (0, 1]"}
    holds = parse_bound("(0, 1]")[0]
    assert [holds(v) for v in (0, 1e-9, 1, 1.5)] == [False, True, True, False]
    with pytest.raises(ValueError, match="not a bound"):
        parse_bound("positive")


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_every_declared_bound_names_a_field_and_the_defaults_hold_it(name):
    config_cls = ALGORITHMS.get(name).Config
    bounds = getattr(config_cls, "BOUNDS", {})
    assert set(bounds) <= {f.name for f in dataclasses.fields(config_cls)}
    for rule in bounds.values():
        assert isinstance(rule, tuple) or parse_bound(rule)
    if hasattr(config_cls, "validate"):
        config_cls().validate()
