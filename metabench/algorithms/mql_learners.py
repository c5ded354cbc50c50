"""The two learners of `metabench.algorithms.mql`: double DQN (discrete actions) and TD3
(continuous actions), each with its networks.

They subclass `MQL`, which holds what both share (the replay buffer of whole trials, the
recurrent rollout, the meta-step, evaluation) and picks one of them when constructed; the
method, its citations and its differences from the papers are in mql.py's docstring.  Each
learner here holds only its networks, its exploration, its update and its metrics.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from metabench.algorithms.base import seeded_init
from metabench.algorithms.mql import MQL, Config
from metabench.errors import ConfigError
from metabench.rl.q_targets import double_dqn_target, polyak_update, td3_target
from metabench.rl.rollout import one_hot_action


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


class ContextCritic(nn.Module):
    """Continuous actions: GRU context over (obs, prev action / bound, prev reward, prev done,
    progress) -> z_t; features f_t = (z_t, s_t, progress); twin critics Q_1, Q_2(f_t, a)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.gru = nn.GRU(obs_dim + act_dim + 3, hidden)
        self.q1 = _mlp(hidden + obs_dim + 1 + act_dim, hidden, 1)
        self.q2 = _mlp(hidden + obs_dim + 1 + act_dim, hidden, 1)

    @staticmethod
    def inputs(obs, prev_action, prev_reward, prev_done, progress: float) -> torch.Tensor:
        """prev_action in units of the action bound (zeros at a trial start); progress = t / trial length."""
        return torch.cat([obs, prev_action, prev_reward.unsqueeze(-1), prev_done.to(obs.dtype).unsqueeze(-1),
                          torch.full_like(prev_reward, progress).unsqueeze(-1)], -1)

    def features(self, x: torch.Tensor, h=None):
        """x (n, B, in) -> f (n, B, hidden + obs_dim + 1), h."""
        z, h = self.gru(x, h)
        return torch.cat([z, x[..., :self.obs_dim], x[..., -1:]], -1), h

    def q(self, f: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fa = torch.cat([f, a], -1)
        return self.q1(fa).squeeze(-1), self.q2(fa).squeeze(-1)


class Actor(nn.Module):
    """Deterministic policy mu(f_t) in [-1, 1]^dim (units of the action bound)."""

    def __init__(self, feat_dim: int, act_dim: int, hidden: int):
        super().__init__()
        self.net = _mlp(feat_dim, hidden, act_dim)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(f))


class ContextQNet(nn.Module):
    """GRU context over (obs, prev action, prev reward, prev done, progress) -> z_t; Q(s_t, z_t, .)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, dueling: bool = False):
        super().__init__()
        self.n_actions, self.dueling = n_actions, dueling
        self.gru = nn.GRU(obs_dim + n_actions + 3, hidden)
        # dueling: one extra output, the state value V; the other n_actions are advantages
        self.q = nn.Sequential(nn.Linear(hidden + obs_dim + 1, hidden), nn.ReLU(),
                               nn.Linear(hidden, n_actions + int(dueling)))

    def inputs(self, obs, prev_action, prev_reward, prev_done, progress: float) -> torch.Tensor:
        a = one_hot_action(prev_action, self.n_actions, obs.dtype)   # -1 (no previous action): zeros
        return torch.cat([obs, a, prev_reward.unsqueeze(-1), prev_done.to(obs.dtype).unsqueeze(-1),
                          torch.full_like(prev_reward, progress).unsqueeze(-1)], -1)

    def forward(self, x: torch.Tensor, h=None):
        """x (n, B, in) -> Q (n, B, n_actions), h. The observation and progress are the first
        obs_dim and the last input columns."""
        z, h = self.gru(x, h)
        obs_dim = x.shape[-1] - self.n_actions - 3
        out = self.q(torch.cat([z, x[..., :obs_dim], x[..., -1:]], -1))
        if self.dueling:
            adv, value = out[..., :-1], out[..., -1:]
            out = value + adv - adv.mean(-1, keepdim=True)
        return out, h


class DoubleDQN(MQL):
    """Discrete actions: Q(s_t, z_t, .) from `ContextQNet`, epsilon-greedy exploration, double-DQN
    targets from a Polyak-averaged target network, Huber loss."""

    _DISCRETE = True
    _PARAMETERS = {"": "net"}
    _STATE = ("net", "target", "opt")

    def _build(self, config: Config, seed: int) -> None:
        self.n_actions = self.space.n
        build = lambda: ContextQNet(self.obs_dim, self.n_actions, config.hidden, config.dueling)   # noqa: E731
        self.net = seeded_init(seed, build).to(self.device)
        self.target = seeded_init(seed, build).to(self.device)
        self.target.load_state_dict(self.net.state_dict())
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.context = self.net

    def _epsilon(self) -> float:
        c = self.config
        return c.eps_start + min(self.steps / c.eps_steps, 1.0) * (c.eps_end - c.eps_start)

    def _policy(self, training: bool, n_envs: int, g: torch.Generator):
        eps = self._epsilon() if training else self.config.eval_eps

        def act(x, h):
            q, h = self.net(x[None], h)
            greedy = q[0].argmax(-1)
            rand = torch.randint(0, self.n_actions, (n_envs,), generator=g, device=self.device)
            explore = torch.rand(n_envs, generator=g, device=self.device) < eps
            a = torch.where(explore, rand, greedy)
            return a, a, {}, h
        return act

    def _update(self, idx: torch.Tensor) -> float:
        c = self.config
        x, a, r, terminal = self._batch(idx)
        q_all, _ = self.net(x)                                    # (n + 1, b, A)
        with torch.no_grad():
            q_tgt, _ = self.target(x)
            y = double_dqn_target(r, terminal, q_all[1:].detach(), q_tgt[1:], c.gamma)
        q = q_all[:-1].gather(-1, a.unsqueeze(-1)).squeeze(-1)
        loss = F.smooth_l1_loss(q, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), c.max_grad_norm)
        self.opt.step()
        polyak_update(self.net, self.target, c.tau)
        return float(loss.detach())

    def _summary(self, updates: list[float], trial_return: float) -> dict[str, float]:
        return {"loss": sum(updates) / len(updates), "epsilon": self._epsilon(), "trial_return": trial_return}


class TD3(MQL):
    """Continuous actions: twin critics on the context (`ContextCritic`) and a deterministic actor
    in units of the action bound, TD3 targets (clipped double-Q, target policy smoothing), the
    actor and both targets updated every `policy_delay` critic updates; Gaussian exploration
    noise after `random_steps` meta-steps of uniform random actions."""

    _DISCRETE = False
    _PARAMETERS = {"critic.": "critic", "actor.": "actor"}
    _STATE = ("critic", "critic_target", "actor", "actor_target", "critic_opt", "actor_opt", "updates",
              "actor_updates")

    def _build(self, config: Config, seed: int) -> None:
        sp = self.space
        if sp.low != -sp.high:
            raise ConfigError(f"mql (TD3) expects a symmetric action box [-b, b], got [{sp.low}, {sp.high}]")
        self.act_dim, h = sp.dim, config.hidden
        build_critic = lambda: ContextCritic(self.obs_dim, self.act_dim, h)             # noqa: E731
        build_actor = lambda: Actor(h + self.obs_dim + 1, self.act_dim, h)               # noqa: E731
        self.critic = seeded_init(seed, build_critic).to(self.device)
        self.critic_target = seeded_init(seed, build_critic).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor = seeded_init(seed + 1, build_actor).to(self.device)
        self.actor_target = seeded_init(seed + 1, build_actor).to(self.device)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.lr)
        self.context = self.critic
        #: critic updates so far (the actor and the targets move when it is a multiple of policy_delay)
        self.updates, self.actor_updates = 0, 0

    def _policy(self, training: bool, n_envs: int, g: torch.Generator):
        c, bound = self.config, self.space.high
        uniform = training and self.steps < c.random_steps
        noise = c.expl_noise if training else c.eval_noise

        def act(x, h):
            f, h = self.critic.features(x[None], h)
            if uniform:
                a = torch.rand(n_envs, self.act_dim, generator=g, device=self.device) * 2 - 1
            else:
                a = self.actor(f[0])
                if noise > 0:
                    a = (a + noise * torch.randn(a.shape, generator=g, device=self.device)).clamp(-1, 1)
            return a, a * bound, {}, h
        return act

    def _update(self, idx: torch.Tensor) -> tuple[float, float | None]:
        """One critic update on the trials `idx`; every `policy_delay`-th, also the actor and the
        Polyak averages of both targets.  Returns (critic loss, actor loss or None)."""
        c = self.config
        x, a, r, terminal = self._batch(idx)                       # a: (n, b, dim)
        f, _ = self.critic.features(x)                            # (n + 1, b, feat)
        with torch.no_grad():
            f_tgt, _ = self.critic_target.features(x)
            mu_next = self.actor_target(f_tgt[1:])
            noise = c.policy_noise * torch.randn(mu_next.shape, generator=self.gen, device=self.device)
            y = td3_target(r, terminal, mu_next, noise, lambda a_next: self.critic_target.q(f_tgt[1:], a_next),
                           c.gamma, c.noise_clip)
        q1, q2 = self.critic.q(f[:-1], a)
        critic_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), c.max_grad_norm)
        self.critic_opt.step()
        self.updates += 1
        if self.updates % c.policy_delay:
            return float(critic_loss.detach()), None
        with torch.no_grad():
            f, _ = self.critic.features(x)                         # the context with the updated critic
        q1_pi, _ = self.critic.q(f[:-1], self.actor(f[:-1]))
        actor_loss = -q1_pi.mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), c.max_grad_norm)
        self.actor_opt.step()
        self.actor_updates += 1
        polyak_update(self.critic, self.critic_target, c.tau)
        polyak_update(self.actor, self.actor_target, c.tau)
        return float(critic_loss.detach()), float(actor_loss.detach())

    def _summary(self, updates: list[tuple[float, float | None]], trial_return: float) -> dict[str, float]:
        critic_losses = [lc for lc, _ in updates]
        actor_losses = [la for _, la in updates if la is not None]
        out = {"critic_loss": sum(critic_losses) / len(critic_losses), "trial_return": trial_return,
               "actor_updates": float(self.actor_updates)}
        if actor_losses:
            out["actor_loss"] = sum(actor_losses) / len(actor_losses)
        return out
