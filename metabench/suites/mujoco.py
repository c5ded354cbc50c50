"""Half-cheetah velocity and direction tasks (Finn et al. 2017, section 5.3) on Gymnasium's
MuJoCo `HalfCheetah-v5`. Needs the optional extra: ``pip install 'metabench[rl]'``
(= ``gymnasium[mujoco]``).

Tasks: ``halfcheetah-vel`` draws a target velocity ~ U[0, 2]; ``halfcheetah-dir`` a direction,
forward (+1) or backward (-1) with probability 1/2. Reward per step, as in the MAML code (rllab
`half_cheetah_env_rand*.py`): vel: -|v_x - target| - 0.05 |a|^2; dir: direction * v_x - 0.05 |a|^2
(control cost 0.5 * 0.1 |a|^2), horizon 200 (the paper's H). Gymnasium's own reward, healthy
terms and 1000-step limit are ignored. Metrics: ``return@k`` as for navigation (k = 0, 1: the
episode after k adaptation steps / k earlier episodes), primary ``return@1``; no
``normalized_score`` (there is no cheap oracle). 40 fixed test tasks each (PEARL evaluates
cheetah-vel on 30; a MuJoCo rollout costs about 1000x a vectorised one).

These environments are *not* torch-vectorised: `GymLoopVecEnv` steps a list of Gymnasium
environments in a Python loop behind the same `VecEnv` API, so every algorithm runs unchanged.
Differences from the paper: MuJoCo 3 / HalfCheetah-v5 instead of rllab's MuJoCo 1.31 model.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import torch

from metabench.rl.core import ActionSpace, RLTaskBatch, VecEnv
from metabench.suites.rl import RLSuite
from metabench.errors import ConfigError

EXTRA_HINT = "pip install 'metabench[rl]'  (= gymnasium[mujoco])"
CTRL_COST = 0.05


def mujoco_missing() -> str | None:
    """None if Gymnasium's MuJoCo environments can be built, else a sentence saying how to get them."""
    for mod in ("gymnasium", "mujoco"):
        if importlib.util.find_spec(mod) is None:
            return f"the MuJoCo suites need the `{mod}` package: {EXTRA_HINT}"
    return None


class GymLoopVecEnv(VecEnv):
    """B Gymnasium half-cheetahs stepped one after the other, behind the `VecEnv` API."""

    action_space = ActionSpace(discrete=False, dim=6, low=-1.0, high=1.0)
    obs_dim = 17

    def __init__(self, tasks: RLTaskBatch, n_envs_per_task, horizon, episodes_per_trial, generator=None,
                 device=None, mode: str = "vel"):
        import gymnasium

        super().__init__(tasks, n_envs_per_task, horizon, episodes_per_trial, generator, device)
        self.mode = mode
        self.target = self.per_env(self.tasks.params["target"].double()).cpu().numpy()   # (B,)
        self.envs = [gymnasium.make("HalfCheetah-v5") for _ in range(self.n_envs)]
        self._obs = np.zeros((self.n_envs, self.obs_dim), dtype=np.float32)

    def _start_episode(self) -> None:
        seeds = torch.randint(0, 2**31 - 1, (self.n_envs,), generator=self.generator, device=self.device).tolist()
        for i, (env, seed) in enumerate(zip(self.envs, seeds)):
            self._obs[i] = env.reset(seed=int(seed))[0]

    def _observe(self) -> torch.Tensor:
        return torch.as_tensor(self._obs.copy(), device=self.device)

    def _transition(self, action: torch.Tensor) -> torch.Tensor:
        a = action.detach().cpu().numpy().astype(np.float64)
        rewards = np.zeros(self.n_envs)
        for i, env in enumerate(self.envs):
            obs, _, _, _, info = env.step(a[i])
            self._obs[i] = obs
            v = info["x_velocity"]
            forward = -abs(v - self.target[i]) if self.mode == "vel" else self.target[i] * v
            rewards[i] = forward - CTRL_COST * float(np.square(a[i]).sum())
        return torch.as_tensor(rewards, dtype=torch.float32, device=self.device)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class HalfCheetah(RLSuite):
    version = 1
    kind = "rl-continuous"
    primary_metric = "return@1"
    env_family = "mujoco"
    n_test_tasks = 40
    n_val_tasks = 40
    eval_trials = 2
    eval_batch_size = 40

    def __init__(self, mode: str):
        super().__init__()
        if mode not in ("vel", "dir"):
            raise ConfigError(f"half-cheetah mode must be 'vel' or 'dir', got {mode!r}")
        self.mode = mode
        self.horizon, self.episodes_per_trial = 200, 2
        self.id = f"halfcheetah-{mode}"

    def unavailable(self) -> str | None:
        return mujoco_missing()

    def _draw(self, n, g):
        if self.mode == "vel":
            return {"target": 2.0 * torch.rand(n, generator=g, dtype=torch.float64)}
        return {"target": torch.randint(0, 2, (n,), generator=g).double() * 2 - 1}

    def _reference(self, params):
        return {}

    def _describe(self, params, ref):
        key = "target_velocity" if self.mode == "vel" else "direction"
        return [{key: round(float(t), 4)} for t in params["target"].cpu()]

    def make_env(self, tasks, n_envs_per_task=1, *, episodes_per_trial=None, generator=None, device=None):
        why = mujoco_missing()
        if why:
            raise ConfigError(why)
        return GymLoopVecEnv(tasks, n_envs_per_task, self.horizon, episodes_per_trial or self.episodes_per_trial,
                             generator=generator, device=device or self.device, mode=self.mode)

    def score(self, tasks, returns):
        if returns.dim() != 2 or returns.shape[0] != tasks.n_tasks:
            raise ConfigError(f"{self.id}: score() expects returns of shape (n_tasks={tasks.n_tasks}, n_episodes), "
                              f"got {tuple(returns.shape)}")
        returns = returns.detach().double().cpu()
        return {f"return@{k}": returns[:, k] for k in range(returns.shape[1])}
