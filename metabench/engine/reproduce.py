"""`metabench reproduce RUN_ID`: re-run a stored cell and compare its test rows with the stored ones.

The cell is rebuilt from what its ``runs`` row recorded (suite, algorithm, seed, preset and
overrides), checked to resolve to the configuration stored with it (otherwise this metabench
computes something else and says which fields differ), run from scratch into a scratch folder,
and its per-task rows are compared with the stored rows:

* **identical**: every (task, metric) value bit for bit (expected on the same kind of CPU with
  the same torch; see docs/reliability.md for what is and is not bit-reproducible). The rerun
  computes every step with the torch thread count the stored run recorded for it
  (``runs.config["threads"]``, ``metabench.engine.schedule``); runs stored before that record
  existed rerun with this process's thread count;
* otherwise the mean difference on the primary metric with its paired 95% CI over the test
  tasks, and whether it is inside the seed-to-seed spread of the run's entry (the standard
  deviation of the per-seed means of the other finished seeds of the same entry in the folder).

It also says whether the fixed test tasks' fingerprints agree (issue 21 §3). A run id that is not
in the results folder is looked up in the shipped reference set (``metabench.reference``), so
``metabench reproduce RUN_ID`` re-runs any shipped row; the shipped folder is only read.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from metabench.engine.cell import CellRunner
from metabench.engine.schedule import ThreadSchedule
from metabench.errors import ConfigError
from metabench.results.ids import check_run_id
from metabench.results.writer import read_table
from metabench.spec import Cell


@dataclasses.dataclass
class Reproduction:
    run_id: str
    scratch: Path
    identical: bool
    n_rows: int
    metric: str
    mean_diff: float = 0.0
    ci95: float = 0.0
    spread: float | None = None
    """Std of the per-seed means of the entry's other seeds and the rerun (None: no other seeds)."""
    same_tasks: bool | None = None
    """Whether the test-task fingerprints agree (None: the stored run recorded none)."""
    stored_in: Path | None = None
    """The folder the stored run was found in (the results folder or the shipped reference set)."""
    new_metrics: list[str] = dataclasses.field(default_factory=list)
    """Metrics the rerun reports that the stored run did not (left out of the comparison)."""

    @property
    def inside_spread(self) -> bool | None:
        if self.identical:
            return True
        if self.spread is None or not math.isfinite(self.spread):
            return None
        return abs(self.mean_diff) <= 1.96 * self.spread

    def summary(self) -> str:
        tasks = {None: "the stored run recorded no test-task fingerprint", True: "same fixed test tasks (fingerprints agree)",
                 False: "the fixed test tasks DIFFER from the stored run's (fingerprints disagree)"}[self.same_tasks]
        added = (f" (the rerun also reports {', '.join(self.new_metrics)}, which the stored run predates)"
                 if self.new_metrics else "")
        if self.identical:
            return f"identical: all {self.n_rows} (task, metric) rows equal the stored ones bit for bit{added}; {tasks}."
        spread = ("no other seeds of this entry in the folder to compare with" if self.inside_spread is None else
                  f"{'inside' if self.inside_spread else 'OUTSIDE'} the seed-to-seed spread "
                  f"(1.96 x std over seeds = {1.96 * self.spread:.4g})")
        return (f"not identical: {self.metric} differs by {self.mean_diff:+.4g} ± {self.ci95:.4g} on average "
                f"(rerun minus stored, paired 95% CI over the test tasks), {spread}; {tasks}.")


def cell_of(row: dict[str, Any], device: str = "cpu") -> Cell:
    """The cell a stored ``runs`` row was (suite, algorithm, seed, preset, overrides)."""
    overrides = json.loads(row.get("overrides") or "{}")
    return Cell(str(row["suite"]), str(row["algorithm"]), int(row["seed"]), str(row["preset"]), device, overrides)


def _seed_spread(results_dir: Path, row: dict[str, Any], rerun_mean: float) -> float | None:
    """Std (ddof=1) of the per-seed means of the primary metric over the other finished runs of
    the same entry as ``row`` and the rerun (the stored run itself is what is in question, so it
    is left out); None when there is no other run."""
    from metabench.results.query import ResultsDB

    # finished, newest version; this folder's runs only (not the reference set read beside it)
    tasks = ResultsDB(results_dir, reference=False).tasks(row["suite"], row["primary_metric"])
    same = tasks[tasks["run_id"] != row["run_id"]]
    for k in ("suite_version", "variant", "preset", "split_scheme", "transductive", "query_batch"):
        same = same[same[k] == row[k]]
    means = [rerun_mean, *same.groupby("run_id")["value"].mean()]
    return float(np.std(means, ddof=1)) if len(means) >= 2 else None


def locate(results_dir: str | Path, run_id: str) -> Path:
    """The folder holding the stored run ``run_id``: ``results_dir``, else the shipped reference
    set; ConfigError naming both when neither has it."""
    from metabench.reference import reference_dir

    check_run_id(run_id)
    for folder in (Path(results_dir), reference_dir()):
        if (folder / run_id / "runs.parquet").exists():
            return folder
    raise ConfigError(f"no run {run_id!r} in {results_dir} (expected {Path(results_dir) / run_id / 'runs.parquet'}) "
                      f"nor in the shipped reference set; `metabench leaderboard --results-dir {results_dir} "
                      f"--format csv` and `metabench reference status` list what is there")


def reproduce(results_dir: str | Path, run_id: str, *, scratch: str | Path | None = None, data_root=None,
              device: str = "cpu", allow_download: bool = True,
              progress: Callable[[dict[str, Any]], None] | None = None) -> Reproduction:
    """Re-run the stored cell ``run_id`` of ``results_dir`` (or of the shipped reference set, when
    ``results_dir`` has no such run) into ``scratch`` and compare."""
    results_dir = locate(results_dir, run_id)
    path = results_dir / run_id / "runs.parquet"
    row = read_table(path, "runs").iloc[0].to_dict()
    if row["status"] != "finished":
        raise ConfigError(f"run {run_id} is {row['status']}, not finished: there are no test rows to compare")
    stored_tasks = read_table(results_dir / run_id / "tasks.parquet", "tasks")
    cell = cell_of(row, device)
    if scratch is not None:
        from metabench.reference import refuse_if_reference

        refuse_if_reference(scratch, "write the rerun into")
    scratch = Path(scratch) if scratch is not None else Path(tempfile.mkdtemp(prefix="metabench-reproduce-"))
    stored_config = json.loads(row["config"])
    # the torch thread counts the run computed with, step by step (older runs recorded none)
    replay = ThreadSchedule(replay=stored_config.get("threads")) if stored_config.get("threads") else None
    runner = CellRunner(cell, scratch, data_root, allow_download=allow_download, progress=progress,
                        threads=replay)
    differ = runner.config_differences(stored_config)
    if differ:
        raise ConfigError(f"run {run_id} cannot be reproduced by this metabench: its stored configuration differs "
                          f"from what {cell.variant} ({cell.preset} preset) resolves to now ({', '.join(differ[:6])}); "
                          f"it was written by metabench {row['metabench_version']}")
    import torch

    threads_before = torch.get_num_threads()
    try:
        status = runner.run()
    finally:
        torch.set_num_threads(threads_before)   # the replay changed this process's thread count
    if status != "finished":
        raise ConfigError(f"the rerun of {run_id} did not finish; see {scratch / cell.run_id / 'events.log'}")
    new_row = read_table(scratch / cell.run_id / "runs.parquet", "runs").iloc[0]
    new_tasks = read_table(scratch / cell.run_id / "tasks.parquet", "tasks")
    a = stored_tasks.set_index(["metric", "task_id"])["value"].sort_index()
    b = new_tasks.set_index(["metric", "task_id"])["value"].sort_index()
    # metrics this metabench reports and the stored run's did not yet (e.g. a common budget added
    # since, issue 22) are not part of the comparison; the summary names them
    added = sorted(set(b.index.get_level_values(0)) - set(a.index.get_level_values(0)))
    b = b[b.index.get_level_values(0).isin(set(a.index.get_level_values(0)))]
    stored_fp = row.get("tasks_fingerprint")
    same_tasks = None if not isinstance(stored_fp, str) else stored_fp == new_row["tasks_fingerprint"]
    metric = str(row["primary_metric"])
    identical = a.index.equals(b.index) and bool(np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True))
    result = Reproduction(run_id, scratch, identical, len(a), metric, same_tasks=same_tasks, stored_in=results_dir,
                          new_metrics=added)
    if not identical:
        x, y = b.loc[metric], a.loc[metric]
        both = x.index.intersection(y.index)
        d = (x.loc[both] - y.loc[both]).to_numpy(float)
        from metabench.results.stats import ci_halfwidth

        result.mean_diff = float(d.mean()) if d.size else float("nan")
        result.ci95 = float(ci_halfwidth(d.std(ddof=1), d.size)) if d.size > 1 else float("nan")
        result.spread = _seed_spread(results_dir, row, float(x.mean()))
    return result
