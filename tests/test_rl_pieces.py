"""The RL machinery in metabench/rl/, each piece on its own, against answers worked out by hand
(PPO's clipped loss, TRPO's conjugate gradient, step size and line search, the double-DQN and TD3
targets, Polyak averaging, the recurrent trial rollout)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from metabench.rl.core import RLTaskBatch
from metabench.rl.envs import BanditEnv
from metabench.rl.ppo import ppo_clip_loss
from metabench.rl.q_targets import double_dqn_target, polyak_update, td3_target
from metabench.rl.rollout import RecurrentAgent, one_hot_action, run_trials
from metabench.rl.trpo import (conjugate_gradient, fisher_vector_product, line_search, natural_step,
                               surrogate_loss, trpo_step)


# --- PPO ----------------------------------------------------------------------------------------
def test_ppo_clipped_loss_on_three_samples_by_hand():
    # eps 0.2; ratio 1.5 with A +2: min(3.0, 1.2 * 2) = 2.4 (clipped); ratio 0.5 with A -1:
    # min(-0.5, 0.8 * -1) = -0.8 (clipped); ratio 1.1 with A +1: 1.1 (inside the clip range)
    ratio = torch.tensor([1.5, 0.5, 1.1])
    adv = torch.tensor([2.0, -1.0, 1.0])
    old = torch.tensor([0.3, -1.0, 0.0])
    loss = ppo_clip_loss(old + ratio.log(), old, adv, 0.2)
    assert loss.item() == pytest.approx(-(2.4 - 0.8 + 1.1) / 3, abs=1e-6)


def test_ppo_clipped_loss_has_no_gradient_where_the_clip_binds():
    logp = torch.tensor([1.5, 0.9]).log().requires_grad_()
    ppo_clip_loss(logp, torch.zeros(2), torch.tensor([1.0, 1.0]), 0.2).backward()
    # sample 0 is clipped (ratio 1.5 > 1.2 with A > 0): no gradient; sample 1: d(-r A / 2)/dlogp = -0.9 / 2
    assert logp.grad.tolist() == pytest.approx([0.0, -0.45])


# --- TRPO ---------------------------------------------------------------------------------------
def test_conjugate_gradient_solves_a_small_spd_system_to_1e_6():
    A = torch.tensor([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, iters=3)    # n iterations suffice in exact arithmetic
    assert (A @ x - b).abs().max() < 1e-6
    assert torch.allclose(x, torch.linalg.solve(A, b), atol=1e-6)


def test_surrogate_is_minus_the_mean_importance_weighted_advantage():
    # ratios 2 and 0.5, advantages 1 and 4: -(2 * 1 + 0.5 * 4) / 2 = -2
    logp, old = torch.tensor([2.0, 0.5]).log(), torch.zeros(2)
    assert surrogate_loss(logp, old, torch.tensor([1.0, 4.0])).item() == pytest.approx(-2.0)


def _quadratic_kl(theta: torch.Tensor, fisher_diag: torch.Tensor) -> torch.Tensor:
    return 0.5 * (fisher_diag * theta * theta).sum()


def test_fisher_vector_product_is_the_kl_hessian_times_v_plus_damping():
    theta = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    F = torch.tensor([2.0, 8.0], dtype=torch.float64)
    fvp = fisher_vector_product(_quadratic_kl(theta, F), [theta], damping=0.1)
    v = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert fvp(v).tolist() == pytest.approx([2.0 * 1.0 + 0.1, 8.0 * 0.5 + 0.05])


def test_natural_step_is_the_scaled_newton_direction():
    # F = diag(2, 8), g = (1, 2): s = -F^-1 g = (-0.5, -0.25), 0.5 s^T F s = 0.5, so the step is
    # s * sqrt(max_kl / 0.5) and its quadratic KL is exactly max_kl
    F = torch.tensor([2.0, 8.0], dtype=torch.float64)
    g = torch.tensor([1.0, 2.0], dtype=torch.float64)
    full = natural_step(g, lambda v: F * v, max_kl=0.01, cg_iters=2)
    scale = (0.01 / 0.5) ** 0.5
    assert full.tolist() == pytest.approx([-0.5 * scale, -0.25 * scale])
    assert float(0.5 * (full * F * full).sum()) == pytest.approx(0.01)


def _line_search_toy(n_steps: int):
    # one parameter from 0 along +1: surrogate (p - 0.2)^2 (0.04 at the start), KL p^2, bound 0.1;
    # halving: p = 1 (0.64, worse), 0.5 (0.09, worse), 0.25 (0.0025, better, KL 0.0625 <= 0.1)
    p = torch.zeros(1)
    out = line_search([p], torch.ones(1), lambda: (float((p - 0.2) ** 2), float(p ** 2)),
                      loss0=0.04, max_kl=0.1, n_steps=n_steps, backtrack=0.5)
    return out, p


def test_line_search_accepts_the_first_improving_step_within_the_kl_bound():
    (accepted, kl), p = _line_search_toy(15)
    assert (accepted, kl, p.item()) == (0.25, 0.0625, 0.25)


def test_line_search_restores_the_parameters_when_nothing_is_accepted():
    (accepted, kl), p = _line_search_toy(2)        # tries 1 and 0.5 only
    assert (accepted, kl, p.item()) == (0.0, 0.25, 0.0)


def test_trpo_step_on_a_linear_surrogate_with_a_quadratic_kl():
    # surrogate g . theta with g = (1, 2); KL 0.5 theta^T diag(2, 8) theta; the line search sees a
    # true KL of 0.9 times the model's, so the full step (model KL = max_kl) is accepted at once
    F = torch.tensor([2.0, 8.0], dtype=torch.float64)
    g = torch.tensor([1.0, 2.0], dtype=torch.float64)
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    accepted, kl = trpo_step([theta], g @ theta, _quadratic_kl(theta, F),
                             lambda: (float(g @ theta), 0.9 * float(_quadratic_kl(theta, F))),
                             max_kl=0.01, damping=0.0, cg_iters=2, ls_steps=5, backtrack=0.8)
    scale = (0.01 / 0.5) ** 0.5
    assert accepted == 1.0 and kl == pytest.approx(0.009)
    assert theta.tolist() == pytest.approx([-0.5 * scale, -0.25 * scale])


# --- Q-learning targets -------------------------------------------------------------------------
def test_double_dqn_target_by_hand():
    # online argmax in s' is action 1 (Q 3); the target net values action 1 at 4 (its own max is 20):
    # y = 1 + 0.5 * 4 = 3 (plain DQN would give 1 + 0.5 * 20 = 11); a terminal step keeps r alone
    q_online = torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0]])
    q_target = torch.tensor([[10.0, 4.0, 20.0], [10.0, 4.0, 20.0]])
    y = double_dqn_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), q_online, q_target, 0.5)
    assert y.tolist() == [3.0, 1.0]


def test_td3_target_by_hand():
    # Three transitions, 1-D actions in [-1, 1], gamma 0.5, noise clip c 0.5; target actor
    # mu' = 0.9, 0.2, -0.9 and smoothing noise 0.8, -0.1, -0.8: the noise is clipped to 0.5, kept,
    # clipped to -0.5, so a' = 1.4 -> 1.0 (the box), 0.1, -1.4 -> -1.0 (the box).
    # Target critics Q'_1(a) = 10 a, Q'_2(a) = 4 + a: min(10, 5) = 5 (Q'_2 wins); min(1, 4.1) = 1
    # and min(-10, 3) = -10 (Q'_1 wins). Transition 1 is terminal: its target is the reward alone.
    reward, terminal = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 1.0, 0.0])
    mu_next, noise = torch.tensor([[0.9], [0.2], [-0.9]]), torch.tensor([[0.8], [-0.1], [-0.8]])
    seen = []

    def q_next(a):
        seen.append(a.clone())
        return 10 * a.squeeze(-1), 4 + a.squeeze(-1)

    y = td3_target(reward, terminal, mu_next, noise, q_next, gamma=0.5, noise_clip=0.5)
    assert torch.allclose(seen[0], torch.tensor([[1.0], [0.1], [-1.0]]))
    assert torch.allclose(y, torch.tensor([1.0 + 0.5 * 5.0, -2.0, 0.5 + 0.5 * -10.0]))
    # not terminal: the min of the twins (Q'_1 = 1.0 at a' = 0.1) is bootstrapped
    y2 = td3_target(reward, torch.zeros(3), mu_next, noise, q_next, gamma=0.5, noise_clip=0.5)
    assert torch.allclose(y2, torch.tensor([1.0 + 0.5 * 5.0, -2.0 + 0.5 * 1.0, 0.5 + 0.5 * -10.0]))


def test_polyak_update_moves_the_target_by_tau_and_leaves_the_online_net():
    net, target = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
        for p in target.parameters():
            p.fill_(0.0)
    polyak_update(net, target, 0.25)
    assert all(p.eq(0.25).all() for p in target.parameters())
    assert all(p.eq(1.0).all() for p in net.parameters())


# --- the recurrent trial rollout ----------------------------------------------------------------
def test_recurrent_agent_feeds_back_action_reward_done_and_progress():
    # a 2-armed bandit whose arm 0 never pays and arm 1 always does; a 3-pull trial on one copy;
    # the scripted policy plays 0, 1, 1 and counts its steps in the hidden state
    env = BanditEnv(RLTaskBatch(params={"probs": torch.tensor([[0.0, 1.0]])}), 1, horizon=3)
    script = iter([0, 1, 1])

    def inputs(obs, prev_action, prev_reward, prev_done, progress):
        return torch.stack([prev_action.float(), prev_reward, prev_done.float(),
                            torch.full_like(prev_reward, progress)], -1)

    def policy(x, h):
        h = 0 if h is None else h + 1
        a = torch.tensor([next(script)])
        return a, a, {"step": torch.tensor([float(h)])}, h

    agent = RecurrentAgent(inputs, policy, closing_input=True)
    rollout = run_trials(env, agent)
    trial = agent.trial()
    assert rollout.rewards[:, 0].tolist() == [0.0, 1.0, 1.0]
    # (previous action, reward, done flag, t / 3); the closing input follows the trial's last step
    assert torch.allclose(trial.inputs[:, 0], torch.tensor([[-1.0, 0, 0, 0], [0, 0, 0, 1 / 3], [1, 1, 0, 2 / 3],
                                                            [1, 1, 1, 1]]))
    assert trial.actions[:, 0].tolist() == [0, 1, 1]
    assert trial.extras["step"][:, 0].tolist() == [0.0, 1.0, 2.0]   # the hidden state carried over the trial


def test_recurrent_agent_resets_its_memory_at_each_trial():
    env = BanditEnv(RLTaskBatch(params={"probs": torch.tensor([[0.5, 0.5]])}), 2, horizon=2)
    seen = []

    def policy(x, h):
        seen.append(h)
        return torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), {}, "h"

    agent = RecurrentAgent(lambda obs, a, r, d, p: obs, policy)
    run_trials(env, agent, n_trials=2)
    assert seen == [None, "h", None, "h"]
    assert agent.trial().inputs.shape == (2, 2, 1)        # the last trial's inputs, no closing input


def test_one_hot_previous_action_is_zero_before_the_first_action():
    assert one_hot_action(torch.tensor([-1, 0, 2]), 3, torch.float32).tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 1]]


def test_rl_package_imports_nothing_above_it():
    # the suites build on metabench.rl, so metabench.rl must not import them (nor the learners)
    import ast
    import pathlib

    import metabench.rl

    upward = ("metabench.suites", "metabench.algorithms", "metabench.engine", "metabench.results",
              "metabench.dashboard")
    for path in pathlib.Path(metabench.rl.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith(upward)], f"{path.name} imports {names}"
