"""Sinusoid regression (Finn et al. 2017, section 5.1).

Each task is y = A sin(x - phi) with amplitude A ~ U[0.1, 5.0] and phase phi ~ U[0, pi];
inputs x ~ U[-5, 5].  The support set has K points (the suite's shot), the query set
`n_query` points from the same task (100 at test, for a low-variance MSE).  The metric is the
mean squared error on the query points.  Train, validation and test tasks come from the same
distribution (as in the paper); they differ only in their seeds.
"""
from __future__ import annotations

import math

import torch

from metabench.suites.base import Suite, TaskBatch


class Sinusoid(Suite):
    version = 1
    kind = "regression"
    primary_metric = "mse"
    common_budgets = (1, 10)   # MAML's one training step and its ten test steps (Finn et al. 2017, section 5.1)
    n_query_test = 100
    amplitude = (0.1, 5.0)
    phase = (0.0, math.pi)
    x_range = (-5.0, 5.0)

    def __init__(self, shot: int):
        super().__init__()
        self.n_shot = shot
        self.id = f"sinusoid-{shot}shot"

    def _sample(self, split, n_tasks, generator, *, n_way, n_shot, n_query) -> TaskBatch:
        def uniform(shape, lo, hi):
            return lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=torch.float32)

        amp = uniform((n_tasks, 1, 1), *self.amplitude)
        phase = uniform((n_tasks, 1, 1), *self.phase)
        xs = uniform((n_tasks, n_shot, 1), *self.x_range)
        xq = uniform((n_tasks, n_query, 1), *self.x_range)
        ys, yq = amp * torch.sin(xs - phase), amp * torch.sin(xq - phase)
        desc = [{"amplitude": round(float(a), 6), "phase": round(float(p), 6)}
                for a, p in zip(amp.flatten(), phase.flatten())]
        batch = TaskBatch(xs, ys, xq, yq, n_way=0, query_groups=1, descriptors=desc)
        return batch.to(self.device)
