"""RL²: a recurrent policy whose hidden state is the learner.

Duan, Schulman, Chen, Bartlett, Sutskever & Abbeel (2016). "RL²: Fast Reinforcement Learning via
Slow Reinforcement Learning." arXiv:1611.02779.

Summary
    A GRU policy receives, at every step, the observation, the previous action, the previous
    reward and a flag saying whether the previous step ended an episode.  Its hidden state is
    kept across all the episodes of a *trial* (several episodes on one task) and reset only
    between trials, so whatever it learned about the task in one episode it can use in the next.
    The GRU's weights are trained across many tasks ("slow RL") to maximise the total reward of a
    whole trial; the advantages and returns therefore run over the trial, not the episode.  At
    test time nothing is updated: the policy just plays trials on the fixed test tasks.

Implementation details
    * Vectorised: one meta-step rolls out one trial on each of `n_envs_per_task` copies of each
      of `meta_batch_size` train tasks at once (B = T * n_envs_per_task copies in one torch
      environment; `suite.make_env`), then runs `ppo_epochs` passes of PPO over the batch, in
      `n_minibatches` minibatches of whole trials (the GRU is re-run over each trial sequence).
      The trial is played by `metabench.rl.rollout.RecurrentAgent` (the loop MQL's context uses
      too); the clipped surrogate is `metabench.rl.ppo.ppo_clip_loss`.
    * Network: input -> Linear+tanh embedding -> GRU(`hidden`) -> policy head and value head.
      Input = observation, one-hot previous action (continuous: the previous action in units of
      the action bound), previous reward, previous done flag (all zeros at a trial start); with
      `trial_progress` (ours) also the fraction of the trial already played (t / trial length).
      Discrete actions: categorical policy.  Continuous: Gaussian with a state-independent
      log-std, in units of the action bound: the sampled action is multiplied by the bound before
      it reaches the environment (`env_action`), which clips, as in `maml_rl` and `mql`.
    * Advantages: GAE (`metabench.rl.returns.gae`) with dones true only at the end of the trial;
      advantages normalised per batch.  The value head predicts returns normalised by a running
      mean and standard deviation of the value targets (so the same learning rate works for
      bandit trials worth ~80 and MDP trials worth ~200).
    * Entropy bonus `entropy_coef`, linearly annealed to `entropy_final` over `anneal_steps`
      meta-steps (exploration *within* a trial is what RL² must learn; early on, a high entropy
      keeps the policy from collapsing onto one arm before the recurrent memory is useful).
    * Evaluation: `suite.eval_trials` trials per test task with actions sampled from the
      policy, randomness drawn from `eval_generator` (so evaluation is a function of the weights
      and the tasks only).  Navigation reports return@k = return of episode k of the trial.
    * Why one module of ~440 lines (a sixth of it this docstring): RL² as published plus the
      options of its named variants, each a few lines inside the one rollout and PPO step they
      change; split apart, that step could no longer be read whole.

Differences from the paper
    The plain `rl2` row in every preset is RL² as published, up to the optimiser and a compute
    budget; everything the paper did not use is off by default and is reached through the named
    variants of `VARIANTS` (docs/variants.md).
    * PPO (clipped surrogate, Schulman et al. 2017) instead of TRPO; value normalisation and
      entropy annealing are ours (standard PPO practice).
    * Compute budget: the paper's GRU had 256 units for bandits and MDPs and a batch of ~250 000
      environment steps per iteration; the `quick` preset uses 64 units (continuous: 128) and
      12 800 steps per iteration (1,000 iterations; 3,000 on the tabular MDPs).  256 units cost
      about 4x the time per step on 2 CPU cores (docs/algorithms/rl2.md).
    * Tuned constants (hyper-parameters the method has): `quick` on discrete suites is
      undiscounted with GAE lambda 0.9 (the paper: 0.99 and 0.3): with far fewer samples than the
      paper, the short bootstrapped advantages let the policy settle on exploiting the first good
      arm.  Entropy bonus 0.01 annealed to 0, learning rate 1e-3, 2 minibatches, 4 PPO epochs.
    * The paper fed the observation, action, reward and termination flag through a fully
      connected embedding too, but did not specify sizes; ours are listed in `Config`.
    Options that are not the paper's (off by default; the named variants turn them on):
    * `trial_progress`: the input also holds the fraction of the trial played so far.  How much
      to explore depends on the pulls left (Gittins and UCB use it too); without it the GRU must
      learn to count, which slowed learning a lot in our runs (before this option existed every
      measured `rl2` cell had it).
    * `count_bonus`: a training-only exploration bonus `count_bonus / sqrt(n(s, a))` on each
      step's reward, n counted within the trial, annealed to zero over `count_bonus_steps`
      meta-steps.  Evaluation always scores the true reward.  It did not help (docs/algorithms/rl2.md).
    * `aux_reward_coef`: an auxiliary head on the GRU output predicts the reward of the action
      about to be taken (discrete: one output per action; continuous: an MLP on the GRU output and
      the action), trained by mean squared error against the true reward and added to the PPO
      loss with this weight.  The best prediction is the posterior mean reward of that (state,
      action) given the trial so far, so the loss pushes the hidden state to keep exactly what
      exploitation needs (the reward-prediction auxiliary task of Jaderberg et al. 2017, UNREAL,
      and the reward decoder of Zintgraf et al. 2020, VariBAD).  The policy and its evaluation are
      unchanged: the head is used only for the training loss.
    * `privileged_value`: an asymmetric critic (Pinto et al. 2018, "Asymmetric Actor Critic";
      the privileged task information of Humplik et al. 2019): during training the value head is
      Linear(tanh(A z + B f)), z the GRU output and f the task's parameters flattened
      (`RLTaskBatch.features`: bandit arm probabilities; MDP reward means and transition
      probabilities; a navigation goal), and the GAE advantages use this value.  Only the
      baseline sees the task; the policy, and hence evaluation, never does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from metabench.algorithms.base import Algorithm, BoundedConfig, TrainRequest, seeded_init
from metabench.errors import ConfigError
from metabench.rl.core import ActionSpace, RLTaskBatch, eval_generator
from metabench.rl.envs import BanditEnv
from metabench.rl.ppo import ppo_clip_loss
from metabench.rl.returns import gae
from metabench.rl.rollout import RecurrentAgent, episode_returns, one_hot_action, per_task, run_trials
from metabench.seeding import stream


@dataclass(frozen=True)
class Config(BoundedConfig):
    hidden: int = 128
    """Units of the GRU (and of the input embedding)."""
    meta_batch_size: int = 64
    """Train tasks per meta-step."""
    n_envs_per_task: int = 4
    """Parallel trials per train task per meta-step (B = meta_batch_size * n_envs_per_task)."""
    lr: float = 1e-3
    """Adam step size."""
    gamma: float = 0.99
    """Discount over the whole trial."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip: float = 0.2
    """PPO ratio clip epsilon."""
    ppo_epochs: int = 4
    """Passes of PPO over each batch of trials."""
    n_minibatches: int = 4
    """Minibatches of whole trials per pass."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    entropy_coef: float = 0.05
    """Entropy bonus at meta-step 0."""
    entropy_final: float = 0.0
    """Entropy bonus after `anneal_steps` meta-steps (linear in between)."""
    anneal_steps: int = 1000
    """Meta-steps over which the entropy bonus (and the learning rate, if `anneal_lr`) anneals."""
    anneal_lr: bool = False
    """Anneal the learning rate linearly to 10% of `lr` over `anneal_steps`."""
    max_grad_norm: float = 0.5
    """Gradient norm clip."""
    init_log_std: float = -0.5
    """Continuous actions: initial log standard deviation (in units of the action bound)."""
    count_bonus: float = 0.0
    """Training only (ours, not the paper's): add `count_bonus / sqrt(n)` to each step's reward,
    n = visits of that (state, action) so far in the trial; discrete states and actions only."""
    count_bonus_steps: int = 1000
    """Meta-steps over which the count bonus anneals linearly to zero."""
    aux_reward_coef: float = 0.0
    """Training only (ours, not the paper's): weight of an auxiliary loss in which a head on the GRU
    state predicts the reward of the action taken (mean squared error); 0 turns it off."""
    privileged_value: bool = False
    """Training only (ours, not the paper's): the value head also sees the task's parameters
    (`RLTaskBatch.features`), an asymmetric critic; the policy never does."""
    trial_progress: bool = False
    """Ours, not the paper's: the input also holds the fraction of the trial already played
    (t / trial length); the paper's input is observation, previous action, reward and done flag."""

    WHO = "rl2"
    BOUNDS = {**dict.fromkeys(("hidden", "meta_batch_size", "n_envs_per_task", "ppo_epochs", "n_minibatches",
                               "anneal_steps", "count_bonus_steps"), ">= 1"),
              "gamma": "[0, 1]", "gae_lambda": "[0, 1]", "lr": "> 0", "clip": "> 0", "count_bonus": ">= 0",
              "aux_reward_coef": ">= 0"}

    def validate(self) -> None:
        super().validate()
        if self.n_minibatches > self.meta_batch_size * self.n_envs_per_task:
            raise ConfigError(f"rl2: n_minibatches ({self.n_minibatches}) exceeds the trials per batch "
                              f"({self.meta_batch_size * self.n_envs_per_task})")


#: the tabular-MDP suites, whose `quick` runs are longer than the bandits' (same kind, rl-discrete)
_MDP_SUITES = tuple(f"tabular-mdp-n{n}" for n in (10, 25, 50))

#: Named variants (issue 20 section 4): short name -> the exact entry for `--algorithms`.  Not the
#: paper's RL², so never a preset; each reproduces a `quick` cell measured before issue 20, when
#: these options sat in the preset (docs/variants.md, docs/algorithms/rl2.md).
VARIANTS: dict[str, str] = {
    # bandits, navigation: the input also holds the trial's progress; bandit-k5-n100 77.3 +- 1.0
    "rl2-progress": "rl2[trial_progress=true]",
    # tabular-mdp-n25 / -n50 (the old quick cell there, unmeasured); on tabular-mdp-n10 with 64
    # units: 0.582 +- 0.007 of the optimal return (plain: 0.546 +- 0.006, both with the progress input)
    "rl2-aux": "rl2[aux_reward_coef=0.5,trial_progress=true]",
    # tabular-mdp-n10: + 256 units and a critic that sees the task; 0.668 +- 0.007 (psrl 0.613)
    "rl2-aux-privileged": "rl2[aux_reward_coef=0.5,hidden=256,privileged_value=true,trial_progress=true]",
}


class RecurrentPolicy(nn.Module):
    """(obs, previous action, reward, done) -> embedding -> GRU -> policy logits / Gaussian mean, value."""

    def __init__(self, obs_dim: int, space: ActionSpace, hidden: int, init_log_std: float = -0.5,
                 reward_head: bool = False, task_dim: int = 0, trial_progress: bool = False):
        super().__init__()
        self.space = space
        self.trial_progress = trial_progress
        self.act_in = space.n if space.discrete else space.dim
        self.embed = nn.Linear(obs_dim + self.act_in + 2 + int(trial_progress), hidden)
        self.gru = nn.GRU(hidden, hidden)
        self.pi = nn.Linear(hidden, space.n if space.discrete else space.dim)
        self.v = nn.Linear(hidden, 1)
        # auxiliary reward prediction (Config.aux_reward_coef), only when asked for, so that other
        # state_dicts keep their keys: discrete, one output per action; continuous, an MLP on (GRU state, action)
        if reward_head:
            self.reward_head = (nn.Linear(hidden, space.n) if space.discrete else
                                nn.Sequential(nn.Linear(hidden + space.dim, hidden), nn.Tanh(), nn.Linear(hidden, 1)))
        # privileged value (Config.privileged_value): v = Linear(tanh(A z + B task)), only when asked for
        if task_dim:
            self.v_z = nn.Linear(hidden, hidden)
            self.v_task = nn.Linear(task_dim, hidden, bias=False)
        nn.init.orthogonal_(self.pi.weight, 0.01)
        nn.init.zeros_(self.pi.bias)
        if not space.discrete:
            self.log_std = nn.Parameter(torch.full((space.dim,), float(init_log_std)))
        # running statistics of the value targets (the value head predicts normalised returns)
        self.register_buffer("ret_mean", torch.zeros(()))
        self.register_buffer("ret_std", torch.ones(()))

    def inputs(self, obs, prev_action, prev_reward, prev_done, progress: float) -> torch.Tensor:
        """One step's input (..., obs_dim + act_in + 2, + 1 with `trial_progress`) from (...)
        previous action (continuous: in units of the action bound, as the policy outputs it),
        reward and done flag, and (`trial_progress` only) the fraction of the trial already played."""
        a = one_hot_action(prev_action, self.space.n, obs.dtype) if self.space.discrete else prev_action
        parts = [obs, a, prev_reward.unsqueeze(-1), prev_done.to(obs.dtype).unsqueeze(-1)]
        if self.trial_progress:
            parts.append(torch.full_like(prev_reward, progress).unsqueeze(-1))
        return torch.cat(parts, -1)

    def features(self, x: torch.Tensor, h: torch.Tensor | None = None):
        """x (n_steps, B, in) -> (GRU outputs (n_steps, B, hidden), h (1, B, hidden))."""
        return self.gru(torch.tanh(self.embed(x)), h)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None):
        """x (n_steps, B, in) -> (policy output (n_steps, B, n|dim), normalised value (n_steps, B), h (1, B, hidden))."""
        z, h = self.features(x, h)
        return (*self.heads(z), h)

    def heads(self, z: torch.Tensor):
        """GRU outputs z -> (policy output, normalised value): the two heads of `forward`."""
        return self.pi(z), self.v(z).squeeze(-1)

    def privileged_value(self, z: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The privileged value head: GRU outputs z (n_steps, B, hidden) and task features (B, F)
        -> normalised value (n_steps, B); the task term is computed once per trial."""
        return self.v(torch.tanh(self.v_z(z) + self.v_task(task))).squeeze(-1)

    def predict_reward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The auxiliary head's prediction of the reward of `action` (continuous: in units of the
        action bound) from GRU outputs z: (n_steps, B)."""
        if self.space.discrete:
            return self.reward_head(z).gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return self.reward_head(torch.cat([z, action], -1)).squeeze(-1)

    def dist(self, out: torch.Tensor):
        if self.space.discrete:
            return torch.distributions.Categorical(logits=out)
        return torch.distributions.Independent(torch.distributions.Normal(out, self.log_std.exp()), 1)


def sample_action(policy: RecurrentPolicy, out: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Draw an action from the policy's output with an explicit generator: (B,) int64 or (B, dim);
    continuous actions are in units of the action bound (see `env_action`)."""
    if policy.space.discrete:
        return torch.multinomial(F.softmax(out, -1), 1, generator=g).squeeze(-1)
    eps = torch.randn(out.shape, generator=g, device=out.device)
    return out + policy.log_std.exp() * eps


def env_action(space: ActionSpace, action: torch.Tensor) -> torch.Tensor:
    """The action the environment receives: continuous policy actions are in units of the
    (symmetric) action bound, so they are multiplied by it (the environment then clips), as
    `maml_rl` and `mql` do; discrete actions pass unchanged.  Issue 22 section 2: without the
    scaling, navigation2d (bound 0.1) got the policy's output as is, and the initial standard
    deviation exp(-0.5) = 0.61 was about 6 times the bound, so nearly every action was clipped."""
    return action if space.discrete else action * space.high


class RL2(Algorithm):
    name = "rl2"
    VARIANTS = VARIANTS   # the module's named variants (see Algorithm.VARIANTS)
    family = "rl-policy-gradient"   # a recurrent (memory-based) learner, trained by policy gradient
    supports = frozenset({"rl-discrete", "rl-continuous"})
    Config = Config
    PRESETS = {
        "paper": {
            # Duan et al. 2016, appendix: GRU 256 units, discount 0.99, GAE lambda 0.3 (bandits)
            "rl-discrete": dict(hidden=256, meta_batch_size=250, n_envs_per_task=4, gae_lambda=0.3, anneal_steps=5000),
            "rl-continuous": dict(hidden=256, meta_batch_size=100, n_envs_per_task=4, anneal_steps=5000),
        },
        "quick": {
            # a compute budget (64 units, paper 256) and tuned constants (undiscounted, GAE lambda 0.9;
            # paper 0.99, 0.3), measured in docs/algorithms/rl2.md
            "rl-discrete": dict(hidden=64, meta_batch_size=32, n_envs_per_task=4, lr=1e-3, gamma=1.0, gae_lambda=0.9,
                                ppo_epochs=4, n_minibatches=2, entropy_coef=0.01, entropy_final=0.0,
                                anneal_steps=1000),
            "rl-continuous": dict(hidden=128, meta_batch_size=32, n_envs_per_task=4, lr=1e-3, entropy_coef=0.0,
                                  entropy_final=0.0, anneal_steps=1000),
            # the MDPs learn slower: a 3,000-step run (LOOPS), the entropy bonus annealed over all of it
            **{sid: dict(anneal_steps=3000) for sid in _MDP_SUITES},
        },
        "smoke": {
            "rl-discrete": dict(hidden=16, meta_batch_size=2, n_envs_per_task=2, ppo_epochs=1, n_minibatches=1),
            "rl-continuous": dict(hidden=16, meta_batch_size=2, n_envs_per_task=2, ppo_epochs=1, n_minibatches=1),
        },
    }
    LOOPS = {
        "quick": {"rl-discrete": dict(meta_steps=1000, eval_every=250, n_val_tasks=200, log_every=10),
                  "rl-continuous": dict(meta_steps=1000, eval_every=250, n_val_tasks=100, log_every=10),
                  **{sid: dict(meta_steps=3000, eval_every=500, n_val_tasks=200, log_every=10)
                     for sid in _MDP_SUITES}},
        "paper": {"rl-discrete": dict(meta_steps=5000, eval_every=500, n_val_tasks=500),
                  "rl-continuous": dict(meta_steps=5000, eval_every=500, n_val_tasks=500)},
    }

    def __init__(self, suite, config: Config, device, seed: int):
        super().__init__(suite, config, device, seed)
        probe_task = suite.sample("train", 1, torch.Generator().manual_seed(0))
        probe = suite.make_env(probe_task, 1, device=self.device)
        self.space, obs_dim = probe.action_space, probe.obs_dim
        task_dim = probe_task.features().shape[1] if config.privileged_value else 0
        if not self.space.discrete and self.space.low != -self.space.high:
            raise ConfigError(f"rl2 scales its actions by the bound of a symmetric box [-b, b]; {suite.id} "
                              f"has [{self.space.low}, {self.space.high}]")
        self.policy = seeded_init(seed, lambda: RecurrentPolicy(obs_dim, self.space, config.hidden, config.init_log_std,
                                                               reward_head=config.aux_reward_coef > 0,
                                                               task_dim=task_dim,
                                                               trial_progress=config.trial_progress)).to(self.device)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=config.lr, eps=1e-5)
        self.gen = torch.Generator(self.device).manual_seed(stream(seed, 1))
        self.steps = 0
        # the count bonus needs discrete (state, action) pairs: one-hot MDP states, or a bandit's single state
        self.n_states = probe.n_states or (1 if isinstance(probe, BanditEnv) else None)
        if config.count_bonus > 0 and not (self.space.discrete and self.n_states):
            raise ConfigError(f"rl2: count_bonus needs discrete states and actions (the bandit and tabular-MDP "
                              f"suites); set count_bonus=0 for {suite.id}")

    # --- contract -----------------------------------------------------------------------------
    def train_request(self) -> TrainRequest:
        return TrainRequest(n_tasks=self.config.meta_batch_size)

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        return dict(self.policy.named_parameters())

    def state_dict(self):
        return {"policy": self.policy.state_dict(), "opt": self.opt.state_dict(),
                "gen": self.gen.get_state(), "steps": self.steps}

    def load_state_dict(self, state) -> None:
        self.policy.load_state_dict(state["policy"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"].cpu() if hasattr(state["gen"], "cpu") else state["gen"])
        self.steps = int(state["steps"])

    # --- rollouts -----------------------------------------------------------------------------
    @torch.no_grad()
    def _rollout(self, tasks: RLTaskBatch, n_envs_per_task: int, env_gen, pol_gen):
        """One trial on every copy: time-major inputs (n, B, in), actions, log-probs, values
        (unnormalised), rewards, and the env."""
        env = self.suite.make_env(tasks, n_envs_per_task, generator=env_gen, device=self.device)
        pol = self.policy

        def act(x, h):
            out, v, h = pol(x[None], h)
            a = sample_action(pol, out[0], pol_gen)                  # policy units (log-probs, inputs)
            extras = {"logp": pol.dist(out[0]).log_prob(a), "value": v[0] * pol.ret_std + pol.ret_mean}
            return a, env_action(self.space, a), extras, h

        agent = RecurrentAgent(pol.inputs, act)
        rollout = run_trials(env, agent)
        if hasattr(env, "close"):
            env.close()
        trial = agent.trial()
        return trial.inputs, trial.actions, trial.extras["logp"], trial.extras["value"], rollout.rewards, env

    def meta_train_step(self, tasks: RLTaskBatch) -> dict[str, float]:
        c, pol = self.config, self.policy
        frac = min(self.steps / c.anneal_steps, 1.0)
        ent_coef = c.entropy_coef + frac * (c.entropy_final - c.entropy_coef)
        if c.anneal_lr:
            for group in self.opt.param_groups:
                group["lr"] = c.lr * (1 - 0.9 * frac)
        x, act, old_logp, values, rew, env = self._rollout(tasks, c.n_envs_per_task, self.gen, self.gen)
        n, B = rew.shape
        task = None
        if c.privileged_value:
            # the rollout's values came from the plain head; GAE uses the privileged one
            task = env.per_env(tasks.features().to(self.device))                  # (B, F)
            with torch.no_grad():
                values = pol.privileged_value(pol.features(x)[0], task) * pol.ret_std + pol.ret_mean
        trial_end = torch.zeros(n, B, dtype=torch.bool, device=self.device)
        trial_end[-1] = True
        bonus_scale = c.count_bonus * max(1.0 - self.steps / c.count_bonus_steps, 0.0)
        train_rew = rew + bonus_scale * self._visit_bonus(x, act) if bonus_scale > 0 else rew
        adv, ret = gae(train_rew, values, trial_end, c.gamma, c.gae_lambda)    # (n, B) each
        # running statistics of the value targets (EMA), then normalised targets
        pol.ret_mean.mul_(0.9).add_(0.1 * ret.mean())
        pol.ret_std.mul_(0.9).add_(0.1 * ret.std().clamp_min(1e-3))
        target = (ret - pol.ret_mean) / pol.ret_std
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0}
        if c.aux_reward_coef > 0:
            stats["reward_loss"] = 0.0
        n_updates = 0
        for _ in range(c.ppo_epochs):
            perm = torch.randperm(B, generator=self.gen, device=self.device)
            for idx in perm.chunk(c.n_minibatches):
                z, _ = pol.features(x[:, idx])
                out, v = pol.heads(z)
                if task is not None:
                    v = pol.privileged_value(z, task[idx])
                d = pol.dist(out)
                logp = d.log_prob(act[:, idx])
                pl = ppo_clip_loss(logp, old_logp[:, idx], adv[:, idx], c.clip)
                vl = F.mse_loss(v, target[:, idx])
                ent = d.entropy().mean()
                loss = pl + c.value_coef * vl - ent_coef * ent
                aux = ()
                if c.aux_reward_coef > 0:
                    # the true reward (never the count bonus): the hidden state should remember the task
                    aux = (F.mse_loss(pol.predict_reward(z, act[:, idx]), rew[:, idx]),)
                    loss = loss + c.aux_reward_coef * aux[0]
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(pol.parameters(), c.max_grad_norm)
                self.opt.step()
                with torch.no_grad():
                    kl = (old_logp[:, idx] - logp).mean()
                for k, val in zip(stats, (pl, vl, ent, kl, *aux)):
                    stats[k] += float(val.detach())
                n_updates += 1
        self.steps += 1
        out = {k: v / n_updates for k, v in stats.items()}
        out["trial_return"] = float(rew.sum(0).mean())
        return out

    def _visit_bonus(self, x: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """1 / sqrt(n) per step (n, B), n = visits of the step's (state, action) in the trial so far,
        this one included; the state is read from the one-hot observation at the front of `x`."""
        n_actions = self.space.n
        state = x[..., :self.n_states].argmax(-1) if self.n_states > 1 else torch.zeros_like(act)
        pair = (state * n_actions + act).unsqueeze(-1)                              # (n, B, 1)
        visits = F.one_hot(pair.squeeze(-1), self.n_states * n_actions).cumsum(0).gather(-1, pair).squeeze(-1)
        return visits.float().rsqrt()

    def evaluate(self, tasks: RLTaskBatch) -> dict[str, torch.Tensor]:
        """Play `suite.eval_trials` trials per task (no learning) and score the episode returns."""
        n_copies = self.suite.eval_trials
        env_gen = eval_generator(tasks, "env", self.device)
        pol_gen = eval_generator(tasks, "policy/rl2", self.device)
        *_, rew, env = self._rollout(tasks, n_copies, env_gen, pol_gen)
        returns = per_task(episode_returns(rew, env.horizon), n_copies)          # (T, n_episodes)
        return self.suite.score(tasks, returns)
