"""Rolling a policy through a vectorised environment for whole trials: the one loop.

`run_trials(env, agent, n_trials)` is the loop every learner that plays whole trials uses (the
classical baselines, `rl2`, `mql`): an *agent* has ``begin_trial(env)`` (reset its per-copy
memory), ``act(obs, t) -> action`` (what the environment receives) and ``observe(action,
reward, next_obs, done)`` (next_obs is the true successor: ``info["final_obs"]`` at an episode
end).  It returns a `Rollout` with time-major tensors.  The agent draws its randomness in `act`,
before the environment draws in `step`; learners that share one generator between the two rely
on this order.

`RecurrentAgent` is the agent of the recurrent meta-learners (RL², Duan et al. 2016,
arXiv:1611.02779; the context of MQL, Fakoor et al. 2020, arXiv:1910.00125): at every step the
network reads the observation with the previous action, reward and done flag (zeros, and "no
action", at a trial start) and the fraction of the trial played, and carries its hidden state
across the episodes of the trial.  The learner supplies how to build that input and how to act
from it; the agent keeps the inputs, the actions in the policy's own units and whatever the policy
reports per step (log-probabilities, values) for the learner's update.

`maml-rl` keeps its own loop (`MAMLRL._play`): it plays *segments* of a trial with a different
feed-forward policy per learner and adapts between segments, and during meta-training stops
before the trial ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from metabench.rl.core import VecEnv


@dataclass(frozen=True)
class Rollout:
    """One or more trials: obs (n_steps, B, obs_dim), actions (n_steps, B[, dim]), rewards and
    dones (n_steps, B)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor


def episode_returns(rewards: torch.Tensor, horizon: int) -> torch.Tensor:
    """Undiscounted return of each episode: rewards (n_steps, B) -> (B, n_steps // horizon)."""
    n, b = rewards.shape
    return rewards.reshape(n // horizon, horizon, b).sum(1).T


def per_task(x: torch.Tensor, n_envs_per_task: int) -> torch.Tensor:
    """Average over the copies of each task: (B, ...) -> (T, ...) (task-major layout)."""
    return x.reshape(-1, n_envs_per_task, *x.shape[1:]).mean(1)


@torch.no_grad()
def run_trials(env: VecEnv, agent, n_trials: int = 1, keep_obs: bool = False) -> Rollout:
    """Run `n_trials` whole trials (agent memory is reset at each trial start)."""
    obs_l, act_l, rew_l, done_l = [], [], [], []
    for _ in range(n_trials):
        obs = env.reset()
        agent.begin_trial(env)
        for t in range(env.trial_length):
            action = agent.act(obs, t)
            next_obs, reward, done, info = env.step(action)
            agent.observe(action, reward, info.get("final_obs", next_obs), done)
            if keep_obs:
                obs_l.append(obs)
            act_l.append(action)
            rew_l.append(reward)
            done_l.append(done)
            obs = next_obs
    empty = torch.empty(0, device=env.device)
    return Rollout(torch.stack(obs_l) if keep_obs else empty, torch.stack(act_l), torch.stack(rew_l),
                   torch.stack(done_l))


def one_hot_action(prev_action: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """A `RecurrentAgent`'s previous discrete action (B,) as a one-hot (B, n); -1 (no previous
    action: the trial's first step) gives all zeros."""
    a = F.one_hot(prev_action.clamp_min(0), n).to(dtype)
    return a * (prev_action >= 0).unsqueeze(-1).to(dtype)


@dataclass(frozen=True)
class RecurrentTrial:
    """What a `RecurrentAgent` recorded over one trial: ``inputs`` (n, B, in) (n + 1 with the
    closing input), ``actions`` (n, B[, dim]) in the policy's units, ``extras`` name -> (n, B, ...)."""

    inputs: torch.Tensor
    actions: torch.Tensor
    extras: dict[str, torch.Tensor]


class RecurrentAgent:
    """A recurrent policy as a `run_trials` agent.

    ``inputs(obs, prev_action, prev_reward, prev_done, progress) -> x (B, in)``: the network's
    input at step t; prev_action is the policy's previous action (discrete: int64 indices, -1 at a
    trial start; continuous: (B, dim) in the policy's units, zeros at a trial start), progress
    = t / trial length (a float).  ``policy(x, h) -> (action, env_action, extras, h)``: act from
    the input and the hidden state h (None at a trial start); ``action`` in the policy's units is
    what the next input and the learner see, ``env_action`` what the environment receives,
    ``extras`` a dict of per-step tensors to keep.  With ``closing_input`` the agent also records
    the input after the trial's last step (read from the true last observation, progress 1): the
    state an off-policy learner bootstraps from.  `trial()` returns the last trial's records.
    """

    def __init__(self, inputs: Callable[..., torch.Tensor], policy: Callable, closing_input: bool = False):
        self.inputs, self.policy, self.closing_input = inputs, policy, closing_input

    def begin_trial(self, env: VecEnv) -> None:
        B, device, space = env.n_envs, env.device, env.action_space
        self.trial_length = env.trial_length
        self.prev_action = (torch.full((B,), -1, dtype=torch.long, device=device) if space.discrete
                            else torch.zeros(B, space.dim, device=device))
        self.prev_reward = torch.zeros(B, device=device)
        self.prev_done = torch.zeros(B, dtype=torch.bool, device=device)
        self.h = None
        self._inputs: list[torch.Tensor] = []
        self._actions: list[torch.Tensor] = []
        self._extras: list[dict[str, torch.Tensor]] = []

    def act(self, obs: torch.Tensor, t: int) -> torch.Tensor:
        x = self.inputs(obs, self.prev_action, self.prev_reward, self.prev_done, t / self.trial_length)
        action, env_action, extras, self.h = self.policy(x, self.h)
        self._inputs.append(x)
        self._actions.append(action)
        self._extras.append(extras)
        return env_action

    def observe(self, action, reward: torch.Tensor, next_obs: torch.Tensor, done: torch.Tensor) -> None:
        self.prev_action, self.prev_reward, self.prev_done = self._actions[-1], reward, done
        if self.closing_input and len(self._actions) == self.trial_length:
            self._inputs.append(self.inputs(next_obs, self.prev_action, reward, done, 1.0))

    def trial(self) -> RecurrentTrial:
        extras = {k: torch.stack([e[k] for e in self._extras]) for k in (self._extras[0] if self._extras else {})}
        return RecurrentTrial(torch.stack(self._inputs), torch.stack(self._actions), extras)
