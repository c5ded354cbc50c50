"""What `metabench list --json` says about each algorithm's settings, and how to read it back.

Two halves, neither imports torch nor Streamlit:

* ``describe_config`` / ``describe_loop`` / ``algorithm_settings`` (called by the CLI with the
  classes in hand): a Config dataclass's fields as JSON — name, type as text, default, the field's
  doc (the string literal right after it, an *attribute docstring*, read with ``ast``), and the
  choices of a text field where they are known — plus the raw ``PRESETS`` and ``LOOPS`` tables.
* ``preset_values`` / ``loop_values`` (called by the Launch page with that JSON only): a field's
  value under a preset on a suite, resolved the way ``Algorithm.preset_config`` and
  ``metabench.spec.loop_for`` do (defaults, then the suite kind's entry, then the suite id's).
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
import typing
from typing import Any

from metabench.overrides import field_types
from metabench.spec import LOOP_DEFAULTS, Loop

# A text field whose doc names its values in quotes, e.g. "'loop', 'vmap' or 'auto'".
_QUOTED = re.compile(r"'([A-Za-z0-9_.-]+)'")


def jsonable(value: Any) -> Any:
    """Tuples and sets to lists, mappings' keys to text, recursively; other scalars as they are."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its attribute docstring (the string literal right after the field), for a
    class and its bases (a subclass's doc wins); {} where the source cannot be read."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
            tree = ast.parse(source)
        except (OSError, TypeError, SyntaxError, IndentationError):
            continue
        body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
        for stmt, nxt in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def type_text(type_: Any) -> str:
    """'int', 'float', 'bool', 'str', 'int | None', 'tuple[float, float]', ..."""
    if isinstance(type_, str):
        return type_
    if isinstance(type_, type) and not typing.get_args(type_):
        return type_.__name__
    return str(type_).replace("typing.", "")


def _choices(type_: Any, doc: str, default: Any) -> list[Any] | None:
    """A field's allowed values: a Literal's, or a text field's quoted words in its doc when the
    default is one of them (Config docs list them: "'strided' (...) or 'pool'")."""
    if typing.get_origin(type_) is typing.Literal:
        return list(typing.get_args(type_))
    if type_ is str:
        words = list(dict.fromkeys(_QUOTED.findall(doc)))
        if len(words) >= 2 and default in words:
            return words
    return None


def describe_config(config_cls: type) -> list[dict[str, Any]]:
    """Every field of a Config dataclass: name, type (text), default, doc and choices."""
    docs, types = field_docs(config_cls), field_types(config_cls)
    out = []
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        doc = docs.get(f.name, "")
        out.append({"name": f.name, "type": type_text(types[f.name]), "default": jsonable(default),
                    "doc": doc, "choices": jsonable(_choices(types[f.name], doc, default))})
    return out


def algorithm_settings(cls: type) -> dict[str, Any]:
    """The settings part of an algorithm's `metabench list --json` entry."""
    return {
        "config": describe_config(cls.Config),
        "preset_table": jsonable(getattr(cls, "PRESETS", {})),
        "loops": jsonable(getattr(cls, "LOOPS", {})),
        "needs_training": bool(getattr(cls, "needs_training", True)),
    }


def describe_loop() -> dict[str, Any]:
    """The loop settings (``loop.FIELD``): their fields and each preset's values."""
    return {"fields": describe_config(Loop), "presets": jsonable(LOOP_DEFAULTS)}


# --- reading the JSON back (the Launch page) --------------------------------------------------------
def _layered(defaults: dict[str, Any], table: dict[str, Any], suite: dict[str, Any]) -> dict[str, Any]:
    values = dict(defaults)
    values.update(table.get(suite["kind"], {}))
    values.update(table.get(suite["id"], {}))
    return values


def preset_values(algorithm: dict[str, Any], preset: str, suite: dict[str, Any]) -> dict[str, Any]:
    """Field -> value of ``algorithm``'s Config under ``preset`` on ``suite`` (entries of
    `metabench list --json`): defaults, then the preset's entry for the suite's kind, then for
    its id — as ``Algorithm.preset_config``."""
    defaults = {f["name"]: f["default"] for f in algorithm["config"]}
    return _layered(defaults, algorithm["preset_table"].get(preset, {}), suite)


def loop_values(loop: dict[str, Any], algorithm: dict[str, Any], preset: str, suite: dict[str, Any]) -> dict[str, Any]:
    """Loop setting -> value for ``algorithm`` under ``preset`` on ``suite``, as ``spec.loop_for``
    (``loop`` is the `loop` entry of `metabench list --json`)."""
    defaults = {f["name"]: f["default"] for f in loop["fields"]}
    defaults.update(loop["presets"][preset])
    values = _layered(defaults, algorithm.get("loops", {}).get(preset, {}), suite)
    if not algorithm.get("needs_training", True):
        values["meta_steps"] = 0
    return values
