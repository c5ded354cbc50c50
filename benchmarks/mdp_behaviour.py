"""What a tabular-MDP learner does within a trial, on the suite's fixed validation tasks. Not a
speed benchmark; a diagnosis tool for the rl2 gap on tabular-mdp-n10.

    python benchmarks/mdp_behaviour.py heuristics [--suite tabular-mdp-n10] [--val-tasks 200]
    python benchmarks/mdp_behaviour.py policy FILE [--suite ...]     # FILE from rl_side_run.py --save

`heuristics` scores simple per-state strategies that ignore the transitions (each state is
treated as its own 5-armed bandit, statistics kept within the trial): "try k then greedy"
(untried actions in random order until k are tried in that state, then the best empirical
mean), UCB1-style optimism (mean + c / sqrt(n), untried first), and a posterior mean under the
suites' reward prior N(1, 1) plus an optimism bonus p / sqrt(1 + n). They show which behaviour
reaches which `oracle_ratio`, i.e. what a recurrent learner would have to discover.

`policy` plays a saved rl2 policy (sampled actions, as in its evaluation) and reports, for the
second half of each trial, the share of steps on an action not yet tried in that state, on the
best tried action, on another tried action, on the truly best action, the policy's mean entropy,
and how many distinct actions it tried per state (states visited at least 5 times) and in state 0.

Both play `--trials` trials per task with environment randomness from a fixed seed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def play_heuristic(suite, tasks, trials: int, kind: str, param: float, seed: int = 1) -> float:
    """Mean oracle_ratio of one per-state heuristic ('try', 'ucb' or 'bayes') over `tasks`."""
    import torch

    from metabench.rl.rollout import episode_returns, per_task
    env = suite.make_env(tasks, trials, generator=torch.Generator().manual_seed(seed), device="cpu")
    pg = torch.Generator().manual_seed(seed + 1)
    B, S, A = env.n_envs, env.n_states, env.action_space.n
    cnt, tot = torch.zeros(B, S, A), torch.zeros(B, S, A)
    rows, obs, rews = torch.arange(B), env.reset(), []
    for _ in range(env.trial_length):
        st = obs.argmax(-1)
        n, s = cnt[rows, st], tot[rows, st]
        mean = s / n.clamp_min(1)
        if kind == "try":       # untried actions in random order until `param` are tried, then greedy
            explore = ((n > 0).sum(-1) < param).unsqueeze(-1)
            untried_first = torch.rand(B, A, generator=pg) - 10 * (n > 0)
            score = torch.where(explore, untried_first, torch.where(n > 0, mean, torch.full_like(mean, -1e9)))
        elif kind == "ucb":     # untried first, then mean + c / sqrt(n)
            score = torch.where(n > 0, mean + param / n.clamp_min(1).sqrt(), torch.full_like(mean, 1e9))
        else:                   # posterior mean under N(1, 1) means and unit noise, plus p / sqrt(1 + n)
            score = (1.0 + s) / (1.0 + n) + param / (1.0 + n).sqrt()
        a = score.argmax(-1)
        obs, r, _, _ = env.step(a)
        cnt[rows, st, a] += 1
        tot[rows, st, a] += r
        rews.append(r)
    returns = per_task(episode_returns(torch.stack(rews), env.horizon), trials)
    return float(suite.score(tasks, returns)["oracle_ratio"].float().mean())


def policy_behaviour(suite, tasks, trials: int, file: Path, seed: int = 1) -> dict[str, float]:
    """Play a saved rl2 policy through its own rollout (`RL2._rollout`) and describe, per step, the
    action it took against the statistics of the trial so far."""
    import torch
    import torch.nn.functional as F

    from metabench.algorithms import ALGORITHMS
    saved = torch.load(file, weights_only=False, map_location="cpu")
    algo = ALGORITHMS.get("rl2")(suite, saved["config"], torch.device("cpu"), 0)
    algo.load_state_dict(saved["state"])
    with torch.no_grad():
        x, act, _, _, rew, env = algo._rollout(tasks, trials, torch.Generator().manual_seed(seed),
                                               torch.Generator().manual_seed(seed + 1))
        entropy = algo.policy.dist(algo.policy(x)[0]).entropy()                       # (n, B)
    n, B = act.shape
    S, A = env.n_states, env.action_space.n
    state = x[..., :S].argmax(-1)                                                      # (n, B)
    pair = F.one_hot(state * A + act, S * A).float()                                   # (n, B, S*A)
    # visits and reward sums of every (state, action) before each step, then those of its state
    before = lambda v: (v.cumsum(0) - v).view(n, B, S, A).gather(
        2, state.view(n, B, 1, 1).expand(n, B, 1, A)).squeeze(2)                      # (n, B, A)
    visits, totals = before(pair), before(pair * rew.unsqueeze(-1))
    best = torch.where(visits > 0, totals / visits.clamp_min(1), torch.full_like(totals, -1e9)).argmax(-1)
    untried = visits.gather(-1, act.unsqueeze(-1)).squeeze(-1) == 0
    truly_best = env.reward_means[env.task_index.expand(n, B), state].argmax(-1)
    late = slice(n // 2, None)                                                         # second half of the trial
    result = {"untried": untried[late], "best_tried": ~untried[late] & (act[late] == best[late]),
              "other_tried": ~untried[late] & (act[late] != best[late]),
              "truly_best": act[late] == truly_best[late], "entropy": entropy[late]}
    result = {k: float(v.float().mean()) for k, v in result.items()}
    trial_visits = pair.sum(0).view(B, S, A)
    tried = (trial_visits > 0).sum(-1).float()                                         # (B, S)
    result["actions_tried_per_state"] = float(tried[trial_visits.sum(-1) >= 5].mean())
    result["actions_tried_state0"] = float(tried[:, 0].mean())
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("heuristics", "policy"))
    ap.add_argument("file", nargs="?", type=Path, help="policy mode: a checkpoint from rl_side_run.py --save")
    ap.add_argument("--suite", default="tabular-mdp-n10")
    ap.add_argument("--val-tasks", type=int, default=200)
    ap.add_argument("--trials", type=int, default=4, help="trials per task (default 4, as the suite evaluates)")
    args = ap.parse_args()

    import torch

    from metabench.suites import make_suite
    torch.set_num_threads(1)
    if not args.suite.startswith("tabular-mdp-"):
        print(f"error: {args.suite} is not a tabular-MDP suite; use tabular-mdp-n10, -n25 or -n50", file=sys.stderr)
        return 2
    if args.mode == "policy" and (args.file is None or not args.file.is_file()):
        print(f"error: policy mode needs a checkpoint file written by rl_side_run.py --save; got {args.file}",
              file=sys.stderr)
        return 2
    suite = make_suite(args.suite).prepare(None, "cpu")
    tasks = next(iter(suite.fixed_tasks("val", args.val_tasks, batch_size=args.val_tasks)))
    if args.mode == "heuristics":
        print(f"{args.suite}, {args.val_tasks} validation tasks x {args.trials} trials: oracle_ratio")
        print("| strategy | oracle_ratio |\n|---|---|")
        for kind, values, label in (("try", (1, 2, 3, 4, 5), "try {} then greedy"),
                                    ("ucb", (0.5, 1.0, 2.0), "UCB, c = {}"),
                                    ("bayes", (0.0, 0.5, 1.0, 2.0), "posterior mean + {} / sqrt(1 + n)")):
            for v in values:
                print(f"| {label.format(v)} | {play_heuristic(suite, tasks, args.trials, kind, v):.4f} |", flush=True)
    else:
        for k, v in policy_behaviour(suite, tasks, args.trials, args.file).items():
            print(f"{k}: {v:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
