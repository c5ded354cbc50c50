"""A learning-curve side run: one meta-RL algorithm on one suite, with `Config` overrides, scored
on the suite's fixed validation tasks every few meta-steps. Not a speed benchmark.

    python benchmarks/rl_side_run.py rl2 tabular-mdp-n10 --steps 1500 [--save FILE] \
        --set meta_batch_size=128 --set ppo_epochs=2 [--val-tasks 200] [--eval-every 250] [--device cuda]

This is the driver behind the "side runs" quoted in the algorithms' preset comments (e.g. the
variants of rl2 on tabular-mdp-n10 that levelled off near 0.55): the engine's `metabench run`
takes no per-field overrides, and a side run needs neither Parquet nor a checkpoint. Same
protocol as a `quick` cell otherwise: the `quick` preset's Config with the overrides on top,
seed 0, train tasks drawn from a generator seeded 12345, validation on the first `--val-tasks`
fixed validation tasks in batches of 100 (the engine validates in batches of 100 too), one
torch thread by default so that two side runs share a 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_set(items: list[str]) -> dict:
    """['hidden=128', 'gamma=1.0', 'anneal_lr=true'] -> {'hidden': 128, ...} (values read as JSON,
    falling back to the plain string)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set needs FIELD=VALUE, e.g. --set hidden=128; got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("algorithm")
    ap.add_argument("suite")
    ap.add_argument("--steps", type=int, default=1500, help="meta-steps (default 1500)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a Config field on top of the quick preset (repeatable)")
    ap.add_argument("--val-tasks", type=int, default=200, help="fixed validation tasks (default 200)")
    ap.add_argument("--eval-every", type=int, default=250, help="validate every N meta-steps (default 250)")
    ap.add_argument("--log-every", type=int, default=50, help="print the mean training return every N steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or auto, as for `metabench run`")
    ap.add_argument("--save", type=Path, default=None, metavar="FILE",
                    help="write the algorithm's state_dict (torch.save) here at the end, for diagnosis")
    args = ap.parse_args()

    import torch

    from metabench.algorithms import ALGORITHMS
    from metabench.engine.device import resolve_device
    from metabench.errors import ConfigError
    from metabench.suites import make_suite

    torch.set_num_threads(args.threads)
    try:
        suite = make_suite(args.suite)
        if not suite.kind.startswith("rl-"):
            raise ConfigError(f"{args.suite} is not a meta-RL suite (kind {suite.kind}); side runs are for RL suites")
        cls = ALGORITHMS.get(args.algorithm)
        ok, reason = cls.fits(suite)
        if not ok:
            raise ConfigError(f"{args.algorithm} does not fit {args.suite}: {reason}")
        missing = suite.unavailable()
        if missing:
            raise ConfigError(missing)
        device = resolve_device(args.device)
        suite.prepare(None, device)
        cfg = cls.preset_config("quick", suite, parse_set(args.set))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(cfg, f"device={device}", flush=True)
    algo = cls(suite, cfg, device, args.seed)
    gen = torch.Generator().manual_seed(12345)
    val = list(suite.fixed_tasks("val", args.val_tasks, batch_size=100))
    n_tasks = algo.train_request().n_tasks

    def validate() -> dict[str, float]:
        parts = [algo.evaluate(b) for b in val]
        return {k: float(torch.cat([p[k].float().reshape(-1) for p in parts]).mean()) for k in parts[0]}

    t0, returns = time.time(), []
    metrics = validate()
    print("| step | seconds | " + " | ".join(metrics) + " |")
    print("|---" * (2 + len(metrics)) + "|")
    print("| 0 | 0 | " + " | ".join(f"{v:.4f}" for v in metrics.values()) + " |", flush=True)
    for step in range(1, args.steps + 1):
        stats = algo.meta_train_step(suite.sample("train", n_tasks, gen))
        returns.append(stats.get("trial_return", float("nan")))
        if step % args.log_every == 0:
            print(f"# step {step}: mean training trial return {sum(returns) / len(returns):.2f}", flush=True)
            returns = []
        if step % args.eval_every == 0 or step == args.steps:
            metrics = validate()
            print(f"| {step} | {time.time() - t0:.0f} | " + " | ".join(f"{v:.4f}" for v in metrics.values()) + " |",
                  flush=True)
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": cfg, "state": algo.state_dict()}, args.save)
        print(f"# saved to {args.save}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
