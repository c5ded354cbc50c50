"""Reptile.

Nichol, Achiam & Schulman (2018). "On First-Order Meta-Learning Algorithms." arXiv:1803.02999.
Authors' code: openai/supervised-reptile.

Summary
    For each task of a meta-batch, train a copy of the weights with k steps of an ordinary
    optimiser (Adam in the paper's few-shot experiments) on mini-batches of the task's examples,
    giving phi_i; then move the initialisation towards the average of the adapted weights:
    theta <- theta + epsilon * (mean_i phi_i - theta).  epsilon (the outer step size) is annealed
    linearly from `outer_lr` to `outer_lr_final` over the run.  No second derivatives, no
    query/support split in training: every example of a training task is training data.

Implementation details
    * The engine hands a training task as a support and a query set; Reptile concatenates them
      (`train_shot - 1` support + 1 query example per class), so a task has `train_shot`
      examples per class as in the paper, shuffled into `inner_steps` mini-batches of
      `inner_batch` examples (whole epochs, reshuffled, as the authors' `_mini_batches`).
    * The tasks of a meta-batch adapt in parallel with `torch.func.vmap` over a functional Adam
      (`metabench.nn.functional.adam_step`), 1.3x faster than a loop for the strided Conv-4 on a
      2-core CPU; batch norm uses each mini-batch's statistics.
    * The inner Adam uses beta1 = 0 and keeps its moment estimates and step count from one
      meta-iteration to the next, as the authors' code does (only the model weights are reset
      per task); evaluation starts from a copy of that state and never changes it.
    * `transductive=True`: the test queries go through the adapted network in groups of one
      query per class, each group normalised with its own statistics (the authors evaluate one
      query per class, all at once).  `transductive=False` (the paper's other row): each query is
      classified in a batch made of the support set plus that query alone, as the authors'
      non-transductive evaluation does.  Stored with the results (`protocol`).
    * Test mini-batches are drawn with a generator seeded per test task, so a task's result does
      not depend on which other tasks share its evaluation batch.

Differences from the paper
    * Within a meta-batch the tasks adapt in parallel from the same Adam state and the state
      carried on is the average of the tasks' final states; the authors run tasks one after the
      other, each starting from the state the previous one left.
    * The inner Adam's step count (`adam_t`, which sets the bias correction
      sqrt(1 - beta2^t) with beta1 = 0) advances by `inner_steps` per meta-iteration; the
      authors' count advances by `inner_steps` per task, i.e. `meta_batch_size` times faster.
      Only early training differs: with 5 inner steps and meta-batch 5 the correction after 100
      meta-iterations is 0.63 here against 0.96 in the authors' code, after 1,000 it is 0.997
      against 1.000.  Kept, so that the measured rows stay reproducible (a fix would be a new
      algorithm version).
    * Convolutions have no bias (it sits right before batch norm, so its gradient is zero).
    * Sinusoid regression (the paper shows it only as a figure): the few-shot setting with inner
      Adam at step size 0.01, 5 steps on 10 points, outer step 1 annealed to 0, and MAML's
      1-40-40-1 ReLU MLP.  The authors' blog demo (plain SGD, step 0.02, outer step 0.1, a tanh
      net) did not learn with the ReLU MLP in 3,000 meta-iterations here (test MSE 3.07 after 10
      steps vs 3.15 before), the Adam setting did (1.31).
    * The `quick` preset is the paper's setting with 20 times fewer meta-iterations (5,000).
      Before issue 20 the miniImageNet cells used the Omniglot values (5 inner iterations on 10
      shots, strided 64-channel Conv-4); they now follow the README commands for miniImageNet.
    * CIFAR-FS is not in the paper, and no Reptile run on it was found in the reference notes;
      its `paper` and `quick` entries are the README's miniImageNet commands (8 inner iterations
      on 15 shots, eval batch 5 / 15, 32 filters with max-pooling), on 32x32 images.  Before
      issue 22 the CIFAR-FS cells used the Omniglot values.
    * The authors' miniImageNet Conv-4 pools before batch norm (conv, max-pool, BN, ReLU); ours
      is conv, BN, ReLU, max-pool.
    * The current openai/supervised-reptile README lists re-tuned commands (e.g. Omniglot 1-shot
      5-way: 12 inner iterations, learning rate 4.4e-4, 200,000 meta-iterations); the presets
      follow the archived "commands used for the paper" quoted in docs/reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from metabench.algorithms.base import Algorithm, BoundedConfig, TrainRequest, seeded_init
from metabench.nn.backbones import backbone_label, network_for
from metabench.nn.functional import Params, adam_step, forward, params_of
from metabench.seeding import stream, task_stream


@dataclass(frozen=True)
class Config(BoundedConfig):
    inner_optimizer: str = "adam"
    """Inner-loop optimiser: 'adam' (the paper's few-shot experiments) or 'sgd'."""
    inner_lr: float = 1e-3
    """Step size of the inner optimiser (the authors' `--learning-rate`)."""
    adam_beta1: float = 0.0
    """Adam's beta1 in the inner loop (the authors use 0)."""
    adam_beta2: float = 0.999
    """Adam's beta2 in the inner loop."""
    inner_steps: int = 5
    """Inner steps per training task (`--inner-iters`)."""
    inner_batch: int = 10
    """Examples per inner mini-batch in training (`--inner-batch`)."""
    train_shot: int = 10
    """Examples per class (regression: points) of a training task (`--train-shots`); >= 2."""
    test_inner_steps: int = 50
    """Inner steps on a test task's support set (`--eval-iters`)."""
    test_inner_batch: int = 5
    """Examples per inner mini-batch at test (`--eval-batch`)."""
    outer_lr: float = 1.0
    """epsilon at the first meta-iteration (`--meta-step`)."""
    outer_lr_final: float = 0.0
    """epsilon at the last meta-iteration, linearly annealed (`--meta-step-final`)."""
    meta_batch_size: int = 5
    """Tasks per meta-iteration (`--meta-batch`)."""
    transductive: bool = True
    """Test queries batched one per class (True) or each alone with the support set (False)."""
    arch: str = "strided"
    """Conv-4 variant for images: 'strided' (the authors' Omniglot net) or 'pool'."""
    hidden: int = 64
    """Channels of the Conv-4 (images) or width of the two hidden layers of the MLP (regression)."""

    BOUNDS = {**dict.fromkeys(("inner_steps", "inner_batch", "test_inner_batch", "meta_batch_size", "hidden"), ">= 1"),
              "train_shot": ">= 2 (support + one query per class)", "test_inner_steps": ">= 0",
              "inner_lr": "> 0", "outer_lr": "> 0", "outer_lr_final": ">= 0",
              "adam_beta1": "[0, 1)", "adam_beta2": "[0, 1)", "inner_optimizer": ("adam", "sgd")}


def outer_step_size(step: int, total: int | None, start: float, final: float) -> float:
    """epsilon at meta-iteration `step` (0-based) of `total`, linear from `start` to `final`
    (the authors' `frac_done * final + (1 - frac_done) * start`); constant when total is None."""
    frac = step / total if total else 0.0
    return frac * final + (1 - frac) * start


def minibatch_indices(n_items: int, steps: int, batch: int, generators: list[torch.Generator]) -> torch.Tensor:
    """(len(generators), steps, batch) indices into n_items: whole shuffled epochs, one after the
    other, cut into mini-batches (the authors' `_mini_batches` without replacement)."""
    epochs = -(-steps * batch // n_items)
    rows = [torch.cat([torch.randperm(n_items, generator=g) for _ in range(epochs)])[: steps * batch]
            for g in generators]
    return torch.stack(rows).view(len(generators), steps, batch)


class Reptile(Algorithm):
    name = "reptile"
    family = "optimization"
    supports = frozenset({"classification", "regression"})
    Config = Config
    adaptation_unit = "inner steps"
    reports_common_budgets = True
    PRESETS = {
        "paper": {
            # openai/supervised-reptile README (archived version): "the commands used for the paper"
            "classification": dict(inner_lr=1e-3, inner_steps=5, inner_batch=10, train_shot=10, meta_batch_size=5,
                                   test_inner_steps=50, test_inner_batch=5, outer_lr=1.0, outer_lr_final=0.0),
            "omniglot-20w1s": dict(inner_lr=5e-4, inner_steps=10, inner_batch=20, test_inner_batch=10),
            "omniglot-20w5s": dict(inner_lr=5e-4, inner_steps=10, inner_batch=20, test_inner_batch=10),
            # miniImageNet: 8 inner iterations on 15 shots, eval batch 5 (1-shot) / 15 (5-shot); the
            # authors' MiniImageNetModel: 32 filters with max-pooling (supervised_reptile/models.py)
            "miniimagenet-5w1s": dict(inner_steps=8, train_shot=15, arch="pool", hidden=32),
            "miniimagenet-5w5s": dict(inner_steps=8, train_shot=15, test_inner_batch=15, arch="pool", hidden=32),
            # CIFAR-FS (not in the paper): the miniImageNet commands above (module docstring)
            "cifarfs-5w1s": dict(inner_steps=8, train_shot=15, arch="pool", hidden=32),
            "cifarfs-5w5s": dict(inner_steps=8, train_shot=15, test_inner_batch=15, arch="pool", hidden=32),
            "regression": dict(inner_optimizer="adam", inner_lr=0.01, inner_steps=5, inner_batch=10, train_shot=10,
                               meta_batch_size=5, test_inner_steps=10, test_inner_batch=5, outer_lr=1.0,
                               hidden=40),
        },
        "smoke": {
            "classification": dict(hidden=8, meta_batch_size=2, inner_steps=2, train_shot=2, inner_batch=5,
                                   test_inner_steps=2),
            "regression": dict(inner_optimizer="sgd", inner_lr=0.02, hidden=16, meta_batch_size=2, inner_steps=2,
                               train_shot=4, inner_batch=4, test_inner_steps=2, outer_lr=0.1),
        },
    }
    PRESETS["quick"] = PRESETS["paper"]   # the same settings, far fewer meta-iterations (LOOPS)
    LOOPS = {
        "paper": {"classification": dict(meta_steps=100_000, eval_every=2000),
                  "omniglot-20w1s": dict(meta_steps=200_000), "omniglot-20w5s": dict(meta_steps=200_000),
                  "regression": dict(meta_steps=30_000, eval_every=1000)},
        # quick 5,000 steps (~15 min on 2 cores): a 2-core run had validation accuracy 84.2% at step
        # 1,000 and 86.2% at 2,000; 10,000 steps took ~30 min
        "quick": {"classification": dict(meta_steps=5_000, eval_every=1000, n_val_tasks=200),
                  "regression": dict(meta_steps=10_000, eval_every=1000, n_val_tasks=200)},
    }

    def __init__(self, suite, config: Config, device, seed: int):
        super().__init__(suite, config, device, seed)
        self.kind = suite.kind
        self.model, self.loss_fn = seeded_init(seed, lambda: network_for(suite, config.hidden, config.arch))
        self.model.to(self.device)
        self.model.requires_grad_(False)   # only ever updated by hand (the interpolation)
        self.step = 0                       # meta-iterations done (for the annealing)
        # The inner Adam's state, carried across meta-iterations (see the module docstring).
        self.adam_t = 0
        self.adam_m = {n: torch.zeros_like(p) for n, p in params_of(self.model).items()}
        self.adam_v = {n: torch.zeros_like(p) for n, p in params_of(self.model).items()}
        self.gen = torch.Generator().manual_seed(stream(seed, 1))

    # --- contract -----------------------------------------------------------------------------
    def train_request(self) -> TrainRequest:
        c = self.config
        return TrainRequest(n_tasks=c.meta_batch_size, n_shot=c.train_shot - 1, n_query=1)

    @property
    def protocol(self):
        if self.kind != "classification":
            return {"transductive": False, "query_batch": "n/a"}
        if self.config.transductive:
            return {"transductive": True, "query_batch": "n_way (one per class)"}
        return {"transductive": False, "query_batch": "support set + 1 query"}

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        return params_of(self.model)

    def backbone(self) -> str:
        return backbone_label(self.kind, self.config.arch, self.config.hidden)

    def recorded_protocol(self):
        # a training task is `train_shot` examples per class, all of them trained on (no query split)
        return {**super().recorded_protocol(), "train_shot": self.config.train_shot, "train_query": None}

    @torch.no_grad()
    def meta_train_step(self, batch) -> dict[str, float]:
        c = self.config
        x = torch.cat([batch.support_x, batch.query_x], 1)   # (T, N, ...): every example trains
        y = torch.cat([batch.support_y, batch.query_y], 1)
        gens = [self.gen] * batch.n_tasks
        idx = minibatch_indices(x.shape[1], c.inner_steps, c.inner_batch, gens).to(x.device)
        theta = params_of(self.model)
        phi, m, v, loss, score = self._inner_loop(theta, x, y, idx, c.inner_steps)
        eps = outer_step_size(self.step, self.total_meta_steps, c.outer_lr, c.outer_lr_final)
        for n, p in theta.items():
            p.add_(eps * (phi[n].mean(0) - p))               # theta += eps (mean_i phi_i - theta)
        if c.inner_optimizer == "adam":
            self.adam_m = {n: t.mean(0) for n, t in m.items()}
            self.adam_v = {n: t.mean(0) for n, t in v.items()}
            self.adam_t += c.inner_steps
        self.step += 1
        key = "accuracy" if self.kind == "classification" else "mse"
        return {"loss": loss, key: score}

    @torch.no_grad()
    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        """Train on each task's support set for `test_inner_steps` steps, then score the queries."""
        c, T = self.config, batch.n_tasks
        # test_inner_steps steps, then on to the suite's largest common budget (`eval_steps`): the
        # mini-batches of the first steps are the same whatever the total (whole epochs drawn in
        # order from each task's own generator), so the extra steps change no other number
        total = self.eval_steps()
        ids = batch.task_ids or list(range(T))
        gens = [torch.Generator().manual_seed(task_stream(int(i), 17)) for i in ids]   # per task, not per run
        n_support = batch.support_x.shape[1]
        idx = minibatch_indices(n_support, max(total, 1), min(c.test_inner_batch, n_support), gens)
        theta = {n: p.detach() for n, p in params_of(self.model).items()}
        key = "accuracy" if self.kind == "classification" else "mse"
        own = {c.test_inner_steps} if self.kind == "classification" else {0, 1, 5, 10, c.test_inner_steps}
        report = {k for k in own if k <= c.test_inner_steps} | set(getattr(self.suite, "common_budgets", ()))
        metrics: dict[str, torch.Tensor] = {}

        def score(k: int, params: Params) -> None:
            if k in report:
                loss, value = self._query_scores(params, batch)
                metrics[f"{key}@{k}"] = value
                if k == c.test_inner_steps:
                    metrics["loss"] = loss

        self._inner_loop(theta, batch.support_x, batch.support_y, idx.to(batch.support_x.device),
                         total, on_step=score)
        metrics[key] = metrics[f"{key}@{c.test_inner_steps}"]
        return metrics

    def state_dict(self):
        return {"model": self.model.state_dict(), "step": self.step, "adam_t": self.adam_t,
                "adam_m": dict(self.adam_m), "adam_v": dict(self.adam_v), "gen": self.gen.get_state()}

    def load_state_dict(self, state) -> None:
        self.model.load_state_dict(state["model"])
        self.step, self.adam_t = int(state["step"]), int(state["adam_t"])
        self.adam_m = {n: t.to(self.device) for n, t in state["adam_m"].items()}
        self.adam_v = {n: t.to(self.device) for n, t in state["adam_v"].items()}
        self.gen.set_state(state["gen"])

    # --- helpers ------------------------------------------------------------------------------
    def _inner_loop(self, theta: Params, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, steps: int,
                    on_step=None):
        """Adapt a copy of theta to each task: x (T, N, ...), y (T, N, ...), idx (T, >=steps, B)
        mini-batch indices.  Returns (phi, m, v, mean loss, mean score of the last step), every
        dict entry of shape (T, *param.shape).  `on_step(k, phi)` is called before step k+1."""
        c, T = self.config, x.shape[0]
        params = {n: p.expand(T, *p.shape) for n, p in theta.items()}
        m = {n: t.expand(T, *t.shape) for n, t in self.adam_m.items()}
        v = {n: t.expand(T, *t.shape) for n, t in self.adam_v.items()}

        def one_step(params, m, v, xb, yb, t):
            def loss(p):
                out = forward(self.model, p, xb)
                value = self.loss_fn(out, yb)
                score = (out.argmax(-1) == yb).float().mean() if self.kind == "classification" else value
                return value, (value, score)

            g, (value, score) = grad(loss, has_aux=True)(params)
            if c.inner_optimizer == "adam":
                params, m, v = adam_step(params, g, m, v, t, c.inner_lr, c.adam_beta1, c.adam_beta2)
            else:
                params = {n: params[n] - c.inner_lr * g[n] for n in params}
            return params, m, v, value, score

        batched = vmap(one_step, in_dims=(0, 0, 0, 0, 0, None))
        rows = torch.arange(T, device=x.device)[:, None]
        loss = score = torch.zeros(T)
        for k in range(steps):
            if on_step is not None:
                on_step(k, params)
            sel = idx[:, k]                                     # (T, B)
            params, m, v, loss, score = batched(params, m, v, x[rows, sel], y[rows, sel], self.adam_t + k + 1)
        if on_step is not None:
            on_step(steps, params)
        return params, m, v, float(loss.mean()), float(score.mean())

    def _query_scores(self, params: Params, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, score) per task of the query set under per-task params (T, ...)."""
        if self.kind != "classification":
            out = vmap(lambda p, xq: forward(self.model, p, xq))(params, batch.query_x)
            mse = (out - batch.query_y).pow(2).flatten(1).mean(1)
            return mse, mse
        if self.config.transductive:
            logits = vmap(lambda p, xq: forward(self.model, p, xq, batch.query_groups))(params, batch.query_x)
        else:
            logits = torch.stack([self._one_query_at_a_time({n: t[i] for n, t in params.items()},
                                                            batch.support_x[i], batch.query_x[i])
                                  for i in range(batch.n_tasks)])
        y = batch.query_y
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
        return loss, (logits.argmax(-1) == y).float().mean(1)

    def _one_query_at_a_time(self, params: Params, xs: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
        """Logits (Q, n_way) of each query classified in a batch of the support set plus itself
        (batch norm statistics of those S+1 images), as the authors' non-transductive evaluation."""
        Q, S = xq.shape[0], xs.shape[0]
        x = torch.cat([xs.expand(Q, *xs.shape), xq[:, None]], 1)     # (Q, S+1, C, H, W)
        out = forward(self.model, params, x.flatten(0, 1), groups=Q)  # (Q*(S+1), n_way)
        return out.view(Q, S + 1, -1)[:, -1]
