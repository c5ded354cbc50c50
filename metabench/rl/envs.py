"""The vectorised torch environments: Bernoulli bandits, tabular MDPs, 2-D navigation.

Every class follows `metabench.rl.core.VecEnv`: B = T * n_envs_per_task copies stepped by one
batch of tensor ops. Task parameters come from an `RLTaskBatch` (see the suites in
`metabench.suites.rl` for how they are drawn).
"""
from __future__ import annotations

import torch

from metabench.rl.core import ActionSpace, RLTaskBatch, VecEnv


class BanditEnv(VecEnv):
    """k-armed Bernoulli bandit (Duan et al. 2016): arm a pays 1 with probability probs[a], else 0.

    A trial is one episode of n pulls (``horizon`` = n, ``episodes_per_trial`` = 1). The bandit
    has no state: the observation is a constant 0 (obs_dim 1), as in RL² where the policy sees
    only its previous action and reward.
    """

    obs_dim = 1

    def __init__(self, tasks: RLTaskBatch, n_envs_per_task: int, horizon: int, episodes_per_trial: int = 1,
                 generator=None, device=None):
        super().__init__(tasks, n_envs_per_task, horizon, episodes_per_trial, generator, device)
        self.probs = self.per_env(self.tasks.params["probs"].float())       # (B, k)
        self.action_space = ActionSpace(discrete=True, n=self.probs.shape[1])
        self._obs = torch.zeros(self.n_envs, 1, device=self.device)

    def _start_episode(self) -> None:
        pass

    def _observe(self) -> torch.Tensor:
        return self._obs

    def _transition(self, action: torch.Tensor) -> torch.Tensor:
        p = self.probs.gather(1, action[:, None]).squeeze(1)                # (B,)
        u = torch.rand(self.n_envs, generator=self.generator, device=self.device)
        return (u < p).float()


class TabularMDPEnv(VecEnv):
    """Random tabular MDP (Duan et al. 2016, section 4.2): S states, A actions.

    Taking action a in state s gives a reward ~ N(reward_means[s, a], 1) and moves to s' ~
    transitions[s, a]. Every episode starts in state 0 (as in the RL² code's
    `VecRandomTabularMDPEnv.reset`). Observations are one-hot states (obs_dim = n_states = S).
    """

    def __init__(self, tasks: RLTaskBatch, n_envs_per_task: int, horizon: int, episodes_per_trial: int,
                 generator=None, device=None):
        super().__init__(tasks, n_envs_per_task, horizon, episodes_per_trial, generator, device)
        P = self.tasks.params["transitions"].float()                          # (T, S, A, S)
        self.n_states, n_actions = P.shape[1], P.shape[2]
        self.obs_dim = self.n_states
        self.action_space = ActionSpace(discrete=True, n=n_actions)
        self.cdf = P.cumsum(-1)                                               # (T, S, A, S)
        self.reward_means = self.tasks.params["reward_means"].float()         # (T, S, A)
        self.state = torch.zeros(self.n_envs, dtype=torch.long, device=self.device)
        self._eye = torch.eye(self.n_states, device=self.device)

    def _start_episode(self) -> None:
        self.state = torch.zeros_like(self.state)

    def _observe(self) -> torch.Tensor:
        return self._eye[self.state]

    def _transition(self, action: torch.Tensor) -> torch.Tensor:
        ti, s = self.task_index, self.state
        mean = self.reward_means[ti, s, action]                               # (B,)
        noise = torch.randn(self.n_envs, generator=self.generator, device=self.device)
        cdf = self.cdf[ti, s, action]                                         # (B, S)
        u = torch.rand(self.n_envs, 1, generator=self.generator, device=self.device)
        self.state = (cdf < u).sum(-1).clamp_(max=self.n_states - 1)          # inverse-CDF sampling
        return mean + noise


class Navigation2DEnv(VecEnv):
    """2-D point navigation (Finn et al. 2017, section 5.3; rllab's `PointEnvRandGoal`).

    The agent starts at the origin, its action (dx, dy) is clipped to [-0.1, 0.1]^2 and added to
    its position, and the reward is minus the Euclidean distance to the goal after the move.
    Observation: the position (obs_dim 2). No early termination at the goal (the original ends an
    episode within 0.01 of the goal; staying there earns about 0 per step, so returns barely
    differ, and a fixed horizon keeps every copy in lockstep).
    """

    obs_dim = 2
    action_space = ActionSpace(discrete=False, dim=2, low=-0.1, high=0.1)

    def __init__(self, tasks: RLTaskBatch, n_envs_per_task: int, horizon: int, episodes_per_trial: int,
                 generator=None, device=None):
        super().__init__(tasks, n_envs_per_task, horizon, episodes_per_trial, generator, device)
        self.goal = self.per_env(self.tasks.params["goal"].float())         # (B, 2)
        self.pos = torch.zeros(self.n_envs, 2, device=self.device)

    def _start_episode(self) -> None:
        self.pos = torch.zeros_like(self.pos)

    def _observe(self) -> torch.Tensor:
        return self.pos

    def _transition(self, action: torch.Tensor) -> torch.Tensor:
        self.pos = self.pos + action
        return -(self.pos - self.goal).norm(dim=-1)
