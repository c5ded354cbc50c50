"""MAML for reinforcement learning: a policy initialisation that one policy-gradient step adapts.

Finn, Abbeel & Levine (2017). "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks." ICML. arXiv:1703.03400, section 5.3 and appendix A.2.

Summary
    For each task, roll out the policy pi_theta, take one REINFORCE step (advantages from a
    linear feature baseline fitted to the rollouts), theta' = theta + alpha grad J(theta); roll
    out pi_theta' and improve theta for the *post-update* return, differentiating through the
    inner step (second order).  The outer step is TRPO: the natural-gradient direction from
    conjugate gradient on Hessian-vector products of the mean KL between the old and new adapted
    policies, then a backtracking line search on the surrogate under the KL bound.

Implementation details
    * A *learner* is what adapts.  Navigation (the paper's protocol): one learner per task,
      adapting on the `n_envs_per_task` trajectories of that task (the paper's 20 per step; the
      suite evaluates with its `eval_trials` = 20).  Bandits and tabular MDPs, whose metric is the
      reward of each independent trial: one learner per trial (environment copy), adapting on its
      own experience only -- pooling the copies of a task would give it several trials' data.
    * Learners' parameters carry a leading learner dimension and the MLP is evaluated with
      batched matmuls, so every learner of every task adapts in one tensor op; the inner step is
      one `torch.autograd.grad` of the sum of the learners' losses (each learner's gradient only
      involves its own loss).
    * A trial is split into *segments* of `adapt_every` steps (0 = one episode); after every
      segment each learner takes one inner step on that segment's data.  Meta-training rolls out
      `inner_steps + 1` segments and optimises the last one's return.  Evaluation plays the
      suite's whole trial, adapting after every segment (navigation: 4 episodes = return@0..3;
      tabular-mdp-n10: 10 episodes, 9 steps; bandit-k5-n100 with adapt_every=10: 9 steps), always
      with the first-order step (no graph is kept).
    * Linear feature baseline (rllab `LinearFeatureBaseline`, as in the paper's code): features
      [obs, obs^2, t, t^2, t^3, 1] with t = step in the episode / 100, fitted per learner by
      ridge regression (coefficient `baseline_reg`) to the discounted returns of the segment;
      advantages are then normalised per learner (as in pytorch-maml-rl).  With one short
      trajectory per learner (discrete suites) the fit would interpolate the returns and leave
      no advantage, so there the baseline is the learner's mean return over the segment and the
      advantages are not rescaled (rescaling a 2-step segment's near-zero spread blew up).
    * Policies: Gaussian with a learned state-independent log-std (adapted by the inner step
      too, as in the paper's code) for continuous actions, in units of the action bound (the
      environment clips); categorical for discrete actions.
    * `outer="ppo"`: a documented alternative to TRPO -- `ppo_epochs` Adam steps on PPO's
      clipped surrogate of the post-update policy (the inner step is re-differentiated at each
      step).
    * Shared machinery: the TRPO step (conjugate gradient, line search) is `metabench.rl.trpo`,
      the PPO surrogate `metabench.rl.ppo`; this file keeps what is MAML's own: the batched
      learners, the inner step, the segments, the baseline and the meta-objective.
    * Why one module of ~410 lines: one learner with two outer optimisers (TRPO, PPO) and two
      kinds of learner (navigation, discrete trials) sharing collection, inner step and baseline;
      the generic pieces are already in `metabench.rl`.

Differences from the paper
    * The outer step's Hessian-vector products are exact (double backward through the inner
      step), not finite differences; the quick preset uses `exact_fvp=False` (curvature without
      the inner step's Jacobian, 3x cheaper; the gradient and the KL line search stay exact).
    * Like the paper and pytorch-maml-rl, the meta-gradient ignores how theta changes the
      distribution of the *pre-update* trajectories (the term that ProMP/DiCE add).
    * Navigation episodes do not end early at the goal (see the suite); the quick preset uses a
      64-64 tanh policy (pytorch-maml-rl's; the paper: 100-100 ReLU, which the `paper` preset
      keeps) and fewer meta-iterations than the paper's 500 (the paper picks the best training
      checkpoint; we evaluate the last).  Both are compute budgets, as is `exact_fvp=False`.
    * Evaluation uses the suite's 20 trajectories per step (the paper: 40), step size 0.1 for
      the first step and `later_inner_lr` (paper: 0.05) after.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from metabench.algorithms.base import Algorithm, BoundedConfig, TrainRequest
from metabench.errors import ConfigError
from metabench.rl.core import RLTaskBatch, eval_generator
from metabench.rl.ppo import ppo_clip_loss
from metabench.rl.returns import discounted_returns
from metabench.rl.rollout import episode_returns, per_task
from metabench.rl.trpo import surrogate_loss, trpo_step
from metabench.seeding import stream

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Config(BoundedConfig):
    hidden: int = 100
    """Width of each hidden layer of the policy MLP."""
    layers: int = 2
    """Hidden layers of the policy MLP."""
    activation: str = "relu"
    """'relu' (the paper) or 'tanh' (pytorch-maml-rl)."""
    inner_lr: float = 0.1
    """alpha: step size of the inner policy-gradient step."""
    later_inner_lr: float | None = 0.05
    """Step size of the evaluation steps after the first (paper: 0.05); None = inner_lr."""
    inner_steps: int = 1
    """Inner steps during meta-training."""
    meta_batch_size: int = 20
    """Tasks per meta-update."""
    n_envs_per_task: int = 20
    """Trajectories per task per step (navigation; discrete suites: independent trials per task)."""
    adapt_every: int = 0
    """Steps per segment (one inner step after each); 0 = one episode."""
    gamma: float = 0.99
    """Discount of the returns that the inner and outer objectives use."""
    baseline_reg: float = 1e-5
    """Ridge coefficient of the linear feature baseline."""
    outer: str = "trpo"
    """'trpo' (the paper) or 'ppo' (clipped surrogate, Adam)."""
    max_kl: float = 0.01
    """TRPO: bound on the mean KL of the adapted policies."""
    cg_iters: int = 10
    """TRPO: conjugate-gradient iterations."""
    cg_damping: float = 1e-5
    """TRPO: damping added to the Fisher-vector product."""
    exact_fvp: bool = True
    """TRPO: Fisher-vector products through the inner step (exact second order); False treats the
    inner step's Jacobian as the identity *for the curvature only* (the gradient stays exact, the
    line search checks the exact KL) -- several times cheaper."""
    ls_steps: int = 15
    """TRPO: line-search halvings (factor `ls_backtrack`)."""
    ls_backtrack: float = 0.8
    """TRPO: line-search step-size ratio."""
    outer_lr: float = 3e-4
    """PPO outer step: Adam step size."""
    ppo_epochs: int = 5
    """PPO outer step: Adam steps per meta-batch."""
    clip: float = 0.2
    """PPO outer step: ratio clip."""
    init_log_std: float = 0.0
    """Gaussian policies: initial log-std, in units of the action bound."""

    WHO = "maml-rl"
    BOUNDS = {**dict.fromkeys(("hidden", "layers", "inner_steps", "meta_batch_size", "n_envs_per_task", "cg_iters"),
                              ">= 1"),
              "adapt_every": ">= 0", "inner_lr": "> 0", "max_kl": "> 0", "outer": ("trpo", "ppo"),
              "activation": ("relu", "tanh")}


# --- pure helpers -------------------------------------------------------------------------------
def baseline_features(obs: torch.Tensor, t: torch.Tensor, use_obs: bool = True) -> torch.Tensor:
    """rllab's LinearFeatureBaseline features: obs (..., d), t (...) step in episode -> (..., 2d + 4)."""
    al = (t.to(obs.dtype) / 100.0).unsqueeze(-1)
    parts = [obs, obs * obs] if use_obs else []
    return torch.cat(parts + [al, al ** 2, al ** 3, torch.ones_like(al)], -1)


def fit_linear_baseline(features: torch.Tensor, targets: torch.Tensor, reg: float) -> torch.Tensor:
    """Ridge regression per learner: features (L, N, F), targets (L, N) -> weights (L, F) minimising
    |X w - y|^2 + reg |w|^2, i.e. w = (X^T X + reg I)^{-1} X^T y (in float64)."""
    X, y = features.double(), targets.double()
    eye = torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
    A = X.transpose(-1, -2) @ X + reg * eye
    return torch.linalg.solve(A, (X.transpose(-1, -2) @ y.unsqueeze(-1))).squeeze(-1).to(features.dtype)


def mlp(params: Params, x: torch.Tensor, n_layers: int, act) -> torch.Tensor:
    """Batched MLP: params with a leading learner dim L (w{i}: (L, in, out), b{i}: (L, out)), x (L, N, in)."""
    for i in range(n_layers + 1):
        x = torch.baddbmm(params[f"b{i}"].unsqueeze(1), x, params[f"w{i}"])
        if i < n_layers:
            x = act(x)
    return x


class MAMLRL(Algorithm):
    name = "maml-rl"
    family = "rl-policy-gradient"   # optimisation-based (MAML) with policy-gradient inner and outer steps
    supports = frozenset({"rl-discrete", "rl-continuous"})
    Config = Config
    PRESETS = {
        "paper": {
            # Finn et al. 2017, appendix A.2: 2x100 ReLU, alpha 0.1, meta-batch 20, 20 trajectories, TRPO
            "rl-continuous": dict(hidden=100, layers=2, activation="relu", meta_batch_size=20, n_envs_per_task=20),
            "rl-discrete": dict(hidden=100, layers=2, activation="relu", meta_batch_size=20, n_envs_per_task=4),
            "bandit-k5-n100": dict(adapt_every=10), "bandit-k10-n100": dict(adapt_every=10),
            "bandit-k5-n10": dict(adapt_every=2), "bandit-k50-n500": dict(adapt_every=50),
        },
        "quick": {
            "rl-continuous": dict(hidden=64, layers=2, activation="tanh", meta_batch_size=20, n_envs_per_task=20,
                                  exact_fvp=False),
            "rl-discrete": dict(hidden=64, layers=2, activation="tanh", meta_batch_size=20, n_envs_per_task=4,
                                exact_fvp=False),
            "bandit-k5-n100": dict(adapt_every=10), "bandit-k10-n100": dict(adapt_every=10),
            "bandit-k5-n10": dict(adapt_every=2), "bandit-k50-n500": dict(adapt_every=50),
        },
        "smoke": {
            "rl-continuous": dict(hidden=8, meta_batch_size=2, n_envs_per_task=2, cg_iters=3, ls_steps=3),
            "rl-discrete": dict(hidden=8, meta_batch_size=2, n_envs_per_task=2, cg_iters=3, ls_steps=3),
            "bandit-k5-n10": dict(adapt_every=2), "bandit-k5-n100": dict(adapt_every=10),
            "bandit-k10-n100": dict(adapt_every=10), "bandit-k50-n500": dict(adapt_every=50),
        },
    }
    LOOPS = {
        "quick": {"rl-continuous": dict(meta_steps=200, eval_every=50, n_val_tasks=40, log_every=5, checkpoint_every=20),
                  "rl-discrete": dict(meta_steps=300, eval_every=100, n_val_tasks=100, log_every=5, checkpoint_every=20)},
        "paper": {"rl-continuous": dict(meta_steps=500, eval_every=50, n_val_tasks=100, log_every=5, checkpoint_every=25),
                  "rl-discrete": dict(meta_steps=500, eval_every=50, n_val_tasks=200, log_every=5, checkpoint_every=25)},
    }

    def __init__(self, suite, config: Config, device, seed: int):
        super().__init__(suite, config, device, seed)
        probe = suite.make_env(suite.sample("train", 1, torch.Generator().manual_seed(0)), 1, device=self.device)
        self.space, self.obs_dim = probe.action_space, probe.obs_dim
        self.discrete = self.space.discrete
        self.per_trial = suite.kind == "rl-discrete"        # one learner per trial (see the docstring)
        self.segment = config.adapt_every or suite.horizon
        if suite.horizon % self.segment and self.segment < suite.horizon:
            raise ConfigError(f"maml-rl: adapt_every ({config.adapt_every}) must divide the episode length {suite.horizon}")
        self.act = torch.relu if config.activation == "relu" else torch.tanh
        n_out = self.space.n if self.discrete else self.space.dim
        sizes = [self.obs_dim] + [config.hidden] * config.layers + [n_out]
        g = torch.Generator().manual_seed(seed)
        self.theta: Params = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            # Glorot-uniform weights (rllab's default), zero biases; the output layer scaled down
            bound = math.sqrt(6.0 / (a + b)) * (0.1 if i == len(sizes) - 2 else 1.0)
            self.theta[f"w{i}"] = ((torch.rand(a, b, generator=g) * 2 - 1) * bound).to(self.device).requires_grad_()
            self.theta[f"b{i}"] = torch.zeros(b, device=self.device, requires_grad=True)
        if not self.discrete:
            self.theta["log_std"] = torch.full((self.space.dim,), float(config.init_log_std), device=self.device,
                                               requires_grad=True)
        self.opt = torch.optim.Adam(self.theta.values(), lr=config.outer_lr) if config.outer == "ppo" else None
        self.gen = torch.Generator(self.device).manual_seed(stream(seed, 2))

    # --- contract -----------------------------------------------------------------------------
    def train_request(self) -> TrainRequest:
        return TrainRequest(n_tasks=self.config.meta_batch_size)

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        return dict(self.theta)

    def state_dict(self):
        return {"theta": {k: v.detach().clone() for k, v in self.theta.items()},
                "opt": self.opt.state_dict() if self.opt else None, "gen": self.gen.get_state()}

    def load_state_dict(self, state) -> None:
        with torch.no_grad():
            for k, v in state["theta"].items():
                self.theta[k].copy_(v)
        if self.opt and state.get("opt"):
            self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])

    # --- policy -------------------------------------------------------------------------------
    def _expand(self, L: int) -> Params:
        return {k: v.unsqueeze(0).expand(L, *v.shape) for k, v in self.theta.items()}

    def _dist(self, params: Params, obs: torch.Tensor):
        """obs (L, N, obs_dim) -> a distribution over (L, N) actions."""
        out = mlp(params, obs, self.config.layers, self.act)
        if self.discrete:
            return torch.distributions.Categorical(logits=out)
        std = params["log_std"].exp().unsqueeze(1).expand_as(out)
        return torch.distributions.Independent(torch.distributions.Normal(out, std), 1)

    @torch.no_grad()
    def _play(self, env, params: Params, L: int, n_steps: int, obs: torch.Tensor, g: torch.Generator):
        """Roll `n_steps` with per-learner params: returns the segment dict and the next obs.

        Not `metabench.rl.rollout.run_trials`: a segment is part of a trial (the learners adapt
        between segments, and meta-training stops before the trial ends), the policy is a
        different feed-forward network per learner, and the baseline needs each step's time in
        its episode."""
        B = env.n_envs
        obs_l, act_l, rew_l, done_l, t_l = [], [], [], [], []
        for _ in range(n_steps):
            t_l.append(env.t % env.horizon)
            d = self._dist(params, obs.reshape(L, B // L, -1))
            if self.discrete:
                probs = d.probs.reshape(B, -1)
                u = torch.multinomial(probs, 1, generator=g).squeeze(-1)
                a = u
            else:
                mean, std = d.base_dist.loc.reshape(B, -1), d.base_dist.scale.reshape(B, -1)
                u = mean + std * torch.randn(mean.shape, generator=g, device=mean.device)
                a = u * self.space.high
            nxt, r, done, _ = env.step(a)
            obs_l.append(obs), act_l.append(u), rew_l.append(r), done_l.append(done)
            obs = nxt
        seg = {"obs": torch.stack(obs_l), "act": torch.stack(act_l), "rew": torch.stack(rew_l),
               "done": torch.stack(done_l), "t": torch.tensor(t_l, device=self.device)}
        return seg, obs

    def _prepare(self, seg, L: int):
        """Per-learner views (L, N, ...) of a segment (n, B, ...) and normalised advantages (L, N)."""
        n, B = seg["rew"].shape
        c = self.config
        ret = discounted_returns(seg["rew"], seg["done"], c.gamma)                     # (n, B)
        t = seg["t"][:, None].expand(n, B)

        def per_learner(x):   # (n, B, ...) -> (L, (B/L) * n, ...), learner-major
            x = x.transpose(0, 1)
            return x.reshape(L, (B // L) * n, *x.shape[2:])

        obs, act, ret, t = per_learner(seg["obs"]), per_learner(seg["act"]), per_learner(ret), per_learner(t)
        if self.per_trial:   # one short trajectory per learner: a constant baseline, no rescaling
            return obs, act, ret - ret.mean(1, keepdim=True)
        feats = baseline_features(obs, t)
        w = fit_linear_baseline(feats, ret, c.baseline_reg)
        adv = ret - (feats @ w.unsqueeze(-1)).squeeze(-1)
        adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
        return obs, act, adv

    def _inner_step(self, params: Params, data, lr: float, create_graph: bool) -> Params:
        """One REINFORCE step per learner: params - lr * grad(-mean(log pi(a|s) A))."""
        obs, act, adv = data
        loss = -(self._dist(params, obs).log_prob(act) * adv).mean(1).sum()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        return {k: p - lr * gr for (k, p), gr in zip(params.items(), grads)}

    def _learners(self, env) -> int:
        return env.n_envs if self.per_trial else env.n_tasks

    # --- meta-training ------------------------------------------------------------------------
    def _collect(self, tasks: RLTaskBatch):
        """Pre-update segments (data for the inner steps) and the post-update segment."""
        c = self.config
        n_seg = c.inner_steps + 1
        eps = max(1, math.ceil(n_seg * self.segment / self.suite.horizon))
        env = self.suite.make_env(tasks, c.n_envs_per_task, episodes_per_trial=eps, generator=self.gen,
                                  device=self.device)
        L = self._learners(env)
        obs = env.reset()
        params = {k: v.detach() for k, v in self._expand(L).items()}
        inner_data = []
        for k in range(n_seg):
            seg, obs = self._play(env, params, L, self.segment, obs, self.gen)
            data = self._prepare(seg, L)
            if k < c.inner_steps:
                inner_data.append(data)
                with torch.enable_grad():
                    params = {n: p.detach().requires_grad_() for n, p in params.items()}
                    params = {n: p.detach() for n, p in self._inner_step(params, data, c.inner_lr, False).items()}
        return inner_data, data, L, float(seg["rew"].sum(0).mean()), env

    def _adapted(self, inner_data, L: int) -> Params:
        params = self._expand(L)
        for data in inner_data:
            params = self._inner_step(params, data, self.config.inner_lr, create_graph=True)
        return params

    def meta_train_step(self, tasks: RLTaskBatch) -> dict[str, float]:
        c = self.config
        inner_data, post, L, post_return, env = self._collect(tasks)
        obs, act, adv = post
        with torch.no_grad():
            old = self._dist(self._adapted_nograd(inner_data, L), obs)
            old_logp = old.log_prob(act)

        def surrogate(params):
            return surrogate_loss(self._dist(params, obs).log_prob(act), old_logp, adv)

        if c.outer == "ppo":
            for _ in range(c.ppo_epochs):
                d = self._dist(self._adapted(inner_data, L), obs)
                loss = ppo_clip_loss(d.log_prob(act), old_logp, adv, c.clip)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
            return {"loss": float(loss), "post_update_return": post_return}

        def kl_of(params):
            return torch.distributions.kl_divergence(old, self._dist(params, obs)).mean()

        loss = surrogate(self._adapted(inner_data, L))
        if c.exact_fvp:
            kl = kl_of(self._adapted(inner_data, L))
        else:   # theta' = theta + const: d theta'/d theta = I for the curvature
            fixed = self._adapted_nograd(inner_data, L)
            base = self._expand(L)
            kl = kl_of({k: base[k] + (fixed[k] - base[k]).detach() for k in base})

        def objective():   # the line search's (surrogate, exact KL) at the current theta
            with torch.enable_grad():
                params = self._adapted(inner_data, L)
            return float(surrogate(params)), float(kl_of(params))

        accepted, new_kl = trpo_step(list(self.theta.values()), loss, kl, objective, max_kl=c.max_kl,
                                     damping=c.cg_damping, cg_iters=c.cg_iters, ls_steps=c.ls_steps,
                                     backtrack=c.ls_backtrack)
        return {"loss": float(loss.detach()), "post_update_return": post_return, "kl": new_kl,
                "step_accepted": accepted}

    def _adapted_nograd(self, inner_data, L: int) -> Params:
        params = {k: v.detach() for k, v in self._expand(L).items()}
        with torch.enable_grad():
            for data in inner_data:
                params = {n: p.detach().requires_grad_() for n, p in params.items()}
                params = {n: p.detach() for n, p in self._inner_step(params, data, self.config.inner_lr, False).items()}
        return params

    # --- evaluation ---------------------------------------------------------------------------
    def evaluate(self, tasks: RLTaskBatch) -> dict[str, torch.Tensor]:
        """Play the suite's trial, one first-order inner step per learner after every segment;
        score the returns of the trial's episodes (navigation: return@k after k steps)."""
        c, suite = self.config, self.suite
        n_copies = suite.eval_trials
        env = suite.make_env(tasks, n_copies, generator=eval_generator(tasks, "env", self.device), device=self.device)
        pol_g = eval_generator(tasks, "policy/maml-rl", self.device)
        L = self._learners(env)
        obs = env.reset()
        params = {k: v.detach() for k, v in self._expand(L).items()}
        rewards = []
        n_seg = env.trial_length // self.segment
        for k in range(n_seg):
            seg, obs = self._play(env, params, L, self.segment, obs, pol_g)
            rewards.append(seg["rew"])
            if k < n_seg - 1:
                lr = c.inner_lr if k == 0 or c.later_inner_lr is None else c.later_inner_lr
                with torch.enable_grad():
                    params = {n: p.detach().requires_grad_() for n, p in params.items()}
                    params = {n: p.detach() for n, p in self._inner_step(params, self._prepare(seg, L), lr, False).items()}
        rew = torch.cat(rewards)                                                  # (trial_length, B)
        return suite.score(tasks, per_task(episode_returns(rew, env.horizon), n_copies))   # (T, n_episodes)
