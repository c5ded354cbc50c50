"""metabench: which way of learning to learn wins, on which tasks, at what cost."""

__version__ = "0.1.0"

# Gymnasium ids `metabench/Bandit-v0`, `metabench/TabularMDP-v0`, `metabench/Navigation2D-v0`
# (imports gymnasium, about 50 ms, never torch).
from metabench._gym import register_gym_envs as _register_gym_envs  # noqa: E402

_register_gym_envs()
