"""Q-learning based meta-RL with a recurrent task context, in the spirit of Meta-Q-Learning.

Fakoor, Chaudhari, Soatto & Smola (2020). "Meta-Q-Learning." ICLR. arXiv:1910.00125.

Summary
    MQL's observation is that plain off-policy Q-learning over *all* training tasks, with the
    value function conditioned on a context that a GRU computes from the task's recent
    transitions, is already a strong meta-RL learner; adaptation to a new task is just
    collecting context.  Here: one replay buffer holds whole trials from every training task;
    Q(s_t, z_t, a), where z_t is the GRU's summary of the trial's transitions before step t
    (previous action, reward, done flag, observation) and the fraction of the trial played; the
    targets are double-DQN (van Hasselt et al. 2016): a* = argmax_a Q(s_{t+1}, z_{t+1}, a) with
    the online network, evaluated by a Polyak-averaged target network.  At test time the greedy
    policy plays the trial while z_t accumulates the context.

Implementation details
    * Vectorised collection: each meta-step plays one trial on `n_envs_per_task` copies of each
      of `meta_batch_size` train tasks at once, epsilon-greedy (epsilon annealed linearly from
      `eps_start` to `eps_end` over `eps_steps` meta-steps), and appends the trials to a ring
      buffer of `buffer_trials` trials (tensors on the device); then `updates_per_step` Adam
      steps on minibatches of `batch_trials` whole trials (the GRU re-reads each trial, so the
      context is always recomputed with the current weights, no stale hidden states).
    * Transitions are credited over the whole trial (the trial is the unit of return, as for
      RL²): the target bootstraps across episode boundaries and stops at the trial end.
    * Huber loss, gradient-norm clip, target network tau = `tau` per update.

Differences from the paper
    * Discrete actions with double-DQN only; MQL's continuous-control learner is TD3, which is
      not implemented: `fits` says so for rl-continuous suites.
    * MQL's test-time adaptation also re-uses the training buffer with propensity-score
      weighting (a logistic classifier between the new task's context and the buffer) for
      extra off-policy updates; this is not implemented: adaptation is context only (the
      paper's ablation "MQL without adaptation" already rivals PEARL on most tasks).
    * The context covers the trial so far (MQL: a window of the most recent transitions).
    * The paper evaluates on MuJoCo locomotion; here it runs on the RL² bandits and MDPs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from metabench.algorithms.base import Algorithm, TrainRequest, seeded_init
from metabench.errors import ConfigError
from metabench.rl.core import RLTaskBatch, eval_generator
from metabench.rl.rollout import episode_returns, per_task


@dataclass(frozen=True)
class Config:
    hidden: int = 64
    """Units of the context GRU and of the Q-network's hidden layer."""
    meta_batch_size: int = 32
    """Train tasks whose trials are collected per meta-step."""
    n_envs_per_task: int = 2
    """Trials collected per train task per meta-step."""
    buffer_trials: int = 4096
    """Replay buffer capacity, in whole trials."""
    batch_trials: int = 64
    """Trials per gradient step."""
    updates_per_step: int = 4
    """Gradient steps per meta-step."""
    lr: float = 1e-3
    """Adam step size."""
    gamma: float = 0.99
    """Discount over the trial."""
    tau: float = 0.01
    """Polyak factor of the target network per gradient step."""
    eps_start: float = 1.0
    """Exploration epsilon at meta-step 0."""
    eps_end: float = 0.02
    """Exploration epsilon after `eps_steps` meta-steps."""
    eps_steps: int = 500
    """Meta-steps over which epsilon anneals."""
    eval_eps: float = 0.0
    """Epsilon of the evaluation policy (0 = greedy)."""
    max_grad_norm: float = 10.0
    """Gradient norm clip."""

    def validate(self) -> None:
        for name in ("hidden", "meta_batch_size", "n_envs_per_task", "buffer_trials", "batch_trials",
                     "updates_per_step", "eps_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"mql: {name} must be at least 1, got {getattr(self, name)}")
        for name in ("gamma", "tau", "eps_start", "eps_end", "eval_eps"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"mql: {name} must lie in [0, 1], got {getattr(self, name)}")


def double_dqn_target(reward: torch.Tensor, terminal: torch.Tensor, q_next_online: torch.Tensor,
                      q_next_target: torch.Tensor, gamma: float) -> torch.Tensor:
    """r + gamma (1 - terminal) Q_target(s', argmax_a Q_online(s', a)): reward, terminal (...),
    Q values (..., n_actions) -> (...)."""
    a_star = q_next_online.argmax(-1, keepdim=True)
    return reward + gamma * (1.0 - terminal.to(reward.dtype)) * q_next_target.gather(-1, a_star).squeeze(-1)


class ContextQNet(nn.Module):
    """GRU context over (obs, prev action, prev reward, prev done, progress) -> z_t; Q(s_t, z_t, .)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int):
        super().__init__()
        self.n_actions = n_actions
        self.gru = nn.GRU(obs_dim + n_actions + 3, hidden)
        self.q = nn.Sequential(nn.Linear(hidden + obs_dim + 1, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))

    def inputs(self, obs, prev_action, prev_reward, prev_done, progress: torch.Tensor) -> torch.Tensor:
        a = F.one_hot(prev_action.clamp_min(0), self.n_actions).to(obs.dtype)
        a = a * (prev_action >= 0).unsqueeze(-1).to(obs.dtype)    # -1: no previous action
        return torch.cat([obs, a, prev_reward.unsqueeze(-1), prev_done.to(obs.dtype).unsqueeze(-1),
                          progress.unsqueeze(-1)], -1)

    def forward(self, x: torch.Tensor, h=None):
        """x (n, B, in) -> Q (n, B, n_actions), h. The observation and progress are the first
        obs_dim and the last input columns."""
        z, h = self.gru(x, h)
        obs_dim = x.shape[-1] - self.n_actions - 3
        return self.q(torch.cat([z, x[..., :obs_dim], x[..., -1:]], -1)), h


class MQL(Algorithm):
    name = "mql"
    family = "rl-q-learning"
    supports = frozenset({"rl-discrete"})
    Config = Config
    PRESETS = {
        "paper": {"rl-discrete": dict(hidden=128, buffer_trials=20000, updates_per_step=8, eps_steps=2000)},
        "quick": {"rl-discrete": dict(hidden=64, meta_batch_size=32, n_envs_per_task=2, buffer_trials=4096,
                                      batch_trials=64, updates_per_step=4, eps_steps=100)},
        "smoke": {"rl-discrete": dict(hidden=8, meta_batch_size=2, n_envs_per_task=2, buffer_trials=16,
                                      batch_trials=4, updates_per_step=1, eps_steps=5)},
    }
    LOOPS = {
        "quick": {"rl-discrete": dict(meta_steps=1000, eval_every=250, n_val_tasks=200, log_every=10)},
        "paper": {"rl-discrete": dict(meta_steps=5000, eval_every=500, n_val_tasks=500)},
    }

    @classmethod
    def fits(cls, suite) -> tuple[bool, str]:
        if suite.kind == "rl-continuous":
            return False, (f"mql implements double-DQN for discrete actions only (the TD3 learner for continuous "
                           f"actions is not implemented yet); {suite.id} has continuous actions")
        return super().fits(suite)

    def __init__(self, suite, config: Config, device, seed: int):
        super().__init__(suite, config, device, seed)
        probe = suite.make_env(suite.sample("train", 1, torch.Generator().manual_seed(0)), 1, device=self.device)
        self.n_actions, self.obs_dim = probe.action_space.n, probe.obs_dim
        self.trial_length = probe.trial_length
        self.net = seeded_init(seed, lambda: ContextQNet(self.obs_dim, self.n_actions, config.hidden)).to(self.device)
        self.target = seeded_init(seed, lambda: ContextQNet(self.obs_dim, self.n_actions, config.hidden)).to(self.device)
        self.target.load_state_dict(self.net.state_dict())
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.gen = torch.Generator(self.device).manual_seed(seed * 7919 + 3)
        n, C = self.trial_length, config.buffer_trials
        in_dim = self.obs_dim + self.n_actions + 3
        # Ring buffer of whole trials: inputs x_t (what the GRU reads before acting at t), actions,
        # rewards; x_{t+1} is the next row (and the row after the trial's last step is unused).
        self.buf_x = torch.zeros(C, n + 1, in_dim, device=self.device)
        self.buf_a = torch.zeros(C, n, dtype=torch.long, device=self.device)
        self.buf_r = torch.zeros(C, n, device=self.device)
        self.size, self.ptr, self.steps = 0, 0, 0

    # --- contract -----------------------------------------------------------------------------
    def train_request(self) -> TrainRequest:
        return TrainRequest(n_tasks=self.config.meta_batch_size)

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        return dict(self.net.named_parameters())

    def state_dict(self):
        return {"net": self.net.state_dict(), "target": self.target.state_dict(), "opt": self.opt.state_dict(),
                "gen": self.gen.get_state(), "steps": self.steps, "size": self.size, "ptr": self.ptr,
                "buf_x": self.buf_x[:self.size].clone(), "buf_a": self.buf_a[:self.size].clone(),
                "buf_r": self.buf_r[:self.size].clone()}

    def load_state_dict(self, state) -> None:
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.steps, self.size, self.ptr = int(state["steps"]), int(state["size"]), int(state["ptr"])
        self.buf_x[:self.size] = state["buf_x"]
        self.buf_a[:self.size] = state["buf_a"]
        self.buf_r[:self.size] = state["buf_r"]

    # --- acting -------------------------------------------------------------------------------
    @torch.no_grad()
    def _play(self, tasks: RLTaskBatch, n_copies: int, eps: float, env_gen, pol_gen):
        """One epsilon-greedy trial per copy: inputs (n + 1, B, in), actions (n, B), rewards (n, B), env."""
        env = self.suite.make_env(tasks, n_copies, generator=env_gen, device=self.device)
        B, n = env.n_envs, env.trial_length
        obs = env.reset()
        prev_a = torch.full((B,), -1, dtype=torch.long, device=self.device)
        prev_r = torch.zeros(B, device=self.device)
        prev_d = torch.zeros(B, dtype=torch.bool, device=self.device)
        h, xs, acts, rews = None, [], [], []
        for t in range(n + 1):
            x = self.net.inputs(obs, prev_a, prev_r, prev_d, torch.full((B,), t / n, device=self.device))
            xs.append(x)
            if t == n:
                break
            q, h = self.net(x[None], h)
            greedy = q[0].argmax(-1)
            rand = torch.randint(0, self.n_actions, (B,), generator=pol_gen, device=self.device)
            explore = torch.rand(B, generator=pol_gen, device=self.device) < eps
            a = torch.where(explore, rand, greedy)
            obs_next, r, done, info = env.step(a)
            acts.append(a), rews.append(r)
            prev_a, prev_r, prev_d = a, r, done
            obs = info.get("final_obs", obs_next) if t == n - 1 else obs_next
        return torch.stack(xs), torch.stack(acts), torch.stack(rews), env

    # --- learning -----------------------------------------------------------------------------
    def _store(self, x, a, r) -> None:
        B = a.shape[1]
        C = self.config.buffer_trials
        idx = (self.ptr + torch.arange(B, device=self.device)) % C
        self.buf_x[idx], self.buf_a[idx], self.buf_r[idx] = x.transpose(0, 1), a.T, r.T
        self.ptr = (self.ptr + B) % C
        self.size = min(self.size + B, C)

    def _td_loss(self, idx: torch.Tensor) -> torch.Tensor:
        c = self.config
        x = self.buf_x[idx].transpose(0, 1)                       # (n + 1, b, in)
        a, r = self.buf_a[idx].T, self.buf_r[idx].T               # (n, b)
        q_all, _ = self.net(x)                                    # (n + 1, b, A)
        with torch.no_grad():
            q_tgt, _ = self.target(x)
            terminal = torch.zeros_like(r)
            terminal[-1] = 1.0                                    # the trial ends: no bootstrap
            y = double_dqn_target(r, terminal, q_all[1:].detach(), q_tgt[1:], c.gamma)
        q = q_all[:-1].gather(-1, a.unsqueeze(-1)).squeeze(-1)
        return F.smooth_l1_loss(q, y)

    def meta_train_step(self, tasks: RLTaskBatch) -> dict[str, float]:
        c = self.config
        eps = c.eps_start + min(self.steps / c.eps_steps, 1.0) * (c.eps_end - c.eps_start)
        x, a, r, _ = self._play(tasks, c.n_envs_per_task, eps, self.gen, self.gen)
        self._store(x, a, r)
        losses = []
        for _ in range(c.updates_per_step):
            idx = torch.randint(0, self.size, (min(c.batch_trials, self.size),), generator=self.gen, device=self.device)
            loss = self._td_loss(idx)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), c.max_grad_norm)
            self.opt.step()
            with torch.no_grad():
                for p, pt in zip(self.net.parameters(), self.target.parameters()):
                    pt.lerp_(p, c.tau)
            losses.append(float(loss.detach()))
        self.steps += 1
        return {"loss": sum(losses) / len(losses), "epsilon": eps, "trial_return": float(r.sum(0).mean())}

    def evaluate(self, tasks: RLTaskBatch) -> dict[str, torch.Tensor]:
        """Play `suite.eval_trials` trials per task with the (epsilon-)greedy policy; the context
        is the only thing that adapts."""
        n_copies = self.suite.eval_trials
        _, _, rew, env = self._play(tasks, n_copies, self.config.eval_eps, eval_generator(tasks, "env", self.device),
                                    eval_generator(tasks, "policy/mql", self.device))
        return self.suite.score(tasks, per_task(episode_returns(rew, env.horizon), n_copies))
