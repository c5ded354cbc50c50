"""Q-learning based meta-RL with a recurrent task context, in the spirit of Meta-Q-Learning.

Fakoor, Chaudhari, Soatto & Smola (2020). "Meta-Q-Learning." ICLR. arXiv:1910.00125.
Continuous actions: TD3, Fujimoto, van Hoof & Meger (2018). "Addressing Function Approximation
Error in Actor-Critic Methods." ICML. arXiv:1802.09477.

Summary
    MQL's observation is that plain off-policy Q-learning over *all* training tasks, with the
    value function conditioned on a context that a GRU computes from the task's recent
    transitions, is already a strong meta-RL learner; adaptation to a new task is just
    collecting context.  Here: one replay buffer holds whole trials from every training task;
    z_t is the GRU's summary of the trial's transitions before step t (previous action, reward,
    done flag, observation) and the fraction of the trial played.
    * Discrete actions (bandits, tabular MDPs): Q(s_t, z_t, a) with double-DQN targets (van
      Hasselt et al. 2016): a* = argmax_a Q(s_{t+1}, z_{t+1}, a) with the online network,
      evaluated by a Polyak-averaged target network.  The greedy policy plays test trials.
    * Continuous actions (navigation2d, halfcheetah-*): TD3, as in MQL.  Twin critics
      Q_1, Q_2(s_t, z_t, a) and a deterministic actor mu(s_t, z_t); target
      y = r + gamma (1 - terminal) min_i Q'_i(s', z', clip(mu'(s', z') + clip(sigma eps, -c, c)))
      (clipped double-Q and target policy smoothing, `td3_target`), the actor and both target
      networks updated only every `policy_delay` critic updates (delayed policy updates,
      Polyak factor `tau`).  The deterministic actor plays test trials.
    At test time nothing is updated: the context z_t accumulates over the trial, so later
    episodes of a test trial can use what the earlier ones revealed about the task.

Implementation details
    * Layout: `MQL` is the registered entry and holds what both learners share (the replay
      buffer of whole trials, the recurrent rollout, the meta-step, evaluation); constructing it
      gives a `DoubleDQN` (discrete actions) or a `TD3` (continuous), each of which holds only its
      networks, its exploration, its update and its metrics (`metabench.algorithms.mql_learners`).
      The targets and the Polyak average are `metabench.rl.q_targets`; the trial is played by
      `metabench.rl.rollout.RecurrentAgent`.
    * Vectorised collection: each meta-step plays one trial on `n_envs_per_task` copies of each
      of `meta_batch_size` train tasks at once and appends the trials to a ring buffer of
      `buffer_trials` trials (tensors on the device); then `updates_per_step` gradient steps on
      minibatches of `batch_trials` whole trials (the GRU re-reads each trial, so the context is
      always recomputed with the current weights, no stale hidden states).
    * Exploration: discrete, epsilon-greedy (epsilon annealed linearly from `eps_start` to
      `eps_end` over `eps_steps` meta-steps); continuous, Gaussian noise of std `expl_noise`
      (in units of the action bound) on the actor's action, and uniform random actions for the
      first `random_steps` meta-steps (TD3's start_timesteps).
    * Transitions are credited over the whole trial (the trial is the unit of return, as for
      RL²): the target bootstraps across episode boundaries and stops at the trial end.
    * Discrete: Huber loss, gradient-norm clip, target network tau = `tau` per update;
      optionally (`dueling`) a dueling head, Q = V + A - mean_a A (Wang et al. 2016, arXiv
      1511.06581), which MQL does not use.
      Continuous: squared error for both critics (as TD3), gradient-norm clip on critic and
      actor, Adam with step size `lr` for both, actions in units of the action bound (the
      actor's tanh output times the bound is what the environment receives; the suites' boxes
      are symmetric).
    * Continuous networks: the context GRU belongs to the critic and is trained by the critic
      loss only; the actor reads the critic's context (detached) and the observation; the
      target actor reads the target critic's context.  Critic heads and the actor are MLPs with
      two hidden layers of `hidden` units.

Differences from the papers
    * MQL's test-time adaptation also re-uses the training buffer with propensity-score
      weighting (a logistic classifier between the new task's context and the buffer) for
      extra off-policy updates; this is not implemented: adaptation is context only (the
      paper's ablation "MQL without adaptation" already rivals PEARL on most tasks).
    * The context covers the trial so far (MQL: a window of the most recent transitions), and
      the trial is the unit of return (MQL's episodes are single episodes of one task).
    * MQL gives the actor its own context GRU; here the actor shares the critic's (detached).
    * TD3 runs no gradient updates during its first start_timesteps; here the first
      `random_steps` meta-steps only explore uniformly, updates start at once (the buffer
      holds whole trials from the first step).  TD3's networks are 400-300 (paper) / 256-256
      (code) units and its minibatch is 100-256 transitions; ours are in `Config` (a minibatch
      of `batch_trials` whole trials is `batch_trials` x trial length transitions).
    * MQL evaluates on MuJoCo locomotion with its own protocol; here it runs on the RL² bandits
      and MDPs, 2-D navigation and the MAML half-cheetah tasks, scored like every other learner.
      MQL is TD3 only; on the discrete suites its Q-learning is double DQN (the discrete
      counterpart), without the `dueling` head (ours, off in every preset).
    * Tuned constants (`quick`, discrete): discount 0.9 and 16 gradient steps per meta-step
      (measurements: docs/algorithms/mql.md); `quick` networks are smaller than TD3's (64 units,
      a compute budget).
"""
from __future__ import annotations

from dataclasses import dataclass
import torch

from metabench.algorithms.base import Algorithm, BoundedConfig, TrainRequest
from metabench.errors import ConfigError
from metabench.rl.core import RLTaskBatch, eval_generator
from metabench.rl.rollout import RecurrentAgent, episode_returns, per_task, run_trials
from metabench.seeding import stream


@dataclass(frozen=True)
class Config(BoundedConfig):
    hidden: int = 64
    """Units of the context GRU and of the Q-network's (continuous: critics' and actor's) hidden layers."""
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
    policy_noise: float = 0.2
    """Continuous (TD3): std of the target policy smoothing noise, in units of the action bound."""
    noise_clip: float = 0.5
    """Continuous (TD3): the smoothing noise is clipped to [-noise_clip, noise_clip]."""
    policy_delay: int = 2
    """Continuous (TD3): the actor and the target networks are updated every `policy_delay` critic updates."""
    expl_noise: float = 0.1
    """Continuous: std of the Gaussian exploration noise on the actor's action (units of the bound)."""
    random_steps: int = 10
    """Continuous: meta-steps at the start whose trials are played with uniform random actions."""
    eval_noise: float = 0.0
    """Continuous: std of the exploration noise of the evaluation policy (0 = deterministic)."""
    dueling: bool = False
    """Discrete: dueling head, Q = V + A - mean_a A (Wang et al. 2016), so the small differences
    between actions are learned apart from the large, nearly action-independent value."""

    WHO = "mql"
    BOUNDS = {**dict.fromkeys(("hidden", "meta_batch_size", "n_envs_per_task", "buffer_trials", "batch_trials",
                               "updates_per_step", "eps_steps", "policy_delay"), ">= 1"),
              **dict.fromkeys(("gamma", "tau", "eps_start", "eps_end", "eval_eps"), "[0, 1]"),
              **dict.fromkeys(("policy_noise", "noise_clip", "expl_noise", "random_steps", "eval_noise"), ">= 0"),
              "lr": "> 0"}


class MQL(Algorithm):
    """The registered entry: one name, two learners that share the trial replay buffer, the
    recurrent rollout and the meta-step; constructing `MQL` gives a `DoubleDQN` on discrete
    action spaces and a `TD3` on continuous ones (the suite's kind decides).

    Each learner defines: `_build(config, seed)` (networks, targets, optimisers; ``context``, the
    module whose GRU reads the trial and whose ``inputs`` builds its input), `_policy(training,
    n_envs, g)` -> ``act(x, h)`` for `RecurrentAgent` (the exploring policy of this meta-step, or
    the evaluation policy), `_update(idx)` (one gradient step on the buffered trials ``idx``),
    `_summary(updates, trial_return)` (the meta-step's metrics), ``_DISCRETE`` (the kind of action
    space it plays), ``_PARAMETERS`` (key prefix -> the online network whose parameters are the
    meta-parameters) and ``_STATE`` (the attributes its checkpoint holds: modules and optimisers
    by their ``state_dict``, integers as they are).  Both live in `metabench.algorithms.mql_learners`.
    """

    name = "mql"
    family = "rl-q-learning"
    supports = frozenset({"rl-discrete", "rl-continuous"})
    Config = Config
    PRESETS = {
        "paper": {"rl-discrete": dict(hidden=128, buffer_trials=20000, updates_per_step=8, eps_steps=2000),
                  # TD3's 256-unit layers (its code), tau 0.005, lr 3e-4, noise 0.2 / 0.5 / 0.1, delay 2
                  "rl-continuous": dict(hidden=256, meta_batch_size=16, n_envs_per_task=1, buffer_trials=5000,
                                        batch_trials=16, updates_per_step=16, lr=3e-4, tau=0.005, random_steps=25)},
        # tuned on bandit-k5-n100 (docs/algorithms/mql.md): discount 0.9 keeps the Q-values' arm
        # differences visible, 16 gradient steps per meta-step learn faster than 4
        "quick": {"rl-discrete": dict(hidden=64, meta_batch_size=32, n_envs_per_task=2, buffer_trials=4096,
                                      batch_trials=64, updates_per_step=16, eps_steps=100, gamma=0.9),
                  # not tuned yet (docs/algorithms/mql.md): a starting point
                  "rl-continuous": dict(hidden=64, meta_batch_size=16, n_envs_per_task=1, buffer_trials=2000,
                                        batch_trials=16, updates_per_step=8, lr=1e-3, tau=0.005, random_steps=10)},
        "smoke": {"rl-discrete": dict(hidden=8, meta_batch_size=2, n_envs_per_task=2, buffer_trials=16,
                                      batch_trials=4, updates_per_step=1, eps_steps=5),
                  "rl-continuous": dict(hidden=8, meta_batch_size=2, n_envs_per_task=1, buffer_trials=16,
                                        batch_trials=2, updates_per_step=2, random_steps=1)},
    }
    LOOPS = {
        "quick": {"rl-discrete": dict(meta_steps=1000, eval_every=250, n_val_tasks=200, log_every=10),
                  "rl-continuous": dict(meta_steps=1000, eval_every=250, n_val_tasks=100, log_every=10)},
        "paper": {"rl-discrete": dict(meta_steps=5000, eval_every=500, n_val_tasks=500),
                  "rl-continuous": dict(meta_steps=5000, eval_every=500, n_val_tasks=500)},
    }

    _DISCRETE: bool
    _PARAMETERS: dict[str, str] = {}
    _STATE: tuple[str, ...] = ()

    def __new__(cls, suite, *args, **kwargs):
        if cls is MQL:
            from metabench.algorithms.mql_learners import TD3, DoubleDQN   # they subclass MQL
            cls = TD3 if suite.kind == "rl-continuous" else DoubleDQN
        return super().__new__(cls)

    def __init__(self, suite, config: Config, device, seed: int):
        super().__init__(suite, config, device, seed)
        probe = suite.make_env(suite.sample("train", 1, torch.Generator().manual_seed(0)), 1, device=self.device)
        if hasattr(probe, "close"):
            probe.close()
        self.space, self.obs_dim, self.trial_length = probe.action_space, probe.obs_dim, probe.trial_length
        if self.space.discrete != self._DISCRETE:
            raise ConfigError(f"mql: {suite.id} is {suite.kind} but its action space is "
                              f"{'discrete' if self.space.discrete else 'continuous'}")
        self._build(config, seed)
        self.gen = torch.Generator(self.device).manual_seed(stream(seed, 3))
        # Ring buffer of whole trials: inputs x_t (what the GRU reads before acting at t), actions,
        # rewards; x_{t+1} is the next row (the row after the trial's last step is the closing input).
        n, C = self.trial_length, config.buffer_trials
        in_dim = self.obs_dim + (self.space.n if self.space.discrete else self.space.dim) + 3
        self.buf_x = torch.zeros(C, n + 1, in_dim, device=self.device)
        self.buf_a = torch.zeros(C, n, *self.space.shape, dtype=torch.long if self.space.discrete else torch.float32,
                                 device=self.device)
        self.buf_r = torch.zeros(C, n, device=self.device)
        self.size, self.ptr, self.steps = 0, 0, 0

    # --- contract -----------------------------------------------------------------------------
    def train_request(self) -> TrainRequest:
        return TrainRequest(n_tasks=self.config.meta_batch_size)

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        return {prefix + k: v for prefix, net in self._PARAMETERS.items() for k, v in getattr(self, net).named_parameters()}

    def state_dict(self):
        own = {k: getattr(self, k) for k in self._STATE}
        return {**{k: v if isinstance(v, int) else v.state_dict() for k, v in own.items()},
                "gen": self.gen.get_state(), "steps": self.steps, "size": self.size, "ptr": self.ptr,
                "buf_x": self.buf_x[:self.size].clone(), "buf_a": self.buf_a[:self.size].clone(),
                "buf_r": self.buf_r[:self.size].clone()}

    def load_state_dict(self, state) -> None:
        for k in self._STATE:
            if isinstance(getattr(self, k), int):
                setattr(self, k, int(state[k]))
            else:
                getattr(self, k).load_state_dict(state[k])
        self.gen.set_state(state["gen"])
        self.steps, self.size, self.ptr = int(state["steps"]), int(state["size"]), int(state["ptr"])
        self.buf_x[:self.size] = state["buf_x"]
        self.buf_a[:self.size] = state["buf_a"]
        self.buf_r[:self.size] = state["buf_r"]

    # --- the meta-step, shared ----------------------------------------------------------------
    @torch.no_grad()
    def _play(self, tasks: RLTaskBatch, n_copies: int, training: bool, env_gen, pol_gen):
        """One trial per copy: inputs (n + 1, B, in) (the last is the closing input), actions in
        the policy's units (n, B[, dim]), rewards (n, B), env."""
        env = self.suite.make_env(tasks, n_copies, generator=env_gen, device=self.device)
        agent = RecurrentAgent(self.context.inputs, self._policy(training, env.n_envs, pol_gen), closing_input=True)
        rollout = run_trials(env, agent)
        if hasattr(env, "close"):
            env.close()
        trial = agent.trial()
        return trial.inputs, trial.actions, rollout.rewards, env

    def _store(self, x, a, r) -> None:
        B = a.shape[1]
        C = self.config.buffer_trials
        idx = (self.ptr + torch.arange(B, device=self.device)) % C
        self.buf_x[idx], self.buf_a[idx], self.buf_r[idx] = x.transpose(0, 1), a.transpose(0, 1), r.T
        self.ptr = (self.ptr + B) % C
        self.size = min(self.size + B, C)

    def _batch(self, idx: torch.Tensor):
        """Buffered trials `idx`, time-major: inputs (n + 1, b, in), actions (n, b[, dim]), rewards
        (n, b), and the terminal flags (n, b): only the trial's last step, no bootstrap after it."""
        x = self.buf_x[idx].transpose(0, 1)
        a, r = self.buf_a[idx].transpose(0, 1), self.buf_r[idx].T
        terminal = torch.zeros_like(r)
        terminal[-1] = 1.0
        return x, a, r, terminal

    def meta_train_step(self, tasks: RLTaskBatch) -> dict[str, float]:
        c = self.config
        x, a, r, _ = self._play(tasks, c.n_envs_per_task, True, self.gen, self.gen)
        self._store(x, a, r)
        updates = []
        for _ in range(c.updates_per_step):
            idx = torch.randint(0, self.size, (min(c.batch_trials, self.size),), generator=self.gen, device=self.device)
            updates.append(self._update(idx))
        summary = self._summary(updates, float(r.sum(0).mean()))
        self.steps += 1
        return summary

    def evaluate(self, tasks: RLTaskBatch) -> dict[str, torch.Tensor]:
        """Play `suite.eval_trials` trials per task with the evaluation policy (discrete: greedy,
        or `eval_eps`-greedy; continuous: the actor, plus `eval_noise`); the context is the only
        thing that adapts."""
        n_copies = self.suite.eval_trials
        _, _, rew, env = self._play(tasks, n_copies, False, eval_generator(tasks, "env", self.device),
                                    eval_generator(tasks, "policy/mql", self.device))
        return self.suite.score(tasks, per_task(episode_returns(rew, env.horizon), n_copies))


_LEARNER_NAMES = ("DoubleDQN", "TD3", "ContextQNet", "ContextCritic", "Actor")


def __getattr__(name: str):
    """The learners and their networks stay importable from here (they live in mql_learners,
    which imports this module, hence the lazy look-up)."""
    if name in _LEARNER_NAMES:
        from metabench.algorithms import mql_learners
        return getattr(mql_learners, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
