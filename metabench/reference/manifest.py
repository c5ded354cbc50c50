"""The reference set's manifest: every cell it is meant to hold, and the state of each (issue 21).

The intended cells are computed from the registries, so a new built-in algorithm or suite shows up
in the manifest as ``not run`` the next time it is written:

* **tier 1**: seed 0 of every built-in algorithm on every suite it fits among ``TIER1_SUITES``;
  seeds 0, 1, 2 of the default grid (maml and protonet on omniglot-5w1s) and of every algorithm on
  sinusoid-5shot;
* **tier 2**: seeds 1 and 2 of every other tier-1 cell whose algorithm meta-trains, and seed 0 of
  every built-in algorithm on ``TIER2_SUITES`` (as compute allows).

Rows that do not meta-train (``needs_training = False``: the classical bandit and MDP rows,
pixel-centroid) get seed 0 only: their evaluation noise is seeded by the test-task ids, so every
seed gives the same per-task rows (tested), and three identical copies would read as three seeds
that happened to agree.

Every cell is the plain algorithm (no overrides) with the ``quick`` preset. A cell's state is
``finished`` when the shipped folder holds its finished run, ``running`` when a results folder
being produced for the set holds it unfinished (recorded by ``metabench reference add`` or
``metabench reference status --watch DIR``), else ``not run``.

``MANIFEST.toml`` (one line per cell) and ``MANIFEST.md`` (a grid per suite) sit beside this file
and are written only by ``write_manifest``; a test checks that the shipped folder covers every
cell the manifest calls finished.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Iterable

from metabench.spec import Cell

PRESET = "quick"
TIER1_SUITES = ("omniglot-5w1s", "sinusoid-5shot", "bandit-k5-n100", "tabular-mdp-n10", "navigation2d")
TIER2_SUITES = ("omniglot-20w1s", "omniglot-5w5s", "omniglot-lake-runs", "sinusoid-10shot", "bandit-k5-n10",
                "bandit-k10-n100", "bandit-k50-n500", "halfcheetah-vel")
#: Seeds 0, 1, 2 in tier 1: the default benchmark's grid, and every algorithm on this suite.
THREE_SEEDS = {("omniglot-5w1s", "maml"), ("omniglot-5w1s", "protonet")}
THREE_SEED_SUITES = ("sinusoid-5shot",)
SEEDS = (0, 1, 2)
STATES = ("finished", "running", "not run")
HERE = Path(__file__).resolve().parent
MANIFEST_TOML = HERE / "MANIFEST.toml"
MANIFEST_MD = HERE / "MANIFEST.md"


@dataclasses.dataclass(frozen=True)
class Intended:
    """One cell the reference set is meant to hold."""

    tier: int
    suite: str
    algorithm: str
    seed: int

    @property
    def run_id(self) -> str:
        return Cell(self.suite, self.algorithm, self.seed, PRESET).run_id


def builtin_algorithms() -> list[str]:
    """Every built-in algorithm name (plugins and named variants are not part of the set)."""
    from metabench.algorithms import ALGORITHMS

    return [n for n in ALGORITHMS.names() if ALGORITHMS.origin(n) == "built-in"]


def _fitting(suite_id: str, algorithms: list[str]) -> list[str]:
    from metabench.algorithms import ALGORITHMS
    from metabench.suites import make_suite

    suite = make_suite(suite_id)
    return [a for a in algorithms if ALGORITHMS.get(a).fits(suite)[0]]


def _trains(algorithm: str) -> bool:
    from metabench.algorithms import ALGORITHMS

    return bool(getattr(ALGORITHMS.get(algorithm), "needs_training", True))


def intended_cells() -> list[Intended]:
    """Tier 1 then tier 2, each in suite order, algorithm name order, seed order."""
    algos = builtin_algorithms()
    tier1: list[Intended] = []
    for s in TIER1_SUITES:
        for a in _fitting(s, algos):
            three = (s, a) in THREE_SEEDS or s in THREE_SEED_SUITES
            tier1 += [Intended(1, s, a, seed) for seed in (SEEDS if three else (0,))]
    have = {(c.suite, c.algorithm, c.seed) for c in tier1}
    tier2 = [Intended(2, c.suite, c.algorithm, seed) for c in tier1 if c.seed == 0 and _trains(c.algorithm)
             for seed in SEEDS[1:] if (c.suite, c.algorithm, seed) not in have]
    tier2 += [Intended(2, s, a, 0) for s in TIER2_SUITES for a in _fitting(s, algos)]
    return tier1 + tier2


def shipped_states(folder: Path) -> dict[str, str]:
    """run id -> status of every run in a results folder (runs.parquet read; unreadable ones left out)."""
    from metabench.engine.cell import cell_status

    out = {}
    for p in sorted(Path(folder).glob("*/runs.parquet")):
        status = cell_status(p.parent.parent, p.parent.name)
        if status is not None:
            out[p.parent.name] = status
    return out


def read_manifest(path: Path = MANIFEST_TOML) -> dict[str, dict]:
    """run id -> the manifest's entry for it ({} when there is no manifest yet)."""
    if not Path(path).exists():
        return {}
    doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return {c["run_id"]: c for c in doc.get("cell", [])}


def previously_running(path: Path = MANIFEST_TOML) -> set[str]:
    """The run ids the manifest at ``path`` marks running."""
    return {r for r, c in read_manifest(path).items() if c.get("state") == "running"}


def states(shipped: Path, running: Iterable[str] = ()) -> dict[str, str]:
    """run id -> state of every intended cell: finished in ``shipped``; else running when listed in
    ``running``; else not run."""
    done = {r for r, s in shipped_states(shipped).items() if s == "finished"}
    running = set(running)
    return {c.run_id: "finished" if c.run_id in done else "running" if c.run_id in running else "not run"
            for c in intended_cells()}


def _toml(cells: list[Intended], state: dict[str, str]) -> str:
    counts = {(t, s): sum(1 for c in cells if c.tier == t and state[c.run_id] == s) for t in (1, 2) for s in STATES}
    lines = ["# The reference set's intended cells and their states (issue 21). Written by",
             "# `metabench reference add` / `metabench reference status --write`; do not edit by hand.",
             "# Every cell: the plain built-in algorithm, preset quick; the run id names its folder",
             "# in metabench/reference/runs/.", ""]
    for t in (1, 2):
        lines.append(f"# tier {t}: " + ", ".join(f"{counts[t, s]} {s}" for s in STATES))
    lines += ["", f'preset = "{PRESET}"', ""]
    for c in cells:
        lines += ["[[cell]]", f"tier = {c.tier}", f'suite = "{c.suite}"', f'algorithm = "{c.algorithm}"',
                  f"seed = {c.seed}", f'run_id = "{c.run_id}"', f'state = "{state[c.run_id]}"', ""]
    return "\n".join(lines)


_MARK = {"finished": "✓", "running": "…", "not run": "·"}


def _markdown(cells: list[Intended], state: dict[str, str]) -> str:
    lines = ["# The reference set: intended cells", "",
             "Generated with [MANIFEST.toml](MANIFEST.toml) by `metabench reference status --write` (and on every",
             "`metabench reference add`); do not edit by hand. Preset `quick`, plain built-in algorithms.",
             f"{_MARK['finished']} finished (shipped in `runs/`), {_MARK['running']} running, "
             f"{_MARK['not run']} not run; a blank seed is not an intended cell.", ""]
    for tier in (1, 2):
        mine = [c for c in cells if c.tier == tier]
        n = {s: sum(state[c.run_id] == s for c in mine) for s in STATES}
        lines += [f"## Tier {tier}: {n['finished']} of {len(mine)} finished, {n['running']} running", ""]
        for suite in dict.fromkeys(c.suite for c in mine):
            lines += [f"### {suite}", "", "| algorithm | seed 0 | seed 1 | seed 2 |", "|---|---|---|---|"]
            for algo in dict.fromkeys(c.algorithm for c in mine if c.suite == suite):
                seeds = {c.seed: _MARK[state[c.run_id]] for c in mine if c.suite == suite and c.algorithm == algo}
                lines.append(f"| `{algo}` | " + " | ".join(seeds.get(s, "") for s in SEEDS) + " |")
            lines.append("")
    return "\n".join(lines)


def write_manifest(shipped: Path, running: Iterable[str] | None = None, toml_path: Path = MANIFEST_TOML,
                   md_path: Path | None = MANIFEST_MD) -> dict[str, str]:
    """Write the manifest (TOML, and its Markdown view) for ``shipped``; returns run id -> state.
    ``running``: the run ids being produced (None: those the manifest already marks running)."""
    cells = intended_cells()
    state = states(shipped, previously_running(toml_path) if running is None else running)
    Path(toml_path).write_text(_toml(cells, state), encoding="utf-8")
    if md_path is not None:
        Path(md_path).write_text(_markdown(cells, state), encoding="utf-8")
    return state
