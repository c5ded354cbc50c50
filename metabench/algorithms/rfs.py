"""RFS: a pre-trained embedding and a logistic-regression head per task.

Tian, Wang, Krishnan, Tenenbaum & Isola (2020). "Rethinking Few-Shot Image Classification: a
Good Embedding Is All You Need?" ECCV. arXiv:2003.11539. Code: github.com/WangYueFt/rfs.

Summary
    No meta-learning: pre-train an ordinary classifier (the backbone + a linear layer over every
    training class) with cross-entropy and SGD; at test, freeze the backbone, L2-normalise the
    features of a task's support and query images, fit scikit-learn's `LogisticRegression` on the
    support features and labels, and classify the queries with it ("RFS-simple").

Implementation details
    * The pre-training is `metabench.algorithms.pretrain` (shared with `finetune` and
      `simpleshot`): minibatches are wide tasks of `batch_way` training classes x `per_class`
      images, labels mapped to split-wide class ids; SGD with momentum 0.9 and weight decay 5e-4
      on every parameter, learning rate 0.05 multiplied by 0.1 after 60% and 80% of training
      (the authors' `train_supervised.py` defaults: epochs 60 and 80 of 100, batch 64).
    * The head is the authors' `eval/meta_eval.py` call: `LogisticRegression(C=1.0,
      solver='lbfgs', max_iter=1000, random_state=0)` with the L2 penalty, fitted per task on the
      L2-normalised support features (float32, as theirs) and scored on the queries;
      `accuracy` from the most probable class (what `predict` returns), `loss` the cross-entropy
      of `predict_proba` on the true labels.
      Their `penalty='l2'` and `multi_class='multinomial'` are not passed: the scikit-learn
      installed here (1.9) has no `multi_class` any more and deprecates `penalty`; its lbfgs fit
      is multinomial for three or more classes and L2-penalised (`l1_ratio=0`) by default, as in
      the versions the dependency allows (>= 1.5).
    * Features are the Conv-4's flattened output before the linear layer, in `eval()` mode
      (running batch-norm statistics), so each query is classified on its own
      (`transductive=False`).
    * A zero feature vector stays zero under the normalisation (`F.normalize`; the authors'
      `x / ||x||` would give NaN).
    * Head fitting is one scikit-learn fit per task, sequential, with BLAS and OpenMP limited to
      one thread (`threadpoolctl`) while fitting: the problems are tiny (5-100 examples), and
      thread pools only add synchronisation.  `benchmarks/bench_head_fit.py` on the 600
      omniglot-5w1s test tasks (quick Config after 300 pre-training steps, a busy 2-core
      machine): forward passes 176 s, fits 8.9 s with one thread, 48.7 s with the default pools
      (identical probabilities).  No warm start (starting from the previous task's head changes
      each result slightly, so the head would no longer be the paper's direct fit) and no
      batching (scikit-learn fits one problem at a time).

Differences from the paper
    * Backbone: our Conv-4 (4 x [conv3x3-64, batch norm, ReLU, 2x2 max-pool], flattened: 64
      features on 28x28 Omniglot, 1,600 on 84x84 miniImageNet, 256 on 32x32 CIFAR-FS), not the
      paper's ResNet-12 (its headline numbers) nor its ConvNet-4 (no pooling after the last
      block, global average pooling, 64 features, conv biases).
    * No data augmentation in pre-training (the authors: random crop, colour jitter, flip) and
      none at test (the authors' loader repeats each support image 5 times with training
      augmentation, `n_aug_support_samples=5`); no per-channel mean/std normalisation of the
      pixels (ours are in [0, 1]).
    * Minibatches are class-balanced wide tasks (32 classes x 2 images = 64 images) instead of
      64 images drawn uniformly; epochs become meta-steps: the `paper` preset runs 100 epochs'
      worth of images (60,000 steps on miniImageNet and CIFAR-FS: 38,400 training images / 64
      per step x 100).  Omniglot is not in the paper: `paper` applies the same recipe (100
      epochs: 128,500 steps on the Vinyals split's 82,240 training images, 27,594 on the Lake
      split's 17,660).  `quick` keeps every setting but the number of steps: 6,000 on every suite
      (384,000 images, as many as `finetune`'s quick; 4.7 epochs of Omniglot, 10 of
      miniImageNet), the decays still at 60% and 80% of it.
    * The features are the embedding (the authors' `use_logit=False`); their `eval_fewshot.py`
      also prints a variant that fits the head on the 64 training-class logits (`use_logit=True`).
    * The last checkpoint is tested (as the authors' `_last.pth`); 600 fixed test tasks of the
      suite with 15 queries per class (as the authors: 600 runs, 15 queries).
    * Self-distillation ("RFS-distill", born-again students with a KL term) is not implemented;
      this is RFS-simple only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from metabench.algorithms.base import IMAGE_SUITES
from metabench.algorithms.pretrain import (OMNIGLOT_LAKE_IDS, SGDPretrainConfig, SGDPretrained,
                                           embed_tasks)


@dataclass(frozen=True)
class Config(SGDPretrainConfig):
    C: float = 1.0
    """Inverse L2 regularisation strength of the per-task logistic regression (the authors: 1.0)."""
    max_iter: int = 1000
    """lbfgs iterations allowed per task fit (the authors: 1000)."""

    BOUNDS = {**SGDPretrainConfig.BOUNDS, "C": "> 0", "max_iter": ">= 1"}


def logistic_heads(zs: np.ndarray, ys: np.ndarray, zq: np.ndarray, C: float = 1.0,
                   max_iter: int = 1000) -> np.ndarray:
    """Fit one LogisticRegression per task and return the query probabilities.

    zs (T, S, D) support features, ys (T, S) labels in [0, n_way), zq (T, Q, D) query features
    -> (T, Q, n_way) probabilities, column c for label c (every label has a support example)."""
    from sklearn.linear_model import LogisticRegression   # imported on use: seconds to import, only rfs needs it
    from threadpoolctl import threadpool_limits

    out = []
    # One BLAS / OpenMP thread: on these tiny problems (5-100 examples) threads only add
    # synchronisation (5.5x faster fits, measured in the module docstring).
    with threadpool_limits(limits=1):
        for t in range(len(zs)):
            clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, random_state=0)
            clf.fit(zs[t], ys[t])
            proba = np.zeros((zq.shape[1], int(ys[t].max()) + 1), dtype=np.float64)
            proba[:, clf.classes_] = clf.predict_proba(zq[t])
            out.append(proba)
    return np.stack(out)


class RFS(SGDPretrained):
    name = "rfs"
    Config = Config
    # train_supervised.py defaults: SGD lr 0.05, momentum 0.9, weight decay 5e-4, batch 64,
    # decays x0.1 at epochs 60 and 80 of 100; meta_eval.py: LogisticRegression(C=1, max_iter=1000)
    PRESETS = {
        "paper": {"classification": dict(lr=0.05, momentum=0.9, weight_decay=5e-4, lr_decay_at=(0.6, 0.8),
                                         lr_decay=0.1, batch_way=32, per_class=2, C=1.0, max_iter=1000),
                  # the paper's own suites: the same recipe, spelt out
                  **{s: dict(batch_way=32, per_class=2) for s in IMAGE_SUITES}},
        "smoke": {"classification": dict(batch_way=4, per_class=2, hidden=8)},
    }
    PRESETS["quick"] = PRESETS["paper"]
    # 100 epochs at 64 images per step (Omniglot, not in the paper: the same recipe)
    LOOPS = {
        "paper": {"classification": dict(meta_steps=128_500, eval_every=5000),
                  **{s: dict(meta_steps=27_594, eval_every=2000) for s in OMNIGLOT_LAKE_IDS},
                  **{s: dict(meta_steps=60_000, eval_every=2000) for s in IMAGE_SUITES}},
        # 6,000 steps of 64 images: as many images as finetune's quick (3,000 x 128)
        "quick": {"classification": dict(meta_steps=6_000, eval_every=1000, n_val_tasks=100)},
    }

    @torch.no_grad()
    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        zs, zq = embed_tasks(self.model, batch)                       # (T, S, D), (T, Q, D)
        zs, zq = F.normalize(zs, dim=-1), F.normalize(zq, dim=-1)     # RFS: x / ||x||
        proba = logistic_heads(zs.cpu().numpy(), batch.support_y.cpu().numpy(), zq.cpu().numpy(),
                               self.config.C, self.config.max_iter)    # (T, Q, n_way)
        yq = batch.query_y.cpu().numpy()
        acc = (proba.argmax(-1) == yq).mean(1)
        p_true = np.take_along_axis(proba, yq[..., None], -1)[..., 0]
        loss = -np.log(np.clip(p_true, 1e-12, None)).mean(1)
        return {"accuracy": torch.from_numpy(acc).float(), "loss": torch.from_numpy(loss).float()}
