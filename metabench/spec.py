"""Run specifications and presets: all validation of what a user asks for lives here.

A RunSpec is suites x algorithms x seeds under one preset, plus overrides of any algorithm's
Config field or of the loop settings (parsed and typed by `metabench.overrides`).  `plan()` turns
it into cells (one (suite, algorithm, seed, overrides) each) plus the list of incompatible pairs
with a reason.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from metabench.errors import ConfigError
from metabench.overrides import (LOOP_TARGET, did_you_mean, parse_algorithm_ref, parse_sets, resolve_overrides,
                                 short_repr, split_key, split_top_level, typed_overrides, variant_label)

PRESETS = ("smoke", "quick", "paper")
DEVICES = ("auto", "cpu", "cuda")
EXECUTORS = ("local", "ray")
MAX_SEED = 2**31 - 1
MAX_CELLS = 10_000
MAX_WORKERS = 1024
# Job and run ids name folders under the results folder: letters, digits, '.', '_' and '-', no
# leading dot and no '..', so no id can point outside it (`../../etc` is refused).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# A Ray address: 'auto', host:port, or ray://host:port (no spaces, no shell characters).
_RAY_ADDRESS = re.compile(r"auto|(ray://)?[A-Za-z0-9.\-\[\]:]{1,253}:\d{1,5}")


def check_id(value: object, what: str = "job id") -> str:
    """`value` if it is a safe folder name for a job or run id; ConfigError otherwise."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or ".." in value:
        raise ConfigError(f"{what} must be letters, digits, '.', '_' or '-' (no '..', at most 200 "
                          f"characters, e.g. 20250301-120000-a1b2c3), got {str(value)[:80]!r}")
    return value


@dataclass(frozen=True)
class Loop:
    """How the engine drives one cell."""

    meta_steps: int = 1000
    """Meta-training steps (one `meta_train_step` each); 0 for algorithms with nothing to learn."""
    eval_every: int = 100
    """Validate every this many steps (and at the end)."""
    n_val_tasks: int = 100
    """Fixed validation tasks per validation."""
    n_test_tasks: int | None = None
    """Fixed test tasks at the end; None = the suite's default (600)."""
    log_every: int = 10
    """Average the training metrics over this many steps per curve row."""
    checkpoint_every: int = 100
    """Checkpoint (and flush curve rows) every this many steps."""

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            least = 0 if f.name == "meta_steps" else 1
            if v is not None and (not isinstance(v, int) or v < least):
                raise ConfigError(f"loop setting {f.name} must be an integer >= {least}, got {v!r}")


LOOP_DEFAULTS: dict[str, dict[str, Any]] = {
    "smoke": dict(meta_steps=6, eval_every=3, n_val_tasks=4, n_test_tasks=10, log_every=1, checkpoint_every=2),
    "quick": dict(meta_steps=2000, eval_every=500, n_val_tasks=200, log_every=20, checkpoint_every=100),
    "paper": dict(meta_steps=60_000, eval_every=1000, n_val_tasks=600, log_every=100, checkpoint_every=500),
}


def loop_for(algorithm_cls, preset: str, suite) -> Loop:
    """Loop settings: the preset's defaults, then the algorithm's per-kind and per-suite entries."""
    values = dict(LOOP_DEFAULTS[preset])
    table = getattr(algorithm_cls, "LOOPS", {}).get(preset, {})
    values.update(table.get(suite.kind, {}))
    values.update(table.get(suite.id, {}))
    if not getattr(algorithm_cls, "needs_training", True):
        values["meta_steps"] = 0
    loop = Loop(**values)
    loop.validate()
    return loop


def parse_list(text: str | list[str] | tuple[str, ...], what: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c'] with duplicates removed (order kept); empty -> ConfigError."""
    items = text if isinstance(text, (list, tuple)) else split_top_level(str(text))
    out: list[str] = []
    seen: set[str] = set()  # a set, so a huge list is still linear
    for item in items:
        item = str(item).strip()
        if item and item not in seen:
            seen.add(item)
            out.append(item)
    if not out:
        raise ConfigError(f"--{what} needs at least one value, e.g. --{what} {'0,1,2' if what == 'seeds' else 'NAME'}")
    return out


def parse_seeds(text: str | list) -> list[int]:
    seeds = []
    for s in parse_list(text, "seeds"):
        if not re.fullmatch(r"[0-9]{1,12}", s):  # ASCII digits; the length bound keeps int() cheap
            raise ConfigError(f"seeds must be non-negative integers (0..{MAX_SEED}) separated by commas, "
                              f"got {s[:40]!r}")
        v = int(s)
        if v > MAX_SEED:
            raise ConfigError(f"seed {v} is too large; use 0..{MAX_SEED}")
        seeds.append(v)
    return seeds


@dataclass(frozen=True)
class Cell:
    """One unit of work: meta-train `algorithm` on `suite` with `seed`, then test."""

    suite: str
    algorithm: str
    seed: int
    preset: str
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """Stable id: the same cell (same overrides) always maps to the same results folder, so a
        repeated or resumed run continues instead of duplicating."""
        extra = ""
        if self.overrides:
            digest = hashlib.sha256(json.dumps(self.overrides, sort_keys=True).encode()).hexdigest()[:8]
            extra = f"-{digest}"
        # A plugin's import path (pkg.mod:Class) has a colon, which no folder name here may have.
        name = self.algorithm.replace(":", ".")
        return f"{self.suite.replace(':', '.')}--{name}--{self.preset}--seed{self.seed}{extra}"

    @property
    def variant(self) -> str:
        """The entry this cell is a seed of, e.g. ``maml[inner_steps=5]`` (see ``variant_label``)."""
        return variant_label(self.algorithm, self.overrides)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Cell":
        cell = cls(**d)
        check_id(cell.run_id, "run id")  # it names a folder: nothing may point outside the results
        return cell


@dataclass(frozen=True)
class RunSpec:
    suites: tuple[str, ...]
    algorithms: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    preset: str = "quick"
    device: str = "auto"
    executor: str = "local"
    """local (worker processes on this machine) or ray (one Ray task per cell)."""
    workers: int = 0
    """Cells run at once; 0 = automatic (one per GPU, else workers x threads = CPU cores)."""
    ray_address: str | None = None
    """The Ray cluster to join (executor ray); None starts a local Ray."""
    overrides: dict[str, tuple] = field(default_factory=dict)
    """'ALGO.FIELD' or 'loop.FIELD' -> the values to run (one value, or several: a sweep)."""

    @classmethod
    def from_json(cls, d: object) -> "RunSpec":
        """A RunSpec from its JSON form (spec.json, the Launch page); the same as ``from_dict``."""
        return cls.from_dict(d)

    def validate(self) -> None:
        from metabench.algorithms import ALGORITHMS
        from metabench.suites import SUITES

        for what in ("suites", "algorithms", "seeds"):
            value = getattr(self, what)
            if not isinstance(value, (tuple, list)) or not value:
                raise ConfigError(f"{what} must be a non-empty list, got {short_repr(value)}")
        for what in ("suites", "algorithms"):
            bad = [v for v in getattr(self, what) if not isinstance(v, str) or not v.strip()]
            if bad:
                raise ConfigError(f"{what} must be names (strings), got {short_repr(bad[0])}")
        bad = [v for v in self.seeds if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEED]
        if bad:
            raise ConfigError(f"seeds must be integers in 0..{MAX_SEED}, got {short_repr(bad[0])}")
        n = len(self.suites) * len(self.algorithms) * len(self.seeds)
        if n > MAX_CELLS:
            raise ConfigError(f"the grid has {n} cells; at most {MAX_CELLS} per run — split it into several runs")
        if not isinstance(self.preset, str):
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {short_repr(self.preset)}")
        if self.preset not in PRESETS:
            import difflib

            close = difflib.get_close_matches(str(self.preset), PRESETS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown preset {self.preset!r}.{hint} Presets: {', '.join(PRESETS)}.")
        if not isinstance(self.device, str) or self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {short_repr(self.device)}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {short_repr(self.executor)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"--workers must be an integer from 0 (automatic) to {MAX_WORKERS}, got {short_repr(self.workers)}")
        if self.ray_address is not None:
            if self.executor != "ray":
                raise ConfigError("--ray-address only applies with --executor ray")
            if not isinstance(self.ray_address, str) or not _RAY_ADDRESS.fullmatch(self.ray_address):
                raise ConfigError(f"--ray-address must be 'auto', HOST:PORT or ray://HOST:PORT, "
                                  f"got {str(self.ray_address)[:80]!r}")
        for s in self.suites:
            SUITES.get(s)
        self._sweeps()

    def _sweeps(self) -> list[tuple[str, type, list[dict[str, Any]]]]:
        """Per algorithm: (name, class, every combination of its overrides), typed and checked
        against the Config fields (not yet against a suite's preset: see ``plan``)."""
        import itertools

        from metabench.algorithms import ALGORITHMS

        if not isinstance(self.overrides, dict):
            raise ConfigError(f"overrides must map 'ALGO.FIELD' to values, got {short_repr(self.overrides)}")
        from metabench.algorithms import named_variant

        # A named variant ('rl2-aux-privileged') stands for its bracket entry.
        refs = [(ref, *parse_algorithm_ref(ref)) for ref in
                (r if r in ALGORITHMS or "[" in r else (named_variant(r) or r) for r in self.algorithms)]
        bases = [base for _, base, _ in refs]
        by_target: dict[str, dict[str, list[Any]]] = {}
        for key, values in self.overrides.items():
            target, name = split_key(key)
            if target != LOOP_TARGET and target not in bases:
                raise ConfigError(f"override {short_repr(key)} names the algorithm {target!r}, which is not among "
                                  f"the algorithms of this run ({', '.join(bases)}).{did_you_mean(target, bases)}")
            vals = list(values) if isinstance(values, (list, tuple)) else [values]
            if not vals or len(vals) > MAX_CELLS:
                raise ConfigError(f"override {short_repr(key)} needs 1 to {MAX_CELLS} values, got {len(vals)}")
            by_target.setdefault(target, {})[name if target != LOOP_TARGET else f"{LOOP_TARGET}.{name}"] = vals
        out = []
        n_cells = 0
        for ref, base, fixed in refs:
            cls = ALGORITHMS.get(base)
            raw = {k: [v] for k, v in fixed.items()}
            raw.update(by_target.get(LOOP_TARGET, {}))
            raw.update(by_target.get(base, {}))
            typed = typed_overrides(cls, Loop, raw, f"--set for {base}" if ref == base else short_repr(ref))
            keys = sorted(typed)
            combos = [dict(zip(keys, vals)) for vals in itertools.product(*(typed[k] for k in keys))]
            n_cells += len(combos) * len(self.suites) * len(self.seeds)
            if n_cells > MAX_CELLS:
                raise ConfigError(f"the sweep has over {MAX_CELLS} cells; at most {MAX_CELLS} per run — "
                                  f"split it into several runs")
            out.append((base, cls, combos))
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> "RunSpec":
        """A validated RunSpec from a JSON object (a spec file, a form): ``suites`` and
        ``algorithms`` (lists of names or comma-separated text), optional ``seeds`` (list of
        integers or comma-separated text), ``preset``, ``device``, ``executor``, ``workers`` and
        ``ray_address``. ConfigError otherwise."""
        if not isinstance(obj, dict):
            raise ConfigError(f"a run spec must be a JSON object with keys {', '.join(SPEC_KEYS)}, "
                              f"got {type(obj).__name__}")
        unknown = sorted(str(k) for k in obj if k not in SPEC_KEYS)
        if unknown:
            raise ConfigError(f"unknown run spec key(s) {', '.join(map(short_repr, unknown))}; expected "
                              f"{', '.join(SPEC_KEYS)}")
        for key in ("suites", "algorithms"):
            if key not in obj:
                raise ConfigError(f"the run spec needs {key!r}, e.g. {{\"{key}\": [\"NAME\"]}}")

        def names(key: str) -> tuple[str, ...]:
            value = obj[key]
            if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                return tuple(parse_list(value, key))
            raise ConfigError(f"{key} must be a list of names or comma-separated text, got {short_repr(value)}")

        overrides = obj.get("overrides", {})
        if isinstance(overrides, list) and all(isinstance(o, str) for o in overrides):
            overrides = parse_sets(overrides)
        elif isinstance(overrides, dict):
            overrides = {str(k): (tuple(split_top_level(v)) if isinstance(v, str) else
                                  tuple(v) if isinstance(v, list) else (v,))
                         for k, v in overrides.items()}
        else:
            raise ConfigError(f"overrides must be a table of 'ALGO.FIELD' = value(s) or a list of "
                              f"'ALGO.FIELD=VALUE' strings, got {short_repr(overrides)}")
        seeds = obj.get("seeds", [0])
        if isinstance(seeds, str):
            seeds = parse_seeds(seeds)
        elif not isinstance(seeds, list):
            raise ConfigError(f"seeds must be a list of integers or comma-separated text, got {short_repr(seeds)}")
        spec = cls(names("suites"), names("algorithms"), tuple(seeds), obj.get("preset", "quick"),
                   obj.get("device", "auto"), obj.get("executor", "local"), obj.get("workers", 0),
                   obj.get("ray_address"), overrides)
        spec.validate()
        return spec

    def plan(self) -> tuple[list[Cell], list[tuple[str, str, str]]]:
        """(cells to run, [(suite, algorithm, reason it is skipped)])."""
        from metabench.algorithms import ALGORITHMS
        from metabench.suites import make_suite

        self.validate()
        sweeps = self._sweeps()
        cells, skipped, seen = [], [], set()
        for s in self.suites:
            suite = make_suite(s)
            for base, cls, combos in sweeps:
                ok, reason = cls.fits(suite)
                if not ok:
                    skipped.append((s, base, reason))
                    continue
                for combo in combos:
                    overrides = resolve_overrides(cls, self.preset, suite, combo, loop_for(cls, self.preset, suite))
                    for seed in self.seeds:
                        cell = Cell(s, base, seed, self.preset, self.device, overrides)
                        if cell.run_id not in seen:   # a swept value equal to the preset's is the plain run
                            seen.add(cell.run_id)
                            cells.append(cell)
        return cells, skipped


SPEC_KEYS = ("suites", "algorithms", "seeds", "preset", "device", "executor", "workers", "ray_address",
             "overrides")


def load_spec(path: Any) -> RunSpec:
    """Read and validate a run spec file, JSON or TOML (by the ``.toml`` suffix), with the fields
    of ``RunSpec.from_dict``; ConfigError otherwise."""
    try:
        text = open(path, encoding="utf-8").read()  # noqa: SIM115 - any error becomes one sentence
    except (OSError, ValueError) as exc:  # ValueError: undecodable bytes, NUL in the path
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"cannot read the run spec file {short_repr(str(path))}: {reason}") from None
    if str(path).lower().endswith(".toml"):
        import tomllib

        try:
            return RunSpec.from_dict(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"the run spec file {short_repr(str(path))} is not valid TOML: {exc}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the run spec file {short_repr(str(path))} is not valid JSON: {exc.msg} at line "
                          f"{exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ConfigError(f"the run spec file {short_repr(str(path))} is nested too deeply") from None
    return RunSpec.from_dict(obj)
