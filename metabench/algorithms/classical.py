"""Classical reference rows for the meta-RL suites: what the RL² paper compared its learner with.

Duan et al. 2016 (arXiv 1611.02779), section 4, put RL² next to hand-designed learners; these are
they, vectorised over every copy of every task like the environments. None of them meta-trains
(`needs_training = False`: the engine skips training, records meta_steps = 0 and one validation
point at step 0); `evaluate` runs `suite.eval_trials` fresh trials per test task.

- ``random``: uniform actions (every RL suite; continuous: uniform in the action box).
- ``oracle``: knows the task. Bandits: always the best arm. Tabular MDPs: acts greedily on the
  finite-horizon optimal Q of the true MDP (`metabench.rl.mdp.value_iteration`). Navigation: heads
  straight for the goal, clip(goal - position). Not for MuJoCo.
- Bandits (Beta(1, 1) prior on each arm; pulls n_i and successes s_i):
  ``greedy`` (highest posterior mean (s_i + 1)/(n_i + 2), random tie-break), ``epsilon-greedy``
  (greedy, but a uniformly random arm with probability epsilon), ``ucb1`` (Auer et al. 2002: each
  arm once in index order, then the highest s_i/n_i + c sqrt(2 ln t / n_i), t = pulls so far,
  ties to the lowest index; c = 1 is Auer's rule), ``thompson`` (Thompson 1933: sample each arm's
  Beta posterior, pull the best sample), ``gittins`` (see below). epsilon and c are tuned per suite
  on validation tasks (the presets below), as the RL² paper tuned its baselines.
- Tabular MDPs: ``psrl`` (Osband et al. 2013, posterior sampling for RL): at the start of every
  episode draw an MDP from the posterior - transitions ~ Dirichlet(1 + counts) per (s, a),
  reward means ~ Normal posterior of the N(1, 1) prior with unit observation noise (the true
  generative model, as in the RL² code) - solve it by finite-horizon value iteration, act
  greedily for the episode.

Gittins approximation: the Brezzi & Lai (2002) closed form for a Bernoulli arm with a Beta(a, b)
posterior, index = mu + sigma_n * psi(sigma_n^2 / (c sigma^2)), mu = a/(a+b), sigma^2 = mu(1-mu),
sigma_n^2 = sigma^2/(a+b+1), c = -ln(gamma), and Brezzi-Lai's piecewise psi. The trial is finite, so
by default the discount is horizon-adaptive, gamma = 1 - 1/(pulls left), and the last pull is
greedy (gamma = 0; option `discount` fixes gamma instead). Differences from the paper: the RL² table's
Gittins column used exact indices (method not stated); this approximation is cheaper and its
scores are measured, not assumed (README). UCB1 spends its first k pulls trying every arm
once, which costs it most at n = 10 (5.97 on bandit-k5-n10 validation tasks at best, against
6.7 in the RL² table, whose UCB1 variant is not specified further).

Evaluation noise is drawn from generators seeded by the test-task ids only (`eval_generator`), so
these rows are deterministic functions of the test tasks: every seed gives the same numbers.

Why one module of ~410 lines: it is one table, ten small reference agents and the rows that
register them, kept together as the RL² paper printed them.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch

from metabench.algorithms.base import Algorithm, BoundedConfig, TrainRequest
from metabench.rl.core import RLTaskBatch, VecEnv, eval_generator
from metabench.rl.mdp import value_iteration
from metabench.rl.rollout import episode_returns, per_task, run_trials

PRESETS_NONE = {"smoke": {}, "quick": {}, "paper": {}}


@dataclasses.dataclass(frozen=True)
class NoConfig:
    """No options."""


@dataclasses.dataclass(frozen=True)
class EpsilonConfig(BoundedConfig):
    epsilon: float = 0.1
    """Probability of pulling a uniformly random arm instead of the greedy one."""

    BOUNDS = {"epsilon": "[0, 1]"}


@dataclasses.dataclass(frozen=True)
class UCBConfig:
    c: float = 1.0
    """Multiplier of the exploration bonus sqrt(2 ln t / n_i) (1 = Auer et al.'s UCB1)."""


@dataclasses.dataclass(frozen=True)
class GittinsConfig:
    discount: float | None = None
    """Discount gamma of the Gittins index; None = 1 - 1/(pulls left), adapted to the finite trial."""


@dataclasses.dataclass(frozen=True)
class PSRLConfig:
    dirichlet_prior: float = 1.0
    """Pseudo-count of every next state in the Dirichlet prior over transitions."""
    reward_prior_mean: float = 1.0
    """Mean of the Normal prior over reward means (RL²: 1)."""
    reward_prior_precision: float = 1.0
    """Precision of that prior (RL²: 1)."""
    reward_noise_precision: float = 1.0
    """Precision of the observed reward around its mean (RL²: 1)."""


class Classical(Algorithm):
    """Base of the rows that do not meta-train: a vectorised agent run through whole trials."""

    family = "classical"
    needs_training: ClassVar[bool] = False
    #: which `suite.env_family` values the algorithm handles
    env_families: ClassVar[frozenset[str]] = frozenset()
    Config = NoConfig
    PRESETS = PRESETS_NONE

    @classmethod
    def fits(cls, suite) -> tuple[bool, str]:
        family = getattr(suite, "env_family", None)
        if family in cls.env_families:
            return True, ""
        return False, f"{cls.name} is a reference row for {', '.join(sorted(cls.env_families))} suites only"

    def train_request(self) -> TrainRequest:
        return TrainRequest(n_tasks=1)

    def meta_train_step(self, batch) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        return {}

    @property
    def protocol(self) -> dict[str, Any]:
        return {"transductive": False, "query_batch": "n/a"}

    def evaluate(self, tasks: RLTaskBatch) -> dict[str, torch.Tensor]:
        suite = self.suite
        env = suite.make_env(tasks, suite.eval_trials, generator=eval_generator(tasks, "env", self.device),
                             device=self.device)
        agent = self.agent(env, eval_generator(tasks, f"policy/{self.name}", self.device))
        ro = run_trials(env, agent)
        if hasattr(env, "close"):
            env.close()
        returns = per_task(episode_returns(ro.rewards, env.horizon), env.n_envs_per_task)  # (T, n_episodes)
        return suite.score(tasks, returns)

    def agent(self, env: VecEnv, generator: torch.Generator):
        raise NotImplementedError


# --- agents -----------------------------------------------------------------------------------
class Agent:
    """begin_trial(env) / act(obs, t) -> action / observe(action, reward, next_obs, done)."""

    def __init__(self, env: VecEnv, generator: torch.Generator):
        self.env, self.g = env, generator

    def begin_trial(self, env: VecEnv) -> None:
        pass

    def observe(self, action, reward, next_obs, done) -> None:
        pass


class RandomAgent(Agent):
    def act(self, obs, t):
        space, B = self.env.action_space, self.env.n_envs
        if space.discrete:
            return torch.randint(0, space.n, (B,), generator=self.g, device=self.env.device)
        u = torch.rand(B, space.dim, generator=self.g, device=self.env.device)
        return space.low + (space.high - space.low) * u


class BanditAgent(Agent):
    """Keeps pulls n_i and successes s_i per copy: (B, k)."""

    def begin_trial(self, env):
        k = env.action_space.n
        self.pulls = torch.zeros(env.n_envs, k, device=env.device)
        self.wins = torch.zeros(env.n_envs, k, device=env.device)

    def observe(self, action, reward, next_obs, done):
        self.pulls.scatter_add_(1, action[:, None], torch.ones_like(reward)[:, None])
        self.wins.scatter_add_(1, action[:, None], reward[:, None])

    def tie_break(self) -> torch.Tensor:
        """Tiny uniform noise so that argmax breaks ties at random."""
        return 1e-6 * torch.rand(self.pulls.shape, generator=self.g, device=self.pulls.device)

    def greedy(self) -> torch.Tensor:
        return ((self.wins + 1) / (self.pulls + 2) + self.tie_break()).argmax(-1)


class BanditOracle(BanditAgent):
    def act(self, obs, t):
        return self.env.probs.argmax(-1)


class Greedy(BanditAgent):
    def act(self, obs, t):
        return self.greedy()


class EpsilonGreedy(BanditAgent):
    def __init__(self, env, generator, epsilon):
        super().__init__(env, generator)
        self.epsilon = epsilon

    def act(self, obs, t):
        B, k = self.pulls.shape
        explore = torch.rand(B, generator=self.g, device=self.pulls.device) < self.epsilon
        rand = torch.randint(0, k, (B,), generator=self.g, device=self.pulls.device)
        return torch.where(explore, rand, self.greedy())


def ucb1_choice(pulls: torch.Tensor, wins: torch.Tensor, t: int, c: float = 1.0) -> torch.Tensor:
    """UCB1's arm (B,) from pulls and wins (B, k) after t pulls: untried arms first (lowest index),
    then argmax of s_i/n_i + c sqrt(2 ln t / n_i) (ties to the lowest index)."""
    untried = pulls == 0
    safe = pulls.clamp_min(1)
    index = wins / safe + c * torch.sqrt(2 * math.log(max(t, 1)) / safe)
    index = torch.where(untried, torch.full_like(index, math.inf), index)
    return index.argmax(-1)   # torch.argmax returns the first maximal index


class UCB1(BanditAgent):
    def __init__(self, env, generator, c):
        super().__init__(env, generator)
        self.c = c

    def act(self, obs, t):
        return ucb1_choice(self.pulls, self.wins, t, self.c)


def sample_gamma(alpha: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Gamma(alpha, 1) draws with an explicit generator (torch.distributions takes none)."""
    return torch._standard_gamma(alpha, generator=g)


class Thompson(BanditAgent):
    def act(self, obs, t):
        a = sample_gamma(self.wins + 1, self.g)
        b = sample_gamma(self.pulls - self.wins + 1, self.g)
        return (a / (a + b)).argmax(-1)


def brezzi_lai_psi(s: torch.Tensor) -> torch.Tensor:
    """Brezzi & Lai (2002)'s piecewise approximation of the Gittins index's boundary function."""
    s = s.clamp_min(1e-12)
    r = s.rsqrt()
    big = (2 * s.log() - s.log().clamp_min(1e-12).log() - math.log(16 * math.pi)).clamp_min(0).sqrt()
    return torch.where(s <= 0.2, (s / 2).sqrt(),
           torch.where(s <= 1, 0.49 - 0.11 * r,
           torch.where(s <= 5, 0.63 - 0.26 * r,
           torch.where(s <= 15, 0.77 - 0.58 * r, big))))


def gittins_index(wins: torch.Tensor, pulls: torch.Tensor, discount) -> torch.Tensor:
    """Brezzi-Lai approximate Gittins index of Bernoulli arms with Beta(1 + s, 1 + n - s) posteriors."""
    a, b = wins + 1, pulls - wins + 1
    n = a + b
    mu = a / n
    c = -torch.log(torch.as_tensor(discount, dtype=mu.dtype, device=mu.device))
    sigma_n = (mu * (1 - mu) / (n + 1)).sqrt()
    return mu + sigma_n * brezzi_lai_psi(1.0 / ((n + 1) * c))


class Gittins(BanditAgent):
    def __init__(self, env, generator, discount):
        super().__init__(env, generator)
        self.discount = discount

    def act(self, obs, t):
        left = self.env.trial_length - t
        if self.discount is None and left <= 1:      # gamma = 0: the index is the posterior mean
            return self.greedy()
        gamma = self.discount if self.discount is not None else 1.0 - 1.0 / left
        return (gittins_index(self.wins, self.pulls, gamma) + self.tie_break()).argmax(-1)


class MDPOracle(Agent):
    def begin_trial(self, env):
        P, R = env.tasks.params["transitions"], env.tasks.params["reward_means"]
        self.q = value_iteration(P.double(), R.double(), env.horizon).float()    # (T, H, S, A)

    def act(self, obs, t):
        s = obs.argmax(-1)
        return self.q[self.env.task_index, t % self.env.horizon, s].argmax(-1)


class PSRL(Agent):
    def __init__(self, env, generator, cfg: PSRLConfig):
        super().__init__(env, generator)
        self.cfg = cfg

    def begin_trial(self, env):
        B, S, A = env.n_envs, env.n_states, env.action_space.n
        self.counts = torch.zeros(B, S, A, S, device=env.device)
        self.visits = torch.zeros(B, S, A, device=env.device)
        self.reward_sum = torch.zeros(B, S, A, device=env.device)

    def act(self, obs, t):
        H = self.env.horizon
        self.state = obs.argmax(-1)
        if t % H == 0:   # a new episode: draw an MDP from the posterior and solve it
            c = self.cfg
            e = sample_gamma(self.counts + c.dirichlet_prior, self.g)
            P = e / e.sum(-1, keepdim=True)
            prec = c.reward_prior_precision + self.visits * c.reward_noise_precision
            mean = (c.reward_prior_mean * c.reward_prior_precision + self.reward_sum * c.reward_noise_precision) / prec
            R = mean + prec.rsqrt() * torch.randn(mean.shape, generator=self.g, device=mean.device)
            self.q = value_iteration(P, R, H)                                    # (B, H, S, A)
        return self.q[torch.arange(self.env.n_envs, device=obs.device), t % H, self.state].argmax(-1)

    def observe(self, action, reward, next_obs, done):
        b = torch.arange(self.env.n_envs, device=action.device)
        nxt = next_obs.argmax(-1)      # the true successor (run_trials passes final_obs at episode ends)
        self.counts[b, self.state, action, nxt] += 1
        self.visits[b, self.state, action] += 1
        self.reward_sum[b, self.state, action] += reward


class NavigationOracle(Agent):
    def act(self, obs, t):
        return (self.env.goal - obs).clamp(-0.1, 0.1)


# --- the registered rows ----------------------------------------------------------------------
class RandomBaseline(Classical):
    name = "random"
    supports = frozenset({"rl-discrete", "rl-continuous"})
    env_families = frozenset({"bandit", "tabular-mdp", "navigation", "mujoco"})

    def agent(self, env, g):
        return RandomAgent(env, g)


class OracleBaseline(Classical):
    name = "oracle"
    supports = frozenset({"rl-discrete", "rl-continuous"})
    env_families = frozenset({"bandit", "tabular-mdp", "navigation"})

    def agent(self, env, g):
        family = self.suite.env_family
        return {"bandit": BanditOracle, "tabular-mdp": MDPOracle, "navigation": NavigationOracle}[family](env, g)


def _tuned(per_suite: dict[str, dict]) -> dict[str, dict[str, dict]]:
    return {preset: dict(per_suite) for preset in ("smoke", "quick", "paper")}


class _BanditBaseline(Classical):
    supports = frozenset({"rl-discrete"})
    env_families = frozenset({"bandit"})


class GreedyBaseline(_BanditBaseline):
    name = "greedy"

    def agent(self, env, g):
        return Greedy(env, g)


class EpsilonGreedyBaseline(_BanditBaseline):
    name = "epsilon-greedy"
    Config = EpsilonConfig
    # epsilon tuned on 500 validation tasks per suite over {0.01, 0.03, 0.05, 0.1, 0.2} (0 would be greedy).
    PRESETS = _tuned({"bandit-k5-n10": {"epsilon": 0.01}, "bandit-k5-n100": {"epsilon": 0.01},
                      "bandit-k10-n100": {"epsilon": 0.01}, "bandit-k50-n500": {"epsilon": 0.05}})
    # The textbook setting (epsilon 0.1), untuned, as its own entry (issue 22 §4).
    VARIANTS = {"epsilon-greedy-textbook": "epsilon-greedy[epsilon=0.1]"}

    def agent(self, env, g):
        return EpsilonGreedy(env, g, self.config.epsilon)


class UCB1Baseline(_BanditBaseline):
    name = "ucb1"
    Config = UCBConfig
    # c tuned on 500 validation tasks per suite over {0.05, 0.1, 0.2, 0.3, 0.5, 1} (mean total reward,
    # e.g. bandit-k5-n100: 76.3 / 76.7 / 77.1 / 76.7 / 73.2 / 65.8); the RL² paper tuned its baselines too.
    PRESETS = _tuned({"bandit-k5-n10": {"c": 0.2}, "bandit-k5-n100": {"c": 0.2},
                      "bandit-k10-n100": {"c": 0.1}, "bandit-k50-n500": {"c": 0.05}})
    # Auer et al.'s bound (c = 1), untuned, as its own entry (issue 22 §4).
    VARIANTS = {"ucb1-textbook": "ucb1[c=1]"}

    def agent(self, env, g):
        return UCB1(env, g, self.config.c)


class ThompsonBaseline(_BanditBaseline):
    name = "thompson"

    def agent(self, env, g):
        return Thompson(env, g)


class GittinsBaseline(_BanditBaseline):
    name = "gittins"
    Config = GittinsConfig

    def agent(self, env, g):
        return Gittins(env, g, self.config.discount)


class PSRLBaseline(Classical):
    name = "psrl"
    supports = frozenset({"rl-discrete"})
    env_families = frozenset({"tabular-mdp"})
    Config = PSRLConfig

    def agent(self, env, g):
        return PSRL(env, g, self.config)


CLASSICAL = (RandomBaseline, OracleBaseline, GreedyBaseline, EpsilonGreedyBaseline, UCB1Baseline,
             ThompsonBaseline, GittinsBaseline, PSRLBaseline)
