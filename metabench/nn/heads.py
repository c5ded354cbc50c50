"""Classifier heads over features, for learners that adapt, fit or compute a head per task.

* Per-task linear heads, batched over the tasks of a batch (`Head`, `head_out`): ANIL adapts
  them in its inner loop, `finetune` fits new ones on each test task's support set.
* The nearest-prototype rule (`prototypes`, `logits_from`): class means of the support
  embeddings and a softmax over negative squared Euclidean distances to them (Prototypical
  Networks; `pixel-centroid` applies it to raw pixels).
"""
from __future__ import annotations

import torch

Head = dict[str, torch.Tensor]   # "weight": (T, n_out, D), "bias": (T, n_out)


def head_out(z: torch.Tensor, head: Head) -> torch.Tensor:
    """Per-task linear heads: z (T, N, D) -> (T, N, n_out)."""
    return torch.baddbmm(head["bias"][:, None, :], z, head["weight"].transpose(1, 2))


def prototypes(z_support: torch.Tensor, y_support: torch.Tensor, n_way: int) -> torch.Tensor:
    """Class means of support embeddings: (n_support, D), (n_support,) -> (n_way, D)."""
    sums = torch.zeros(n_way, z_support.shape[-1], dtype=z_support.dtype, device=z_support.device)
    sums.index_add_(0, y_support, z_support)
    counts = torch.bincount(y_support, minlength=n_way).to(z_support.dtype)
    return sums / counts[:, None]


def logits_from(z_query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Negative squared Euclidean distances: (n_query, D), (n_way, D) -> (n_query, n_way)."""
    return -(z_query[:, None, :] - protos[None, :, :]).pow(2).sum(-1)
