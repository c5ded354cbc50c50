"""ANIL: Almost No Inner Loop.

Raghu, Raghu, Bengio & Vinyals (2020). "Rapid Learning or Feature Reuse? Towards Understanding
the Effectiveness of MAML." ICLR. arXiv:1909.09157.

Summary
    MAML with the inner loop restricted to the network's head (the last linear layer): for each
    task the head is adapted by `inner_steps` SGD steps on the support set with the body (the
    feature extractor) held fixed; the outer loop trains body and head together through the
    adapted heads' query loss (second order through the head's steps unless `first_order`).

Implementation details
    * Subclass of `MAML`: the same Config, presets and step sizes; only the inner loop differs.
    * Because the body does not change in the inner loop, every task's support and query
      features are computed once, for the whole meta-batch in one call per set (batch norm uses
      each task's own statistics: the support set as one group per task, the query set in groups
      of one query per class, exactly as MAML's protocol); the inner loop is then a batched
      linear layer (heads of shape (T, n_out, D)), cheap enough that test-time adaptation costs
      almost nothing beyond the two forward passes.
    * Metrics at test: `metric@k` after each of the `test_inner_steps` head steps, as MAML.

Differences from the paper
    * The paper's Omniglot and miniImageNet runs use MAML's hyper-parameters; the presets here
      are MAML's presets of this package (same differences from Finn et al. as `maml`; on
      miniImageNet MAML's appendix A.1 protocol; CIFAR-FS, which the ANIL paper does not run, takes
      MAML's CIFAR-FS entries, i.e. that miniImageNet protocol), except
      on sinusoid (not in the paper), where training uses 5 inner steps instead of 1: with one,
      the learned head diverged over the 10 test steps.
    * Convolutions have no bias (batch norm follows).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from metabench.algorithms.maml import MAML, without_inner_loss
from metabench.nn.heads import Head, head_out


class ANIL(MAML):
    name = "anil"
    # MAML's presets, except 5 inner steps (not 1) in training on sinusoid: trained with one step,
    # the head learns a curvature that makes the 10 test steps diverge (measured: MSE 1e5 at step 10)
    PRESETS = {p: {**table, "regression": {**table["regression"], "inner_steps": 5}} if p != "smoke" else table
               for p, table in without_inner_loss(MAML.PRESETS).items()}
    LOOPS = {
        "paper": MAML.LOOPS["paper"],
        # each meta-step costs two forward passes of the body (no inner forward passes), so the
        # quick preset affords more steps than MAML's in less time. 5,000: an earlier 2-core run was
        # at 96.8% validation accuracy by step 5,000 and gained < 1 point in the next 3,000
        "quick": {"classification": dict(meta_steps=5_000, eval_every=500, n_val_tasks=200),
                  "regression": dict(meta_steps=12_000, eval_every=2000, n_val_tasks=100)},
    }

    def __init__(self, suite, config, device, seed: int):
        super().__init__(suite, config, device, seed)
        self.batching = "features once"   # no loop/vmap choice: the inner loop is batched by hand

    def meta_train_step(self, batch) -> dict[str, float]:
        c = self.config
        self.opt.zero_grad(set_to_none=True)
        zs, zq = self._features(batch)
        head = self._initial_head(batch.n_tasks, detach=False)
        for _ in range(c.inner_steps):
            head = self._head_step(zs, batch.support_y, head, create_graph=not c.first_order)
        loss, score = self._scores(head_out(zq, head), batch.query_y)
        loss.mean().backward()
        self.opt.step()
        key = "accuracy" if self.kind == "classification" else "mse"
        return {"loss": loss.mean().item(), key: score.mean().item()}

    @torch.no_grad()
    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        # test_inner_steps head steps, then on to the suite's largest common budget (MAML.evaluate)
        steps, total, report = self.config.test_inner_steps, self.eval_steps(), set(self.report_steps())
        key = "accuracy" if self.kind == "classification" else "mse"
        zs, zq = self._features(batch)
        head = self._initial_head(batch.n_tasks, detach=True)
        metrics: dict[str, torch.Tensor] = {}
        for k in range(total + 1):
            if k in report:
                loss, metrics[f"{key}@{k}"] = self._scores(head_out(zq, head), batch.query_y)
                if k == steps:
                    metrics["loss"] = loss
            if k < total:
                with torch.enable_grad():
                    head = {n: t.requires_grad_(True) for n, t in head.items()}
                    head = {n: t.detach() for n, t in self._head_step(zs, batch.support_y, head, False).items()}
        metrics[key] = metrics[f"{key}@{steps}"]
        return {n: t.cpu() for n, t in metrics.items()}

    # --- helpers ------------------------------------------------------------------------------
    def _features(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Body features of every task's support (T, S, D) and query (T, Q, D) set; each task's
        batch norm statistics are its own (one group per task, queries in one-per-class groups)."""
        T = batch.n_tasks
        zs = self.model(batch.support_x.flatten(0, 1), groups=T, embed=True)
        zq = self.model(batch.query_x.flatten(0, 1), groups=T * batch.query_groups, embed=True)
        return zs.view(T, batch.support_x.shape[1], -1), zq.view(T, batch.query_x.shape[1], -1)

    def _initial_head(self, n_tasks: int, detach: bool) -> Head:
        head = {"weight": self.model.head.weight, "bias": self.model.head.bias}
        if detach:
            return {n: p.detach().expand(n_tasks, *p.shape).clone() for n, p in head.items()}
        return {n: p.expand(n_tasks, *p.shape) for n, p in head.items()}

    def _head_step(self, zs: torch.Tensor, ys: torch.Tensor, head: Head, create_graph: bool) -> Head:
        """One SGD step of every task's head on its support loss (the sum over tasks of per-task
        mean losses, so each head gets exactly its own task's gradient)."""
        out = head_out(zs, head)
        loss = self.support_loss(out.flatten(0, 1), ys.flatten(0, 1)) * zs.shape[0]
        grads = torch.autograd.grad(loss, list(head.values()), create_graph=create_graph)
        lr = self.inner_lrs()
        return {n: t - lr * g for (n, t), g in zip(head.items(), grads)}

    def _scores(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task (loss, score): out (T, N, n_out), y (T, N) labels or (T, N, 1) targets."""
        if self.kind == "classification":
            loss = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
            return loss, (out.argmax(-1) == y).float().mean(1)
        mse = (out - y).pow(2).flatten(1).mean(1)
        return mse, mse
