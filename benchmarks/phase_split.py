"""What share of each finished cell's wall time is not meta-training (issue 23 §1).

    python benchmarks/phase_split.py                       # the shipped reference set
    python benchmarks/phase_split.py --results-dir results # your own runs

Runs that recorded `runs.config.phase_times_s` (metabench after issue 23) are split exactly:
setup, sampling, meta-training, validation, checkpoints, logging, test. Older runs are
estimated from their curve rows' wall-clock stamps: a training interval that follows a validation
is longer than the median interval by what the validation took, and everything after the last
training row is the last validation plus the test evaluation; what remains (sampling, checkpoints,
logging, setup) is counted as training, so for old runs the share is a lower bound.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def split(run_dir: Path) -> dict | None:
    runs = pd.read_parquet(run_dir / "runs.parquet").iloc[0]
    if runs["status"] != "finished" or not runs["meta_steps"]:
        return None
    wall = float(runs["wall_time_s"])
    phases = json.loads(runs["config"]).get("phase_times_s")
    if phases:
        total = sum(phases.values())
        val, test = phases.get("validate", 0.0), phases.get("test", 0.0)
        rest = total - phases.get("train", 0.0) - val - test
        return {"wall": wall, "validate": val / total, "test": test / total, "other": rest / total, "how": "recorded"}
    curves = pd.concat([pd.read_parquet(p) for p in sorted(run_dir.glob("curves-*.parquet"))])
    train = curves[curves["split"] == "train"].drop_duplicates("step").sort_values("step")
    val_steps = set(curves.loc[curves["split"] == "val", "step"])
    steps, stamps = train["step"].to_numpy(), train["wall_time_s"].to_numpy()
    gaps = np.diff(stamps)
    after_val = np.array([s in val_steps for s in steps[:-1]])
    typical = float(np.median(gaps[~after_val])) if (~after_val).any() else 0.0
    val = float(np.clip(gaps[after_val] - typical, 0, None).sum())
    tail = max(0.0, wall - float(stamps[-1]))   # the last validation and the test evaluation
    per_val = val / max(after_val.sum(), 1)
    return {"wall": wall, "validate": (val + min(per_val, tail)) / wall, "test": max(0.0, tail - per_val) / wall,
            "other": float("nan"), "how": "estimated from curves"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results-dir", default=None, help="default: the shipped reference set")
    args = ap.parse_args(argv)
    if args.results_dir:
        folder = Path(args.results_dir)
    else:
        from metabench.reference import reference_dir

        folder = reference_dir()
    print(f"# not meta-training, per finished cell ({folder})\n")
    print("| run | wall | validation | test | other (setup, sampling, checkpoints, logging) | not training | how |")
    print("|---|---|---|---|---|---|---|")
    for run_dir in sorted(p.parent for p in folder.glob("*/runs.parquet")):
        s = split(run_dir)
        if s is None:
            continue
        other = 0.0 if np.isnan(s["other"]) else s["other"]
        total = s["validate"] + s["test"] + other
        print(f"| {run_dir.name} | {s['wall'] / 60:.1f} min | {100 * s['validate']:.1f}% | {100 * s['test']:.1f}% | "
              f"{'n/a' if np.isnan(s['other']) else f'{100 * other:.1f}%'} | **{100 * total:.1f}%** | {s['how']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
