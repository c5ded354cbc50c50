"""Run specifications and presets: all validation of what a user asks for lives here.

A RunSpec is suites x algorithms x seeds under one preset, plus overrides of any algorithm's
Config field or of the loop settings.  `plan()` turns it into cells (one (suite, algorithm, seed,
overrides) each) plus the list of incompatible pairs with a reason.

Overrides (issue 20): ``ALGO.FIELD=VALUE`` or ``loop.FIELD=VALUE`` (``metabench run --set``, the
``overrides`` key of a spec file, the Launch page).  Values are parsed by the field's declared
type; a comma list is a sweep (the cells are the product of every list).  An algorithm may also be
named with fixed overrides in brackets, ``maml[inner_steps=5]``, which is how a *variant* is shown
(``variant_label``): the algorithm plus the fields that differ from its preset on that suite.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from metabench.errors import ConfigError

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


def split_top_level(text: str) -> list[str]:
    """'a,b[x=1,y=2],c' -> ['a', 'b[x=1,y=2]', 'c']: commas inside brackets do not split."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


# --- overrides, sweeps and variants ---------------------------------------------------------------
LOOP_TARGET = "loop"
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REF = re.compile(r"\s*([^\[\]]+?)\s*(?:\[(.*)\])?\s*")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_algorithm_ref(ref: str) -> tuple[str, dict[str, str]]:
    """'maml[inner_steps=5,loop.meta_steps=10]' -> ('maml', {'inner_steps': '5', 'loop.meta_steps': '10'}).

    The bracket holds fixed overrides (one value each), written as ``variant_label`` shows them."""
    m = _REF.fullmatch(ref)
    if not m:
        raise ConfigError(f"an algorithm is NAME or NAME[FIELD=VALUE,...], got {_short(ref)}")
    name, inside = m.group(1), m.group(2)
    fixed: dict[str, str] = {}
    for item in split_top_level(inside) if inside is not None else []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"{_short(ref)}: each bracketed override is FIELD=VALUE, got {_short(item)}")
        fixed[key] = value.strip()
    return name, fixed


def parse_set(item: Any) -> tuple[str, str, list[Any]]:
    """'maml.inner_lr=0.1,0.4' -> ('maml', 'inner_lr', ['0.1', '0.4']) (a comma list is a sweep).

    The target is everything before the last dot of the key: an algorithm name, a plugin's import
    path (``mypkg.algos:MyMAML.temperature=2``) or ``loop``."""
    if not isinstance(item, str):
        raise ConfigError(f"an override is ALGO.FIELD=VALUE or loop.FIELD=VALUE, got {_short(item)}")
    key, eq, values = item.partition("=")
    target, field_name = split_key(key)
    if not eq or not values.strip():
        raise ConfigError(f"override {_short(item)} has no value; write {target}.{field_name}=VALUE "
                          f"(a comma list sweeps: {target}.{field_name}=A,B)")
    return target, field_name, [v.strip() for v in split_top_level(values)]


def split_key(key: Any) -> tuple[str, str]:
    """'maml.inner_lr' -> ('maml', 'inner_lr'); ConfigError if it is not TARGET.FIELD."""
    target, dot, field_name = str(key).strip().rpartition(".")
    if not dot or not target or not _FIELD.fullmatch(field_name):
        raise ConfigError(f"an override is ALGO.FIELD=VALUE or loop.FIELD=VALUE (e.g. "
                          f"maml.inner_steps=5, loop.meta_steps=100), got {_short(key)}")
    return target, field_name


def field_types(config_cls: type) -> dict[str, Any]:
    """Field name -> declared type of a Config dataclass (string annotations resolved)."""
    import typing

    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # an unresolvable annotation: fall back to the declared text
        hints = {}
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(config_cls)}


def coerce(value: Any, type_: Any, where: str) -> Any:
    """A user's value (text from the CLI, or a JSON/TOML scalar) as the field's type.

    bool: true/false/yes/no/on/off/1/0; int: an integer; float: a finite number; str: as is;
    ``X | None``: none/null or X; a tuple of floats: 'a:b' (or a list). ConfigError otherwise,
    naming the field and the type expected."""
    import math
    import types
    import typing

    origin, args = typing.get_origin(type_), typing.get_args(type_)
    if origin in (typing.Union, getattr(types, "UnionType", None)) and type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], where) if len(inner) == 1 else value
    text = value.strip() if isinstance(value, str) else None
    if type_ is bool or type_ == "bool":
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ConfigError(f"{where} is true or false, got {_short(value)}")
    if type_ is int or type_ == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if text is not None and re.fullmatch(r"[+-]?[0-9]{1,18}", text):
            return int(text)
        raise ConfigError(f"{where} is an integer, got {_short(value)}")
    if type_ is float or type_ == "float":
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif text is not None and len(text) <= 40:
            try:
                number = float(text)
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            raise ConfigError(f"{where} is a finite number, got {_short(value)}")
        return number
    if type_ is str or type_ == "str":
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise ConfigError(f"{where} is text, got {_short(value)}")
    if origin is tuple:
        parts = value if isinstance(value, (list, tuple)) else (text.split(":") if text is not None else None)
        if parts is None or (args and args[-1] is not Ellipsis and len(parts) != len(args)):
            raise ConfigError(f"{where} is {len(args)} values separated by ':' (e.g. "
                              f"{':'.join(['0.1'] * len(args))}), got {_short(value)}")
        kinds = args if args and args[-1] is not Ellipsis else (args[:1] * len(parts))
        return tuple(coerce(p, k, where) for p, k in zip(parts, kinds))
    return value


def format_value(value: Any) -> str:
    """The short form of an override value in a variant label: true, 0.01, 5, none, 0.005:0.1."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}" if float(f"{value:g}") == value else repr(value)
    if isinstance(value, (tuple, list)):
        return ":".join(format_value(v) for v in value)
    return str(value)


def variant_label(algorithm: str, overrides: dict[str, Any] | None) -> str:
    """An entry's name: the algorithm plus its overrides of the preset, in a stable order.

    >>> variant_label("maml", {"config": {"inner_steps": 5, "inner_lr": 0.1}, "loop": {"meta_steps": 10}})
    'maml[inner_lr=0.1,inner_steps=5,loop.meta_steps=10]'
    """
    overrides = overrides or {}
    parts = [f"{k}={format_value(v)}" for k, v in sorted((overrides.get("config") or {}).items())]
    parts += [f"{LOOP_TARGET}.{k}={format_value(v)}" for k, v in sorted((overrides.get("loop") or {}).items())]
    return f"{algorithm}[{','.join(parts)}]" if parts else algorithm


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5) if len(name) <= 100 else []
    return f" Did you mean {close[0]!r}?" if close else ""


def typed_overrides(algorithm_cls: type, raw: dict[str, list[Any]], where: str) -> dict[str, list[Any]]:
    """{'inner_lr': ['0.1', '0.4'], 'loop.meta_steps': ['10']} -> the same with typed values;
    ConfigError (with a did-you-mean) for an unknown field or a value of the wrong type."""
    types_ = field_types(algorithm_cls.Config)
    loop_types = field_types(Loop)
    out: dict[str, list[Any]] = {}
    for key, values in raw.items():
        if key.startswith(LOOP_TARGET + "."):
            name, table, kind = key[len(LOOP_TARGET) + 1:], loop_types, "loop setting"
        else:
            name, table, kind = key, types_, f"{algorithm_cls.name} has no Config field"
        if name not in table:
            kind = kind if table is types_ else "the loop has no setting"
            raise ConfigError(f"{where}: {kind} {name!r}.{_did_you_mean(name, list(table))} "
                              f"Fields: {', '.join(table)}.")
        out[key] = [coerce(v, table[name], f"{where}: {key}") for v in values]
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
                raise ConfigError(f"{what} must be a non-empty list, got {_short(value)}")
        for what in ("suites", "algorithms"):
            bad = [v for v in getattr(self, what) if not isinstance(v, str) or not v.strip()]
            if bad:
                raise ConfigError(f"{what} must be names (strings), got {_short(bad[0])}")
        bad = [v for v in self.seeds if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEED]
        if bad:
            raise ConfigError(f"seeds must be integers in 0..{MAX_SEED}, got {_short(bad[0])}")
        n = len(self.suites) * len(self.algorithms) * len(self.seeds)
        if n > MAX_CELLS:
            raise ConfigError(f"the grid has {n} cells; at most {MAX_CELLS} per run — split it into several runs")
        if not isinstance(self.preset, str):
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {_short(self.preset)}")
        if self.preset not in PRESETS:
            import difflib

            close = difflib.get_close_matches(str(self.preset), PRESETS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown preset {self.preset!r}.{hint} Presets: {', '.join(PRESETS)}.")
        if not isinstance(self.device, str) or self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {_short(self.device)}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {_short(self.executor)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"--workers must be an integer from 0 (automatic) to {MAX_WORKERS}, got {_short(self.workers)}")
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
            raise ConfigError(f"overrides must map 'ALGO.FIELD' to values, got {_short(self.overrides)}")
        from metabench.algorithms import named_variant

        # A named variant ('rl2-aux-privileged') stands for its bracket entry.
        refs = [(ref, *parse_algorithm_ref(ref)) for ref in
                (r if r in ALGORITHMS or "[" in r else (named_variant(r) or r) for r in self.algorithms)]
        bases = [base for _, base, _ in refs]
        by_target: dict[str, dict[str, list[Any]]] = {}
        for key, values in self.overrides.items():
            target, name = split_key(key)
            if target != LOOP_TARGET and target not in bases:
                raise ConfigError(f"override {_short(key)} names the algorithm {target!r}, which is not among "
                                  f"the algorithms of this run ({', '.join(bases)}).{_did_you_mean(target, bases)}")
            vals = list(values) if isinstance(values, (list, tuple)) else [values]
            if not vals or len(vals) > MAX_CELLS:
                raise ConfigError(f"override {_short(key)} needs 1 to {MAX_CELLS} values, got {len(vals)}")
            by_target.setdefault(target, {})[name if target != LOOP_TARGET else f"{LOOP_TARGET}.{name}"] = vals
        out = []
        n_cells = 0
        for ref, base, fixed in refs:
            cls = ALGORITHMS.get(base)
            raw = {k: [v] for k, v in fixed.items()}
            raw.update(by_target.get(LOOP_TARGET, {}))
            raw.update(by_target.get(base, {}))
            typed = typed_overrides(cls, raw, f"--set for {base}" if ref == base else _short(ref))
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
            raise ConfigError(f"unknown run spec key(s) {', '.join(map(_short, unknown))}; expected "
                              f"{', '.join(SPEC_KEYS)}")
        for key in ("suites", "algorithms"):
            if key not in obj:
                raise ConfigError(f"the run spec needs {key!r}, e.g. {{\"{key}\": [\"NAME\"]}}")

        def names(key: str) -> tuple[str, ...]:
            value = obj[key]
            if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                return tuple(parse_list(value, key))
            raise ConfigError(f"{key} must be a list of names or comma-separated text, got {_short(value)}")

        overrides = obj.get("overrides", {})
        if isinstance(overrides, list) and all(isinstance(o, str) for o in overrides):
            overrides = parse_sets(overrides)
        elif isinstance(overrides, dict):
            overrides = {str(k): (tuple(split_top_level(v)) if isinstance(v, str) else
                                  tuple(v) if isinstance(v, list) else (v,))
                         for k, v in overrides.items()}
        else:
            raise ConfigError(f"overrides must be a table of 'ALGO.FIELD' = value(s) or a list of "
                              f"'ALGO.FIELD=VALUE' strings, got {_short(overrides)}")
        seeds = obj.get("seeds", [0])
        if isinstance(seeds, str):
            seeds = parse_seeds(seeds)
        elif not isinstance(seeds, list):
            raise ConfigError(f"seeds must be a list of integers or comma-separated text, got {_short(seeds)}")
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
                    overrides = resolve_overrides(cls, self.preset, suite, combo)
                    for seed in self.seeds:
                        cell = Cell(s, base, seed, self.preset, self.device, overrides)
                        if cell.run_id not in seen:   # a swept value equal to the preset's is the plain run
                            seen.add(cell.run_id)
                            cells.append(cell)
        return cells, skipped


SPEC_KEYS = ("suites", "algorithms", "seeds", "preset", "device", "executor", "workers", "ray_address",
             "overrides")


def parse_sets(items: list[str] | tuple[str, ...]) -> dict[str, tuple]:
    """['maml.inner_lr=0.1,0.4', 'loop.meta_steps=10'] -> {'maml.inner_lr': ('0.1', '0.4'), ...};
    a key given twice is an error (say every value once, comma-separated)."""
    out: dict[str, tuple] = {}
    for item in items:
        target, name, values = parse_set(item)
        key = f"{target}.{name}"
        if key in out:
            raise ConfigError(f"{key} is set twice; give every value once, e.g. --set {key}=A,B")
        out[key] = tuple(values)
    return out


def resolve_overrides(cls, preset: str, suite, combo: dict[str, Any]) -> dict[str, Any]:
    """One combination of typed overrides -> a cell's ``overrides``: only the fields that differ
    from ``preset``'s values on ``suite``, split into ``config`` and ``loop``; each checked by
    building the Config (its ``validate``) and the Loop. Loop settings do not apply to algorithms
    that do not meta-train (their meta_steps is always 0) and are dropped for them."""
    config = {k: v for k, v in combo.items() if not k.startswith(LOOP_TARGET + ".")}
    loop = {k[len(LOOP_TARGET) + 1:]: v for k, v in combo.items() if k.startswith(LOOP_TARGET + ".")}
    base_cfg = dataclasses.asdict(cls.preset_config(preset, suite))
    try:
        cls.preset_config(preset, suite, config)   # range checks: the Config's own validate()
    except ConfigError as exc:
        raise ConfigError(f"{variant_label(cls.name, {'config': config})} on {suite.id}: {exc}") from None
    config = {k: v for k, v in config.items() if base_cfg[k] != v}
    base_loop = loop_for(cls, preset, suite)
    if not getattr(cls, "needs_training", True):
        loop = {}
    try:
        dataclasses.replace(base_loop, **loop).validate()
    except ConfigError as exc:
        raise ConfigError(f"{cls.name} on {suite.id}: {exc}") from None
    loop = {k: v for k, v in loop.items() if getattr(base_loop, k) != v}
    out: dict[str, Any] = {}
    if config:
        out["config"] = config
    if loop:
        out["loop"] = loop
    return out


def _short(value: Any) -> str:
    """repr of a user's value, cut to 60 characters so one bad value cannot flood the message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_spec(path: Any) -> RunSpec:
    """Read and validate a run spec file, JSON or TOML (by the ``.toml`` suffix), with the fields
    of ``RunSpec.from_dict``; ConfigError otherwise."""
    try:
        text = open(path, encoding="utf-8").read()  # noqa: SIM115 - any error becomes one sentence
    except (OSError, ValueError) as exc:  # ValueError: undecodable bytes, NUL in the path
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"cannot read the run spec file {_short(str(path))}: {reason}") from None
    if str(path).lower().endswith(".toml"):
        import tomllib

        try:
            return RunSpec.from_dict(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"the run spec file {_short(str(path))} is not valid TOML: {exc}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the run spec file {_short(str(path))} is not valid JSON: {exc.msg} at line "
                          f"{exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ConfigError(f"the run spec file {_short(str(path))} is nested too deeply") from None
    return RunSpec.from_dict(obj)
