"""Writes rliable_oracle.json beside this file: rliable's own numbers for the score matrix M, which
tests/test_stats.py compares metabench.results.stats against (DESIGN.md: rliable is the reference
definition of IQM and of stratified bootstrap intervals).

rliable's dependency arch does not import under this project's pandas 3, so the numbers are made
once in a separate environment and stored:

    python -m venv /tmp/rliable-venv
    /tmp/rliable-venv/bin/pip install rliable==1.2.0 arch==7.2.0 "pandas==2.3.*"
    /tmp/rliable-venv/bin/python tests/data/make_rliable_oracle.py

(it needs only rliable and numpy, not metabench). Last run: rliable 1.2.0, arch 7.2.0, pandas 2.3.3,
numpy 2.4.6, scipy 1.17.1; the versions are recorded in the JSON.
"""
from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from rliable import library as rly
from rliable import metrics

#: (n_runs=5, n_tasks=3), small enough to check by hand: the IQM pools the 15 scores and cuts
#: int(0.25 * 15) = 3 at each end (scipy's trim_mean, which rliable calls).
M = [[0.1, 0.5, 0.9], [0.3, 0.2, 0.8], [0.4, 0.7, 0.6], [0.0, 0.9, 1.0], [0.25, 0.35, 0.45]]
SEED, REPS = 7, 500
TAUS = [0.0, 0.25, 0.5, 0.75, 1.0]


def main() -> None:
    scores = np.array(M)
    iqm = lambda x: np.array([metrics.aggregate_iqm(x)])  # noqa: E731 - rliable's metric signature
    np.random.seed(SEED)   # rliable's bootstrap draws from NumPy's global RandomState
    _, ci = rly.get_interval_estimates({"a": scores}, iqm, reps=REPS)
    profile, _ = rly.create_performance_profile({"a": scores}, np.array(TAUS))
    out = {
        "M": M,
        "aggregate_iqm": float(metrics.aggregate_iqm(scores)),
        "interval": {"seed": SEED, "reps": REPS, "low": float(ci["a"][0, 0]), "high": float(ci["a"][1, 0])},
        "performance_profile": {"taus": TAUS, "fraction": [float(v) for v in profile["a"]]},
        "versions": {p: version(p) for p in ("rliable", "arch", "pandas", "numpy", "scipy")},
    }
    path = Path(__file__).with_name("rliable_oracle.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
