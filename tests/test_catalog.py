"""metabench.catalog: Config fields with their attribute docstrings, presets resolved from the JSON
of `metabench list --json` exactly as the library resolves them, and that JSON itself."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from metabench.catalog import (algorithm_settings, describe_config, describe_loop, field_docs, jsonable,
                               loop_values, preset_values)


@dataclasses.dataclass(frozen=True)
class _Base:
    lr: float = 0.1
    """Step size."""
    steps: int = 1
    """Inner steps,
    over two lines."""


@dataclasses.dataclass(frozen=True)
class _Config(_Base):
    steps: int = 3
    """Overridden doc."""
    span: tuple[float, float] = (0.5, 1.0)
    """A range."""
    mode: str = "loop"
    """'loop', 'vmap' or 'auto'."""
    name: str = "x"
    """Just a name, see 'here'."""
    size: int | None = None
    plain: bool = False
    """A flag."""


def test_attribute_docstrings_types_defaults_and_choices():
    assert field_docs(_Config)["steps"] == "Overridden doc."
    assert field_docs(_Base)["steps"] == "Inner steps,\nover two lines."
    got = {f["name"]: f for f in describe_config(_Config)}
    assert list(got) == ["lr", "steps", "span", "mode", "name", "size", "plain"]
    assert got["lr"] == {"name": "lr", "type": "float", "default": 0.1, "doc": "Step size.", "choices": None}
    assert got["span"]["type"] == "tuple[float, float]" and got["span"]["default"] == [0.5, 1.0]
    assert got["mode"]["choices"] == ["loop", "vmap", "auto"]
    assert got["name"]["choices"] is None          # the default is not among the quoted words
    assert got["size"] == {"name": "size", "type": "int | None", "default": None, "doc": "", "choices": None}
    assert got["plain"]["type"] == "bool"
    json.dumps(describe_config(_Config))


def test_jsonable():
    assert jsonable({1: (1, 2), "s": frozenset({"b", "a"}), "n": None}) == {"1": [1, 2], "s": ["a", "b"], "n": None}


def test_preset_and_loop_values_match_the_library():
    from metabench.algorithms import ALGORITHMS
    from metabench.spec import loop_for
    from metabench.suites import make_suite

    loop = describe_loop()
    for name in ("maml", "fomaml", "protonet", "metasgd", "gittins", "rl2"):
        cls = ALGORITHMS.get(name)
        entry = {"name": name, **algorithm_settings(cls)}
        json.dumps(entry)
        for suite_id in ("sinusoid-5shot", "omniglot-20w1s", "omniglot-5w1s", "bandit-k5-n10", "tabular-mdp-n10"):
            suite = make_suite(suite_id)
            if not cls.fits(suite)[0]:
                continue
            desc = {"id": suite.id, "kind": suite.kind}
            for preset in ("smoke", "quick", "paper"):
                expected = jsonable(dataclasses.asdict(cls.preset_config(preset, suite)))
                assert preset_values(entry, preset, desc) == expected, (name, suite_id, preset)
                assert loop_values(loop, entry, preset, desc) == dataclasses.asdict(loop_for(cls, preset, suite))


def test_every_builtin_config_field_has_a_doc():
    from metabench.algorithms import ALGORITHMS

    missing = [f"{n}.{f['name']}" for n in ALGORITHMS.names() if ALGORITHMS.origin(n) == "built-in"
               for f in describe_config(ALGORITHMS.get(n).Config) if not f["doc"]]
    assert not missing, f"Config fields without an attribute docstring: {missing}"


@pytest.fixture(scope="module")
def listed():
    out = subprocess.run([sys.executable, "-m", "metabench.cli", "list", "--json"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_list_json_has_origins_fields_presets_and_loop(listed):
    maml = next(a for a in listed["algorithms"] if a["name"] == "maml")
    assert maml["origin"] == "built-in"
    origins = {s["id"]: s["origin"] for s in listed["suites"]}
    assert origins["sinusoid-5shot"] == origins["omniglot-5w1s"] == "built-in"
    # an installed plugin's entries say which package (and version) they came from
    assert all(o == "built-in" or len(o.split()) == 2 for o in origins.values()), origins
    field = next(f for f in maml["config"] if f["name"] == "inner_steps")
    assert field == {"name": "inner_steps", "type": "int", "default": 1,
                     "doc": "Inner steps during meta-training.", "choices": None}
    assert maml["preset_table"]["smoke"]["regression"]["hidden"] == 16
    assert maml["loops"]["quick"]["regression"]["meta_steps"] == 12_000
    assert [f["name"] for f in listed["loop"]["fields"]] == [
        "meta_steps", "eval_every", "n_val_tasks", "n_test_tasks", "log_every", "checkpoint_every"]
    assert listed["loop"]["presets"]["smoke"]["meta_steps"] == 6
    gittins = next(a for a in listed["algorithms"] if a["name"] == "gittins")
    assert gittins["needs_training"] is False and gittins["config"][0]["type"] == "float | None"


def test_list_text_names_every_origin():
    out = subprocess.run([sys.executable, "-m", "metabench.cli", "list"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines: dict[str, str] = {}
    for ln in out.stdout.splitlines():   # the first line naming each (the Suites and Algorithms sections)
        if ln.startswith("  ") and ln.split():
            lines.setdefault(ln.split()[0], ln)
    assert lines["maml"].rstrip().endswith("built-in")
    assert lines["sinusoid-5shot"].rstrip().endswith("built-in")
