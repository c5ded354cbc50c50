"""Meta-RL learners (rl2, maml-rl, mql): a smoke cell on the suites they fit, and oracles for what
is their own (rl2's additions, maml-rl's linear feature baseline, mql's delayed actor updates and
dueling head). The shared RL pieces (PPO, TRPO, the Q-learning targets) are checked in
test_rl_pieces.py, the learners' conformance in test_conformance.py."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from metabench.algorithms import ALGORITHMS
from metabench.algorithms.maml_rl import baseline_features, fit_linear_baseline
from metabench.rl.returns import gae
from metabench.errors import ConfigError
from metabench.engine.cell import CellRunner
from metabench.results.writer import read_table
from metabench.spec import Cell
from metabench.suites import SUITES, make_suite

#: the learned meta-RL rows: every registered algorithm that handles an RL kind and meta-trains
LEARNERS = [a for a in ALGORITHMS.names() if ALGORITHMS.get(a).needs_training
            and ALGORITHMS.get(a).supports & {"rl-discrete", "rl-continuous"}]
SMALLEST = ("bandit-k5-n10", "tabular-mdp-n10", "navigation2d")
PAIRS = [(a, s) for a in LEARNERS for s in SMALLEST if ALGORITHMS.get(a).fits(make_suite(s))[0]]
RL_SUITES = [s for s in SUITES.names() if make_suite(s).kind.startswith("rl-") and make_suite(s).unavailable() is None]
SLOW_PAIRS = [(a, s) for a in LEARNERS for s in RL_SUITES if s not in SMALLEST
              and ALGORITHMS.get(a).fits(make_suite(s))[0]]
_SUITES: dict[str, object] = {}


def suite(sid: str):
    if sid not in _SUITES:
        _SUITES[sid] = make_suite(sid).prepare(None, "cpu")
    return _SUITES[sid]


def test_the_learners_are_registered():
    assert {"rl2", "maml-rl", "mql"} <= set(LEARNERS)
    for sid in SMALLEST:   # mql: double DQN on the discrete suites, TD3 on navigation
        assert ALGORITHMS.get("mql").fits(make_suite(sid)) == (True, "")
    assert ("mql", "navigation2d") in PAIRS


def _smoke_cell(algorithm, sid, tmp_path):
    cell = Cell(sid, algorithm, 0, "smoke", "cpu")
    assert CellRunner(cell, tmp_path).run() == "finished"
    tasks = read_table(tmp_path / cell.run_id / "tasks.parquet", "tasks")
    primary = make_suite(sid).primary_metric
    assert sorted(tasks[tasks.metric == primary]["task_id"]) == list(range(10))
    assert tasks["value"].notna().all()
    return tasks


@pytest.mark.parametrize("algorithm, sid", PAIRS)
def test_learner_smoke_cell(algorithm, sid, tmp_path):
    tasks = _smoke_cell(algorithm, sid, tmp_path)
    if sid == "navigation2d":
        assert {f"return@{k}" for k in range(4)} <= set(tasks.metric)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, sid", SLOW_PAIRS)
def test_learner_smoke_cell_on_every_other_suite(algorithm, sid, tmp_path):
    _smoke_cell(algorithm, sid, tmp_path)


# --- oracles ------------------------------------------------------------------------------------
def _rl2(sid, **overrides):
    cls = ALGORITHMS.get("rl2")
    return cls(suite(sid), cls.Config(hidden=16, meta_batch_size=2, n_envs_per_task=2, ppo_epochs=1,
                                      n_minibatches=1, **overrides), torch.device("cpu"), 0)


def test_rl2_count_bonus_counts_state_action_visits_within_the_trial():
    algo = _rl2("tabular-mdp-n10", count_bonus=1.0)
    # one trial of 5 steps: states 0, 0, 3, 0, 0 (one-hot at the front of the input), actions 1, 1, 1, 2, 1
    x = torch.zeros(5, 1, 10 + 5 + 3)
    x[torch.arange(5), 0, torch.tensor([0, 0, 3, 0, 0])] = 1
    act = torch.tensor([1, 1, 1, 2, 1]).unsqueeze(-1)
    expected = torch.tensor([1, 2 ** -0.5, 1, 1, 3 ** -0.5])   # (0,1) visited 1, 2, then 3 times
    assert torch.allclose(algo._visit_bonus(x, act).squeeze(-1), expected)
    bandit = _rl2("bandit-k5-n10", count_bonus=1.0)          # a bandit has one state: counts per arm
    xb = torch.zeros(4, 1, 1 + 5 + 3)
    assert torch.allclose(bandit._visit_bonus(xb, torch.tensor([[0], [0], [4], [0]])).squeeze(-1),
                          torch.tensor([1, 2 ** -0.5, 1, 3 ** -0.5]))


def test_rl2_count_bonus_shapes_training_only_and_needs_discrete_states():
    gen = lambda: torch.Generator().manual_seed(3)
    plain, bonus = _rl2("tabular-mdp-n10"), _rl2("tabular-mdp-n10", count_bonus=1.0, count_bonus_steps=10)
    s_plain = plain.meta_train_step(suite("tabular-mdp-n10").sample("train", 2, gen()))
    s_bonus = bonus.meta_train_step(suite("tabular-mdp-n10").sample("train", 2, gen()))
    assert s_plain["trial_return"] == s_bonus["trial_return"]     # same rollout, true reward reported
    assert not torch.equal(plain.policy.v.weight, bonus.policy.v.weight)   # the bonus changed the update
    bonus.steps = 10                                               # fully annealed: the same update again
    plain.load_state_dict(copy.deepcopy(bonus.state_dict()))   # a copy: Adam's state tensors are shared
    tasks = suite("tabular-mdp-n10").sample("train", 2, gen())
    plain.meta_train_step(tasks), bonus.meta_train_step(tasks)
    assert torch.equal(plain.policy.v.weight, bonus.policy.v.weight)
    with pytest.raises(ConfigError, match="count_bonus needs discrete states"):
        _rl2("navigation2d", count_bonus=0.5)
    with pytest.raises(ConfigError, match="count_bonus must be at least 0"):
        ALGORITHMS.get("rl2").Config(count_bonus=-1.0).validate()


def test_rl2_auxiliary_reward_loss_is_the_mse_of_the_true_reward_and_trains_the_gru():
    tasks = suite("tabular-mdp-n10").sample("train", 2, torch.Generator().manual_seed(5))
    algo = _rl2("tabular-mdp-n10", aux_reward_coef=1.0, count_bonus=1.0)
    twin = copy.deepcopy(algo)                                  # replays the same rollout by hand
    with torch.no_grad():
        x, act, _, _, rew, _ = twin._rollout(tasks, 2, twin.gen, twin.gen)
        z, _ = twin.policy.features(x)
        pred = twin.policy.predict_reward(z, act)
        assert torch.equal(pred, twin.policy.reward_head(z)[torch.arange(x.shape[0])[:, None],
                                                            torch.arange(x.shape[1]), act])
        expected = F.mse_loss(pred, rew)                        # the true reward, not reward + bonus
    gru_before = algo.policy.gru.weight_hh_l0.clone()
    stats = algo.meta_train_step(tasks)
    assert stats["reward_loss"] == pytest.approx(float(expected), rel=1e-5)
    assert not torch.equal(gru_before, algo.policy.gru.weight_hh_l0)
    assert "reward_head.weight" not in _rl2("tabular-mdp-n10").state_dict()["policy"]   # off: keys unchanged
    nav = _rl2("navigation2d", aux_reward_coef=0.5)             # continuous actions: an MLP on (state, action)
    assert nav.meta_train_step(suite("navigation2d").sample("train", 2, torch.Generator().manual_seed(0)))[
        "reward_loss"] >= 0
    with pytest.raises(ConfigError, match="aux_reward_coef must be at least 0"):
        ALGORITHMS.get("rl2").Config(aux_reward_coef=-0.1).validate()


def test_rl2_privileged_value_sees_the_task_only_in_the_value_and_its_targets():
    tasks = suite("tabular-mdp-n10").sample("train", 2, torch.Generator().manual_seed(6))
    feats = tasks.features()                                    # sorted keys: reward_means, then transitions
    assert feats.shape == (2, 10 * 5 + 10 * 5 * 10)
    assert torch.equal(feats[1, :50], tasks.params["reward_means"][1].reshape(-1).float())
    assert torch.equal(feats[1, 50:], tasks.params["transitions"][1].reshape(-1).float())
    algo = _rl2("tabular-mdp-n10", privileged_value=True)
    twin = copy.deepcopy(algo)                                  # replays the same step by hand
    with torch.no_grad():
        x, act, _, _, rew, _ = twin._rollout(tasks, 2, twin.gen, twin.gen)
        pol = twin.policy
        z, _ = pol.features(x)
        task = feats.repeat_interleave(2, 0)                    # task-major copies, as the env lays them out
        v = pol.privileged_value(z, task)
        swapped = pol.privileged_value(z, task.flip(0))
        assert not torch.allclose(v, swapped)                   # the value depends on the task
        adv, ret = gae(rew, v * pol.ret_std + pol.ret_mean, torch.arange(x.shape[0])[:, None] == x.shape[0] - 1,
                       algo.config.gamma, algo.config.gae_lambda)
        mean, std = 0.9 * pol.ret_mean + 0.1 * ret.mean(), 0.9 * pol.ret_std + 0.1 * ret.std().clamp_min(1e-3)
        expected = F.mse_loss(v, (ret - mean) / std)             # one epoch, one minibatch: the loss before the update
        plain = F.mse_loss(pol.heads(z)[1], (ret - mean) / std)
    task_before = algo.policy.v_task.weight.clone()
    stats = algo.meta_train_step(tasks)
    assert stats["value_loss"] == pytest.approx(float(expected), rel=1e-5)
    assert stats["value_loss"] != pytest.approx(float(plain), rel=1e-3)
    assert not torch.equal(task_before, algo.policy.v_task.weight)
    assert "v_task.weight" not in _rl2("tabular-mdp-n10").state_dict()["policy"]   # off: keys unchanged
    for sid in ("bandit-k5-n10", "navigation2d"):              # any suite: its parameters are the features
        other = _rl2(sid, privileged_value=True)
        assert other.meta_train_step(suite(sid).sample("train", 2, torch.Generator().manual_seed(0)))["value_loss"] >= 0


def test_rl2_is_the_published_rl2_in_every_preset():
    """Issue 20 section 4: the plain `rl2` row has none of our additions on any suite (no
    privileged value, auxiliary loss, count bonus or progress input); the quick MDP cells keep
    only their longer entropy annealing (a 3,000-step run)."""
    cls = ALGORITHMS.get("rl2")
    for preset in ("quick", "paper"):
        for sid in ("tabular-mdp-n10", "tabular-mdp-n25", "tabular-mdp-n50", "bandit-k5-n100", "navigation2d"):
            cfg = cls.preset_config(preset, make_suite(sid))
            assert (cfg.privileged_value, cfg.aux_reward_coef, cfg.count_bonus, cfg.trial_progress) == \
                (False, 0.0, 0.0, False), (preset, sid)
    n10 = cls.preset_config("quick", make_suite("tabular-mdp-n10"))
    assert (n10.hidden, n10.anneal_steps) == (64, 3000)          # 64 units: the quick compute budget
    assert cls.preset_config("paper", make_suite("tabular-mdp-n10")).hidden == 256   # the paper's size


#: The quick cells measured before issue 20 (`git show 0dc885a:metabench/algorithms/rl2.py`), when the
#: additions sat in the preset; the progress input was then always on (trial_progress=True).
_OLD_QUICK_DISCRETE = dict(hidden=64, meta_batch_size=32, n_envs_per_task=4, lr=1e-3, gamma=1.0, gae_lambda=0.9,
                           clip=0.2, ppo_epochs=4, n_minibatches=2, value_coef=0.5, entropy_coef=0.01,
                           entropy_final=0.0, anneal_steps=1000, anneal_lr=False, max_grad_norm=0.5,
                           init_log_std=-0.5, count_bonus=0.0, count_bonus_steps=1000, aux_reward_coef=0.0,
                           privileged_value=False, trial_progress=True)
_OLD_QUICK = {
    "tabular-mdp-n10": {**_OLD_QUICK_DISCRETE, "hidden": 256, "anneal_steps": 3000, "aux_reward_coef": 0.5,
                        "privileged_value": True},
    "tabular-mdp-n25": {**_OLD_QUICK_DISCRETE, "anneal_steps": 3000, "aux_reward_coef": 0.5},
    "tabular-mdp-n50": {**_OLD_QUICK_DISCRETE, "anneal_steps": 3000, "aux_reward_coef": 0.5},
    "bandit-k5-n100": _OLD_QUICK_DISCRETE,
}


@pytest.mark.parametrize("name, sid", [("rl2-aux-privileged", "tabular-mdp-n10"), ("rl2-aux", "tabular-mdp-n25"),
                                       ("rl2-aux", "tabular-mdp-n50"), ("rl2-progress", "bandit-k5-n100")])
def test_rl2_named_variants_resolve_to_the_old_quick_cells(name, sid):
    """Each named variant, run as its bracket entry, is the Config of the quick cell it replaces,
    and the entry is written exactly as the leaderboard labels it (`variant_label`)."""
    import dataclasses

    from metabench.algorithms.rl2 import VARIANTS
    from metabench.spec import RunSpec

    entry = VARIANTS[name]
    cells, skipped = RunSpec((sid,), (entry,), preset="quick").plan()
    assert not skipped and len(cells) == 1
    cell = cells[0]
    assert cell.variant == entry
    cls = ALGORITHMS.get("rl2")
    cfg = cls.preset_config("quick", make_suite(sid), cell.overrides["config"])
    assert dataclasses.asdict(cfg) == _OLD_QUICK[sid]
    assert "loop" not in cell.overrides                        # the same loop (3,000 steps on the MDPs)


def test_rl2_gaussian_actions_are_in_units_of_the_action_bound():
    """Issue 22 section 2: the policy's mean (and its standard deviation) is in units of the bound,
    so a mean of 0.5 on navigation2d (bound 0.1) moves the agent by 0.05 per axis per step; the
    unscaled action 0.5 was clipped to 0.1."""
    s = suite("navigation2d")
    algo = _rl2("navigation2d", init_log_std=-30.0)               # std ~1e-13: the mean action
    with torch.no_grad():
        algo.policy.pi.weight.zero_()
        algo.policy.pi.bias.fill_(0.5)
    tasks = s.sample("test", 3, torch.Generator().manual_seed(0))
    x, act, _, _, rew, env = algo._rollout(tasks, 2, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    assert torch.allclose(act, torch.full_like(act, 0.5))        # log-probs are of the policy's units
    goal = env.goal                                               # (B, 2), task-major copies
    steps = torch.arange(1, env.horizon + 1, dtype=torch.float32)[:, None, None]   # positions after each step
    expected = -((0.05 * steps).expand(-1, goal.shape[0], 2) - goal).norm(dim=-1)  # (horizon, B)
    assert torch.allclose(rew[:env.horizon], expected, atol=1e-5)
    assert torch.allclose(x[1, :, 2:4], torch.full((goal.shape[0], 2), 0.5))   # previous action input: units of the bound
    with torch.no_grad():                                         # beyond the bound: clipped to it by the env
        algo.policy.pi.bias.fill_(3.0)
    *_, rew, env = algo._rollout(tasks, 2, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    expected = -((0.1 * steps).expand(-1, goal.shape[0], 2) - goal).norm(dim=-1)
    assert torch.allclose(rew[:env.horizon], expected, atol=1e-5)


def test_rl2_trial_progress_input_is_optional():
    plain, progress = _rl2("bandit-k5-n10"), _rl2("bandit-k5-n10", trial_progress=True)
    assert plain.policy.embed.in_features + 1 == progress.policy.embed.in_features
    z = torch.zeros(3)
    x = progress.policy.inputs(torch.zeros(3, 1), torch.full((3,), -1), z, z.bool(), 0.25)
    assert torch.equal(x[:, -1], torch.full((3,), 0.25))
    assert plain.policy.inputs(torch.zeros(3, 1), torch.full((3,), -1), z, z.bool(), 0.25).shape == (3, 1 + 5 + 2)


def test_linear_feature_baseline_is_the_ridge_solution():
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(3, 40, 2, generator=g, dtype=torch.float64)
    t = torch.arange(40).repeat(3, 1)
    X = baseline_features(obs, t)                              # (3, 40, 8)
    assert X.shape == (3, 40, 8) and torch.equal(X[..., 2:4], obs ** 2) and torch.equal(X[..., -1], torch.ones(3, 40, dtype=torch.float64))
    y = torch.randn(3, 40, generator=g, dtype=torch.float64)
    reg = 0.3
    w = fit_linear_baseline(X, y, reg)
    for i in range(3):
        # ridge = least squares on the system augmented with sqrt(reg) I rows and zero targets
        A = torch.cat([X[i], reg ** 0.5 * torch.eye(8, dtype=torch.float64)])
        b = torch.cat([y[i], torch.zeros(8, dtype=torch.float64)])
        want = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
        assert torch.allclose(w[i], want, atol=1e-8)


def test_mql_td3_updates_the_actor_and_targets_every_policy_delay_critic_updates():
    s = suite("navigation2d")
    cls = ALGORITHMS.get("mql")
    algo = cls(s, cls.preset_config("smoke", s, {"policy_delay": 3, "updates_per_step": 1}), "cpu", 0)
    tasks = s.sample("train", algo.train_request().n_tasks, torch.Generator().manual_seed(0))

    def snap(net):
        return [p.detach().clone() for p in net.parameters()]

    moved = []
    for step in range(1, 7):
        critic, actor, actor_t, critic_t = snap(algo.critic), snap(algo.actor), snap(algo.actor_target), snap(algo.critic_target)
        out = algo.meta_train_step(tasks)
        changed = lambda before, net: any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))  # noqa: E731
        assert changed(critic, algo.critic), f"the critic must move at every update (step {step})"
        moved.append((changed(actor, algo.actor), changed(actor_t, algo.actor_target), changed(critic_t, algo.critic_target)))
        assert out["actor_updates"] == step // 3 and ("actor_loss" in out) == (step % 3 == 0)
    assert moved == [(False, False, False), (False, False, False), (True, True, True)] * 2


def test_maml_rl_reports_return_before_and_after_each_adaptation_step():
    s = suite("navigation2d")
    cls = ALGORITHMS.get("maml-rl")
    algo = cls(s, cls.preset_config("smoke", s), "cpu", 0)
    out = algo.evaluate(next(s.fixed_tasks("test", 2, batch_size=2)))
    assert [f"return@{k}" for k in range(4)] == [k for k in out if k.startswith("return@")]
    assert all(bool((out[f"return@{k}"] < 0).all()) for k in range(4))


def test_mql_dueling_head_combines_value_and_centred_advantages():
    from metabench.algorithms.mql import ContextQNet

    net = ContextQNet(obs_dim=1, n_actions=3, hidden=4, dueling=True)
    last = net.q[-1]
    with torch.no_grad():   # the head outputs (A_0, A_1, A_2, V) = (1, 2, 6, 10) whatever its input
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0, 2.0, 6.0, 10.0]))
    q, _ = net(torch.zeros(2, 5, 1 + 3 + 3))
    assert q.shape == (2, 5, 3)
    assert torch.allclose(q[0, 0], torch.tensor([10 + 1 - 3.0, 10 + 2 - 3.0, 10 + 6 - 3.0]))
    s = suite("bandit-k5-n10")
    cls = ALGORITHMS.get("mql")
    algo = cls(s, cls.preset_config("smoke", s, {"dueling": True}), "cpu", 0)
    out = algo.meta_train_step(s.sample("train", algo.train_request().n_tasks, torch.Generator().manual_seed(0)))
    assert out["loss"] > 0 and algo.net.dueling and algo.target.dueling
