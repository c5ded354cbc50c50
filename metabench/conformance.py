"""`metabench check`: the conformance checks every algorithm is held to, built-in or plugin.

``run_checks(target)`` runs, on one suite and on the CPU, each rule below and returns one
``CheckResult`` per rule (passed, failed with a sentence naming the rule, or skipped because an
earlier rule failed). The library raises ConfigError only for bad input (an unknown name, a suite
the algorithm does not fit, missing data); a plugin breaking a rule is a failed result, never an
exception. The tests run the same function on built-ins and on the example plugin.

Rules (``RULES``), in order:

1. ``contract``: the class follows the Algorithm contract (``check_algorithm_class``: a subclass of
   ``Algorithm`` with name, family, supports and a dataclass Config, the current contract
   version, the methods implemented).
2. ``train-step``: ``meta_train_step`` returns finite float metrics and changes a meta-parameter.
3. ``evaluate``: ``evaluate`` reports the primary metric per task, finite, repeatable, and leaves
   every meta-parameter unchanged.
4. ``state``: a fresh instance loaded with ``state_dict()`` evaluates identically.
5. ``smoke``: a smoke cell (``--preset smoke``) finishes through the engine's cell runner
   (``metabench.engine.cell.CellRunner``, the code a worker process runs) into a scratch folder.
6. ``metrics``: every metric it records is declared (``metabench.results.metrics``) and finite, and
   the primary metric has one value per fixed test task.
7. ``no-test``: nothing touches the test split before the engine's test phase: the suite is
   spied on (``sample``/``fixed_tasks`` with split ``test``, and any of the suite's per-split
   dicts read at key ``test``), so an algorithm that trains or tunes on test tasks fails.
8. ``deterministic``: a second run of the same cell (same seed) gives identical rows.
9. ``resume``: a cell killed right after a step that follows a checkpoint, then resumed in a
   fresh runner, gives rows identical to the uninterrupted run.
"""
from __future__ import annotations

import contextlib
import io
import math
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from metabench.errors import ConfigError

RULES: dict[str, str] = {
    "contract": "the class follows the Algorithm contract",
    "train-step": "meta_train_step returns finite float metrics and changes the meta-parameters",
    "evaluate": "evaluate leaves the meta-parameters unchanged",
    "state": "state_dict round trip restores the algorithm exactly",
    "smoke": "a smoke cell finishes in the engine",
    "metrics": "metrics are declared and finite",
    "no-test": "no access to test tasks while training",
    "deterministic": "two runs with one seed are identical",
    "resume": "a killed cell resumes to identical rows",
}

#: Suites tried, in order, when none is given: cheap ones first, one per task kind; then any other
#: built-in that needs no data.
PREFERRED_SUITES = ("sinusoid-5shot", "bandit-k5-n10", "omniglot-5w1s", "navigation2d", "tabular-mdp-n10")


@dataclass(frozen=True)
class CheckResult:
    rule: str
    """A key of RULES."""
    ok: bool | None
    """True passed, False failed, None skipped (an earlier rule it needs failed)."""
    detail: str = ""
    """Failed: the sentence saying what broke the rule. Passed: a short note. Skipped: why."""
    seconds: float = 0.0

    @property
    def title(self) -> str:
        return RULES[self.rule]


@dataclass
class CheckReport:
    target: str
    origin: str
    suite: str
    scratch: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.ok is False]


class _Killed(Exception):
    """Raised from the progress hook to stop a cell as a kill would (no final checkpoint)."""


# --------------------------------------------------------------------------- resolving input

def load_algorithm_object(target: str) -> tuple[object, str]:
    """(the object ``target`` names, its origin), without the registry's static check, so that a
    contract violation is reported as a failed check; ConfigError for a name nothing provides."""
    from metabench.algorithms import ALGORITHMS
    from metabench.registry import IMPORT_PATH

    if not isinstance(target, str) or not target.strip():
        raise ConfigError("give the algorithm to check: a built-in name, an entry-point name or package.module:Class")
    if IMPORT_PATH.fullmatch(target):
        return ALGORITHMS.load_object(target), f"module {target}"
    if target in ALGORITHMS:
        return ALGORITHMS.get(target), ALGORITHMS.origin(target)
    # An installed entry point the registry refused (it failed its static check or its import).
    from importlib.metadata import entry_points

    for ep in entry_points(group="metabench.algorithms"):
        if ep.name == target:
            dist = getattr(ep, "dist", None)
            origin = f"{dist.name} {dist.version}" if dist is not None else f"entry point {ep.value}"
            try:
                return ep.load(), origin
            except Exception as exc:  # the plugin's own import failed
                raise ConfigError(f"the entry point {target!r} ({ep.value}, from {origin}) failed to import: "
                                  f"{type(exc).__name__}: {exc}") from None
    raise ConfigError(ALGORITHMS.unknown_message(target))


def choose_suite(cls, suite: str | None) -> str:
    """``suite`` if given and the algorithm fits it (ConfigError otherwise), else the first of
    PREFERRED_SUITES (then any built-in needing no data) that it fits and that can run here."""
    from metabench.suites import SUITES, make_suite

    if suite is not None:
        if "/" in suite or suite.endswith(".toml"):   # a suite folder or its declaration, by path
            from metabench.suites.image_folder import read_spec, register_spec

            spec = read_spec(suite)
            problems = register_spec(SUITES, spec)
            if problems:
                raise ConfigError(problems[0])
            suite = spec.id
        s = make_suite(suite)
        ok, reason = cls.fits(s)
        if not ok:
            raise ConfigError(f"{reason}; choose a suite it fits with --suite (see `metabench list`)")
        why = s.unavailable()
        if why:
            raise ConfigError(f"{suite} cannot run here: {why}")
        return suite
    others = [n for n in SUITES.names() if SUITES.origin(n) == "built-in" and n not in PREFERRED_SUITES]
    for name in (*PREFERRED_SUITES, *others):
        if name not in SUITES:
            continue
        s = make_suite(name)
        if s.unavailable() or (name not in PREFERRED_SUITES and s.needs_data):
            continue
        if cls.fits(s)[0]:
            return name
    raise ConfigError(f"no built-in suite fits {getattr(cls, 'name', cls)!r} (it supports "
                      f"{', '.join(sorted(getattr(cls, 'supports', ())))}); pass one with --suite")


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


def _failure(exc: BaseException) -> str:
    if isinstance(exc, AssertionError):
        return str(exc)
    return f"raised {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- the checks

def run_checks(target: str, suite: str | None = None, *, results_dir: str | Path | None = None,
               data_root=None, allow_download: bool = True, seed: int = 0,
               on_result: Callable[[CheckResult], None] | None = None,
               on_start: Callable[["CheckReport"], None] | None = None) -> CheckReport:
    """Run every rule of RULES on the algorithm ``target`` (see the module docstring).

    ``results_dir``: where the smoke cells go (kept); default a temporary folder, removed after.
    ``on_start`` is called once the target and suite are resolved, ``on_result`` after each rule.
    Raises ConfigError / MetabenchError only for bad input (unknown target or suite, a suite the
    algorithm does not fit, data that is missing and cannot be fetched).
    """
    import torch

    from metabench import checks
    from metabench.algorithms import ALGORITHMS
    from metabench.algorithms.base import check_algorithm_class
    from metabench.registry import IMPORT_PATH
    from metabench.spec import Cell
    from metabench.suites import add_data_root, make_suite

    if data_root is not None:
        add_data_root(data_root)
    obj, origin = load_algorithm_object(target)
    report = CheckReport(target, origin, suite or "", "")
    results = report.results

    def emit(rule: str, ok: bool | None, detail: str = "", t0: float | None = None) -> bool | None:
        r = CheckResult(rule, ok, detail, 0.0 if t0 is None else time.perf_counter() - t0)
        results.append(r)
        if on_result is not None:
            on_result(r)
        return ok

    def skip_rest(why: str) -> CheckReport:
        for rule in RULES:
            if rule not in {r.rule for r in results}:
                emit(rule, None, why)
        return report

    # 1. the static contract
    t0 = time.perf_counter()
    try:
        cls = check_algorithm_class(target, obj)
    except ConfigError as exc:
        report.suite = suite or "-"
        if on_start is not None:
            on_start(report)
        emit("contract", False, str(exc), t0)
        return skip_rest("skipped: the class contract failed")
    t_contract = time.perf_counter() - t0
    report.suite = choose_suite(cls, suite)
    if IMPORT_PATH.fullmatch(target):
        ALGORITHMS.get(target)   # register the import path, as `metabench run` would
    prepared = make_suite(report.suite).prepare(data_root, "cpu", allow_download=allow_download, progress=False)
    if on_start is not None:
        on_start(report)
    emit("contract", True, f"{cls.__name__}, family {cls.family}, contract version {cls.contract_version}",
         time.perf_counter() - t_contract)

    # 2-4. in-process: one training step, evaluate, state round trip
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            algo = checks.make_algorithm(target, prepared, "smoke", seed)
            params = checks.check_train_step(target, algo, prepared)
    except Exception as exc:  # noqa: BLE001 - the plugin's failure is the check's result
        emit("train-step", False, _failure(exc), t0)
        return skip_rest("skipped: the algorithm could not be built and trained one step")
    emit("train-step", True, "" if cls.needs_training else "does not meta-train (needs_training = False)", t0)
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            state, test, out1 = checks.check_evaluate(target, algo, prepared, params)
        emit("evaluate", True, f"reports {', '.join(sorted(out1))}", t0)
    except Exception as exc:  # noqa: BLE001
        emit("evaluate", False, _failure(exc), t0)
        state = None
    t0 = time.perf_counter()
    if state is None:
        emit("state", None, "skipped: evaluate failed")
    else:
        try:
            with torch.random.fork_rng(devices=[]):
                checks.check_state_round_trip(target, algo, state, test, out1, seed)
            emit("state", True, "", t0)
        except Exception as exc:  # noqa: BLE001
            emit("state", False, _failure(exc), t0)
    del algo, prepared

    # 5-9. the engine: smoke cells in a scratch folder
    scratch = Path(results_dir) if results_dir is not None else Path(tempfile.mkdtemp(prefix="metabench-check-"))
    report.scratch = str(scratch)
    try:
        _engine_checks(cls, target, report.suite, scratch, data_root, allow_download, seed, emit, Cell)
    finally:
        if results_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


def _engine_checks(cls, target, suite_id, scratch: Path, data_root, allow_download, seed, emit, Cell) -> None:
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
        emit("smoke", False, f"the cell failed: {_failure(exc)}" + (f" (traceback in {log})" if log.exists() else ""), t0)
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
        diff = f"the second run failed: {_failure(exc)}"
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
        diff = f"resuming failed: {_failure(exc)}"
    emit("resume", diff is None,
         f"killed at step {kill_at}, resumed from the checkpoint of step {min(loop.checkpoint_every, kill_at)}"
         if diff is None else f"after a kill at step {kill_at} and a resume the rows differ from an uninterrupted "
         f"run ({diff}); state_dict must hold everything training depends on (optimiser, schedules, RNGs)", t0)


def format_result(r: CheckResult) -> str:
    """One line for the terminal: ``PASS  rule: note`` / ``FAIL  rule: why`` / ``SKIP ...``."""
    mark = {True: "PASS", False: "FAIL", None: "SKIP"}[r.ok]
    note = f" ({r.detail})" if r.detail and r.ok is not False else (f": {r.detail}" if r.detail else "")
    t = f" [{r.seconds:.1f} s]" if r.seconds >= 0.05 else ""
    return f"{mark}  {r.title}{note}{t}"


__all__ = ["RULES", "CheckResult", "CheckReport", "run_checks", "choose_suite", "format_result",
           "load_algorithm_object"]
