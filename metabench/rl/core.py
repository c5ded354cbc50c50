"""Task batches, action spaces and the vectorised-environment base class (see `metabench.rl`)."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from metabench.errors import ConfigError


@dataclass(frozen=True)
class RLTaskBatch:
    """T meta-RL tasks: parameters as tensors with a leading task dimension T.

    ``params``: the task's physics (``probs`` (T, k) for bandits, ``transitions`` (T, S, A, S) and
    ``reward_means`` (T, S, A) for tabular MDPs, ``goal`` (T, 2) for navigation, ``target`` (T,)
    for MuJoCo). ``reference``: ``random`` and ``oracle`` (T,) float64, the expected score (the
    suite's primary metric) of the uniform-random and of the optimal policy on each task; empty
    when unknown. ``descriptors``: one JSON-able dict per task. ``task_ids``: fixed-task indices
    (None for freshly sampled training tasks).
    """

    params: dict[str, torch.Tensor]
    reference: dict[str, torch.Tensor] = field(default_factory=dict)
    descriptors: list[dict[str, Any]] = field(default_factory=list)
    task_ids: list[int] | None = None

    @property
    def n_tasks(self) -> int:
        return next(iter(self.params.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def to(self, device: torch.device | str) -> "RLTaskBatch":
        return replace(self, params={k: v.to(device) for k, v in self.params.items()},
                       reference={k: v.to(device) for k, v in self.reference.items()})

    @staticmethod
    def cat(batches: list["RLTaskBatch"]) -> "RLTaskBatch":
        b0 = batches[0]
        ids = [i for b in batches for i in (b.task_ids or [])]
        return RLTaskBatch(params={k: torch.cat([b.params[k] for b in batches]) for k in b0.params},
                           reference={k: torch.cat([b.reference[k] for b in batches]) for k in b0.reference},
                           descriptors=[d for b in batches for d in b.descriptors], task_ids=ids or None)

    def features(self) -> torch.Tensor:
        """Every parameter of each task flattened into one float vector (T, F), keys in sorted
        order: what a privileged critic may see during training (never the policy)."""
        return torch.cat([self.params[k].reshape(self.n_tasks, -1).float() for k in sorted(self.params)], 1)

    def select(self, index: torch.Tensor | list[int]) -> "RLTaskBatch":
        """The sub-batch of tasks `index` (a list or 1-D tensor of positions)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        pos = idx.tolist()
        return RLTaskBatch(params={k: v[idx.to(v.device)] for k, v in self.params.items()},
                           reference={k: v[idx.to(v.device)] for k, v in self.reference.items()},
                           descriptors=[self.descriptors[i] for i in pos] if self.descriptors else [],
                           task_ids=[self.task_ids[i] for i in pos] if self.task_ids else None)


@dataclass(frozen=True)
class ActionSpace:
    """Discrete (``n`` actions, int64 indices) or continuous (a ``dim``-vector in [low, high])."""

    discrete: bool
    n: int = 0
    dim: int = 0
    low: float = 0.0
    high: float = 0.0

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one environment's action: () if discrete, (dim,) if continuous."""
        return () if self.discrete else (self.dim,)


def eval_generator(tasks: RLTaskBatch, salt: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by the batch's task ids and `salt` (e.g. ``"env"``, ``"policy"``).

    Evaluation must be a function of (meta-parameters, tasks) only: seeding the environment noise
    from the task ids makes repeated evaluations identical and gives every algorithm the same
    noise stream on the same task batch.
    """
    ids = tasks.task_ids if tasks.task_ids is not None else []
    seed = zlib.crc32(f"{salt}:{len(ids)}:{','.join(map(str, ids))}".encode())
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


class VecEnv:
    """B = T * n_envs_per_task environments stepped together; see `metabench.rl` for the contract.

    Subclasses implement `_start_episode()` (reset the per-copy state at the start of every
    episode), `_observe()` -> (B, obs_dim) and `_transition(action)` -> reward (B,).
    """

    obs_dim: int
    n_states: int | None = None
    action_space: ActionSpace

    def __init__(self, tasks: RLTaskBatch, n_envs_per_task: int, horizon: int, episodes_per_trial: int,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None):
        if n_envs_per_task < 1 or horizon < 1 or episodes_per_trial < 1:
            raise ConfigError(f"n_envs_per_task, horizon and episodes_per_trial must be >= 1, got "
                              f"{n_envs_per_task}, {horizon}, {episodes_per_trial}")
        self.device = torch.device(device) if device is not None else tasks.device
        self.tasks = tasks.to(self.device)
        self.n_tasks, self.n_envs_per_task = tasks.n_tasks, n_envs_per_task
        self.n_envs = self.n_tasks * n_envs_per_task
        self.horizon, self.episodes_per_trial = horizon, episodes_per_trial
        self.trial_length = horizon * episodes_per_trial
        self.generator = generator if generator is not None else torch.Generator(self.device).manual_seed(0)
        if self.generator.device.type != self.device.type:
            raise ConfigError(f"the generator is on {self.generator.device}, the environment on {self.device}; "
                              f"pass torch.Generator(device={str(self.device)!r})")
        #: (B,) the task each copy plays (task-major layout)
        self.task_index = torch.arange(self.n_tasks, device=self.device).repeat_interleave(n_envs_per_task)
        self.t = 0
        self._done_true = torch.ones(self.n_envs, dtype=torch.bool, device=self.device)
        self._done_false = torch.zeros(self.n_envs, dtype=torch.bool, device=self.device)

    def per_env(self, x: torch.Tensor) -> torch.Tensor:
        """Repeat a per-task tensor (T, ...) to one row per environment copy (B, ...)."""
        return x.repeat_interleave(self.n_envs_per_task, dim=0)

    # --- the API ------------------------------------------------------------------------------
    def reset(self) -> torch.Tensor:
        """Start a new trial on the same tasks; returns the first observation (B, obs_dim)."""
        self.t = 0
        self._start_episode()
        return self._observe()

    def step(self, action: torch.Tensor):
        """Advance every copy by one step: (obs (B, obs_dim), reward (B,), done (B,), info)."""
        action = self._check_action(action)
        reward = self._transition(action)
        self.t += 1
        episode_done = self.t % self.horizon == 0
        trial_done = self.t == self.trial_length
        if trial_done:
            self.t = 0
        info = {"trial_done": trial_done, "episode": self.t // self.horizon, "t": self.t}
        if episode_done:
            info["final_obs"] = self._observe()   # the true last observation, before the reset
            self._start_episode()
        return self._observe(), reward, self._done_true if episode_done else self._done_false, info

    def _check_action(self, action: torch.Tensor) -> torch.Tensor:
        space = self.action_space
        if not isinstance(action, torch.Tensor):
            raise ConfigError(f"actions must be a torch tensor, got {type(action).__name__}")
        want = (self.n_envs, *space.shape)
        if tuple(action.shape) != want:
            raise ConfigError(f"expected actions of shape {want}, got {tuple(action.shape)}")
        if space.discrete:
            if action.dtype != torch.int64:
                raise ConfigError(f"discrete actions must be int64 indices, got {action.dtype}")
            # Range check on the CPU only: on a GPU it would force a device sync every step.
            if self.device.type == "cpu" and self.n_envs and (int(action.min()) < 0 or int(action.max()) >= space.n):
                raise ConfigError(f"discrete actions must lie in [0, {space.n}), got "
                                  f"{int(action.min())}..{int(action.max())}")
            return action
        return action.to(torch.float32).clamp(space.low, space.high)

    # --- for subclasses -----------------------------------------------------------------------
    def _start_episode(self) -> None:
        raise NotImplementedError

    def _observe(self) -> torch.Tensor:
        raise NotImplementedError

    def _transition(self, action: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
