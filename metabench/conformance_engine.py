"""The engine rules of `metabench check` (5-9 in metabench.conformance: smoke, metrics, no-test,
deterministic, resume) and what they need: the spy on a suite's test split, a cell run in this
process through the engine's CellRunner, and the comparison of two runs' rows.

Kept apart from metabench.conformance, which says what the rules are and runs them on a target,
because this half drives the engine and reads its files.
"""
from __future__ import annotations

import contextlib
import io
import math
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from metabench.errors import ConfigError


class _Killed(Exception):
    """Raised from the progress hook to stop a cell as a kill would (no final checkpoint)."""


# --------------------------------------------------------------------------- the test-split spy

class _TestSplitSpy:
    """Records every touch of a suite's test split before the engine's test phase begins."""

    def __init__(self) -> None:
        self.testing = False
        self.hits: list[str] = []

    def progress(self, info: dict[str, Any]) -> None:
        if info.get("phase") in ("test", "done"):
            self.testing = True

    def _record(self, what: str) -> None:
        if self.testing or len(self.hits) >= 5:
            return
        where = ""
        for fr in reversed(traceback.extract_stack()[:-2]):
            if "/metabench/suites/" not in fr.filename and "/metabench/conformance" not in fr.filename:
                where = f" from {Path(fr.filename).name}:{fr.lineno} ({fr.name})"
                break
        self.hits.append(what + where)

    def install(self, suite) -> None:
        spy, sample, fixed, prepare = self, suite.sample, suite.fixed_tasks, suite.prepare

        def spied_sample(split, *a, **kw):
            if split == "test":
                spy._record("sample('test', ...)")
            return sample(split, *a, **kw)

        def spied_fixed(*a, **kw):
            if (a[0] if a else kw.get("split", "test")) == "test":
                spy._record("fixed_tasks('test', ...)")
            return fixed(*a, **kw)

        def spied_prepare(*a, **kw):
            out = prepare(*a, **kw)
            spy.wrap_dicts(suite)
            return out

        suite.sample, suite.fixed_tasks, suite.prepare = spied_sample, spied_fixed, spied_prepare

    def wrap_dicts(self, suite) -> None:
        """Per-split data (``suite._images['test']``...) read before the test phase is a touch too."""
        spy = self

        class SpyDict(dict):
            def __getitem__(self, key):
                if key == "test":
                    spy._record(f"{type(suite).__name__}.{self._name}['test']")
                return dict.__getitem__(self, key)

            def get(self, key, default=None):
                return self[key] if key in self else default

        for name, value in list(vars(suite).items()):
            if type(value) is dict and "test" in value:
                d = SpyDict(value)
                d._name = name
                setattr(suite, name, d)


# --------------------------------------------------------------------------- running cells

def _run_cell(cell, results_dir: Path, data_root, allow_download: bool, *, progress=None,
              should_stop=None, spy: _TestSplitSpy | None = None) -> str:
    """Run (or resume) one cell in this process through the engine's CellRunner; its stderr
    lines (resume notes) are kept out of the terminal."""
    from metabench.engine.cell import CellRunner

    def on_progress(info):
        if spy is not None:
            spy.progress(info)
        if progress is not None:
            progress(info)

    with contextlib.redirect_stderr(io.StringIO()):
        runner = CellRunner(cell, results_dir, data_root, allow_download=allow_download,
                            progress=on_progress, should_stop=should_stop)
        if spy is not None:
            spy.install(runner.suite)
        return runner.run()


def _rows(results_dir: Path, run_id: str) -> dict[str, list[tuple]]:
    """A finished cell's curves and tasks rows, sorted, without wall-clock times."""
    import pandas as pd

    from metabench.results.writer import read_table

    run_dir = results_dir / run_id
    parts = [read_table(p, "curves") for p in sorted(run_dir.glob("curves-*.parquet"))]
    curves = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["step", "split", "metric", "value"])
    tasks = read_table(run_dir / "tasks.parquet", "tasks")
    return {
        "curves": sorted((int(r.step), str(r.split), str(r.metric), float(r.value)) for r in curves.itertuples()),
        "tasks": sorted((int(r.task_id), str(r.metric), float(r.value), str(r.descriptors)) for r in tasks.itertuples()),
    }


def _first_difference(a: dict[str, list[tuple]], b: dict[str, list[tuple]]) -> str | None:
    """None if identical, else where the first row differs, in words."""
    for table in ("curves", "tasks"):
        ra, rb = a[table], b[table]
        if len(ra) != len(rb):
            return f"{table} have {len(ra)} rows in one run and {len(rb)} in the other"
        for x, y in zip(ra, rb):
            if x != y:
                if table == "curves":
                    return f"curve row step {x[0]} {x[1]} {x[2]}: {x[3]!r} vs {y[3]!r}" if x[:3] == y[:3] \
                        else f"curve rows differ: {x[:3]} vs {y[:3]}"
                return f"test task {x[0]} {x[1]}: {x[2]!r} vs {y[2]!r}" if x[:2] == y[:2] \
                    else f"task rows differ: {x[:2]} vs {y[:2]}"
    return None


def failure(exc: BaseException) -> str:
    if isinstance(exc, AssertionError):
        return str(exc)
    return f"raised {type(exc).__name__}: {exc}"



def engine_checks(cls, target, suite_id, scratch: Path, data_root, allow_download, seed, emit, Cell) -> None:
    """Rules 5-9 on the algorithm class ``cls`` (named ``target``) and ``suite_id``: smoke cells in
    ``scratch``; each rule's result goes to ``emit(rule, ok, detail, t0)`` (run_checks' callback)."""
    from metabench.results.metrics import spec as metric_spec
    from metabench.spec import loop_for
    from metabench.suites import make_suite

    cell = Cell(suite_id, target, seed, "smoke", "cpu")
    main, again, killed = scratch / "run", scratch / "again", scratch / "killed"
    for d in (main, again, killed):   # a kept scratch folder from an earlier check: start afresh
        shutil.rmtree(d / cell.run_id, ignore_errors=True)

    # 5. the smoke cell, with the test-split spy
    spy = _TestSplitSpy()
    t0 = time.perf_counter()
    try:
        status = _run_cell(cell, main, data_root, allow_download, spy=spy)
    except Exception as exc:  # noqa: BLE001
        log = main / cell.run_id / "error.log"
        emit("smoke", False, f"the cell failed: {failure(exc)}" + (f" (traceback in {log})" if log.exists() else ""), t0)
        for rule in ("metrics", "no-test", "deterministic", "resume"):
            emit(rule, None, "skipped: the smoke cell failed")
        return
    if status != "finished":
        emit("smoke", False, f"the cell ended {status!r}, not 'finished' (a training metric became non-finite?)", t0)
        for rule in ("metrics", "no-test", "deterministic", "resume"):
            emit(rule, None, "skipped: the smoke cell did not finish")
        return
    rows = _rows(main, cell.run_id)
    loop = loop_for(cls, "smoke", make_suite(suite_id))
    emit("smoke", True, f"{loop.meta_steps} meta-steps, {len({r[0] for r in rows['tasks']})} test tasks", t0)

    # 6. metrics declared and finite
    t0 = time.perf_counter()
    problems = []
    primary = make_suite(suite_id).primary_metric
    for table, name_at, value_at in (("curves", 2, 3), ("tasks", 1, 2)):
        for r in rows[table]:
            name, value = r[name_at], r[value_at]
            if table == "tasks" or r[1] != "train":   # training metrics need only be finite
                try:
                    metric_spec(name)
                except ConfigError:
                    problems.append(f"the metric {name!r} is not declared in metabench.results.metrics.METRICS "
                                    f"(use a declared name, or add it there)")
            if not math.isfinite(value):
                problems.append(f"{table} value of {name!r} is {value}")
    n_test = loop.n_test_tasks or make_suite(suite_id).n_test_tasks
    got = sorted(r[0] for r in rows["tasks"] if r[1] == primary)
    if got != list(range(n_test)):
        problems.append(f"the primary metric {primary!r} has {len(got)} test rows, expected one per fixed test "
                        f"task ({n_test})")
    emit("metrics", not problems, problems[0] if problems else
         f"{', '.join(sorted({r[1] for r in rows['tasks']}))}", t0)

    # 7. no test tasks during training
    emit("no-test", not spy.hits,
         f"the test split was touched before the test phase: {spy.hits[0]}; an algorithm may only use the "
         f"batches the engine hands it (train and val tasks while training)" if spy.hits else "", None)

    # 8. the same cell again: identical rows
    t0 = time.perf_counter()
    try:
        _run_cell(cell, again, data_root, allow_download)
        diff = _first_difference(rows, _rows(again, cell.run_id))
    except Exception as exc:  # noqa: BLE001
        diff = f"the second run failed: {failure(exc)}"
    deterministic = diff is None
    emit("deterministic", deterministic,
         "" if deterministic else f"two runs with seed {seed} differ ({diff}); draw all randomness from the "
         f"seed and the generators the engine provides, never from global or time-based state", t0)

    # 9. kill after the step that follows a checkpoint, resume in a fresh runner
    t0 = time.perf_counter()
    if not deterministic:
        emit("resume", None, "skipped: runs with one seed already differ")
        return
    if loop.meta_steps < 2:
        emit("resume", True, "nothing to resume (fewer than 2 meta-steps)", t0)
        return
    kill_at = min(loop.checkpoint_every + 1, loop.meta_steps - 1)

    def kill(info):
        if info.get("phase") == "train" and info.get("step") == kill_at:
            raise _Killed()

    try:
        try:
            _run_cell(cell, killed, data_root, allow_download, progress=kill)
            diff = f"the cell was not stopped at step {kill_at}"
        except _Killed:
            status = _run_cell(cell, killed, data_root, allow_download)
            diff = (f"the resumed cell ended {status!r}" if status != "finished"
                    else _first_difference(rows, _rows(killed, cell.run_id)))
    except Exception as exc:  # noqa: BLE001
        diff = f"resuming failed: {failure(exc)}"
    emit("resume", diff is None,
         f"killed at step {kill_at}, resumed from the checkpoint of step {min(loop.checkpoint_every, kill_at)}"
         if diff is None else f"after a kill at step {kill_at} and a resume the rows differ from an uninterrupted "
         f"run ({diff}); state_dict must hold everything training depends on (optimiser, schedules, RNGs)", t0)
