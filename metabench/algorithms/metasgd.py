"""Meta-SGD.

Li, Zhou, Chen & Li (2017). "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning."
arXiv:1707.09835.

Summary
    MAML in which the inner step size is itself meta-learned, one value per parameter entry:
    theta'_i = theta - alpha o grad L_support(theta), with alpha the same shape as theta and
    learned together with theta by the outer Adam through the query loss (second order).
    One inner step, in training and at test.

Implementation details
    * Subclass of `MAML`: the same inner loop (`MAML.inner_loop`; loop or vmap, chosen by
      measurement), with `inner_lrs()` returning the learned alpha dict instead of the scalar
      `inner_lr` (`metabench.nn.functional.sgd_update` takes either).
    * alpha is initialised uniformly in `alpha_init` (the paper: [0.005, 0.1]) from a generator
      seeded by the run's seed; alpha counts as a meta-parameter (`meta_parameters`, checkpoints).
    * MAML's `inner_lr` field is not used.

Differences from the paper
    * Convolutions have no bias (batch norm follows).  The paper's per-setting meta-batch sizes
      and query counts were not re-checked against its text, so the presets take MAML's (Li et
      al. compare against MAML under the same settings), with one inner step: `quick` trains with
      one query per class (a compute budget), `paper` with MAML's paper counts.  On miniImageNet
      (in the paper) and CIFAR-FS (not in it) that is MAML's miniImageNet protocol (32 filters with
      max-pooling, meta-batch 4 / 2, 15 queries per class) with one inner step of the learned alpha.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from metabench.algorithms import maml
from metabench.algorithms.maml import MAML, without_inner_loss
from metabench.errors import ConfigError
from metabench.nn.functional import params_of
from metabench.seeding import stream


@dataclass(frozen=True)
class Config(maml.Config):
    alpha_init: tuple[float, float] = (0.005, 0.1)
    """alpha's initial values are drawn uniformly from this range (the paper's)."""
    inner_steps: int = 1
    """Inner steps during meta-training (the paper: 1)."""
    test_inner_steps: int = 1
    """Inner steps at validation and test (the paper: 1, with the learned alpha)."""

    def validate(self) -> None:
        super().validate()
        lo, hi = self.alpha_init
        if not 0 <= lo <= hi:
            raise ConfigError(f"alpha_init must be a range (low, high) with 0 <= low <= high, got {self.alpha_init}")


def _one_step(table: dict) -> dict:
    return {p: {k: {**v, "inner_steps": 1, "test_inner_steps": 1} for k, v in kinds.items()}
            for p, kinds in table.items()}


class MetaSGD(MAML):
    name = "metasgd"
    Config = Config
    PRESETS = _one_step(without_inner_loss(MAML.PRESETS))
    LOOPS = {
        "paper": MAML.LOOPS["paper"],
        # 3,000 steps (~15 min on 2 cores): MAML's quick run was at 95.5% by step 3,000
        "quick": {"classification": dict(meta_steps=3_000, eval_every=500, n_val_tasks=200),
                  "regression": dict(meta_steps=12_000, eval_every=2000, n_val_tasks=100)},
    }

    def __init__(self, suite, config: Config, device, seed: int):
        super().__init__(suite, config, device, seed)
        g = torch.Generator().manual_seed(stream(seed, 3, stride=104_729))
        lo, hi = config.alpha_init
        self.alpha = {n: (lo + (hi - lo) * torch.rand(p.shape, generator=g)).to(self.device).requires_grad_(True)
                      for n, p in params_of(self.model).items()}
        self.opt = torch.optim.Adam([*self.model.parameters(), *self.alpha.values()], lr=config.outer_lr)

    def inner_lrs(self) -> dict[str, torch.Tensor]:
        return self.alpha

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        return {**params_of(self.model), **{f"alpha/{n}": a for n, a in self.alpha.items()}}

    def state_dict(self):
        return {**super().state_dict(), "alpha": {n: a.detach().clone() for n, a in self.alpha.items()}}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            for n, a in self.alpha.items():
                a.copy_(state["alpha"][n])
