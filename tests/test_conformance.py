"""Conformance, in one place: every registered suite and algorithm is held to the checks that
`metabench check` runs on a plugin (metabench.checks, metabench.conformance), so registering a
suite or an algorithm adds its tests here and nowhere else.

- every suite: ``check_suite``;
- every algorithm on one cheap suite of each kind it fits, the classifiers on 32x32 RGB images
  too (and maml and protonet on 84x84): ``check_algorithm``, the in-process rules of ``run_checks``
  (class contract, one training step, evaluate, the state round trip);
- the engine rules (smoke cell, declared metrics, no test access, determinism, resume) through
  ``run_checks`` itself: maml by default, every built-in with ``-m slow``.

Suites whose data is not staged (miniImageNet, CIFAR-FS) are checked on test_image_suites' tiny
fake copies; Omniglot on the staged copy (skipped where it is absent).
"""
from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

from metabench.algorithms import ALGORITHMS
from metabench.checks import check_algorithm, check_suite
from metabench.conformance import run_checks
from metabench.errors import DataUnavailable
from metabench.registry import BUILT_IN
from metabench.suites import SUITES, make_suite
from metabench.suites.mujoco import mujoco_missing

from conftest import SHARED_DATA
from test_image_suites import make_cifar, make_mini

#: Data the tests fake (a few random images per class); every other suite reads the staged data.
FAKE_DATA = {"miniimagenet", "cifar100"}
#: The suites algorithms are checked on: the cheapest of each kind, and 32x32 RGB images.
ALGORITHM_SUITES = ("omniglot-5w1s", "sinusoid-5shot", "cifarfs-5w1s", "bandit-k5-n10", "tabular-mdp-n10",
                    "navigation2d", "halfcheetah-vel")
#: 84x84 RGB too: the two Conv-4s (strided and pooled) on the largest images. Not every classifier:
#: the fake miniImageNet has 6 training classes, too few for finetune's 8-way batches.
AT_84X84 = [("maml", "miniimagenet-5w1s"), ("protonet", "miniimagenet-5w1s")]
MUJOCO_SKIP = pytest.mark.skipif(mujoco_missing() is not None, reason=f"MuJoCo extra not installed: {mujoco_missing()}")


def _marks(suite_id: str, algorithm: str | None = None) -> list:
    """MuJoCo suites need the extra; a learner's step there runs Python-looped simulators (slow)."""
    if not suite_id.startswith("halfcheetah"):
        return []
    slow = algorithm is not None and ALGORITHMS.get(algorithm).needs_training
    return [MUJOCO_SKIP, pytest.mark.slow] if slow else [MUJOCO_SKIP]


#: Registered when the tests are collected (other tests register plugins by import path later).
REGISTERED = ALGORITHMS.names()
PAIRS = [pytest.param(a, s, marks=_marks(s, a)) for a in REGISTERED for s in ALGORITHM_SUITES
         if ALGORITHMS.get(a).fits(make_suite(s))[0]] + [pytest.param(a, s) for a, s in AT_84X84]


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """suite id -> that suite prepared on the CPU (each once): fake image data, the staged
    Omniglot, or nothing for the generated suites."""
    fake_root = None
    cache: dict[str, object] = {}

    def get(suite_id: str):
        nonlocal fake_root
        if suite_id in cache:
            return cache[suite_id]
        suite = make_suite(suite_id)
        root = None
        if suite.needs_data in FAKE_DATA:
            if fake_root is None:
                fake_root = make_cifar(make_mini(tmp_path_factory.mktemp("fake-images"), "cache"))
            root = fake_root
        elif suite.needs_data:
            root = SHARED_DATA
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*not the published.*")   # the fake data's sizes
                cache[suite_id] = suite.prepare(root, "cpu", allow_download=False, progress=False)
        except DataUnavailable as exc:
            pytest.skip(f"{suite_id}: no data in {root} ({exc})")
        return cache[suite_id]
    return get


@contextlib.contextmanager
def _threads_for(suite):
    """RL tensors are tiny: one intra-op thread is faster, and spinning OpenMP threads on a shared
    2-core machine made a 1.4 s evaluation take 16 s (measured under load 9)."""
    n = torch.get_num_threads()
    if suite.kind.startswith("rl-"):
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("suite_id", [pytest.param(s, marks=_marks(s)) for s in SUITES.names()])
def test_suite_conformance(suite_id, prepared):
    suite = prepared(suite_id)
    with _threads_for(suite):
        check_suite(suite)


@pytest.mark.parametrize("algorithm, suite_id", PAIRS)
def test_algorithm_conformance(algorithm, suite_id, prepared):
    """Training changes the meta-parameters, evaluate does not and is repeatable, the state round-trips."""
    suite = prepared(suite_id)
    with _threads_for(suite):
        check_algorithm(algorithm, suite)


def test_the_checks_cover_every_kind_of_learner():
    """A guard on PAIRS itself: every registered algorithm fits one of the suites (none goes
    unchecked), and the learners, classical baselines and classifiers have rows where they belong."""
    pairs = {tuple(p.values) for p in PAIRS}
    assert {("mql", "navigation2d"), ("rl2", "tabular-mdp-n10"), ("maml-rl", "bandit-k5-n10"),
            ("gittins", "bandit-k5-n10"), ("psrl", "tabular-mdp-n10"), ("random", "halfcheetah-vel"),
            ("maml", "sinusoid-5shot"), ("protonet", "miniimagenet-5w1s"), ("rfs", "cifarfs-5w1s")} <= pairs
    assert {a for a, _ in pairs} == set(REGISTERED)


# --- the engine rules, as `metabench check` runs them ----------------------------------------
def test_builtin_maml_passes_every_check():
    """The built-ins are held to the same checks as a plugin (every built-in: the slow test below)."""
    report = run_checks("maml")
    assert report.ok and report.suite == "sinusoid-5shot", [r for r in report.results if not r.ok]


def _builtins() -> list[str]:
    return [n for n in ALGORITHMS.names() if ALGORITHMS.origin(n) == BUILT_IN]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", _builtins())
def test_builtin_passes_every_check(algorithm, shared_data):
    """Every built-in on its default suite (sinusoid, a bandit or Omniglot): about 5-30 s each."""
    report = run_checks(algorithm, data_root=shared_data)
    assert report.ok, [r for r in report.results if not r.ok]
