"""Prototypical networks with a learned temperature over cosine similarity.

Snell, Swersky & Zemel (2017). "Prototypical Networks for Few-shot Learning." NeurIPS.
arXiv:1703.05175 (prototypes and episodic training).
Oreshkin, Rodriguez & Lacoste (2018). "TADAM: Task dependent adaptive metric for improved
few-shot learning." NeurIPS. arXiv:1805.10123 (metric scaling: a learned temperature on the
similarity, section 2.1).
Chen, Liu, Kira, Wang & Huang (2019). "A Closer Look at Few-shot Classification." ICLR.
arXiv:1904.04232 (scaled cosine similarity, Baseline++; after Gidaris & Komodakis 2018 and
Qi et al. 2018).

Summary
    Embed every image with a Conv-4; a class's prototype is the mean support embedding; a query's
    logits are `scale * cos(z_query, prototype)`, where `scale = exp(log_scale)` is learned with
    the network. Cosine similarity is bounded in [-1, 1], so without the scale the softmax stays
    nearly uniform; TADAM shows the temperature changes what the embedding learns.

Implementation details
    * Conv-4 with running batch-norm statistics (metabench.nn.layers.Conv4), as metabench's
      `protonet`; evaluation in eval mode, so queries are classified independently.
    * The scale starts at `init_scale` (10, as in Chen et al.'s Baseline++) and is learned in log
      space (always positive); `learn_scale = False` keeps it fixed.
    * Adam, learning rate halved every `lr_halve_every` episodes; one episode per step.

Differences from the papers
    * TADAM scales a Euclidean metric and adds task conditioning (FiLM); here only the learned
      scale is kept, on cosine similarity, to isolate that one idea.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metabench.algorithms.base import (Algorithm, TrainRequest, classification_metrics, embed_episodes,
                                      load_states, seeded_init, states_of, train_on_episodes)
from metabench.errors import ConfigError
from metabench.nn.layers import Conv4


@dataclass(frozen=True)
class Config:
    train_way: int | None = None
    """Classes per training episode; None = the suite's way."""
    n_query: int = 5
    """Queries per class in training episodes."""
    lr: float = 1e-3
    """Adam learning rate (network and scale)."""
    lr_halve_every: int = 2000
    """Halve the learning rate every this many episodes."""
    hidden: int = 64
    """Conv-4 channels."""
    init_scale: float = 10.0
    """The temperature's starting value (Chen et al. 2019 use 10)."""
    learn_scale: bool = True
    """Learn the temperature (TADAM's metric scaling); False keeps init_scale."""

    def validate(self) -> None:
        if self.train_way is not None and self.train_way < 2:
            raise ConfigError(f"train_way must be at least 2, got {self.train_way}")
        if self.n_query < 1 or self.hidden < 1 or self.lr_halve_every < 1:
            raise ConfigError("n_query, hidden and lr_halve_every must be at least 1")
        if self.lr <= 0 or self.init_scale <= 0:
            raise ConfigError(f"lr and init_scale must be positive, got {self.lr} and {self.init_scale}")


def cosine_logits(z_support, y_support, z_query, n_way: int, scale) -> torch.Tensor:
    """(n_s, D), (n_s,), (n_q, D) -> (n_q, n_way): scale * cosine(query, class mean of support)."""
    protos = torch.zeros(n_way, z_support.shape[-1], dtype=z_support.dtype, device=z_support.device)
    protos.index_add_(0, y_support, z_support)
    protos = protos / torch.bincount(y_support, minlength=n_way).to(z_support.dtype)[:, None]
    return scale * F.normalize(z_query, dim=-1) @ F.normalize(protos, dim=-1).T


class CosineProtoNet(Algorithm):
    name = "cosine-protonet"
    family = "metric"
    supports = frozenset({"classification"})
    Config = Config
    PRESETS = {
        "smoke": {"classification": dict(n_query=2, hidden=8)},
        "quick": {"classification": dict(n_query=5, train_way=20)},
        "paper": {"classification": dict(n_query=5, lr=1e-3, lr_halve_every=2000),
                  "omniglot-5w1s": dict(train_way=60), "omniglot-5w5s": dict(train_way=60)},
    }
    LOOPS = {
        "quick": {"classification": dict(meta_steps=10_000, eval_every=1000, n_val_tasks=200)},
        "paper": {"classification": dict(meta_steps=20_000, eval_every=1000)},
    }

    def __init__(self, suite, config: Config, device, seed: int):
        super().__init__(suite, config, device, seed)
        channels, size = suite.input_shape[0], suite.input_shape[-1]   # (C, H, W), H == W
        self.model = seeded_init(seed, lambda: Conv4(channels, config.hidden, None, image_size=size,
                                                     norm="running")).to(self.device)
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(config.init_scale), device=self.device),
                                            requires_grad=config.learn_scale)
        params = list(self.model.parameters()) + ([self.log_scale] if config.learn_scale else [])
        self.opt = torch.optim.Adam(params, lr=config.lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=config.lr_halve_every, gamma=0.5)

    def train_request(self) -> TrainRequest:
        c = self.config
        return TrainRequest(n_tasks=1, n_way=c.train_way or self.suite.n_way, n_query=c.n_query)

    def meta_parameters(self):
        return {**dict(self.model.named_parameters()), "log_scale": self.log_scale}

    def meta_train_step(self, batch) -> dict[str, float]:
        def episode(t):
            xs, xq = batch.support_x[t], batch.query_x[t]
            z = self.model(torch.cat([xs, xq]))             # (n_support + n_query, D)
            logits = cosine_logits(z[: len(xs)], batch.support_y[t], z[len(xs):], batch.n_way, self.log_scale.exp())
            return classification_metrics(logits, batch.query_y[t])
        out = train_on_episodes(self.model, self.opt, self.sched, batch, episode)
        return {**out, "scale": float(self.log_scale.detach().exp())}

    @torch.no_grad()
    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        n_s = batch.support_x.shape[1]
        z = embed_episodes(self.model, batch)              # (T, n_s + n_q, D)
        acc, loss = torch.zeros(batch.n_tasks), torch.zeros(batch.n_tasks)
        for t in range(batch.n_tasks):
            logits = cosine_logits(z[t, :n_s], batch.support_y[t], z[t, n_s:], batch.n_way, self.log_scale.exp())
            loss[t], acc[t] = classification_metrics(logits, batch.query_y[t])
        self.model.train(was_training)
        return {"accuracy": acc, "loss": loss}

    def state_dict(self):
        return {**states_of(model=self.model, opt=self.opt, sched=self.sched), "log_scale": self.log_scale.detach().clone()}

    def load_state_dict(self, state) -> None:
        load_states(state, model=self.model, opt=self.opt, sched=self.sched)
        with torch.no_grad():
            self.log_scale.copy_(state["log_scale"])
