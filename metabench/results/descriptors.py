"""Task descriptors (the ``descriptors`` JSON of each test task) as features to break results down.

Every task carries JSON-able descriptors: Omniglot tasks their alphabets, characters and
rotations; sinusoid tasks amplitude and phase; bandits arm probabilities; navigation tasks a goal.
``features`` turns them into two views, without knowing any suite:

- numeric: one column per numeric scalar (``amplitude``), plus for lists of floats the gap
  between the two largest values (``arm_probs · top-2 gap``, the bandit's difficulty) and the
  Euclidean norm (``goal · norm``, the distance of a goal from the origin);
- categorical: one row per (task, descriptor, category) for strings, lists of strings and lists
  of integers (Omniglot rotations), each category counted once per task (an Omniglot task of 5
  characters from 2 alphabets belongs to both alphabets).
"""

from __future__ import annotations

import json
from numbers import Number

import numpy as np
import pandas as pd


#: Descriptors a breakdown starts with when a suite has them (the ones the papers discuss).
PREFERRED = ("alphabets", "amplitude", "arm_probs", "goal", "gap", "goal_distance")


def _is_number(v: object) -> bool:
    return isinstance(v, Number) and not isinstance(v, bool)


def features(task_ids: pd.Series, descriptors: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(numeric, categorical)`` feature frames for the given tasks (one JSON string each).

    ``numeric``: index task_id, one float column per numeric feature. ``categorical``: columns
    task_id, descriptor, category. Descriptors are parsed once per distinct task.
    """
    unique = pd.DataFrame({"task_id": task_ids, "descriptors": descriptors}).drop_duplicates("task_id")
    numeric: dict[str, dict[int, float]] = {}
    categorical: list[tuple[int, str, str]] = []
    for task_id, text in zip(unique["task_id"], unique["descriptors"], strict=True):
        try:
            parsed = json.loads(text) if isinstance(text, str) else {}
        except json.JSONDecodeError:
            parsed = {}
        if not isinstance(parsed, dict):
            continue
        for key, value in parsed.items():
            if _is_number(value):
                numeric.setdefault(key, {})[int(task_id)] = float(value)
            elif isinstance(value, str):
                categorical.append((int(task_id), key, value))
            elif isinstance(value, list) and value:
                if all(isinstance(v, str) for v in value):
                    categorical.extend((int(task_id), key, v) for v in dict.fromkeys(value))
                elif all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                    categorical.extend((int(task_id), key, str(v)) for v in dict.fromkeys(value))
                elif all(_is_number(v) for v in value) and len(value) >= 2:
                    arr = np.sort(np.asarray(value, dtype=float))[::-1]
                    numeric.setdefault(f"{key} · top-2 gap", {})[int(task_id)] = float(arr[0] - arr[1])
                    numeric.setdefault(f"{key} · norm", {})[int(task_id)] = float(np.linalg.norm(arr))
    num = pd.DataFrame(numeric)
    num.index.name = "task_id"
    cat = pd.DataFrame(categorical, columns=["task_id", "descriptor", "category"])
    return num, cat


def by_category(values: pd.DataFrame, categorical: pd.DataFrame, descriptor: str, top: int = 30) -> pd.DataFrame:
    """Mean and 95% CI (Student t over tasks) of each entry on the tasks of each category.

    ``values``: entry, task_id, value (``task_values`` with an ``entry`` label). Only the
    ``top`` categories with the most tasks are kept. Columns: entry, category, mean, low, high,
    n_tasks.
    """
    from metabench.results.stats import ci_halfwidth

    cats = categorical[categorical["descriptor"] == descriptor][["task_id", "category"]]
    keep = cats["category"].value_counts().head(top).index
    merged = values[["entry", "task_id", "value"]].merge(cats[cats["category"].isin(keep)], on="task_id")
    out = merged.groupby(["entry", "category"], as_index=False)["value"].agg(mean="mean", sd="std", n_tasks="count")
    half = ci_halfwidth(out.pop("sd").to_numpy(float), out["n_tasks"].to_numpy(float))
    return out.assign(low=out["mean"] - half, high=out["mean"] + half)


def paired_tasks(values: pd.DataFrame, a: str, b: str, higher_is_better: bool) -> pd.DataFrame:
    """Entry ``a`` minus entry ``b`` on every test task both have: task_id, a, b, diff, winner
    (``a``, ``b`` or 'tie', following the metric's direction)."""
    wide = values.pivot_table(index="task_id", columns="entry", values="value")
    if a not in wide or b not in wide:
        return pd.DataFrame(columns=["task_id", "a", "b", "diff", "winner"])
    both = wide[[a, b]].dropna()
    out = pd.DataFrame({"task_id": both.index, "a": both[a].to_numpy(), "b": both[b].to_numpy()})
    out["diff"] = out["a"] - out["b"]
    better = out["diff"] > 0 if higher_is_better else out["diff"] < 0
    out["winner"] = np.where(out["diff"] == 0, "tie", np.where(better, a, b))
    return out
