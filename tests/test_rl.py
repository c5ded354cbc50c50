"""Meta-RL: vectorised environments, returns/GAE, value iteration, the classical baselines, the
Gymnasium adapters, and RL cells through the engine."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from metabench.algorithms import ALGORITHMS
from metabench.algorithms.classical import gittins_index, ucb1_choice
from metabench.engine.cell import CellRunner
from metabench.results.writer import read_table
from metabench.rl.core import RLTaskBatch
from metabench.rl.mdp import policy_value, value_iteration
from metabench.rl.returns import discounted_returns, gae
from metabench.spec import Cell
from metabench.suites import SUITES, make_suite
from metabench.suites.mujoco import mujoco_missing

RL_SUITES = [s for s in SUITES.names() if make_suite(s).kind.startswith("rl-")]
MUJOCO_SKIP = pytest.mark.skipif(mujoco_missing() is not None, reason=f"MuJoCo extra not installed: {mujoco_missing()}")
_SUITES: dict[str, object] = {}


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: one intra-op thread is faster, and spinning OpenMP threads on a
    shared 2-core machine made a 1.4 s evaluation take 16 s (measured under load 9)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def suite(sid: str):
    if sid not in _SUITES:
        _SUITES[sid] = make_suite(sid).prepare(None, "cpu")
    return _SUITES[sid]


def needs_mujoco(sid: str, slow: bool = False):
    """Marks for a test on `sid`: skipped without the MuJoCo extra; `slow` too if asked (a MuJoCo cell
    steps Python-looped simulators, about 10 s)."""
    if not sid.startswith("halfcheetah"):
        return []
    return [MUJOCO_SKIP, pytest.mark.slow] if slow else [MUJOCO_SKIP]


# --- pure functions against plain loops and hand computations --------------------------------
def test_returns_and_gae_against_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    n, B, gamma, lam = 9, 3, 0.9, 0.8
    r, v = torch.randn(n, B, generator=g), torch.randn(n, B, generator=g)
    d = torch.rand(n, B, generator=g) < 0.3
    last = torch.randn(B, generator=g)
    ret = discounted_returns(r, d, gamma, last)
    adv, targets = gae(r, v, d, gamma, lam, last)
    for b in range(B):
        G, A, next_v = float(last[b]), 0.0, float(last[b])
        for t in reversed(range(n)):
            nd = 0.0 if d[t, b] else 1.0
            G = float(r[t, b]) + gamma * nd * G
            assert ret[t, b].item() == pytest.approx(G, abs=1e-5)
            delta = float(r[t, b]) + gamma * nd * next_v - float(v[t, b])
            A = delta + gamma * lam * nd * A
            assert adv[t, b].item() == pytest.approx(A, abs=1e-5)
            next_v = float(v[t, b])
    assert torch.allclose(targets, adv + v)
    # lam = 1 and exact values: advantages = returns - values
    adv1, _ = gae(r, v, d, gamma, 1.0, last)
    assert torch.allclose(adv1, ret - v, atol=1e-5)


def test_value_iteration_on_a_two_state_mdp_by_hand():
    # s0: a0 stays (reward 1), a1 goes to s0/s1 with 1/2 each (reward 0.5); s1: a0 stays (3), a1 -> s0 (0)
    P = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    R = torch.tensor([[1.0, 0.5], [3.0, 0.0]], dtype=torch.float64)
    q = value_iteration(P, R, horizon=2)
    # last step: Q = R, V = [1, 3]; first step: [1 + 1, 0.5 + (1 + 3)/2], [3 + 3, 0 + 1]
    want = torch.tensor([[[2.0, 2.5], [6.0, 1.0]], [[1.0, 0.5], [3.0, 0.0]]], dtype=torch.float64)
    assert torch.allclose(q, want)
    uniform = torch.full((2, 2), 0.5, dtype=torch.float64)
    assert torch.allclose(policy_value(P, R, uniform, 1), torch.tensor([0.75, 1.5], dtype=torch.float64))
    # two steps of uniform play from s0: 0.75, then s0 with prob 0.5 + 0.25 and s1 with prob 0.25
    v2 = policy_value(P, R, uniform, 2)
    assert v2[0].item() == pytest.approx(0.75 + (0.75 * 0.75 + 0.25 * 1.5))


def test_ucb1_choice_sequence_on_a_fixed_reward_stream():
    # arm 0 pays 1, 0, 0, ...; arm 1 pays 0, 1, 1, ...; arm 2 always 0 (index sequence worked by hand:
    # each arm once, then s/n + sqrt(2 ln t / n), ties to the lowest index)
    stream = {0: [1, 0, 0, 0, 0], 1: [0, 1, 1, 1, 1], 2: [0, 0, 0, 0, 0]}
    pulls, wins = torch.zeros(1, 3), torch.zeros(1, 3)
    seq = []
    for t in range(8):
        a = int(ucb1_choice(pulls, wins, t)[0])
        seq.append(a)
        wins[0, a] += stream[a][int(pulls[0, a])]
        pulls[0, a] += 1
    assert seq == [0, 1, 2, 0, 0, 1, 2, 1]


def test_gittins_index_is_optimistic_and_shrinks_with_the_horizon():
    wins, pulls = torch.tensor([[0.0, 3.0, 10.0]]), torch.tensor([[0.0, 5.0, 40.0]])
    mean = (wins + 1) / (pulls + 2)
    idx = gittins_index(wins, pulls, 0.99)
    assert bool((idx > mean).all())
    assert bool((idx - mean)[0, 0] > (idx - mean)[0, 2])          # less data, larger bonus
    assert bool((gittins_index(wins, pulls, 0.9) < idx).all())    # shorter horizon, smaller bonus


# --- environments ---------------------------------------------------------------------------
def _one_task(**params) -> RLTaskBatch:
    return RLTaskBatch({k: torch.tensor(v, dtype=torch.float64)[None] for k, v in params.items()})


def test_bandit_env_pays_with_the_arm_probability():
    env = suite("bandit-k5-n100").make_env(_one_task(probs=[0.2, 0.9, 0.5, 0.5, 0.5]), 4000,
                                           generator=torch.Generator().manual_seed(0))
    env.reset()
    _, r, done, info = env.step(torch.ones(4000, dtype=torch.long))
    assert abs(r.mean().item() - 0.9) < 0.02 and not bool(done.any()) and not info["trial_done"]
    with pytest.raises(Exception, match=r"\[0, 5\)"):
        env.step(torch.full((4000,), 5, dtype=torch.long))


def test_tabular_mdp_env_samples_transitions_and_rewards():
    s = suite("tabular-mdp-n10")
    task = s.sample("train", 1, torch.Generator().manual_seed(3))
    env = s.make_env(task, 20000, generator=torch.Generator().manual_seed(0))
    obs = env.reset()
    assert bool((obs.argmax(-1) == 0).all())                      # every episode starts in state 0
    _, r, _, _ = env.step(torch.full((20000,), 2, dtype=torch.long))
    freq = torch.bincount(env.state, minlength=10).double() / 20000
    assert (freq - task.params["transitions"][0, 0, 2]).abs().max() < 0.02
    assert abs(r.double().mean().item() - task.params["reward_means"][0, 0, 2].item()) < 0.04
    assert abs(r.double().std().item() - 1.0) < 0.03


def test_navigation_oracle_path_by_hand():
    s = suite("navigation2d")
    task = s._finish({"goal": torch.tensor([[0.25, -0.05]], dtype=torch.float64)})
    env = s.make_env(task, 1, episodes_per_trial=1)
    obs = env.reset()
    rewards = []
    for _ in range(3):
        obs, r, _, _ = env.step((env.goal - obs).clamp(-0.1, 0.1))
        rewards.append(r.item())
    assert rewards == pytest.approx([-0.15, -0.05, 0.0], abs=1e-6)
    assert task.reference["oracle"].item() == pytest.approx(-0.2, abs=1e-6)
    # actions are clipped to the box
    env.reset()
    obs, _, _, _ = env.step(torch.tensor([[5.0, -5.0]]))
    assert obs[0].tolist() == pytest.approx([0.1, -0.1])


@pytest.mark.parametrize("sid", ["bandit-k5-n100", "tabular-mdp-n10"])
def test_normalized_score_is_zero_for_random_and_one_for_the_oracle(sid):
    s = suite(sid)
    means = {}
    for name in ("random", "oracle"):
        cls = ALGORITHMS.get(name)
        algo = cls(s, cls.preset_config("quick", s), "cpu", 0)
        vals = [algo.evaluate(b)["normalized_score"] for b in s.fixed_tasks("test", 1000, batch_size=1000)]
        means[name] = torch.cat(vals).mean().item()
    assert abs(means["random"]) < 0.03 and abs(means["oracle"] - 1) < 0.03, means


def test_bandit_baselines_rank_as_expected_on_bandit_k5_n100():
    s = suite("bandit-k5-n100")
    tasks = next(s.fixed_tasks("test", 500, batch_size=500))
    score = {}
    for name in ("random", "greedy", "ucb1", "thompson", "gittins", "oracle"):
        cls = ALGORITHMS.get(name)
        score[name] = cls(s, cls.preset_config("quick", s), "cpu", 0).evaluate(tasks)["trial_return"].mean().item()
    assert score["random"] < score["ucb1"] < score["oracle"]
    assert score["random"] < score["greedy"] and score["thompson"] > score["random"] + 20
    assert score["gittins"] > score["greedy"], score


def test_psrl_beats_random_on_tabular_mdps():
    s = suite("tabular-mdp-n25")
    tasks = next(s.fixed_tasks("test", 100, batch_size=100))
    out = {n: ALGORITHMS.get(n)(s, ALGORITHMS.get(n).Config(), "cpu", 0).evaluate(tasks)["normalized_score"].mean().item()
           for n in ("random", "psrl")}
    assert out["psrl"] > 0.5 > out["random"] + 0.3, out


# --- Gymnasium -----------------------------------------------------------------------------
@pytest.mark.parametrize("gym_id, kwargs", [("metabench/Bandit-v0", {"k": 5, "n": 20}),
                                            ("metabench/TabularMDP-v0", {"n_episodes": 3}),
                                            ("metabench/Navigation2D-v0", {})])
def test_gymnasium_env_checker(gym_id, kwargs):
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    import metabench  # noqa: F401  (registers the ids)

    env = gymnasium.make(gym_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=1)
    steps, terminated = 0, False
    while not terminated:
        obs, r, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and isinstance(r, float) and not truncated
        steps += 1
    assert steps == env.unwrapped._env.trial_length


def test_importing_metabench_registers_gym_ids():
    # (without importing torch: test_results.test_nothing_above_the_engine_imports_torch)
    code = ("import metabench, gymnasium; "
            "print(sorted(i for i in gymnasium.registry if i.startswith('metabench/')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "metabench/Bandit-v0" in out.stdout and "metabench/Navigation2D-v0" in out.stdout


# --- MuJoCo ---------------------------------------------------------------------------------
def test_mujoco_missing_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mujoco" else real(name, *a))
    why = make_suite("halfcheetah-vel").unavailable()
    assert why and "pip install 'metabench[rl]'" in why


@MUJOCO_SKIP
def test_halfcheetah_velocity_reward():
    s = suite("halfcheetah-vel")
    task = s._finish({"target": torch.tensor([1.5], dtype=torch.float64)})
    env = s.make_env(task, 1, generator=torch.Generator().manual_seed(0))
    env.reset()
    cheetah = env.envs[0].unwrapped
    x0 = float(cheetah.data.qpos[0])
    _, r, _, _ = env.step(torch.full((1, 6), 0.5))
    v = (float(cheetah.data.qpos[0]) - x0) / cheetah.dt         # forward velocity over the step
    assert r.item() == pytest.approx(-abs(v - 1.5) - 0.05 * 6 * 0.25, abs=1e-4)
    env.close()


# --- through the engine ---------------------------------------------------------------------
ENGINE_PAIRS = [(a, s) for s in RL_SUITES for a in ALGORITHMS.names()
                if ALGORITHMS.get(a).family == "classical" and ALGORITHMS.get(a).fits(make_suite(s))[0]]


@pytest.mark.parametrize("algorithm, sid", [pytest.param(a, s, marks=needs_mujoco(s, slow=True))
                                            for a, s in ENGINE_PAIRS])
def test_every_baseline_runs_through_the_engine(algorithm, sid, tmp_path):
    cell = Cell(sid, algorithm, 0, "smoke", "cpu")
    assert CellRunner(cell, tmp_path).run() == "finished"
    run_dir = tmp_path / cell.run_id
    runs = read_table(run_dir / "runs.parquet", "runs")
    assert runs["meta_steps"].iloc[0] == 0 and runs["family"].iloc[0] == "classical"
    tasks = read_table(run_dir / "tasks.parquet", "tasks")
    primary = make_suite(sid).primary_metric
    assert sorted(tasks[tasks.metric == primary]["task_id"]) == list(range(10))
    curves = pd.concat([read_table(p, "curves") for p in run_dir.glob("curves-*.parquet")])
    assert set(curves["step"]) == {0} and set(curves["split"]) == {"val"} and primary in set(curves["metric"])
    if not sid.startswith("halfcheetah"):
        assert "normalized_score" in set(tasks["metric"])
    json.loads(tasks["descriptors"].iloc[0])
    # running the finished cell again changes nothing
    assert CellRunner(cell, tmp_path).run() == "finished"
    assert len(list(run_dir.glob("curves-*.parquet"))) == 1


@pytest.mark.slow
def test_cli_run_and_leaderboard_for_bandit_baselines(tmp_path):
    res = tmp_path / "results"
    cmd = [sys.executable, "-m", "metabench.cli"]
    out = subprocess.run(cmd + ["run", "--suites", "bandit-k5-n10", "--algorithms", "ucb1,random,maml",
                                "--preset", "smoke", "--results-dir", str(res), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "2 cell(s) finished" in out.stdout and "skip maml on bandit-k5-n10" in out.stderr
    board = subprocess.run(cmd + ["leaderboard", "--results-dir", str(res), "--format", "csv"],
                           capture_output=True, text=True, timeout=120)
    assert board.returncode == 0 and "ucb1" in board.stdout and "random" in board.stdout
    assert math.isfinite(float(board.stdout.splitlines()[1].split(",")[board.stdout.splitlines()[0].split(",").index("mean")]))


def test_aggregate_normalisation_constants_match_the_suites():
    from metabench.results.normalize import RL_REFERENCE_MEANS, normalisation

    for sid, (lo, hi) in RL_REFERENCE_MEANS.items():
        means = suite(sid)._test_means
        assert (lo, hi) == pytest.approx((means["random"], means["oracle"]), rel=1e-9), sid
        rule = normalisation(sid, make_suite(sid).primary_metric)
        assert rule is not None and rule.fn([lo, hi]).tolist() == pytest.approx([0.0, 1.0])
    assert {s for s in RL_SUITES if not s.startswith("halfcheetah")} == set(RL_REFERENCE_MEANS)
