"""Nearest class mean on raw pixels: the floor of every classification leaderboard.

No paper of its own: the nearest-centroid rule on raw inputs, i.e. a Prototypical Network
(Snell et al. 2017) whose embedding is the identity, with nothing learned.

Summary
    A class's centroid is the mean of its support images (flattened pixels); a query gets the
    class of the nearest centroid in squared Euclidean distance.  There is nothing to train:
    `needs_training = False`, so the engine runs zero meta-training steps and goes straight to
    the fixed test tasks.

Implementation details
    * `loss` is the cross-entropy of the softmax over negative squared distances (as ProtoNet's),
      reported for completeness; the primary metric is accuracy.
    * Each query is classified on its own (`transductive=False`).
    * Every preset is empty on every suite, miniImageNet and CIFAR-FS included: there is nothing
      to train or tune.  Its adaptation budget is one pass over the support set (the centroids).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from metabench.algorithms.base import Algorithm, TrainRequest, classification_metrics
from metabench.nn.heads import logits_from, prototypes


@dataclass(frozen=True)
class Config:
    """No options: there is nothing to tune."""


class PixelCentroid(Algorithm):
    name = "pixel-centroid"
    family = "baseline"
    supports = frozenset({"classification"})
    needs_training = False
    Config = Config
    PRESETS = {"smoke": {}, "quick": {}, "paper": {}}

    def train_request(self) -> TrainRequest:
        return TrainRequest(n_tasks=1)

    def meta_train_step(self, batch) -> dict[str, float]:
        return {}

    @torch.no_grad()
    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        T = batch.n_tasks
        acc, loss = torch.zeros(T), torch.zeros(T)
        for t in range(T):
            zs, zq = batch.support_x[t].flatten(1), batch.query_x[t].flatten(1)   # (S, pixels), (Q, pixels)
            logits = logits_from(zq, prototypes(zs, batch.support_y[t], batch.n_way))
            loss[t], acc[t] = classification_metrics(logits, batch.query_y[t])
        return {"accuracy": acc, "loss": loss}

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        return {}

    def backbone(self) -> str:
        return "pixels"

    def state_dict(self):
        return {}

    def load_state_dict(self, state) -> None:
        pass
