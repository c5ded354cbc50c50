"""Overrides, sweeps and variants (issue 20): what a user writes to change a preset, parsed and typed.

``ALGO.FIELD=VALUE`` or ``loop.FIELD=VALUE`` (``metabench run --set``, the ``overrides`` key of a
spec file, the Launch page).  Values are parsed by the field's declared type; a comma list is a
sweep (the cells are the product of every list).  An algorithm may also be named with fixed
overrides in brackets, ``maml[inner_steps=5]``, which is how a *variant* is shown
(``variant_label``): the algorithm plus the fields that differ from its preset on that suite.
`metabench.spec` turns a RunSpec's overrides into cells with these functions.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from metabench.errors import ConfigError

LOOP_TARGET = "loop"
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REF = re.compile(r"\s*([^\[\]]+?)\s*(?:\[(.*)\])?\s*")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


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


def parse_algorithm_ref(ref: str) -> tuple[str, dict[str, str]]:
    """'maml[inner_steps=5,loop.meta_steps=10]' -> ('maml', {'inner_steps': '5', 'loop.meta_steps': '10'}).

    The bracket holds fixed overrides (one value each), written as ``variant_label`` shows them."""
    m = _REF.fullmatch(ref)
    if not m:
        raise ConfigError(f"an algorithm is NAME or NAME[FIELD=VALUE,...], got {short_repr(ref)}")
    name, inside = m.group(1), m.group(2)
    fixed: dict[str, str] = {}
    for item in split_top_level(inside) if inside is not None else []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"{short_repr(ref)}: each bracketed override is FIELD=VALUE, got {short_repr(item)}")
        fixed[key] = value.strip()
    return name, fixed


def parse_set(item: Any) -> tuple[str, str, list[Any]]:
    """'maml.inner_lr=0.1,0.4' -> ('maml', 'inner_lr', ['0.1', '0.4']) (a comma list is a sweep).

    The target is everything before the last dot of the key: an algorithm name, a plugin's import
    path (``mypkg.algos:MyMAML.temperature=2``) or ``loop``."""
    if not isinstance(item, str):
        raise ConfigError(f"an override is ALGO.FIELD=VALUE or loop.FIELD=VALUE, got {short_repr(item)}")
    key, eq, values = item.partition("=")
    target, field_name = split_key(key)
    if not eq or not values.strip():
        raise ConfigError(f"override {short_repr(item)} has no value; write {target}.{field_name}=VALUE "
                          f"(a comma list sweeps: {target}.{field_name}=A,B)")
    return target, field_name, [v.strip() for v in split_top_level(values)]


def split_key(key: Any) -> tuple[str, str]:
    """'maml.inner_lr' -> ('maml', 'inner_lr'); ConfigError if it is not TARGET.FIELD."""
    target, dot, field_name = str(key).strip().rpartition(".")
    if not dot or not target or not _FIELD.fullmatch(field_name):
        raise ConfigError(f"an override is ALGO.FIELD=VALUE or loop.FIELD=VALUE (e.g. "
                          f"maml.inner_steps=5, loop.meta_steps=100), got {short_repr(key)}")
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
        raise ConfigError(f"{where} is true or false, got {short_repr(value)}")
    if type_ is int or type_ == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if text is not None and re.fullmatch(r"[+-]?[0-9]{1,18}", text):
            return int(text)
        raise ConfigError(f"{where} is an integer, got {short_repr(value)}")
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
            raise ConfigError(f"{where} is a finite number, got {short_repr(value)}")
        return number
    if type_ is str or type_ == "str":
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise ConfigError(f"{where} is text, got {short_repr(value)}")
    if origin is tuple:
        parts = value if isinstance(value, (list, tuple)) else (text.split(":") if text is not None else None)
        if parts is None or (args and args[-1] is not Ellipsis and len(parts) != len(args)):
            raise ConfigError(f"{where} is {len(args)} values separated by ':' (e.g. "
                              f"{':'.join(['0.1'] * len(args))}), got {short_repr(value)}")
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


def did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5) if len(name) <= 100 else []
    return f" Did you mean {close[0]!r}?" if close else ""


def typed_overrides(algorithm_cls: type, loop_cls: type, raw: dict[str, list[Any]],
                    where: str) -> dict[str, list[Any]]:
    """{'inner_lr': ['0.1', '0.4'], 'loop.meta_steps': ['10']} -> the same with typed values, by the
    fields of ``algorithm_cls.Config`` and of ``loop_cls`` (the Loop dataclass, for ``loop.FIELD``);
    ConfigError (with a did-you-mean) for an unknown field or a value of the wrong type."""
    types_ = field_types(algorithm_cls.Config)
    loop_types = field_types(loop_cls)
    out: dict[str, list[Any]] = {}
    for key, values in raw.items():
        if key.startswith(LOOP_TARGET + "."):
            name, table, kind = key[len(LOOP_TARGET) + 1:], loop_types, "loop setting"
        else:
            name, table, kind = key, types_, f"{algorithm_cls.name} has no Config field"
        if name not in table:
            kind = kind if table is types_ else "the loop has no setting"
            raise ConfigError(f"{where}: {kind} {name!r}.{did_you_mean(name, list(table))} "
                              f"Fields: {', '.join(table)}.")
        out[key] = [coerce(v, table[name], f"{where}: {key}") for v in values]
    return out


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


def resolve_overrides(cls, preset: str, suite, combo: dict[str, Any], base_loop) -> dict[str, Any]:
    """One combination of typed overrides -> a cell's ``overrides``: only the fields that differ
    from ``preset``'s values on ``suite`` (``base_loop`` is that preset's Loop there, ``loop_for``),
    split into ``config`` and ``loop``; each checked by building the Config (its ``validate``) and
    the Loop. Loop settings do not apply to algorithms that do not meta-train (their meta_steps is
    always 0) and are dropped for them."""
    config = {k: v for k, v in combo.items() if not k.startswith(LOOP_TARGET + ".")}
    loop = {k[len(LOOP_TARGET) + 1:]: v for k, v in combo.items() if k.startswith(LOOP_TARGET + ".")}
    base_cfg = dataclasses.asdict(cls.preset_config(preset, suite))
    try:
        cls.preset_config(preset, suite, config)   # range checks: the Config's own validate()
    except ConfigError as exc:
        raise ConfigError(f"{variant_label(cls.name, {'config': config})} on {suite.id}: {exc}") from None
    config = {k: v for k, v in config.items() if base_cfg[k] != v}
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


def short_repr(value: Any) -> str:
    """repr of a user's value, cut to 60 characters so one bad value cannot flood the message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
