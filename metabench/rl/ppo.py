"""PPO's clipped surrogate objective, a pure function.

Schulman, Wolski, Dhariwal, Radford & Klimov (2017). "Proximal Policy Optimization Algorithms."
arXiv:1707.06347, eq. 7.

With the probability ratio r = pi(a|s) / pi_old(a|s) = exp(logp - old_logp) and advantages A,
PPO maximises mean(min(r A, clip(r, 1 - eps, 1 + eps) A)): the clip removes the incentive to move
the ratio outside [1 - eps, 1 + eps], so several gradient steps on one batch stay close to the
policy that collected it.  `ppo_clip_loss` returns the negative (a loss to minimise).

Used by `rl2` (the outer optimiser of the recurrent policy, several epochs of minibatches) and by
`maml-rl` with ``outer="ppo"`` (the adapted policy's surrogate, differentiated through the inner
step).  What each learner adds around it (value loss, entropy bonus, gradient clipping) stays in
the learner.
"""
from __future__ import annotations

import torch


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's clipped surrogate (to minimise): -mean(min(r A, clip(r, 1-eps, 1+eps) A)), r = exp(logp - old).

    logp, old_logp, adv: the same shape (any); clip: eps.  Returns a scalar."""
    ratio = torch.exp(logp - old_logp)
    return -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
