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

Rules 2-4 are ``metabench.checks``' (the functions the tests call on every registered algorithm);
rules 5-9 and the instruments they need live in ``metabench.conformance_engine``.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from metabench.conformance_engine import engine_checks, failure
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
        emit("train-step", False, failure(exc), t0)
        return skip_rest("skipped: the algorithm could not be built and trained one step")
    emit("train-step", True, "" if cls.needs_training else "does not meta-train (needs_training = False)", t0)
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            state, test, out1 = checks.check_evaluate(target, algo, prepared, params)
        emit("evaluate", True, f"reports {', '.join(sorted(out1))}", t0)
    except Exception as exc:  # noqa: BLE001
        emit("evaluate", False, failure(exc), t0)
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
            emit("state", False, failure(exc), t0)
    del algo, prepared

    # 5-9. the engine: smoke cells in a scratch folder
    scratch = Path(results_dir) if results_dir is not None else Path(tempfile.mkdtemp(prefix="metabench-check-"))
    report.scratch = str(scratch)
    try:
        engine_checks(cls, target, report.suite, scratch, data_root, allow_download, seed, emit, Cell)
    finally:
        if results_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


def format_result(r: CheckResult) -> str:
    """One line for the terminal: ``PASS  rule: note`` / ``FAIL  rule: why`` / ``SKIP ...``."""
    mark = {True: "PASS", False: "FAIL", None: "SKIP"}[r.ok]
    note = f" ({r.detail})" if r.detail and r.ok is not False else (f": {r.detail}" if r.detail else "")
    t = f" [{r.seconds:.1f} s]" if r.seconds >= 0.05 else ""
    return f"{mark}  {r.title}{note}{t}"


__all__ = ["RULES", "CheckResult", "CheckReport", "run_checks", "choose_suite", "format_result",
           "load_algorithm_object"]
