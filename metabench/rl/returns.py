"""Discounted returns and generalised advantage estimation (Schulman et al. 2016), as pure
functions over time-major tensors.

Shapes: ``rewards``, ``dones``, ``values`` are (n_steps, B) with time first; ``dones[t]`` is true
when step t was the last step of an episode (nothing after it is credited to it); ``last_value``
(B,) bootstraps the step after the last one (0 when the rollout ends at an episode boundary).
For RL², whose returns run over the whole trial, pass ``dones`` that are true only at trial ends.
"""
from __future__ import annotations

import torch


def discounted_returns(rewards: torch.Tensor, dones: torch.Tensor, gamma: float,
                       last_value: torch.Tensor | None = None) -> torch.Tensor:
    """G_t = r_t + gamma * (1 - done_t) * G_{t+1}, with G_n = last_value (default 0). (n_steps, B)."""
    not_done = 1.0 - dones.to(rewards.dtype)
    out = torch.empty_like(rewards)
    g = torch.zeros_like(rewards[0]) if last_value is None else last_value.to(rewards.dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        g = rewards[t] + gamma * not_done[t] * g
        out[t] = g
    return out


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, gamma: float, lam: float,
        last_value: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), both (n_steps, B).

    delta_t = r_t + gamma * (1 - done_t) * V_{t+1} - V_t, A_t = delta_t + gamma * lam * (1 - done_t)
    * A_{t+1}, returns = A + V (the value targets). V_n = last_value (default 0).
    """
    not_done = 1.0 - dones.to(rewards.dtype)
    next_v = torch.zeros_like(rewards[0]) if last_value is None else last_value.to(rewards.dtype)
    adv = torch.empty_like(rewards)
    a = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * not_done[t] * next_v - values[t]
        a = delta + gamma * lam * not_done[t] * a
        adv[t] = a
        next_v = values[t]
    return adv, adv + values
