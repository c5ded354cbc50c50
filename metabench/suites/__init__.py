"""Task suites, registered by id (`omniglot-5w1s`, `sinusoid-5shot`, ...)."""
from __future__ import annotations

from functools import partial

from metabench.registry import Registry
from metabench.suites.base import KINDS, Suite, TaskBatch
from metabench.suites.cifarfs import CifarFS
from metabench.suites.miniimagenet import MiniImageNet
from metabench.suites.omniglot import Omniglot
from metabench.suites.omniglot_lake import OmniglotLake, OmniglotLakeRuns
from metabench.suites.sinusoid import Sinusoid
from metabench.suites.mujoco import HalfCheetah
from metabench.suites.rl import Bandit, Navigation2D, RLSuite, TabularMDP

def _check_suite_factory(ref: str, obj: object):
    """A plugin suite: a Suite subclass (or a callable returning a Suite) with a usable id."""
    from metabench.errors import ConfigError

    if not callable(obj):
        raise ConfigError(f"the suite {ref!r} must be a Suite subclass or a function returning one, "
                          f"got {type(obj).__name__}")
    return obj


#: Built-ins, then plugins: ``package.module:Class`` import paths and the entry points of the
#: ``metabench.suites`` group (see metabench.registry and docs/plugins.md).
SUITES: Registry = Registry("suite", "metabench.suites", _check_suite_factory)
for _way, _shot in ((5, 1), (5, 5), (20, 1), (20, 5)):
    SUITES.add(f"omniglot-{_way}w{_shot}s", partial(Omniglot, _way, _shot))
for _way, _shot in ((5, 1), (5, 5), (20, 1), (20, 5)):
    SUITES.add(f"omniglot-lake-{_way}w{_shot}s", partial(OmniglotLake, _way, _shot))
SUITES.add("omniglot-lake-runs", OmniglotLakeRuns)
for _shot in (1, 5):
    SUITES.add(f"miniimagenet-5w{_shot}s", partial(MiniImageNet, 5, _shot))
    SUITES.add(f"cifarfs-5w{_shot}s", partial(CifarFS, 5, _shot))
for _shot in (5, 10):
    SUITES.add(f"sinusoid-{_shot}shot", partial(Sinusoid, _shot))

# Meta-RL (issue 4): RL² bandits and tabular MDPs, MAML's navigation and half-cheetah tasks.
for _k, _n in ((5, 10), (5, 100), (10, 100), (50, 500)):
    SUITES.add(f"bandit-k{_k}-n{_n}", partial(Bandit, _k, _n))
for _n in (10, 25, 50):
    SUITES.add(f"tabular-mdp-n{_n}", partial(TabularMDP, _n))
SUITES.add("navigation2d", Navigation2D)
for _mode in ("vel", "dir"):
    SUITES.add(f"halfcheetah-{_mode}", partial(HalfCheetah, _mode))


def make_suite(suite_id: str) -> Suite:
    """A fresh, unprepared suite object for `suite_id` (ConfigError with a did-you-mean if unknown)."""
    return SUITES.get(suite_id)()


__all__ = ["KINDS", "SUITES", "RLSuite", "Suite", "TaskBatch", "make_suite"]
