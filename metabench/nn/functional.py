"""Functional helpers for inner loops: parameter dicts and one SGD step on them."""
from __future__ import annotations

import math

import torch
from torch.func import functional_call

Params = dict[str, torch.Tensor]


def params_of(model: torch.nn.Module) -> Params:
    """The model's parameters as a name -> tensor dict (the same tensor objects, not copies)."""
    return dict(model.named_parameters())


def forward(model: torch.nn.Module, params: Params, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Run `model` with `params` in place of its own parameters."""
    return functional_call(model, params, (x,), {"groups": groups})


def sgd_update(params: Params, grads: Params, lr: float | Params) -> Params:
    """`{n: p - lr * g}`: one SGD step given the gradients.  `lr` may be a float or a
    per-parameter dict (Meta-SGD).  Pure, so it runs under `torch.func.vmap`."""
    if isinstance(lr, dict):
        return {n: p - lr[n] * grads[n] for n, p in params.items()}
    return {n: p - lr * grads[n] for n, p in params.items()}


def sgd_step(params: Params, loss: torch.Tensor, lr: float | Params, *, create_graph: bool) -> Params:
    """One inner SGD step: `{n: p - lr * dloss/dp}`.

    With `create_graph=False` the gradient is a constant for outer autograd, which is exactly
    first-order MAML (the update still depends on `p` through the identity term).
    """
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    return sgd_update(params, dict(zip(params, grads)), lr)


def adam_step(params: Params, grads: Params, m: Params, v: Params, t: int, lr: float, beta1: float,
              beta2: float, eps: float = 1e-8) -> tuple[Params, Params, Params]:
    """One Adam step on params dicts, in TensorFlow's form (as in the Reptile authors' code):
    `p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)`; `t` counts from 1.
    Pure (returns new dicts), so it runs under `torch.func.vmap`."""
    m = {n: beta1 * m[n] + (1 - beta1) * grads[n] for n in params}
    v = {n: beta2 * v[n] + (1 - beta2) * grads[n] * grads[n] for n in params}
    lr_t = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    return {n: params[n] - lr_t * m[n] / (v[n].sqrt() + eps) for n in params}, m, v
