"""Model-Agnostic Meta-Learning (MAML) and its first-order approximation.

Finn, Abbeel & Levine (2017). "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks." ICML. arXiv:1703.03400.

Summary
    Learn an initialisation theta such that a few gradient steps on a task's support set give
    low loss on its query set: for each task, theta'_i = theta - alpha * grad L_support(theta)
    (repeated `inner_steps` times), and the meta-update is an Adam step on
    sum_i L_query(theta'_i), differentiated through the inner steps (second order).
    `first_order=True` (registered also as `fomaml`) drops the second-order terms: the inner
    gradient is treated as a constant.

Implementation details
    * The inner loop is functional (`torch.func.functional_call` on a params dict); the
      network holds no per-task copies.  One function, `MAML.inner_loop`, is the inner loop of
      both batching modes below (vmapped over the tasks in `vmap`) and of `evaluate`.
    * Two exact ways to process a meta-batch, chosen by `batching`: `loop` (one task at a time,
      backward per task, so memory stays at one task's graph) and `vmap` (`torch.func.vmap`
      over tasks, optionally in chunks of `vmap_chunk` tasks).  Which is faster depends on the
      device *and* the task size, so `auto` measures: on the first meta-batch it times both
      (after a warm-up) and keeps the faster; the choice is stored in the config JSON of the
      run and in checkpoints, so a resumed cell keeps it.  Measured on a 2-core CPU: vmap is
      2.2x faster for the strided Conv-4 with 5+5 images per task, 0.89x for the pooled Conv-4
      with 5+75 (and 13x the memory) -- see `benchmarks/`.  A float64 test checks both give the
      same meta-gradient to 1e-5.
    * Batch norm uses per-task batch statistics (no running statistics, as in the authors'
      code).  Under vmap it is built from primitives, since the fused kernel's batching rule
      gives wrong second-order gradients in torch 2.x.
    * Test-time protocol: the query set goes through the adapted network in groups of one
      query per class (the batch the network saw during training with one query per class),
      each group normalised with its own statistics; this is stored as `transductive=True`,
      `query_batch="n_way (one per class)"`.  Pushing all queries at once instead costs about
      three points of accuracy on Omniglot 5-way 1-shot (measured, issue 2).
    * Metrics at test: the primary metric after `test_inner_steps` steps, and `metric@k` after
      each k = 0..test_inner_steps.

Differences from the paper
    * Convolutions have no bias (it sits right before batch norm, so its gradient is exactly
      zero; with Adam float32 noise would turn into random steps).
    * Training uses `n_query` queries per class; the authors' Omniglot code used as many
      queries as shots and the paper 15 per class on miniImageNet (the `paper` preset does the
      same).  Compute budget: `quick` trains with one query per class.
    * The `quick` preset is the paper's hyper-parameters (per suite: Omniglot 5-way, 20-way,
      miniImageNet and CIFAR-FS, sinusoid) with far fewer meta-iterations.  Before issue 20 the miniImageNet
      cells used the Omniglot 5-way values (step 0.4, one step, strided 64-channel Conv-4).
    * CIFAR-FS is not in the paper.  Its `paper` and `quick` entries are the paper's
      miniImageNet protocol (its natural-image setting: 5 steps of 0.01, 10 at test, meta-batch
      4 / 2, 32 filters with max-pooling, 15 queries per class), on 32x32 images.  The CIFAR-FS
      paper (Bertinetto et al. 2019) reports a MAML row there (71.5% 5-way 5-shot, as
      learn2learn's examples/vision README quotes it); its hyper-parameters were not checked, so
      it is named, not followed, and no published CIFAR-FS number is attached to MAML rows.
      Before issue 22 the CIFAR-FS cells used the Omniglot 5-way values.
    * Inner-loss reduction (`inner_loss`): the authors' TensorFlow code divides each support
      example's cross-entropy by K (`xent(...) / update_batch_size`) and `tf.gradients` sums
      them, so its inner step on N-way classification is N times a step on the mean loss (5x at
      5-way, 20x at 20-way, with the same `inner_lr`).  The `paper` preset uses that reduction
      ('sum/K'); `quick` keeps the mean, as PyTorch reimplementations do (learn2learn's and
      higher's examples).  Regression is the same either way (the authors' MSE is a mean).  Both
      Omniglot 5-way numbers are in docs/measurements.md.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from metabench.algorithms.base import Algorithm, BoundedConfig, TrainRequest, classification_metrics, seeded_init
from metabench.nn.backbones import backbone_label, network_for
from metabench.nn.functional import Params, forward, params_of, sgd_step, sgd_update
from metabench.nn.layers import set_primitive_norm


INNER_LOSSES = ("mean", "sum/K")


@dataclass(frozen=True)
class Config(BoundedConfig):
    inner_lr: float = 0.4
    """alpha: step size of the inner SGD steps."""
    inner_steps: int = 1
    """Inner steps during meta-training."""
    test_inner_steps: int = 3
    """Inner steps at validation and test."""
    outer_lr: float = 1e-3
    """beta: Adam step size of the meta-update."""
    meta_batch_size: int = 32
    """Tasks per meta-update."""
    first_order: bool = False
    """Drop second-order terms (first-order MAML)."""
    n_query: int | None = 1
    """Queries per class (regression: query points) in meta-training; None = as many as shots."""
    train_shot: int | None = None
    """Support examples per class (regression: points) in meta-training; None = the suite's."""
    arch: str = "strided"
    """Conv-4 variant for images: 'strided' (MAML's Omniglot net) or 'pool'."""
    hidden: int = 64
    """Channels of the Conv-4 (images) or width of the two hidden layers of the MLP (regression)."""
    batching: str = "auto"
    """How a meta-batch is processed: 'loop', 'vmap' or 'auto' (fastest measured for the device)."""
    vmap_chunk: int = 0
    """With vmap: tasks per chunk (backward per chunk, to bound memory); 0 = whole meta-batch."""
    inner_loss: str = "mean"
    """Reduction of the inner (support) loss: 'mean' over the support set, or 'sum/K' (summed and
    divided by the shots per class, as the authors' TensorFlow code did: on N-way
    classification a step N times larger; on regression the same as the mean)."""

    BOUNDS = {**dict.fromkeys(("inner_steps", "meta_batch_size", "hidden"), ">= 1"),
              **dict.fromkeys(("test_inner_steps", "vmap_chunk"), ">= 0"),
              "inner_lr": "> 0", "outer_lr": "> 0", "batching": ("auto", "loop", "vmap"), "inner_loss": INNER_LOSSES}


def inner_loss_fn(loss_fn, reduction: str, n_way: int | None):
    """The support loss of the inner loop: `loss_fn` (a mean) for 'mean'; for 'sum/K' the sum of
    the per-example losses divided by the shots per class K -- `loss_fn` times `n_way`, written
    as the authors' code computes it (`xent(...) / update_batch_size`, summed by tf.gradients)."""
    if reduction == "mean":
        return loss_fn

    def sum_over_shots(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = loss_fn(out, y, reduction="sum")
        per_class = y.shape[0] // n_way if n_way else y.shape[0]   # K (regression: the points)
        return total / per_class
    return sum_over_shots


def without_inner_loss(presets: dict) -> dict:
    """`presets` with the `inner_loss` setting dropped (the mean): for the subclasses whose
    papers did not run the MAML authors' code (ANIL, Meta-SGD)."""
    return {p: {k: {f: v for f, v in entry.items() if f != "inner_loss"} for k, entry in table.items()}
            for p, table in presets.items()}


class MAML(Algorithm):
    name = "maml"
    family = "optimization"
    supports = frozenset({"classification", "regression"})
    Config = Config
    adaptation_unit = "inner steps"
    reports_common_budgets = True
    # runs recorded before the inner-loss option (issue 22) took the mean
    ADDED_FIELDS = {"inner_loss": "mean"}
    PRESETS = {
        "paper": {
            # Finn et al. 2017, appendix A.1 and cbfinn/maml main.py
            # inner_loss: the authors' code sums the support losses over the shots and divides by K
            "classification": dict(inner_lr=0.4, inner_steps=1, test_inner_steps=3, meta_batch_size=32,
                                   n_query=None, arch="strided", inner_loss="sum/K"),
            "omniglot-20w1s": dict(inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch_size=16),
            "omniglot-20w5s": dict(inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch_size=16),
            # miniImageNet (appendix A.1): 5 steps (10 at test) of 0.01, meta-batch 4 (1-shot) / 2
            # (5-shot), 32 filters with max-pooling, 15 queries per class
            "miniimagenet-5w1s": dict(inner_lr=0.01, inner_steps=5, test_inner_steps=10, meta_batch_size=4,
                                      n_query=15, arch="pool", hidden=32),
            "miniimagenet-5w5s": dict(inner_lr=0.01, inner_steps=5, test_inner_steps=10, meta_batch_size=2,
                                      n_query=15, arch="pool", hidden=32),
            # CIFAR-FS (not in the paper): the miniImageNet protocol above (module docstring)
            "cifarfs-5w1s": dict(inner_lr=0.01, inner_steps=5, test_inner_steps=10, meta_batch_size=4,
                                 n_query=15, arch="pool", hidden=32),
            "cifarfs-5w5s": dict(inner_lr=0.01, inner_steps=5, test_inner_steps=10, meta_batch_size=2,
                                 n_query=15, arch="pool", hidden=32),
            "regression": dict(inner_lr=0.01, inner_steps=1, test_inner_steps=10, meta_batch_size=25,
                               train_shot=10, n_query=10, hidden=40),
        },
        # the paper's values with fewer meta-steps (LOOPS) and one query per class in training
        "quick": {
            "classification": dict(inner_lr=0.4, inner_steps=1, test_inner_steps=3, meta_batch_size=32,
                                   n_query=1, arch="strided"),
            "omniglot-20w1s": dict(inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch_size=16),
            "omniglot-20w5s": dict(inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch_size=16),
            "miniimagenet-5w1s": dict(inner_lr=0.01, inner_steps=5, test_inner_steps=10, meta_batch_size=4,
                                      arch="pool", hidden=32),
            "miniimagenet-5w5s": dict(inner_lr=0.01, inner_steps=5, test_inner_steps=10, meta_batch_size=2,
                                      arch="pool", hidden=32),
            "cifarfs-5w1s": dict(inner_lr=0.01, inner_steps=5, test_inner_steps=10, meta_batch_size=4,
                                 arch="pool", hidden=32),
            "cifarfs-5w5s": dict(inner_lr=0.01, inner_steps=5, test_inner_steps=10, meta_batch_size=2,
                                 arch="pool", hidden=32),
            "regression": dict(inner_lr=0.01, inner_steps=1, test_inner_steps=10, meta_batch_size=25,
                               train_shot=10, n_query=10, hidden=40),
        },
        # smoke pins `batching`: 'auto' picks loop or vmap by timing, and the two round floats
        # differently, so only a pinned choice makes smoke runs bit-reproducible across processes
        # and machines (the resume, Ray-vs-local and crash tests compare rows exactly).
        "smoke": {
            "classification": dict(meta_batch_size=2, hidden=8, test_inner_steps=1, batching="loop"),
            "regression": dict(inner_lr=0.01, meta_batch_size=4, hidden=16, test_inner_steps=2, batching="loop"),
        },
    }
    LOOPS = {
        "paper": {"classification": dict(meta_steps=60_000, eval_every=1000),
                  "regression": dict(meta_steps=70_000, eval_every=1000)},
        # Validation only watches (engine.cell.MONITORING): on sinusoid 2,000-step intervals of 100
        # tasks keep it near 5% of the cell (24% with 1,000 x 200; benchmarks/phase_split.py).
        "quick": {"classification": dict(meta_steps=5_500, eval_every=500, n_val_tasks=200),
                  "regression": dict(meta_steps=12_000, eval_every=2000, n_val_tasks=100)},
    }

    def __init__(self, suite, config: Config, device, seed: int):
        super().__init__(suite, config, device, seed)
        self.kind = suite.kind
        self.batching = config.batching   # 'auto' is resolved on the first meta-batch
        self.model, self.loss_fn = seeded_init(seed, lambda: network_for(suite, config.hidden, config.arch))
        self.support_loss = inner_loss_fn(self.loss_fn, config.inner_loss,
                                        suite.n_way if suite.kind == "classification" else None)
        self.model.to(self.device)
        set_primitive_norm(self.model, self.batching == "vmap")
        self.batching_timings: dict[str, float] = {}
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.outer_lr)

    # --- contract -----------------------------------------------------------------------------
    def train_request(self) -> TrainRequest:
        c = self.config
        shot = c.train_shot or self.suite.n_shot
        return TrainRequest(n_tasks=c.meta_batch_size, n_shot=shot, n_query=c.n_query or shot)

    @property
    def protocol(self):
        if self.kind == "classification":
            return {"transductive": True, "query_batch": "n_way (one per class)"}
        return {"transductive": False, "query_batch": "n/a"}

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        return params_of(self.model)

    def backbone(self) -> str:
        return backbone_label(self.kind, self.config.arch, self.config.hidden)

    def meta_train_step(self, batch) -> dict[str, float]:
        if self.batching == "auto":
            self._choose_batching(batch)
        self.opt.zero_grad(set_to_none=True)
        if self.batching == "vmap":
            loss, score = self._meta_grad_vmap(batch)
        else:
            loss, score = self._meta_grad_loop(batch)
        self.opt.step()
        key = "accuracy" if self.kind == "classification" else "mse"
        return {"loss": loss, key: score}

    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        """Adapt to each task's support set with `test_inner_steps` first-order steps of
        `inner_loop` and score the query set after every step; then on, up to the suite's largest
        common budget (`eval_steps`), scoring only at the common budgets. The headline metric and
        `loss` are at `test_inner_steps`."""
        steps, total, report = self.config.test_inner_steps, self.eval_steps(), set(self.report_steps())
        key = "accuracy" if self.kind == "classification" else "mse"
        scores = torch.zeros(total + 1, batch.n_tasks)
        losses = torch.zeros(batch.n_tasks)
        for t in range(batch.n_tasks):
            @torch.no_grad()
            def score(k: int, params: Params, t: int = t) -> None:
                if k in report:
                    out = forward(self.model, params, batch.query_x[t], batch.query_groups)
                    loss, scores[k, t] = self._score(out, batch.query_y[t])
                    if k == steps:
                        losses[t] = loss

            with torch.enable_grad():   # the inner steps' gradients (the graph stays off the meta-parameters)
                theta = {n: p.detach().requires_grad_(True) for n, p in params_of(self.model).items()}
                self.inner_loop(theta, batch.support_x[t], batch.support_y[t], total, first_order=True, on_step=score)
        metrics = {f"{key}@{k}": scores[k] for k in sorted(report)}
        metrics[key] = scores[steps]
        metrics["loss"] = losses
        return metrics

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "batching": self.batching,
                "batching_timings": dict(self.batching_timings)}

    def load_state_dict(self, state) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        if state.get("batching", "auto") != "auto":
            self.batching = state["batching"]
            self.batching_timings = dict(state.get("batching_timings") or {})
            set_primitive_norm(self.model, self.batching == "vmap")

    def _choose_batching(self, batch, reps: int = 2) -> None:
        """Time the loop and vmap meta-gradient on this batch (after one warm-up call each, which
        also pays the one-off kernel set-up) and keep the faster.  Gradients are discarded;
        the meta-parameters are not touched."""
        timings = {}
        for mode in ("loop", "vmap"):
            set_primitive_norm(self.model, mode == "vmap")
            fn = self._meta_grad_vmap if mode == "vmap" else self._meta_grad_loop
            samples = []
            for i in range(reps + 1):
                self.opt.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                t0 = time.perf_counter()
                fn(batch)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                if i:
                    samples.append(time.perf_counter() - t0)
            timings[mode] = min(samples)
        self.opt.zero_grad(set_to_none=True)
        self.batching = min(timings, key=timings.get)
        self.batching_timings = timings
        set_primitive_norm(self.model, self.batching == "vmap")

    # --- helpers ------------------------------------------------------------------------------
    def inner_lrs(self) -> float | Params:
        """The inner step size: `inner_lr` here; Meta-SGD returns a learned tensor per parameter."""
        return self.config.inner_lr

    def _score(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "classification":
            return classification_metrics(out, y)
        loss = F.mse_loss(out, y)
        return loss, loss

    def inner_loop(self, theta: Params, xs: torch.Tensor, ys: torch.Tensor, steps: int, first_order: bool,
                   on_step: Callable[[int, Params], None] | None = None, vmapped: bool = False) -> Params:
        """One task's inner loop: `steps` SGD steps on its support loss from `theta`, in
        meta-training (both batching modes; vmapped over the tasks in 'vmap') and in `evaluate`.
        With `first_order` the gradients are constants for the outer autograd (exact FOMAML), else
        it differentiates through them.  `on_step(k, params)` sees the params after k steps,
        k = 0..steps.  Under vmap (`vmapped`) the gradients come from `torch.func.grad`, elsewhere
        from `torch.autograd.grad`, which does not run under vmap but is faster outside it (the
        same numbers, bit for bit; `torch.func.grad` made a sinusoid meta-step 35% slower and its
        evaluation 60%, measured on CPU)."""
        lr = self.inner_lrs()

        def support_loss(params: Params) -> torch.Tensor:
            return self.support_loss(forward(self.model, params, xs), ys)

        params = theta
        for k in range(steps):
            if on_step is not None:
                on_step(k, params)
            if vmapped:
                with torch.no_grad() if first_order else contextlib.nullcontext():
                    g = grad(support_loss)(params)
                params = sgd_update(params, g, lr)
            else:
                params = sgd_step(params, support_loss(params), lr, create_graph=not first_order)
        if on_step is not None:
            on_step(steps, params)
        return params

    def _task_loss(self, theta: Params, xs, ys, xq, yq, groups: int, vmapped: bool = False):
        """Query loss (and score) of one task after the inner loop of meta-training."""
        c = self.config
        params = self.inner_loop(theta, xs, ys, c.inner_steps, c.first_order, vmapped=vmapped)
        return self._score(forward(self.model, params, xq, groups), yq)

    def _meta_grad_loop(self, batch) -> tuple[float, float]:
        """Accumulate the meta-gradient one task at a time (backward per task)."""
        T = batch.n_tasks
        theta = params_of(self.model)
        total_loss = total_score = 0.0
        for t in range(T):
            loss, score = self._task_loss(theta, batch.support_x[t], batch.support_y[t], batch.query_x[t],
                                          batch.query_y[t], batch.query_groups)
            (loss / T).backward()
            total_loss += loss.item()
            total_score += score.item()
        return total_loss / T, total_score / T

    def _meta_grad_vmap(self, batch) -> tuple[float, float]:
        T = batch.n_tasks
        chunk = self.config.vmap_chunk or T
        theta = params_of(self.model)
        fn = vmap(lambda xs, ys, xq, yq: self._task_loss(theta, xs, ys, xq, yq, batch.query_groups, vmapped=True))
        total_loss = total_score = 0.0
        for lo in range(0, T, chunk):
            sl = slice(lo, lo + chunk)
            losses, scores = fn(batch.support_x[sl], batch.support_y[sl], batch.query_x[sl], batch.query_y[sl])
            (losses.sum() / T).backward()
            total_loss += losses.detach().sum().item()
            total_score += scores.detach().sum().item()
        return total_loss / T, total_score / T


class FOMAML(MAML):
    """First-order MAML: MAML with `first_order=True` (Finn et al. 2017, section 5.2)."""

    name = "fomaml"
    PRESETS = {p: {k: {**v, "first_order": True} for k, v in table.items()}
               for p, table in MAML.PRESETS.items()}
