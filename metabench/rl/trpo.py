"""Trust-region policy optimisation (TRPO): the natural-gradient step and its line search.

Schulman, Levine, Moritz, Jordan & Abbeel (2015). "Trust Region Policy Optimization." ICML.
arXiv:1502.05477, section 6 and appendix C.  Conjugate gradient: Hestenes & Stiefel (1952);
Nocedal & Wright, "Numerical Optimization", algorithm 5.2.

TRPO minimises the importance-sampled surrogate L(theta) = -mean(pi_theta(a|s) / pi_old(a|s) A)
subject to mean KL(pi_old || pi_theta) <= delta.  Linearising L (gradient g) and taking the KL's
second-order term (the Fisher matrix F, reached only through Hessian-vector products of the KL)
gives the direction s = -F^{-1} g, found by a few conjugate-gradient iterations, scaled so that
0.5 s^T F s = delta; a backtracking line search then shrinks the step until the surrogate improves
and the *exact* KL is within delta (or gives up and keeps the old parameters).

The pieces are small pure functions over lists of parameter tensors, flattened into one vector
(`flat`), so a learner supplies only its surrogate, its KL and how to re-evaluate both:
`trpo_step` puts them together.  `maml-rl` uses it for its outer step (the surrogate and the KL of
the *adapted* policies, differentiated through the inner step).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat vector (the order of `tensors`)."""
    return torch.cat([x.reshape(-1) for x in tensors])


def surrogate_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """TRPO's importance-sampled surrogate, to minimise: -mean(exp(logp - old_logp) A) (a scalar)."""
    return -(torch.exp(logp - old_logp) * adv).mean()


def conjugate_gradient(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10,
                       tol: float = 1e-10) -> torch.Tensor:
    """Solve A x = b for symmetric positive-definite A given only v -> A v (Hestenes-Stiefel).

    Starts from x = 0 and stops after `iters` iterations or when |r|^2 < tol."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        new_rr = r @ r
        if new_rr < tol:
            break
        p = r + (new_rr / rr) * p
        rr = new_rr
    return x


def fisher_vector_product(kl: torch.Tensor, params: Sequence[torch.Tensor],
                          damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (F + damping I) v, F the Hessian of the scalar `kl` in `params` at the current point
    (double backward: the KL's gradient is built once with a graph, then differentiated along v)."""
    kl_grad = flat(torch.autograd.grad(kl, params, create_graph=True))

    def fvp(v: torch.Tensor) -> torch.Tensor:
        return flat(torch.autograd.grad(kl_grad @ v, params, retain_graph=True)) + damping * v
    return fvp


def natural_step(g: torch.Tensor, fvp: Callable[[torch.Tensor], torch.Tensor], max_kl: float,
                 cg_iters: int) -> torch.Tensor:
    """The full TRPO step: s = -F^{-1} g by conjugate gradient, scaled so that 0.5 s^T F s = max_kl."""
    step = conjugate_gradient(fvp, -g, cg_iters)
    shs = 0.5 * (step @ fvp(step))
    return step * torch.sqrt(max_kl / shs.clamp_min(1e-12))


def set_flat(params: Sequence[torch.Tensor], base: Sequence[torch.Tensor], delta: torch.Tensor) -> None:
    """In place: each parameter = its `base` value + its slice of the flat vector `delta`."""
    i = 0
    for p, b in zip(params, base):
        p.copy_(b + delta[i:i + p.numel()].view_as(p))
        i += p.numel()


def line_search(params: Sequence[torch.Tensor], full: torch.Tensor, objective: Callable[[], tuple[float, float]],
                loss0: float, max_kl: float, n_steps: int, backtrack: float) -> tuple[float, float]:
    """Backtracking line search along `full`: try theta_old + backtrack^i full, i = 0, 1, ...; accept
    the first whose surrogate is below `loss0` and whose KL is within `max_kl`.

    `objective()` -> (surrogate, KL) at the parameters as they are now (it runs under no_grad and
    may enable grad itself).  When no fraction is accepted the parameters are restored.  Returns
    (accepted fraction, 0.0 if none; the KL of the last fraction tried, 0.0 if none)."""
    old = [p.detach().clone() for p in params]
    accepted, new_kl = 0.0, 0.0
    with torch.no_grad():
        for i in range(n_steps):
            frac = backtrack ** i
            set_flat(params, old, full * frac)
            new_loss, new_kl = objective()
            if new_loss < loss0 and new_kl <= max_kl:
                accepted = frac
                break
        else:
            set_flat(params, old, torch.zeros_like(full))
    return accepted, new_kl


def trpo_step(params: Sequence[torch.Tensor], loss: torch.Tensor, kl: torch.Tensor,
              objective: Callable[[], tuple[float, float]], *, max_kl: float, damping: float, cg_iters: int,
              ls_steps: int, backtrack: float) -> tuple[float, float]:
    """One TRPO update of `params` in place.

    `loss`: the surrogate at the current parameters (with its graph); `kl`: the mean KL whose
    Hessian is the curvature (with a graph; its value is 0 at the current point); `objective`: see
    `line_search`.  Returns (accepted fraction of the full step, KL after the step)."""
    g = flat(torch.autograd.grad(loss, params, retain_graph=True))
    full = natural_step(g, fisher_vector_product(kl, params, damping), max_kl, cg_iters)
    return line_search(params, full, objective, float(loss.detach()), max_kl, ls_steps, backtrack)
