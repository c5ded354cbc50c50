"""Fine-tuning baseline ("Baseline" of Chen et al.).

Chen, Liu, Kira, Wang & Huang (2019). "A Closer Look at Few-shot Classification." ICLR.
arXiv:1904.04232.

Summary
    No meta-learning: pre-train an ordinary classifier (Conv-4 + a linear layer over all of the
    training split's classes) with minibatch Adam and cross-entropy; at test, freeze the
    features and fit a new linear head on each task's support set, then classify the queries.
    For regression (sinusoid) the same idea: pre-train a regressor on points pooled from many
    tasks (it learns the average task), then fine-tune its last layer on the support set, as
    the "pretrained" baseline of Finn et al. (2017, section 5.1).

Implementation details
    * The pre-training is shared with `rfs` and `simpleshot` (`metabench.algorithms.pretrain`):
      the engine hands out tasks, so a pre-training minibatch is one wide task: `batch_way`
      distinct training classes x `per_class` images (support and query sets pooled), whose
      labels are mapped to split-wide class ids through `TaskBatch.classes`.  So minibatches are
      class-balanced samples of the training split rather than uniform draws of images.
      Suites that do not number their classes (`Suite.class_ids`) do not fit.
    * Standard batch norm with running statistics; features at test come from `eval()` mode, so
      every query is classified on its own (`transductive=False`).
    * The new head (zero-initialised, so no randomness at test) is fitted by `head_steps`
      full-batch steps of SGD with momentum and weight decay on the support features, for every
      task of an evaluation batch at once (each task's loss only touches its own head, and the
      optimiser is element-wise, so results do not depend on the batching).
    * Regression: the last layer starts from its pre-trained weights; `mse@k` after k steps.

Differences from the paper
    * No data augmentation, and a fixed number of minibatches (the preset) instead of Chen et
      al.'s training epochs.  On miniImageNet the `paper` preset follows the authors' code
      (github.com/wyharveychen/CloserLookFewShot, train.py: Adam at its default 1e-3, batches of
      16 images, 400 epochs): wide tasks of 8 classes x 2 images = 16 images, 960,000 steps
      (38,400 training images / 16 x 400); `quick` keeps the Omniglot-sized minibatches of
      64 x 2 images (a compute budget).  The Omniglot `paper` preset is not the authors' (their
      code: 5 epochs of 16 images, 25,700 steps; here 20,000 steps of 128 images).  CIFAR-FS is
      not in the paper: it takes the classification entries.
    * The head is fitted with full-batch steps (Chen et al.: 100 iterations of minibatches of 4,
      SGD lr 0.01, momentum 0.9, weight decay 0.001); with a support set of 5-25 examples the
      full batch is at most a few of their minibatches, so the presets use step size 0.1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metabench.algorithms.base import Algorithm, BoundedConfig, TrainRequest, seeded_init
from metabench.algorithms.pretrain import (build_classifier, classification_request, fits_classes, supervised_step,
                                           without_episodes)
from metabench.nn.backbones import backbone_label
from metabench.nn.heads import Head, head_out
from metabench.nn.layers import MLP


@dataclass(frozen=True)
class Config(BoundedConfig):
    lr: float = 1e-3
    """Adam learning rate of the pre-training."""
    batch_way: int = 64
    """Classification: distinct training classes per pre-training minibatch."""
    per_class: int = 2
    """Classification: images per class in a minibatch (>= 2: the engine's support + query)."""
    batch_tasks: int = 25
    """Regression: tasks pooled per pre-training minibatch (10 support + 10 query points each)."""
    head_steps: int = 100
    """Full-batch steps fitting the head on a test task's support set."""
    head_lr: float = 0.1
    """Step size of the head fit."""
    head_momentum: float = 0.9
    """Momentum of the head fit."""
    head_weight_decay: float = 1e-3
    """L2 weight decay of the head fit."""
    arch: str = "pool"
    """Conv-4 variant: 'pool' (Chen et al.'s Conv-4) or 'strided'."""
    hidden: int = 64
    """Conv-4 channels, or width of the MLP's two hidden layers (regression)."""

    BOUNDS = {**dict.fromkeys(("batch_way", "batch_tasks", "hidden"), ">= 1"),
              "per_class": ">= 2 (one support and one query image per class)",
              "head_steps": ">= 0", "head_weight_decay": ">= 0", "head_momentum": "[0, 1)",
              "lr": "> 0", "head_lr": "> 0"}


class FineTune(Algorithm):
    name = "finetune"
    family = "baseline"
    supports = frozenset({"classification", "regression"})
    Config = Config
    PRESETS = {
        "paper": {"classification": dict(lr=1e-3, batch_way=64, per_class=2, head_steps=100, head_lr=0.1),
                  "regression": dict(lr=1e-3, batch_tasks=25, head_steps=10, head_lr=0.01, head_momentum=0.0,
                                     head_weight_decay=0.0, hidden=40)},
        "smoke": {"classification": dict(batch_way=8, hidden=8, head_steps=5),
                  "regression": dict(batch_tasks=4, hidden=16, head_steps=2, head_lr=0.01, head_momentum=0.0)},
    }
    PRESETS["quick"] = dict(PRESETS["paper"])
    # Its test-time adaptation is `head_steps` gradient steps on a new head (issue 22 §3): the
    # budget column shows them, and the metric is also reported after the suite's common budgets.
    adaptation_unit = "inner steps"
    budget_field = "head_steps"
    reports_common_budgets = True
    # Chen et al.'s code on miniImageNet (train.py): Adam 1e-3, 16 images per batch, 400 epochs
    PRESETS["paper"].update({s: dict(batch_way=8, per_class=2) for s in ("miniimagenet-5w1s", "miniimagenet-5w5s")})
    LOOPS = {
        "paper": {"classification": dict(meta_steps=20_000, eval_every=1000),
                  "regression": dict(meta_steps=20_000, eval_every=1000),
                  **{s: dict(meta_steps=960_000, eval_every=24_000) for s in ("miniimagenet-5w1s", "miniimagenet-5w5s")}},
        "quick": {"classification": dict(meta_steps=3_000, eval_every=500, n_val_tasks=100),
                  "regression": dict(meta_steps=5_000, eval_every=1000, n_val_tasks=200)},
    }

    @classmethod
    def fits(cls, suite) -> tuple[bool, str]:
        ok, reason = super().fits(suite)
        return fits_classes(cls.name, suite) if ok else (ok, reason)

    def __init__(self, suite, config: Config, device, seed: int):
        super().__init__(suite, config, device, seed)
        self.kind = suite.kind
        if self.kind == "classification":
            self.model = build_classifier(suite, config.hidden, config.arch, seed)
        else:
            self.model = seeded_init(seed, lambda: MLP((1, config.hidden, config.hidden, 1)))
        self.model.to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)

    # --- contract -----------------------------------------------------------------------------
    def train_request(self) -> TrainRequest:
        c = self.config
        if self.kind == "classification":
            return classification_request(c.batch_way, c.per_class)
        return TrainRequest(n_tasks=c.batch_tasks, n_shot=10, n_query=10)

    def meta_parameters(self):
        return dict(self.model.named_parameters())

    def backbone(self) -> str:
        return backbone_label(self.kind, self.config.arch, self.config.hidden)

    def recorded_protocol(self) -> dict:
        return without_episodes(super().recorded_protocol())

    def meta_train_step(self, batch) -> dict[str, float]:
        """One ordinary minibatch step on the pooled examples of the batch's tasks."""
        return supervised_step(self.model, self.opt, batch, self.kind)

    @torch.no_grad()
    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        T = batch.n_tasks
        zs = self.model(batch.support_x.flatten(0, 1), embed=True).view(T, batch.support_x.shape[1], -1)
        zq = self.model(batch.query_x.flatten(0, 1), embed=True).view(T, batch.query_x.shape[1], -1)
        self.model.train(was_training)
        if self.kind == "classification":
            D = zs.shape[-1]
            head = {"weight": zs.new_zeros(T, batch.n_way, D), "bias": zs.new_zeros(T, batch.n_way)}
            y = batch.query_y
            budgets = {int(k) for k in getattr(self.suite, "common_budgets", ())} - {self.config.head_steps}
            extra = {}

            def at_budget(k: int, h: Head) -> None:   # only reads the head: the fit is unchanged
                if k in budgets:
                    extra[f"accuracy@{k}"] = (head_out(zq, h).argmax(-1) == y).float().mean(1).cpu()

            head = self.fit_head(zs, batch.support_y, head, on_step=at_budget)
            out = head_out(zq, head)
            loss = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
            return {"accuracy": (out.argmax(-1) == y).float().mean(1).cpu(), "loss": loss.cpu(), **extra}
        head = {n: p.detach().expand(T, *p.shape).clone() for n, p in
                (("weight", self.model.head.weight), ("bias", self.model.head.bias))}
        metrics = {}
        report = {0, 1, 10, self.config.head_steps}

        def score(k: int, h: Head) -> None:
            if k in report:
                metrics[f"mse@{k}"] = (head_out(zq, h) - batch.query_y).pow(2).flatten(1).mean(1).cpu()

        self.fit_head(zs, batch.support_y, head, on_step=score)
        metrics["mse"] = metrics["loss"] = metrics[f"mse@{self.config.head_steps}"]
        return metrics

    def fit_head(self, zs: torch.Tensor, ys: torch.Tensor, head: Head, on_step=None) -> Head:
        """`head_steps` full-batch steps of SGD (momentum, weight decay) on every task's support
        loss: zs (T, S, D) features, ys (T, S) labels or (T, S, 1) targets, heads (T, ...)."""
        c = self.config
        buf = {n: torch.zeros_like(t) for n, t in head.items()}
        for k in range(c.head_steps):
            if on_step is not None:
                on_step(k, head)
            with torch.enable_grad():
                h = {n: t.detach().requires_grad_(True) for n, t in head.items()}
                out = head_out(zs, h)
                if self.kind == "classification":
                    loss = F.cross_entropy(out.flatten(0, 1), ys.flatten(), reduction="sum") / zs.shape[1]
                else:
                    loss = (out - ys).pow(2).sum() / zs.shape[1]
                grads = torch.autograd.grad(loss, list(h.values()))
            for (n, t), g in zip(head.items(), grads):
                g = g + c.head_weight_decay * t        # as torch.optim.SGD's weight_decay
                buf[n] = c.head_momentum * buf[n] + g
                head[n] = t - c.head_lr * buf[n]
        if on_step is not None:
            on_step(c.head_steps, head)
        return head

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
