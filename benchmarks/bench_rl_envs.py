"""Environment steps per second: metabench's torch-vectorised bandit vs the same environment
stepped through Gymnasium's `SyncVectorEnv` (the registered `metabench/Bandit-v0`).

    python benchmarks/bench_rl_envs.py [--envs 1024] [--k 10] [--n 100] [--rounds 3] [--threads 1]

Both cases run in this one process, interleaved round by round; random actions are drawn before
the clock starts, so only `step` is timed. An env step is one environment advancing by one
pull: the vectorised env does `--envs` of them per `step` call. Target (issue 4): at least one
million env steps/s for bandit-k10-n100 with 1024 parallel trials. The script prints the load
average before and after: on a shared machine the absolute rates are lower bounds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, default=1024, help="parallel trials (default 1024)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gym-steps", type=int, default=20, help="SyncVectorEnv steps per round (default 20)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: the tensors are tiny)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import gymnasium
    import numpy as np
    import torch

    import metabench  # noqa: F401  (registers metabench/Bandit-v0)
    from metabench.suites import make_suite

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    suite = make_suite(f"bandit-k{args.k}-n{args.n}").prepare(None, args.device)
    tasks = suite.sample("train", args.envs, torch.Generator().manual_seed(0))
    env = suite.make_env(tasks, 1, generator=torch.Generator(args.device).manual_seed(0))
    acts = torch.randint(0, args.k, (args.n, args.envs), generator=torch.Generator().manual_seed(1)).to(args.device)

    venv = gymnasium.vector.SyncVectorEnv(
        [lambda: gymnasium.make("metabench/Bandit-v0", k=args.k, n=args.n) for _ in range(args.envs)])
    venv.reset(seed=0)
    gacts = np.random.default_rng(1).integers(0, args.k, (args.gym_steps, args.envs))

    def vectorised() -> float:
        env.reset()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for a in acts:               # one whole trial: n steps of every env
            env.step(a)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return args.n * args.envs / (time.perf_counter() - t)

    def gym_sync() -> float:
        venv.reset()
        t = time.perf_counter()
        for a in gacts:              # fewer steps than n: no trial ends (no autoreset step) inside
            venv.step(a)
        return args.gym_steps * args.envs / (time.perf_counter() - t)

    vectorised(); gym_sync()         # warm-up
    vec, gym = [], []
    for _ in range(args.rounds):
        vec.append(vectorised())
        gym.append(gym_sync())
    load1 = os.getloadavg()
    v, g = statistics.median(vec), statistics.median(gym)
    print(f"bandit-k{args.k}-n{args.n}, {args.envs} parallel trials, device {args.device}, torch threads "
          f"{args.threads}, torch {torch.__version__}, gymnasium {gymnasium.__version__}, {os.cpu_count()} CPUs")
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} (1-min; >0.5 means other processes shared the CPUs)")
    print("| case | env steps/s (median of rounds) | rounds |")
    print("|---|---|---|")
    print(f"| metabench torch-vectorised | {v:,.0f} | {', '.join(f'{x:,.0f}' for x in vec)} |")
    print(f"| gymnasium SyncVectorEnv(metabench/Bandit-v0) | {g:,.0f} | {', '.join(f'{x:,.0f}' for x in gym)} |")
    print(f"ratio vectorised / SyncVectorEnv: {v / g:,.0f}x; target >= 1,000,000 steps/s: "
          f"{'met' if v >= 1e6 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
