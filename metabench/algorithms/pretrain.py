"""Supervised pre-training over all training classes, shared by the pre-train-then-fit baselines.

`finetune` (Chen et al. 2019), `rfs` (Tian et al. 2020) and `simpleshot` (Wang et al. 2019) all
learn their embedding the same way: an ordinary classifier (Conv-4 + a linear layer over every
class of the training split) trained with cross-entropy on minibatches of training images.  They
differ only in the optimiser and in what they do with the frozen features at test time, which
stays in their own modules.  This module holds what they share:

* `fits_classes`: such a classifier needs split-wide class ids (`Suite.class_ids`).
* `build_classifier`: the Conv-4 with running batch-norm statistics and a head over the
  training split's classes.
* `classification_request` / `pooled_examples`: the engine hands out tasks, so a pre-training
  minibatch is one wide task of `batch_way` distinct training classes x `per_class` images
  (support and query pooled), whose labels are mapped to split-wide class ids through
  `TaskBatch.classes`.  Minibatches are therefore class-balanced samples of the training split,
  not the papers' uniform draws of images (each algorithm's docstring says so).
* `supervised_step`: one minibatch step of cross-entropy (or of MSE, for `finetune` on
  regression suites, where the pooled tasks' points are the minibatch).
* `StepDecay`: the papers' step learning-rate schedule (x `gamma` at fixed fractions of training),
  in meta-steps because the engine counts steps, not epochs.
* `embed_tasks` / `embed_images`: eval-mode features of a task batch / of many images, in chunks.
* `without_episodes`: the recorded protocol of such a learner has no training episodes.
* `SGDPretrainConfig` / `SGDPretrained`: the SGD pre-training (momentum, weight decay, step
  decay) that `rfs` and `simpleshot` share; `finetune` keeps its own Adam (Chen et al.).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metabench.algorithms.base import Algorithm, BoundedConfig, TrainRequest, seeded_init
from metabench.nn.layers import Conv4


#: The Omniglot suites on the Lake split: their training split is smaller (883 classes, 17,660
#: images) than the Vinyals split's, so epoch-based step counts differ.
OMNIGLOT_LAKE_IDS = ("omniglot-lake-5w1s", "omniglot-lake-5w5s", "omniglot-lake-20w1s", "omniglot-lake-20w5s",
                     "omniglot-lake-runs")


def fits_classes(name: str, suite) -> tuple[bool, str]:
    """(False, reason) for a classification suite that does not number its classes."""
    if suite.kind == "classification" and not suite.class_ids:
        return False, (f"{name} pre-trains a classifier over all training classes; {suite.id} does not "
                       f"number its classes (Suite.class_ids)")
    return True, ""


def build_classifier(suite, hidden: int, arch: str, seed: int) -> Conv4:
    """Conv-4 (running batch-norm statistics) + a linear layer over the training split's classes."""
    n_classes = suite.n_classes("train")
    channels, size = suite.input_shape[0], suite.input_shape[-1]   # (C, H, W), H == W
    return seeded_init(seed, lambda: Conv4(channels, hidden, n_classes, image_size=size,
                                           arch=arch, norm="running"))


def classification_request(batch_way: int, per_class: int) -> TrainRequest:
    """One wide task: `batch_way` training classes x `per_class` images (`per_class` >= 2: the
    engine's tasks have at least one support and one query example per class)."""
    return TrainRequest(n_tasks=1, n_way=batch_way, n_shot=per_class - 1, n_query=1)


def pooled_examples(batch, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every example of the batch's tasks as one minibatch: (N, ...) inputs and (N,) split-wide
    class ids (classification) or (N, 1) targets (regression)."""
    x = torch.cat([batch.support_x, batch.query_x], 1).flatten(0, 1)
    if kind == "classification":
        y = torch.cat([batch.support_y, batch.query_y], 1)
        return x, torch.gather(batch.classes, 1, y).flatten()     # split-wide class ids
    return x, torch.cat([batch.support_y, batch.query_y], 1).flatten(0, 1)


def supervised_step(model, opt, batch, kind: str) -> dict[str, float]:
    """One ordinary minibatch step on the pooled examples of the batch's tasks."""
    model.train()
    x, y = pooled_examples(batch, kind)
    out = model(x)
    opt.zero_grad(set_to_none=True)
    if kind == "classification":
        loss = F.cross_entropy(out, y)
        metrics = {"accuracy": (out.argmax(-1) == y).float().mean().item()}
    else:
        loss = F.mse_loss(out, y)
        metrics = {"mse": loss.item()}
    loss.backward()
    opt.step()
    return {"loss": loss.item(), **metrics}


def without_episodes(protocol: dict) -> dict:
    """A recorded protocol (`Algorithm.recorded_protocol`) with the training-episode fields None:
    pre-training minibatches are not few-shot episodes, whatever way and shots the engine was
    asked for to assemble them."""
    return {**protocol, "train_way": None, "train_shot": None, "train_query": None}


@dataclass
class StepDecay:
    """lr = base_lr * gamma ** (number of milestones passed); milestones are fractions of the
    training run (RFS: epochs 60 and 80 of 100 -> (0.6, 0.8)).  Before the engine says how many
    steps it will run (`total` None, e.g. in a unit test) the rate stays at base_lr."""

    base_lr: float
    milestones: tuple[float, ...]
    gamma: float

    def lr(self, step: int, total: int | None) -> float:
        if not total:
            return self.base_lr
        return self.base_lr * self.gamma ** sum(step >= m * total for m in self.milestones)

    def apply(self, opt, step: int, total: int | None) -> float:
        lr = self.lr(step, total)
        for group in opt.param_groups:
            group["lr"] = lr
        return lr


@torch.no_grad()
def embed_images(model, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Eval-mode embedding of (N, C, H, W) images, `chunk` at a time: (N, D).  Restores the
    model's training mode."""
    was_training = model.training
    model.eval()
    z = torch.cat([model(x[lo:lo + chunk], embed=True) for lo in range(0, len(x), chunk)])
    model.train(was_training)
    return z


def embed_tasks(model, batch, chunk_images: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode features of every task's support and query sets: (T, S, D), (T, Q, D).  In eval
    mode batch norm uses running statistics, so each image's features are its own (chunks of
    `chunk_images` keep the first activation under ~0.5 GB at 84x84)."""
    T, S = batch.support_x.shape[:2]
    x = torch.cat([batch.support_x, batch.query_x], 1).flatten(0, 1)    # (T*(S+Q), C, H, W)
    z = embed_images(model, x, chunk_images).view(T, -1, model.embedding_dim)
    return z[:, :S], z[:, S:]


# --- the SGD pre-training of rfs and simpleshot -------------------------------------------------
@dataclass(frozen=True)
class SGDPretrainConfig(BoundedConfig):
    """The pre-training fields that `rfs` and `simpleshot` share (each module sets its paper's
    defaults and adds the fields of its test-time classifier)."""

    lr: float = 0.05
    """Initial SGD learning rate of the pre-training."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """SGD weight decay (on every parameter, as torch.optim.SGD in the authors' code)."""
    lr_decay_at: tuple[float, ...] = (0.6, 0.8)
    """Fractions of the meta-steps after which the learning rate is multiplied by `lr_decay`."""
    lr_decay: float = 0.1
    """Factor of each learning-rate decay."""
    batch_way: int = 32
    """Distinct training classes per pre-training minibatch."""
    per_class: int = 2
    """Images per class in a minibatch (>= 2: the engine's support + query); the minibatch holds
    batch_way x per_class images."""
    hidden: int = 64
    """Conv-4 channels."""
    arch: str = "pool"
    """Conv-4 variant: 'pool' (max-pooling after every block) or 'strided'."""

    BOUNDS = {"batch_way": ">= 1", "hidden": ">= 1", "per_class": ">= 2 (one support and one query image per class)",
              "lr": "> 0", "weight_decay": ">= 0", "momentum": "[0, 1)",
              "lr_decay_at": "(0, 1) (fractions of training)", "lr_decay": "(0, 1]", "arch": ("pool", "strided")}


class SGDPretrained(Algorithm):
    """Base of `rfs` and `simpleshot`: pre-trains `build_classifier` with SGD (momentum, weight
    decay, `StepDecay` schedule) on wide-task minibatches; subclasses implement `evaluate` on the
    frozen embedding (`embed_tasks`)."""

    family = "baseline"
    supports = frozenset({"classification"})

    @classmethod
    def fits(cls, suite) -> tuple[bool, str]:
        ok, reason = super().fits(suite)
        return fits_classes(cls.name, suite) if ok else (ok, reason)

    def __init__(self, suite, config, device, seed: int):
        super().__init__(suite, config, device, seed)
        self.model = build_classifier(suite, config.hidden, config.arch, seed).to(self.device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                                   weight_decay=config.weight_decay)
        self.schedule = StepDecay(config.lr, tuple(config.lr_decay_at), config.lr_decay)
        self.steps_done = 0

    def train_request(self) -> TrainRequest:
        return classification_request(self.config.batch_way, self.config.per_class)

    def meta_parameters(self):
        return dict(self.model.named_parameters())

    def backbone(self) -> str:
        return f"conv4-{self.config.arch}-{self.config.hidden}"

    def recorded_protocol(self) -> dict:
        return without_episodes(super().recorded_protocol())

    def meta_train_step(self, batch) -> dict[str, float]:
        self.schedule.apply(self.opt, self.steps_done, self.total_meta_steps)
        metrics = supervised_step(self.model, self.opt, batch, "classification")
        self.steps_done += 1
        return metrics

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "steps_done": self.steps_done}

    def load_state_dict(self, state) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.steps_done = int(state["steps_done"])
