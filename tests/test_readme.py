"""The README stays true: its algorithm x suite table matches the registry, its links resolve."""
from __future__ import annotations

import re
from pathlib import Path

from metabench.algorithms import ALGORITHMS
from metabench.suites import make_suite

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# README column -> the suites it stands for (every one must agree with the mark).
COLUMNS = {
    "Omniglot": ["omniglot-5w1s", "omniglot-20w5s", "omniglot-lake-5w1s", "omniglot-lake-runs"],
    "miniImageNet, CIFAR-FS": ["miniimagenet-5w1s", "miniimagenet-5w5s", "cifarfs-5w1s", "cifarfs-5w5s"],
    "sinusoid": ["sinusoid-5shot", "sinusoid-10shot"],
    "bandits": ["bandit-k5-n10", "bandit-k5-n100", "bandit-k10-n100", "bandit-k50-n500"],
    "tabular MDPs": ["tabular-mdp-n10", "tabular-mdp-n25", "tabular-mdp-n50"],
    "navigation2d": ["navigation2d"],
    "half-cheetah": ["halfcheetah-vel", "halfcheetah-dir"],
}


def _table() -> tuple[list[str], list[list[str]]]:
    lines = README.split("## What runs on what", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:   # the first table only
        if not line.startswith("|"):
            break
        rows.append(line)
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    return header, [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]


def test_the_readme_table_lists_every_builtin_and_matches_what_fits():
    header, rows = _table()
    assert header[2:] == list(COLUMNS)
    seen = []
    for row in rows:
        names = re.findall(r"`([^`]+)`", row[1])
        for name in names:
            cls = ALGORITHMS.get(name)
            seen.append(name)
            for column, mark in zip(header[2:], row[2:]):
                fits = {s: cls.fits(make_suite(s))[0] for s in COLUMNS[column]}
                assert set(fits.values()) == {mark == "✓"}, f"README says {name} on {column}: {mark!r}; registry: {fits}"
    builtin = [n for n in ALGORITHMS.names() if ALGORITHMS.origin(n) == "built-in"]
    assert sorted(seen) == sorted(builtin), "every built-in algorithm has exactly one README row"


def test_readme_links_point_at_files_that_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text(encoding="utf-8")):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
