"""The network of the gradient-based few-shot learners, chosen by the suite's task kind.

MAML, its relatives (FOMAML, Meta-SGD, ANIL) and Reptile all use the network of Finn et al.
(2017): a Conv-4 with one output per class on images, a 1-`hidden`-`hidden`-1 ReLU MLP on
sinusoid regression.  `network_for` builds it with its loss; `backbone_label` names it as the
published tables do (`Algorithm.backbone`).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from metabench.nn.layers import MLP, Conv4


def network_for(suite, hidden: int, arch: str) -> tuple[torch.nn.Module, Callable[..., torch.Tensor]]:
    """(network, loss) for `suite`: a Conv-4 (`arch` 'strided' or 'pool', `hidden` channels) with
    `n_way` outputs and cross-entropy for classification, else the MLP and mean squared error.
    Unseeded: build it inside `seeded_init`."""
    if suite.kind == "classification":
        channels, size = suite.input_shape[0], suite.input_shape[-1]   # (C, H, W), H == W
        return Conv4(channels, hidden, suite.n_way, image_size=size, arch=arch), F.cross_entropy
    return MLP((1, hidden, hidden, 1)), F.mse_loss


def backbone_label(kind: str, arch: str, hidden: int) -> str:
    """'conv4-strided-64', 'conv4-pool-32' (classification) or 'mlp-40x2' (regression)."""
    return f"conv4-{arch}-{hidden}" if kind == "classification" else f"mlp-{hidden}x2"
