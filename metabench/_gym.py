"""Registers the vectorised meta-RL environments with Gymnasium under the ``metabench/``
namespace. Imports gymnasium only (never torch): the environment classes load when
`gymnasium.make` is first called. Called from `metabench/__init__.py`; a missing gymnasium
(an unusual install: it is a dependency) just leaves the ids unregistered.
"""
from __future__ import annotations

GYM_IDS = {
    "metabench/Bandit-v0": "metabench.suites.gym_envs:BanditGymEnv",
    "metabench/TabularMDP-v0": "metabench.suites.gym_envs:TabularMDPGymEnv",
    "metabench/Navigation2D-v0": "metabench.suites.gym_envs:Navigation2DGymEnv",
}


def register_gym_envs() -> bool:
    """Register every id once; False if gymnasium is not installed."""
    try:
        import gymnasium
    except ImportError:
        return False
    for env_id, entry_point in GYM_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)
    return True
