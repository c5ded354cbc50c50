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


class _SuiteRegistry(Registry):
    def unknown_message(self, name: str) -> str:
        # A suite folder whose declaration was refused: say why, not only "unknown".
        bad = [p for p in FOLDER_SUITE_PROBLEMS if repr(str(name)) in p] or FOLDER_SUITE_PROBLEMS[:1]
        extra = f" (Also: {bad[0]})" if bad else ""
        return super().unknown_message(name) + extra


#: Built-ins, then plugins: ``package.module:Class`` import paths, the entry points of the
#: ``metabench.suites`` group (see metabench.registry and docs/plugins.md) and image-folder suites.
SUITES: Registry = _SuiteRegistry("suite", "metabench.suites", _check_suite_factory)
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


# Image-folder suites (metabench.suites.image_folder): every DATA/*/metabench-suite.toml under the
# data root (METABENCH_DATA, else the per-user data folder), registered under its declared id with
# origin `folder PATH`; ids already taken are refused. Worker processes import this module afresh
# with the same environment, so they find the same suites. `add_data_root` adds another root.
FOLDER_SUITE_PROBLEMS: list[str] = []
_FOLDER_ROOTS: set[str] = set()


def add_data_root(data_root=None) -> list[str]:
    """Register the image-folder suites declared under ``data_root`` (default: METABENCH_DATA or
    the per-user data folder), once per folder; returns the problems met (one sentence each)."""
    from metabench.datafiles import resolve_data_root
    from metabench.suites.image_folder import register_folder_suites

    problems = register_folder_suites(SUITES, resolve_data_root(data_root), _FOLDER_ROOTS)
    FOLDER_SUITE_PROBLEMS.extend(p for p in problems if p not in FOLDER_SUITE_PROBLEMS)
    return problems


try:
    add_data_root()
except Exception as _exc:  # noqa: BLE001 - an unreadable data root never hides the built-ins
    FOLDER_SUITE_PROBLEMS.append(f"suite folders under the data root were not searched ({_exc})")


def make_suite(suite_id: str) -> Suite:
    """A fresh, unprepared suite object for `suite_id` (ConfigError with a did-you-mean if unknown)."""
    return SUITES.get(suite_id)()


__all__ = ["KINDS", "SUITES", "RLSuite", "Suite", "TaskBatch", "add_data_root", "make_suite"]
