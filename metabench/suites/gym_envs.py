"""Single-environment Gymnasium adapters over the meta-RL suites' vectorised torch environments.

They live with the suites (not in `metabench.rl`) because each one draws its tasks from a suite:
`metabench.rl` holds the environments and the learners' machinery and imports nothing above it.

Registered as ``metabench/Bandit-v0``, ``metabench/TabularMDP-v0`` and
``metabench/Navigation2D-v0`` when `metabench` is imported (`metabench._gym`), e.g.::

    import gymnasium, metabench
    env = gymnasium.make("metabench/Bandit-v0", k=5, n=100)

One Gymnasium episode is one meta-RL *trial*: `reset` draws a new task from the suite's task
distribution (seeded through Gymnasium's ``np_random``; pass ``options={"task": batch}`` with a
one-task `RLTaskBatch` to fix it) and `step` runs the trial's episodes back to back;
``terminated`` is true at the end of the trial and ``info["episode_done"]`` marks the end of each
inner episode (tabular MDPs: every 10 steps; navigation with ``episodes_per_trial`` > 1).
Observations: bandit ``Discrete(1)`` (always 0), tabular MDP ``Discrete(n_states)`` (the state),
navigation ``Box`` (the position, float32). Actions: ``Discrete(k)`` / ``Discrete(5)`` /
``Box(-0.1, 0.1, (2,))``. These step one environment through torch, so they are for
compatibility, not speed (``benchmarks/bench_rl_envs.py`` measures the difference).
"""
from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from metabench.rl.core import RLTaskBatch
from metabench.suites.rl import Bandit, Navigation2D, RLSuite, TabularMDP


class _TorchTrialEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, suite: RLSuite, episodes_per_trial: int | None = None):
        self.suite = suite.prepare(None, "cpu")
        self.episodes_per_trial = episodes_per_trial or suite.episodes_per_trial
        self._env = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task")
        if task is None:
            g = torch.Generator().manual_seed(int(self.np_random.integers(2**62)))
            task = self.suite.sample("train", 1, g)
        elif not isinstance(task, RLTaskBatch) or task.n_tasks != 1:
            raise ValueError("options['task'] must be an RLTaskBatch holding exactly one task")
        self.task = task
        env_g = torch.Generator().manual_seed(int(self.np_random.integers(2**62)))
        self._env = self.suite.make_env(task, 1, episodes_per_trial=self.episodes_per_trial, generator=env_g)
        obs = self._env.reset()
        return self._convert(obs[0]), {"task": task.descriptors[0]}

    def step(self, action):
        if self._env is None:
            raise RuntimeError("call reset() before step()")
        if self._env.action_space.discrete:
            a = torch.tensor([int(action)], dtype=torch.int64)
        else:
            a = torch.as_tensor(np.asarray(action, dtype=np.float32)).reshape(1, -1)
        obs, reward, done, info = self._env.step(a)
        terminated = bool(info["trial_done"])
        return self._convert(obs[0]), float(reward[0]), terminated, False, {"episode_done": bool(done[0])}

    def _convert(self, obs: torch.Tensor):
        raise NotImplementedError


class BanditGymEnv(_TorchTrialEnv):
    """k-armed Bernoulli bandit, a trial (episode) of n pulls; p ~ U[0, 1]^k drawn at reset."""

    def __init__(self, k: int = 5, n: int = 100):
        super().__init__(Bandit(k, n))
        self.observation_space = spaces.Discrete(1)
        self.action_space = spaces.Discrete(k)

    def _convert(self, obs):
        return 0


class TabularMDPGymEnv(_TorchTrialEnv):
    """Random tabular MDP (RL²): 10 states, 5 actions, n_episodes episodes of 10 steps per trial."""

    def __init__(self, n_episodes: int = 10):
        super().__init__(TabularMDP(n_episodes))
        self.observation_space = spaces.Discrete(self.suite.n_states)
        self.action_space = spaces.Discrete(self.suite.n_actions)

    def _convert(self, obs):
        return int(obs.argmax())


class Navigation2DGymEnv(_TorchTrialEnv):
    """2-D point navigation to a goal ~ U[-0.5, 0.5]^2, horizon 100 (one episode per trial by default)."""

    def __init__(self, episodes_per_trial: int = 1):
        super().__init__(Navigation2D(), episodes_per_trial)
        bound = 0.1 * self.suite.horizon + 1e-3   # the farthest a point can get in one episode (+ float32 slack)
        self.observation_space = spaces.Box(-bound, bound, (2,), np.float32)
        self.action_space = spaces.Box(-0.1, 0.1, (2,), np.float32)

    def _convert(self, obs):
        return obs.numpy().astype(np.float32)
