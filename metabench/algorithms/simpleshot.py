"""SimpleShot: nearest class centroid on centred, L2-normalised pre-trained features.

Wang, Chao, Weinberger & van der Maaten (2019). "SimpleShot: Revisiting Nearest-Neighbor
Classification for Few-Shot Learning." arXiv:1911.04623. Code: github.com/mileyan/simple_shot.

Summary
    No meta-learning: pre-train an ordinary classifier (Conv-4 + a linear layer over every
    training class) with cross-entropy and SGD; at test, transform the frozen features and give
    each query the class of the nearest support centroid in Euclidean distance.  The transform
    (`feature_norm`) is the paper's CL2N by default: subtract the mean feature of the training
    (base-class) images, then L2-normalise.  The paper's other two rows are named variants:
    `simpleshot-l2` (L2-normalise only, `feature_norm=l2`) and `simpleshot-un` (un-normalised
    features, `feature_norm=un`).

Implementation details
    * The pre-training is `metabench.algorithms.pretrain` (shared with `finetune` and `rfs`):
      minibatches are wide tasks of `batch_way` training classes x `per_class` images, labels
      mapped to split-wide class ids; SGD with momentum 0.9, weight decay 1e-4, learning rate 0.1
      multiplied by 0.1 after 50% and 75% of training (the authors' Conv-4 config: SGD, lr 0.1,
      batch 256, 90 epochs, `multi_step` decays at epochs int(0.5 * 90) = 45 and
      int(0.75 * 90) = 67, weight decay 1e-4 by default).
    * The training mean is computed as the authors do, from eval-mode features of training
      images, but over a seeded class-balanced draw: every training class with `mean_per_class`
      distinct images, drawn once per evaluation through the suite (one task whose way is the
      number of training classes, from a generator seeded with 0: the same images at every
      evaluation of every run and seed, like the suite's fixed tasks, so a restored checkpoint
      evaluates exactly as the run that wrote it).  At `mean_per_class` = the images per class
      (20 on Omniglot, 600 on miniImageNet and CIFAR-FS: the `paper` preset) that is every
      training image: 82,240 on Omniglot (Vinyals split, 4,112 classes with rotations), 17,660
      on the Lake split (883 classes), 38,400 on miniImageNet and CIFAR-FS (64 classes).
      `quick` uses 5 per class on Omniglot (20,560 images; 4,415 on Lake) and 100 on
      miniImageNet / CIFAR-FS (6,400).  The mean is recomputed whenever the backbone has changed
      since the last evaluation (validation during training uses the mean of that moment's
      backbone); it is not a meta-parameter and is not checkpointed (it is recomputed from the
      model).  The draw is one tensor: the `paper` preset's 38,400 miniImageNet images hold
      3.3 GB as float32 while their features are computed (in chunks of 256 images).
    * A centroid is the mean of a class's transformed support features (not re-normalised);
      `accuracy` is the only metric (the rule has no probabilities, so no `loss`).
    * Features: the Conv-4's flattened output before the linear layer, in `eval()` mode, so each
      query is classified on its own (`transductive=False`).

Differences from the paper
    * Our Conv-4 is the paper's Conv-4 (4 x [conv3x3-64, batch norm, ReLU, 2x2 max-pool], 1,600
      features on 84x84) without conv biases (batch norm cancels them); the paper's best numbers
      use ResNets / WRN / DenseNet, which are not implemented.
    * No data augmentation in pre-training (the authors: random resized crop and flip) and no
      resize-then-centre-crop at test (`--enlarge`); no ImageNet mean/std normalisation of the
      pixels (ours are in [0, 1]).
    * Minibatches are class-balanced wide tasks instead of uniform draws of 256 images (128
      classes x 2 on Omniglot, 64 x 4 on miniImageNet and CIFAR-FS); epochs become meta-steps:
      `paper` runs 90 epochs' worth of images (13,500 steps on miniImageNet: 38,400 images / 256
      x 90).  CIFAR-FS and Omniglot are not in the paper: `paper` applies the same recipe
      (13,500 steps on CIFAR-FS; 28,913 on the Vinyals Omniglot split, 6,209 on Lake).
      `quick` keeps the optimiser and schedule with fewer steps: 1,500 on every suite (384,000
      images, as many as `finetune`'s and `rfs`'s quick), the decays still at 50% and 75% of
      them; and it takes the training mean over fewer images per class (above).
    * The last checkpoint is tested (the authors report both the last and the best one by
      meta-validation); 600 fixed test tasks of the suite instead of the paper's 10,000.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metabench.algorithms.base import IMAGE_SUITES
from metabench.algorithms.pretrain import (OMNIGLOT_LAKE_IDS, SGDPretrainConfig, SGDPretrained,
                                           embed_images, embed_tasks)
from metabench.errors import ConfigError

NORMS = ("cl2n", "l2", "un")


@dataclass(frozen=True)
class Config(SGDPretrainConfig):
    lr: float = 0.1
    weight_decay: float = 1e-4
    lr_decay_at: tuple[float, ...] = (0.5, 0.75)
    batch_way: int = 128
    feature_norm: str = "cl2n"
    """Feature transform before the nearest-centroid rule: 'cl2n' (subtract the training mean,
    then L2-normalise; the paper's SimpleShot), 'l2' (L2-normalise only) or 'un' (none)."""
    mean_per_class: int = 20
    """Images of every training class in the draw whose mean feature CL2N subtracts (at least 2;
    all of a class's images: the paper's mean over the whole training set)."""

    BOUNDS = {**SGDPretrainConfig.BOUNDS, "feature_norm": NORMS, "mean_per_class": ">= 2"}


# The authors' configs/mini/softmax/conv4.config and configuration.py defaults.
_PAPER = dict(lr=0.1, momentum=0.9, weight_decay=1e-4, lr_decay_at=(0.5, 0.75), lr_decay=0.1)

#: Named variants: the paper's other two feature transforms (its UN and L2N rows).
VARIANTS: dict[str, str] = {
    "simpleshot-l2": "simpleshot[feature_norm=l2]",
    "simpleshot-un": "simpleshot[feature_norm=un]",
}


def transform(z: torch.Tensor, mean: torch.Tensor | None, norm: str) -> torch.Tensor:
    """CL2N: (z - mean) / ||z - mean||; L2N: z / ||z||; UN: z.  z (..., D), mean (D,)."""
    if norm == "cl2n":
        z = z - mean
    return F.normalize(z, dim=-1) if norm in ("cl2n", "l2") else z


def centroids(zs: torch.Tensor, ys: torch.Tensor, n_way: int) -> torch.Tensor:
    """Class means of support features, every task at once: (T, S, D), (T, S) -> (T, n_way, D)."""
    onehot = F.one_hot(ys, n_way).to(zs.dtype)                          # (T, S, n_way)
    return onehot.transpose(1, 2) @ zs / onehot.sum(1)[..., None]


def nearest_centroid(zq: torch.Tensor, cents: torch.Tensor) -> torch.Tensor:
    """The class of the nearest centroid in Euclidean distance: (T, Q, D), (T, W, D) -> (T, Q)."""
    return torch.cdist(zq, cents).argmin(-1)


class SimpleShot(SGDPretrained):
    name = "simpleshot"
    VARIANTS = VARIANTS   # the module's named variants (see Algorithm.VARIANTS)
    Config = Config
    PRESETS = {
        "paper": {"classification": dict(_PAPER, batch_way=128, per_class=2, mean_per_class=20),
                  **{s: dict(batch_way=64, per_class=4, mean_per_class=600) for s in IMAGE_SUITES}},
        "quick": {"classification": dict(_PAPER, batch_way=128, per_class=2, mean_per_class=5),
                  **{s: dict(batch_way=64, per_class=4, mean_per_class=100) for s in IMAGE_SUITES}},
        "smoke": {"classification": dict(batch_way=4, per_class=2, hidden=8, mean_per_class=2)},
    }
    # 90 epochs at 256 images per step (CIFAR-FS and Omniglot, not in the paper: the same recipe)
    LOOPS = {
        "paper": {"classification": dict(meta_steps=28_913, eval_every=2000),
                  **{s: dict(meta_steps=6_209, eval_every=1000) for s in OMNIGLOT_LAKE_IDS},
                  **{s: dict(meta_steps=13_500, eval_every=1000) for s in IMAGE_SUITES}},
        # 1,500 steps of 256 images: as many images as finetune's quick (3,000 x 128) and rfs's
        "quick": {"classification": dict(meta_steps=1_500, eval_every=500, n_val_tasks=100)},
    }

    def __init__(self, suite, config: Config, device, seed: int):
        super().__init__(suite, config, device, seed)
        self._mean: torch.Tensor | None = None     # the training mean feature, for the model at `_mean_at`
        self._mean_at = -1
        if config.feature_norm == "cl2n":           # refuse a mean draw the suite cannot give now, not after training
            self._draw_for_mean(n_way=1)

    def _draw_for_mean(self, n_way: int):
        per = self.config.mean_per_class
        g = torch.Generator().manual_seed(0)        # the same draw at every evaluation, in every run
        try:
            return self.suite.sample("train", 1, g, n_way=n_way, n_shot=per - 1, n_query=1)
        except ValueError as exc:   # the suite says how many images a class has
            raise ConfigError(f"simpleshot's mean_per_class={per} asks for more images per class than the "
                              f"training split of {self.suite.id} holds ({exc}); set mean_per_class to at "
                              f"most that number") from exc

    def train_mean(self) -> torch.Tensor:
        """The mean eval-mode feature of `mean_per_class` images of every training class: (D,)."""
        if self._mean is None or self._mean_at != self.steps_done:
            draw = self._draw_for_mean(n_way=self.suite.n_classes("train"))
            x = torch.cat([draw.support_x[0], draw.query_x[0]])              # (n_classes * per, C, H, W)
            z = embed_images(self.model, x)
            self._mean, self._mean_at = z.double().mean(0).to(z.dtype), self.steps_done
        return self._mean

    @torch.no_grad()
    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        norm = self.config.feature_norm
        zs, zq = embed_tasks(self.model, batch)                     # (T, S, D), (T, Q, D)
        mean = self.train_mean() if norm == "cl2n" else None
        zs, zq = transform(zs, mean, norm), transform(zq, mean, norm)
        pred = nearest_centroid(zq, centroids(zs, batch.support_y, batch.n_way))
        return {"accuracy": (pred == batch.query_y).float().mean(1).cpu()}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self._mean = None
