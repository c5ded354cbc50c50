"""Rolling a policy through a vectorised environment for whole trials.

`run_trials(env, agent, n_trials)` is the loop the classical baselines use and any learner may
reuse: an *agent* has ``begin_trial(env)`` (reset its per-copy memory), ``act(obs, t) ->
action`` and ``observe(action, reward, next_obs, done)`` (next_obs is the true successor:
``info["final_obs"]`` at an episode end). It returns a `Rollout` with
time-major tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

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
