"""Bootstrapped Q-learning targets and the Polyak-averaged target network, as pure functions.

* Double DQN: van Hasselt, Guez & Silver (2016). "Deep Reinforcement Learning with Double
  Q-learning." AAAI. arXiv:1509.06461, eq. 4: the online network chooses the next action, the
  target network values it, y = r + gamma Q_target(s', argmax_a Q_online(s', a)), which removes
  most of Q-learning's overestimation (max over noisy estimates).
* TD3: Fujimoto, van Hoof & Meger (2018). "Addressing Function Approximation Error in Actor-Critic
  Methods." ICML. arXiv:1802.09477, eq. 14-15: target policy smoothing (clipped Gaussian noise on
  the target actor's action) and clipped double-Q (the smaller of two target critics),
  y = r + gamma min_i Q'_i(s', clip(mu'(s') + clip(eps, -c, c), low, high)).
* `polyak_update`: target <- (1 - tau) target + tau online, per parameter (DDPG's soft update,
  Lillicrap et al. 2016, arXiv:1509.02971).

Both targets take ``terminal`` (1 where nothing is bootstrapped after the transition); `mql`
uses them with the trial end as the only terminal step.  The networks, the losses on these
targets and when the target networks move stay in the learner.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


def double_dqn_target(reward: torch.Tensor, terminal: torch.Tensor, q_next_online: torch.Tensor,
                      q_next_target: torch.Tensor, gamma: float) -> torch.Tensor:
    """r + gamma (1 - terminal) Q_target(s', argmax_a Q_online(s', a)): reward, terminal (...),
    Q values (..., n_actions) -> (...)."""
    a_star = q_next_online.argmax(-1, keepdim=True)
    return reward + gamma * (1.0 - terminal.to(reward.dtype)) * q_next_target.gather(-1, a_star).squeeze(-1)


def td3_target(reward: torch.Tensor, terminal: torch.Tensor, mu_next: torch.Tensor, noise: torch.Tensor,
               q_next: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], gamma: float,
               noise_clip: float, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """TD3's target (Fujimoto et al. 2018, eq. 14-15):
    r + gamma (1 - terminal) min(Q'_1, Q'_2)(s', clip(mu'(s') + clip(noise, -c, c), low, high)).

    reward, terminal (...); mu_next, the target actor's action in s', and noise (already scaled
    by the smoothing std) (..., dim); `q_next(a)` -> the two target critics' values (...) in s'."""
    a_next = (mu_next + noise.clamp(-noise_clip, noise_clip)).clamp(low, high)
    q1, q2 = q_next(a_next)
    return reward + gamma * (1.0 - terminal.to(reward.dtype)) * torch.min(q1, q2)


@torch.no_grad()
def polyak_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    """target <- target + tau (net - target), parameter by parameter (buffers untouched)."""
    for p, pt in zip(net.parameters(), target.parameters()):
        pt.lerp_(p, tau)
