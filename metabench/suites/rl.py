"""Meta-RL suites with torch-vectorised environments: Bernoulli bandits, random tabular MDPs
(Duan et al. 2016, "RL²: Fast reinforcement learning via slow reinforcement learning",
arXiv 1611.02779, section 4) and 2-D navigation (Finn et al. 2017, "Model-agnostic
meta-learning", section 5.3).

A task is an `RLTaskBatch` (see `metabench.rl` for the whole contract: `make_env`, trials,
`score`). Train, validation and test tasks come from the same distribution and differ only in
their seeds (as in both papers). Each suite has 1000 fixed test tasks (500 for navigation):
with 1000 tasks the 95% interval of a bandit-k5-n100 mean total reward is about +-0.6 (1% of
the mean), well under the gaps the RL² table separates, and a classical baseline evaluates all
of them in seconds; navigation rollouts are 100 steps and MAML adapts per task, so 500.

Metrics per test task (the engine writes one `tasks` row per task and metric):
- bandits and MDPs: ``trial_return`` (primary; total reward over the trial, averaged over
  ``eval_trials`` independent trials of the task), ``normalized_score`` = (R - random) / G, where
  random is the task's expected total reward under uniformly random actions and G the mean gap
  (oracle - random) over the suite's fixed test tasks, so the test-set mean is exactly
  (mean R - mean random) / (mean oracle - mean random): 0 for random, 1 for the optimal policy. A
  per-task denominator would blow up on tasks whose arms are nearly equal. Bandits also record
  ``regret`` = n * max(p) - R; MDPs ``oracle_ratio`` = R / mean oracle return (SNAIL's
  normalisation of the RL² table: random scores 0.482 at n=10).
- navigation: ``return@k`` = return of the episode after k adaptation steps (gradient learners)
  or after k earlier episodes of the trial (recurrent learners), k = 0..3; primary ``return@1``
  (the MAML paper's headline: -40.4 before, -11.7 after one step); ``normalized_score`` of
  ``return@1`` as above (random: uniform actions in the box, 1024 fixed rollouts shared by all
  goals, a Monte Carlo error of about 1% of the random-oracle gap; oracle: head straight for the
  goal).

Differences from the papers: navigation does not end an episode within 0.01 of the goal (see
`Navigation2DEnv`); the MAML paper's text says "negative squared distance" but its returns
(-40 for a policy that stays near the origin, 100 steps, goals in the unit square) match the
Euclidean distance used by its code, which we follow.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any

import torch

from metabench.rl.core import RLTaskBatch, VecEnv
from metabench.rl.envs import BanditEnv, Navigation2DEnv, TabularMDPEnv
from metabench.rl.mdp import policy_value, value_iteration
from metabench.suites.base import SPLITS, Suite
from metabench.errors import ConfigError


_TEST_MEANS: dict[tuple, dict[str, float]] = {}


class RLSuite(Suite):
    """Base class of the meta-RL suites; subclasses implement `_draw`, `_reference`, `_describe`."""

    #: 'bandit' / 'tabular-mdp' / 'navigation' / 'mujoco': which baselines fit
    env_family: str = ""
    env_class: type[VecEnv]
    horizon: int = 1
    """Steps per episode."""
    episodes_per_trial: int = 1
    """Episodes per trial (RL²'s n for MDPs; navigation: episodes a test trial reports on)."""
    eval_trials: int = 4
    """Independent trials per test task averaged by `evaluate` (a lower-noise per-task value)."""
    eval_batch_size: int = 250
    """Test tasks per `evaluate` call (the engine reads this; environments are vectorised)."""
    n_test_tasks = 1000
    n_val_tasks = 1000

    # --- sampling -----------------------------------------------------------------------------
    def _sample(self, split, n_tasks, generator, **_ignored) -> RLTaskBatch:
        params = self._draw(n_tasks, generator)
        return self._finish(params)

    def _finish(self, params: dict[str, torch.Tensor], task_ids=None) -> RLTaskBatch:
        params = {k: v.to(self.device) for k, v in params.items()}
        ref = self._reference(params)
        return RLTaskBatch(params, ref, self._describe(params, ref), task_ids)

    def fixed_tasks(self, split: str = "test", n: int | None = None, batch_size: int = 250, start: int = 0):
        """Fixed task i is drawn from its own generator (seed `task_seed(split, i)`), so it is the
        same whatever the batch size; references are then computed for the whole batch at once."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        if not self._prepared:
            raise RuntimeError(f"suite {self.id} was not prepared; call prepare() first")
        total = n if n is not None else (self.n_test_tasks if split == "test" else self.n_val_tasks)
        for lo in range(start, total, batch_size):
            ids = list(range(lo, min(lo + batch_size, total)))
            parts = [self._draw(1, torch.Generator().manual_seed(self.task_seed(split, i))) for i in ids]
            params = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            yield self._finish(params, ids)

    def _draw(self, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _reference(self, params) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _describe(self, params, ref) -> list[dict[str, Any]]:
        raise NotImplementedError

    # --- environments ------------------------------------------------------------------------
    def make_env(self, tasks: RLTaskBatch, n_envs_per_task: int = 1, *, episodes_per_trial: int | None = None,
                 generator: torch.Generator | None = None, device=None) -> VecEnv:
        """A vectorised environment with `n_envs_per_task` copies of each task (see `metabench.rl`)."""
        return self.env_class(tasks, n_envs_per_task, self.horizon, episodes_per_trial or self.episodes_per_trial,
                              generator=generator, device=device or self.device)

    # --- scoring ------------------------------------------------------------------------------
    @property
    def _test_means(self) -> dict[str, float]:
        """Mean reference scores over the fixed test tasks (computed once per process and suite)."""
        key = (self.id, self.version, self.n_test_tasks)
        if key not in _TEST_MEANS:
            sums = {"random": 0.0, "oracle": 0.0}
            for b in self.fixed_tasks("test", self.n_test_tasks, batch_size=1000):
                for k in sums:
                    sums[k] += float(b.reference[k].sum())
            _TEST_MEANS[key] = {k: v / self.n_test_tasks for k, v in sums.items()}
        return _TEST_MEANS[key]

    @property
    def reference_gap(self) -> float:
        """Mean (oracle - random) over the fixed test tasks: the denominator of normalized_score."""
        return self._test_means["oracle"] - self._test_means["random"]

    @property
    def mean_oracle(self) -> float:
        return self._test_means["oracle"]

    def normalized(self, tasks: RLTaskBatch, score: torch.Tensor) -> torch.Tensor:
        return (score.double() - tasks.reference["random"].to(score.device)) / self.reference_gap

    def score(self, tasks: RLTaskBatch, returns: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-task metrics from `returns` (T, n_episodes): the undiscounted return of each episode of
        the trial, averaged over the copies of a task. Returns metric -> (T,) float64 on the CPU."""
        if returns.dim() != 2 or returns.shape[0] != tasks.n_tasks:
            raise ConfigError(f"{self.id}: score() expects returns of shape (n_tasks={tasks.n_tasks}, n_episodes), "
                              f"got {tuple(returns.shape)}")
        returns = returns.detach().double().cpu()
        total = returns.sum(1)
        out = {"trial_return": total, "normalized_score": self.normalized(tasks.to("cpu"), total)}
        out.update(self._extra_metrics(tasks.to("cpu"), total))
        return out

    def _extra_metrics(self, tasks, total) -> dict[str, torch.Tensor]:
        return {}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"env_family": self.env_family, "horizon": self.horizon,
                  "episodes_per_trial": self.episodes_per_trial, "eval_trials": self.eval_trials})
        return d


def _top2_gap(p: torch.Tensor) -> torch.Tensor:
    top = p.topk(min(2, p.shape[-1]), dim=-1).values
    return top[..., 0] - top[..., -1]


class Bandit(RLSuite):
    """k Bernoulli arms with success probabilities p ~ U[0, 1]; a trial is n pulls."""

    version = 1
    kind = "rl-discrete"
    primary_metric = "trial_return"
    env_family = "bandit"
    env_class = BanditEnv

    def __init__(self, k: int, n: int):
        super().__init__()
        self.k, self.n = k, n
        self.horizon, self.episodes_per_trial = n, 1
        self.id = f"bandit-k{k}-n{n}"

    def _draw(self, n, g):
        return {"probs": torch.rand(n, self.k, generator=g, dtype=torch.float64)}

    def _reference(self, params):
        p = params["probs"]
        return {"random": self.n * p.mean(-1), "oracle": self.n * p.max(-1).values}

    def _describe(self, params, ref):
        p = params["probs"].cpu()
        return [{"arm_probs": [round(float(x), 4) for x in row], "best_arm": int(row.argmax()),
                 "gap": round(float(gap), 4)} for row, gap in zip(p, _top2_gap(p))]

    def _extra_metrics(self, tasks, total):
        return {"regret": tasks.reference["oracle"] - total}


class TabularMDP(RLSuite):
    """Random tabular MDPs: 10 states, 5 actions, episodes of 10 steps, n episodes per trial.

    As in the RL² code (rllab sandbox `RandomTabularMDPEnv`): reward means ~ N(1, 1) per (s, a),
    observed rewards ~ N(mean, 1), transitions ~ Dirichlet(1, ..., 1) per (s, a), every episode
    starts in state 0.
    """

    version = 1
    kind = "rl-discrete"
    primary_metric = "trial_return"
    env_family = "tabular-mdp"
    env_class = TabularMDPEnv
    n_states, n_actions = 10, 5

    def __init__(self, n_episodes: int):
        super().__init__()
        self.horizon, self.episodes_per_trial = 10, n_episodes
        self.id = f"tabular-mdp-n{n_episodes}"

    def _draw(self, n, g):
        S, A = self.n_states, self.n_actions
        means = 1.0 + torch.randn(n, S, A, generator=g, dtype=torch.float64)
        # Dirichlet(1) = normalised Exp(1) draws (Gamma(1) is exponential: -log U).
        e = -torch.log(torch.rand(n, S, A, S, generator=g, dtype=torch.float64).clamp_min(1e-300))
        return {"transitions": e / e.sum(-1, keepdim=True), "reward_means": means}

    def _reference(self, params):
        P, R = params["transitions"], params["reward_means"]
        q = value_iteration(P, R, self.horizon)                              # (T, H, S, A)
        uniform = torch.full_like(R, 1.0 / self.n_actions)
        v_rand = policy_value(P, R, uniform, self.horizon)                   # (T, S)
        n = self.episodes_per_trial
        return {"random": n * v_rand[:, 0], "oracle": n * q[:, 0, 0].max(-1).values}

    def _describe(self, params, ref):
        n = self.episodes_per_trial
        return [{"optimal_episode_return": round(float(o) / n, 4), "random_episode_return": round(float(r) / n, 4)}
                for o, r in zip(ref["oracle"].cpu(), ref["random"].cpu())]

    def _extra_metrics(self, tasks, total):
        return {"oracle_ratio": total / self.mean_oracle}


class Navigation2D(RLSuite):
    """Point navigation to a goal ~ U[-0.5, 0.5]^2, horizon 100; test trials of 4 episodes."""

    version = 1
    kind = "rl-continuous"
    primary_metric = "return@1"
    env_family = "navigation"
    env_class = Navigation2DEnv
    n_test_tasks = 500
    n_val_tasks = 500
    eval_trials = 20          # the MAML paper evaluates with 40 trajectories per step
    n_random_rollouts = 1024

    def __init__(self):
        super().__init__()
        self.horizon, self.episodes_per_trial = 100, 4
        self.id = "navigation2d"

    def _draw(self, n, g):
        return {"goal": torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5}

    @cached_property
    def _random_paths(self) -> torch.Tensor:
        """Positions of 1024 uniformly random rollouts (the same for every goal): (1024, H, 2)."""
        g = torch.Generator().manual_seed(20170309)
        a = (torch.rand(self.n_random_rollouts, self.horizon, 2, generator=g, dtype=torch.float64) - 0.5) * 0.2
        return a.cumsum(1)

    def _reference(self, params):
        goal = params["goal"].cpu()
        paths = self._random_paths
        # distance of every random path point to every goal, 64 goals at a time: (64, rollouts * H)
        flat = paths.reshape(-1, 2)
        rand = torch.cat([-torch.cdist(chunk, flat, compute_mode="donot_use_mm_for_euclid_dist").sum(-1)
                          for chunk in goal.split(64)]) / self.n_random_rollouts if len(goal) else goal[:, 0]
        pos, oracle = torch.zeros_like(goal), torch.zeros(len(goal), dtype=torch.float64)
        for _ in range(self.horizon):
            pos = pos + (goal - pos).clamp(-0.1, 0.1)
            oracle -= (pos - goal).norm(dim=-1)
        return {"random": rand.to(self.device), "oracle": oracle.to(self.device)}

    def _describe(self, params, ref):
        g = params["goal"].cpu()
        return [{"goal": [round(float(x), 4) for x in row], "goal_distance": round(float(row.norm()), 4)} for row in g]

    def score(self, tasks, returns):
        if returns.dim() != 2 or returns.shape[0] != tasks.n_tasks:
            raise ConfigError(f"{self.id}: score() expects returns of shape (n_tasks={tasks.n_tasks}, n_episodes), "
                              f"got {tuple(returns.shape)}")
        returns = returns.detach().double().cpu()
        out = {f"return@{k}": returns[:, k] for k in range(returns.shape[1])}
        if returns.shape[1] > 1:
            out["normalized_score"] = self.normalized(tasks.to("cpu"), returns[:, 1])
        return out
