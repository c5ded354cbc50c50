"""Shared fixtures: the staged datasets, a per-session cache, Omniglot decoded once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports torch: with OpenMP's default spin-waiting, in-process tests (a GRU
# step, a MAML step) slow down 10-70x whenever the two cores are shared. The engine's workers set
# the same (metabench.engine.local_executor.worker_env).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Queries read the shipped reference set beside a results folder by default (issue 21); the tests'
# fixture folders are read alone, whatever the package ships. Tests of the reference set pass a
# folder explicitly (ResultsDB(..., reference=DIR)) or set METABENCH_REFERENCE themselves.
os.environ["METABENCH_REFERENCE"] = "off"

# /work/shared/data locally; ../shared/data relative to the repository in CI.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only folder of staged datasets (ROOT/omniglot/...); skips when it is absent."""
    if not (SHARED_DATA / "omniglot").is_dir():
        pytest.skip(f"staged datasets not found at {SHARED_DATA} (expected ../shared/data/omniglot)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def omniglot_cache(tmp_path_factory: pytest.TempPathFactory):
    """METABENCH_CACHE -> a session temp folder, so no test writes into the user's cache.

    Session-wide so Omniglot's decoded tensor (seconds of work) is shared by every test.
    """
    path = tmp_path_factory.mktemp("metabench-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("METABENCH_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def omniglot(shared_data: Path, omniglot_cache: Path):
    """OmniglotData from the staged copy, decoded once per session (never downloads)."""
    from metabench.suites.omniglot_images import load_omniglot

    return load_omniglot(shared_data, allow_download=False, progress=False)


@pytest.fixture(scope="session")
def suite_by_id(shared_data: Path):
    """suite id -> that suite prepared on the CPU from the staged data (each prepared once)."""
    from metabench.suites import make_suite

    prepared: dict[str, object] = {}

    def get(suite_id: str):
        from metabench.errors import DataUnavailable

        if suite_id not in prepared:
            try:
                prepared[suite_id] = make_suite(suite_id).prepare(shared_data, "cpu", allow_download=False,
                                                                 progress=False)
            except DataUnavailable as exc:  # miniImageNet / CIFAR-100 are not staged; fake-data tests cover them
                pytest.skip(f"{suite_id}: no data in {shared_data} ({exc})")
        return prepared[suite_id]
    return get


@pytest.fixture
def run_cli():
    """``run_cli(argv) -> (exit status, stdout, stderr)`` of ``metabench ARGV`` in this process
    (argparse's SystemExit becomes its status)."""
    import contextlib
    import io

    from metabench import cli

    def run(argv: list[str]) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = cli.main(argv)
            except SystemExit as exc:
                rc = exc.code
        return rc, out.getvalue(), err.getvalue()

    return run
