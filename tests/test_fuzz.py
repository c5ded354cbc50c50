"""Bad input, property-based: malformed run specs from Python, JSON files and `metabench run`'s
arguments all end in one ConfigError sentence (exit 2, one `error:` line), never a traceback."""
from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metabench import cli
from metabench.errors import ConfigError
from metabench.spec import MAX_CELLS, RunSpec, load_spec

SUITES = ["sinusoid-5shot", "omniglot-5w1s", "omniglot-20w5s"]
ALGORITHMS = ["maml", "protonet"]

odd_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
names = st.one_of(st.sampled_from(SUITES + ALGORITHMS + ["MAML", "maml ", "omniglot", "sinusoid-5shot\u200b"]),
                  odd_text, st.just("../../etc"), st.just("a" * 5000))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)
seeds = st.one_of(st.integers(-2**40, 2**40), st.booleans(), st.floats(), odd_text, st.none())
# METABENCH_FUZZ_SCALE=10 for a thorough run (10x the examples); the default keeps the suite fast.
SCALE = max(1, int(os.environ.get("METABENCH_FUZZ_SCALE", "1")))
FAST = settings(max_examples=100 * SCALE, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])



def _valid_or_config_error(make) -> None:
    try:
        spec = make()
        spec.validate()
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 600, message
        assert "Traceback" not in message


@FAST
@given(
    suites=st.one_of(st.lists(names, max_size=4).map(tuple), names, st.none(), st.integers()),
    algorithms=st.one_of(st.lists(names, max_size=3).map(tuple), names, st.none()),
    seeds_=st.one_of(st.lists(seeds, max_size=4).map(tuple), seeds),
    preset=st.one_of(st.sampled_from(["smoke", "quick", "paper", "smok", "Quick"]), odd_text, st.integers(),
                     st.none(), st.lists(st.integers(), max_size=2)),
    device=st.one_of(st.sampled_from(["auto", "cpu", "cuda", "gpu", "cuda:0"]), odd_text, st.none()),
)
def test_runspec_validation_only_raises_config_errors(suites, algorithms, seeds_, preset, device):
    _valid_or_config_error(lambda: RunSpec(suites, algorithms, seeds_, preset, device))


@FAST
@given(obj=st.one_of(json_values, st.fixed_dictionaries(
    {"suites": st.one_of(st.lists(names, max_size=3), names, json_values),
     "algorithms": st.one_of(st.lists(names, max_size=3), names, json_values)},
    optional={"seeds": st.one_of(st.lists(seeds.filter(lambda s: s == s), max_size=3), json_values),
              "preset": json_values, "device": json_values, "colour": json_values})))
def test_runspec_from_json_objects_only_raises_config_errors(obj):
    _valid_or_config_error(lambda: RunSpec.from_dict(obj))


def test_huge_grids_are_refused_quickly():
    with pytest.raises(ConfigError, match=f"at most {MAX_CELLS}"):
        RunSpec(tuple(SUITES), tuple(ALGORITHMS), tuple(range(2000)), "smoke").validate()
    with pytest.raises(ConfigError, match="at most"):  # checked before a million registry lookups
        RunSpec(("x",) * 1000, ("y",) * 1000, (0,), "smoke").validate()


# -- files and the command line -----------------------------------------------------------------


class _Validated(Exception):
    """Raised instead of running a job once a spec got through validation."""


@pytest.fixture(scope="module")
def no_jobs():
    from metabench.engine import job

    real = job.run_job

    def fake(*args, **kwargs):
        raise _Validated

    job.run_job = fake
    yield
    job.run_job = real


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:  # argparse: usage line + one "error:" line, exit 2
            rc = exc.code
        except _Validated:
            rc = 0
    return rc, err.getvalue()


def _assert_clear(rc: int, err: str) -> None:
    assert "Traceback" not in err, err
    if rc != 0:
        assert rc == 2, err
        assert len([line for line in err.splitlines() if "error:" in line]) == 1, err


file_bytes = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"suites": names, "algorithms": names, "seeds": json_values}).map(
        lambda v: json.dumps(v).encode()),
    st.binary(max_size=60),
    st.text(max_size=60).map(str.encode),
    st.sampled_from([b"", b"{", b'{"suites": ["sinusoid-5shot"],}', b"\xff\xfe{}", b"[" * 5000 + b"]" * 5000,
                     b'{"suites": "sinusoid-5shot", "algorithms": "maml", "seeds": [1e400]}',
                     b'{"suites": "sinusoid-5shot", "algorithms": "maml", "seeds": NaN}']),
)


@settings(max_examples=60 * SCALE, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=file_bytes)
def test_malformed_spec_files_get_one_error_line(tmp_path, no_jobs, payload):
    path = tmp_path / "spec.json"
    path.write_bytes(payload)
    with contextlib.suppress(ConfigError):
        load_spec(path)
    rc, err = _cli(["run", "--spec", str(path), "--results-dir", str(tmp_path / "r")])
    _assert_clear(rc, err)


def test_unreadable_spec_files(tmp_path, no_jobs):
    for path in [tmp_path / "missing.json", tmp_path, "bad\0name.json"]:
        rc, err = _cli(["run", "--spec", str(path)])
        assert rc == 2 and err.startswith("error: cannot read the run spec file"), err


cli_text = st.one_of(odd_text, st.sampled_from(["", ",", " , ", "sinusoid-5shot", "maml,maml", "0,1",
                                                "-1", "1e3", "99999999999999", "0x10", "٣", "²", "9" * 5000]))


@settings(max_examples=120 * SCALE, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suites=cli_text, algorithms=cli_text, seeds_=cli_text, preset=cli_text, device=cli_text,
       extra=st.lists(st.sampled_from(["--bogus", "--seeds", "--quiet", "-x", "--preset=paper"]), max_size=2))
def test_cli_run_arguments_get_one_error_line(tmp_path, no_jobs, suites, algorithms, seeds_, preset, device, extra):
    argv = ["run", "--suites", suites, "--algorithms", algorithms, "--seeds", seeds_, "--preset", preset,
            "--device", device, "--results-dir", str(tmp_path / "r"), *extra]
    rc, err = _cli(argv)
    _assert_clear(rc, err)


set_text = st.one_of(
    odd_text,
    st.builds(lambda t, f, v: f"{t}.{f}={v}",
              st.sampled_from(["maml", "loop", "protonet", "mamll", "", "maml.x", "a:b", "maml[inner_steps=2]"]),
              st.sampled_from(["inner_steps", "inner_lr", "first_order", "batching", "meta_steps", "n_test_tasks",
                               "no_such", "", "1x", "eval_every"]),
              st.one_of(odd_text, st.sampled_from(["1", "1,3", "0", "-1", "1e400", "nan", "true", "none", ",",
                                                   "0.1,0.4", "vmap", "9" * 5000, "1," * 300]))),
)


@settings(max_examples=120 * SCALE, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sets=st.lists(set_text, max_size=3),
       algorithms=st.sampled_from(["maml", "maml,protonet", "maml[inner_steps=2]", "maml[", "maml[x]", "rl2"]))
def test_cli_overrides_get_one_error_line(tmp_path, sets, algorithms):
    argv = ["run", "--suites", "sinusoid-5shot", "--algorithms", algorithms, "--preset", "smoke", "--dry-run",
            "--results-dir", str(tmp_path / "r")]
    for item in sets:
        argv += ["--set", item]
    rc, err = _cli(argv)
    _assert_clear(rc, err)

