"""Finite-horizon dynamic programming on tabular MDPs, batched over MDPs (pure functions)."""
from __future__ import annotations

import torch


def value_iteration(transitions: torch.Tensor, reward_means: torch.Tensor, horizon: int) -> torch.Tensor:
    """Optimal finite-horizon Q-values, no discount.

    transitions (..., S, A, S), reward_means (..., S, A)  ->  Q (..., horizon, S, A), where
    Q[..., h, s, a] is the best expected return of taking `a` in `s` with `horizon - h` steps
    left (h = 0 is the first step of an episode): Q_h = R + P V_{h+1}, V_h = max_a Q_h, V_H = 0.
    """
    q = []
    v = torch.zeros(reward_means.shape[:-1], dtype=reward_means.dtype, device=reward_means.device)  # (..., S)
    for _ in range(horizon):
        qh = reward_means + torch.einsum("...sap,...p->...sa", transitions, v)
        q.append(qh)
        v = qh.max(-1).values
    return torch.stack(q[::-1], dim=-3)


def policy_value(transitions: torch.Tensor, reward_means: torch.Tensor, policy: torch.Tensor,
                 horizon: int) -> torch.Tensor:
    """Expected return of a stationary stochastic policy (..., S, A) over `horizon` steps, per
    start state: (..., S)."""
    r = (policy * reward_means).sum(-1)                                 # (..., S)
    p = torch.einsum("...sa,...sap->...sp", policy, transitions)        # (..., S, S)
    v = torch.zeros_like(r)
    for _ in range(horizon):
        v = r + torch.einsum("...sp,...p->...s", p, v)
    return v
