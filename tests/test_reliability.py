"""Issue 7 guarantees that need no killed process: corruption is detected and skipped, corrupt
checkpoints fall back, no pickle runs, crafted ids are refused, disk full and read-only folders
give one clear error and leave earlier results intact. (Real SIGKILLs: tests/test_crash.py.)"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metabench import cli, fsutil
from metabench.errors import ConfigError, MetabenchError, ResultsError
from metabench.results import verify, write_fixture_results
from metabench.results.ids import check_run_id, run_dir, safe_file_name
from metabench.results.query import ResultsDB
from metabench.results.schema import GLOBS
from metabench.results.writer import read_table, to_arrow, write_table

TABLES = ("runs", "curves", "tasks")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good")
    write_fixture_results(root)
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _one(root: Path, table: str) -> Path:
    return sorted(root.glob(GLOBS[table]))[0]


def _damaged_versions(data: bytes, every: int) -> dict[str, bytes]:
    """Zero-byte, truncated at several lengths, and one flipped bit at every `every`-th byte
    (the bit rotates with the position), always including the last 16 bytes (footer length, magic)."""
    n = len(data)
    cases = {"zero-byte": b""}
    cases.update({f"truncated to {k} bytes": data[:k] for k in (1, 4, 8, n // 3, n // 2, n - 9, n - 8, n - 1)})
    positions = sorted(set(range(0, n, every)) | set(range(n - 16, n)))
    for i in positions:
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        cases[f"bit {i % 8} of byte {i} flipped"] = bytes(flipped)
    return cases


def _assert_all_detected(good: Path, tmp_path: Path, table: str, every: int) -> int:
    data = _one(good, table).read_bytes()
    assert verify.check_results_file(_one(good, table), table) is None
    target = tmp_path / ("runs.parquet" if table == "runs" else f"{table}-x.parquet")
    missed = []
    cases = _damaged_versions(data, every)
    for name, payload in cases.items():
        target.write_bytes(payload)
        problem = verify.check_results_file(target, table)
        if problem is None or problem.severity != "bad":
            missed.append(name)
        else:
            with pytest.raises(ResultsError):  # the plain reader refuses it too
                read_table(target, table)
    assert not missed, f"undetected damage in a {table} file: {missed}"
    return len(cases)


@pytest.mark.parametrize("table", TABLES)
def test_zero_byte_truncated_and_bit_flipped_results_files_are_detected(good, tmp_path, table):
    n = _assert_all_detected(good, tmp_path, table, every=97)
    assert n > 40


@pytest.mark.slow
@pytest.mark.parametrize("table", TABLES)
def test_every_single_bit_flip_is_detected(good, tmp_path, table):
    # Page CRCs alone miss flips in page headers and the footer (statistics DuckDB filters on);
    # the whole-file sha256 in the footer catches every one.
    _assert_all_detected(good, tmp_path, table, every=1)


def _corrupt(root: Path) -> dict[str, Path]:
    """Damage one file of each table in a copy of the fixture; returns {what: path}."""
    tasks = sorted(root.glob("omniglot-5w1s-v2-maml-s*/tasks.parquet"))[0]
    tasks.write_bytes(b"")
    curve = sorted(root.glob("sinusoid-5shot-v1-maml-s0/curves-*.parquet"))[0]
    data = bytearray(curve.read_bytes())
    data[len(data) // 2] ^= 0x10
    curve.write_bytes(bytes(data))
    runs = root / "sinusoid-5shot-v1-reptile-s1" / "runs.parquet"
    runs.write_bytes(runs.read_bytes()[:-100])
    return {"tasks": tasks, "curves": curve, "runs": runs}


def test_verify_cli_lists_bad_files_and_queries_use_the_rest(good, tmp_path, capsys):
    root = _copy(good, tmp_path / "results")
    assert cli.main(["results", "verify", "--results-dir", str(root), "--clean"]) == 0  # the fixture's leftover
    assert "all good" in capsys.readouterr().out and not list(root.rglob("*.tmp"))
    before = ResultsDB(root).leaderboard("omniglot-5w1s")
    bad = _corrupt(root)

    assert cli.main(["results", "verify", "--results-dir", str(root)]) == 1
    out = capsys.readouterr().out
    for path in bad.values():
        line = next(line for line in out.splitlines() if str(path) in line)
        assert line.startswith("BAD") and "run the same `metabench run` command again" in line
    assert "is empty (0 bytes)" in out and "3 bad file(s)" in out

    db = ResultsDB(root)
    assert sorted(p.path for p in db.problems()) == sorted(bad.values())
    board = db.leaderboard("omniglot-5w1s")  # one maml seed lost its tasks: still a leaderboard
    assert list(board["algorithm"]) == list(before["algorithm"])
    assert board.loc[board.algorithm == "maml", "n_seeds"].item() == 1
    assert db.summary()["n_runs"] == 10  # 11 runs, one runs.parquet unreadable
    assert not db.curves("sinusoid-5shot", "loss", "train").empty
    assert not db.leaderboard("sinusoid-5shot").empty


def test_problem_check_is_cached_until_the_file_changes(good, tmp_path, monkeypatch):
    root = _copy(good, tmp_path / "results")
    calls = []
    real = verify.check_results_file
    monkeypatch.setattr(verify, "check_results_file", lambda p, t: calls.append(p) or real(p, t))
    db = ResultsDB(root)
    db.leaderboard("omniglot-5w1s")
    n = len(calls)
    assert n > 0
    db.leaderboard("omniglot-5w1s")
    db.problems()
    # One walk checks every table's files (curves too), so neither a repeated query nor problems()
    # checks anything again.
    assert n == sum(1 for table in GLOBS for _ in root.glob(GLOBS[table]))
    assert len(calls) == n
    calls.clear()
    db.problems()
    assert calls == []
    path = _one(root, "tasks")
    write_table(read_table(path, "tasks"), path, "tasks")  # an atomic rewrite: new inode and mtime
    db.problems()
    assert calls == [path]


def test_dashboard_refresh_never_loads_a_file_that_fails_its_check(good, tmp_path):
    """The dashboard's ResultsDB walks only on refresh(); that walk must leave out bad files too,
    including one DuckDB would read without complaint (valid Parquet, wrong whole-file sha256)."""
    root = _copy(good, tmp_path / "results")
    db = ResultsDB(root, auto_refresh=False)
    db.refresh()
    assert db.problems() == [] and len(db.tasks("omniglot-5w1s", "accuracy"))
    path = root / "omniglot-5w1s-v2-maml-s0" / "tasks.parquet"  # a run the query below reads
    forged = read_table(path, "tasks").assign(value=123.0)
    arrow = to_arrow(forged, "tasks")
    pq.write_table(arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                                  b"metabench.sha256": b"0" * 64}), path)
    assert pq.read_table(path).num_rows == len(forged)  # readable: only the checksum says it is bad
    db.refresh()
    assert [p.path for p in db.problems()] == [path]
    assert not (db.tasks("omniglot-5w1s", "accuracy")["value"] == 123.0).any()


def _legacy_runs(path: Path, drop: str | None = None, **changes) -> None:
    """A runs.parquet as an older metabench wrote it: plain pyarrow, no whole-file checksum."""
    row = read_table(_one(Path(path).parents[1], "runs"), "runs").iloc[:1]
    table = to_arrow(row.assign(**changes, run_id=path.parent.name), "runs")
    if drop:
        table = table.drop_columns([drop])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_results_of_older_versions_are_read_or_rejected_clearly(good, tmp_path, capsys):
    root = _copy(good, tmp_path / "results")
    old_ok = root / "old-but-compatible" / "runs.parquet"
    _legacy_runs(old_ok, metabench_version="0.0.9")
    old_bad = root / "old-missing-column" / "runs.parquet"
    _legacy_runs(old_bad, drop="peak_memory_mb", metabench_version="0.0.1")
    wrong = root / "wrong-type" / "runs.parquet"
    wrong.parent.mkdir()
    pq.write_table(to_arrow(read_table(old_ok, "runs"), "runs").set_column(
        7, "seed", pa.array(["zero"])), wrong)

    assert cli.main(["results", "verify", "--results-dir", str(root), "--clean"]) == 1
    out = capsys.readouterr().out
    assert (f"BAD  {old_bad}: is not a runs table of this metabench version (it says metabench 0.0.1): "
            "column(s) peak_memory_mb missing") in out
    assert f"BAD  {wrong}: is not a runs table of this metabench version" in out and "seed is string" in out
    assert f"note {old_ok}: has no whole-file checksum (written by an older metabench)" in out
    db = ResultsDB(root)
    assert sorted(p.path for p in db.problems()) == sorted([old_bad, wrong])
    assert "old-but-compatible" in set(db.runs()["run_id"])  # read, its pages checked
    with pytest.raises(ResultsError, match="columns peak_memory_mb are missing"):
        read_table(old_bad, "runs")


@pytest.mark.parametrize("crafted", ["../../etc", "..", "/etc/passwd", "a/b", ".hidden", "a..b", "",
                                     "x" * 201, "run\x00id", "ru n", "ünïcode", None, 3])
def test_crafted_run_ids_are_refused(tmp_path, crafted):
    with pytest.raises(ConfigError, match="Invalid run id"):
        check_run_id(crafted)
    with pytest.raises(ConfigError):
        ResultsDB(tmp_path).run_dir(crafted)
    if isinstance(crafted, str):
        with pytest.raises(ResultsError, match="Invalid run id"):
            write_table([{"run_id": crafted, "step": 1, "wall_time_s": 0.0, "split": "train",
                          "metric": "loss", "value": 1.0}], tmp_path / "curves-00000001.parquet", "curves")
    assert list(tmp_path.iterdir()) == []


def test_crafted_run_id_in_a_results_file_is_flagged_and_names_are_sanitised(good, tmp_path):
    assert run_dir(tmp_path, "sinusoid-5shot--maml--smoke--seed0") == tmp_path / "sinusoid-5shot--maml--smoke--seed0"
    root = _copy(good, tmp_path / "results")
    evil = root / "evil" / "curves-00000001.parquet"
    evil.parent.mkdir()
    table = pa.table({"run_id": ["../../etc"], "step": [1], "wall_time_s": [0.0], "split": ["train"],
                      "metric": ["loss"], "value": [1.0]})
    pq.write_table(table.cast(verify.SCHEMAS["curves"]), evil)
    problem = verify.check_results_file(evil, "curves")
    assert problem.severity == "bad" and "Invalid run id '../../etc'" in problem.what
    assert evil in [p.path for p in ResultsDB(root).problems()]
    for stem in ["../../etc/passwd", "/abs/x", "..", "a b\nc", "ünï"]:
        name = safe_file_name(stem, "csv")
        assert "/" not in name and not name.startswith(".") and ".." not in name and name.endswith(".csv")
        assert (tmp_path / name).parent == tmp_path
    with pytest.raises(ConfigError):
        safe_file_name("x", "../sh")


# -- checkpoints -------------------------------------------------------------------------------


def _state(step: int) -> dict:
    import torch

    return {"step": step, "w": torch.full((3,), float(step))}


def test_corrupt_checkpoints_fall_back_and_are_removed(tmp_path):
    from metabench.engine.checkpoint import load_latest, save_checkpoint

    folder = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        save_checkpoint(folder, step, _state(step))
    assert sorted(p.name for p in folder.glob("ckpt-*.pt")) == ["ckpt-00000004.pt", "ckpt-00000006.pt"]
    newest = folder / "ckpt-00000006.pt"
    newest.write_bytes(newest.read_bytes()[:-10])  # truncated
    log: list[str] = []
    assert load_latest(folder, log=log.append)["step"] == 4
    assert log == ["checkpoint ckpt-00000006.pt skipped: its sha256 does not match (truncated or corrupted); "
                   "falling back to the previous one"]
    assert not newest.exists() and not newest.with_suffix(".sha256").exists()
    assert verify.check_checkpoint(folder / "ckpt-00000004.pt") is None

    save_checkpoint(folder, 6, _state(6))
    (folder / "ckpt-00000006.sha256").unlink()  # missing sidecar
    assert load_latest(folder, log=log.append)["step"] == 4 and "checksum file is missing" in log[-1]
    data = bytearray((folder / "ckpt-00000004.pt").read_bytes())
    data[len(data) // 2] ^= 1  # bit flip in the last one: nothing usable
    (folder / "ckpt-00000004.pt").write_bytes(bytes(data))
    assert verify.check_checkpoint(folder / "ckpt-00000004.pt").severity == "bad"
    assert load_latest(folder, log=log.append) is None
    assert list(folder.iterdir()) == []


class _Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_malicious_pickle_checkpoint_with_matching_checksum_is_not_executed(tmp_path):
    import torch

    from metabench.engine.checkpoint import load_latest, save_checkpoint

    folder, marker = tmp_path / "checkpoints", tmp_path / "pwned"
    save_checkpoint(folder, 2, _state(2))
    buf = io.BytesIO()
    torch.save({"step": 4, "payload": _Evil(marker)}, buf)
    evil = folder / "ckpt-00000004.pt"
    evil.write_bytes(buf.getvalue())
    evil.with_suffix(".sha256").write_text(hashlib.sha256(buf.getvalue()).hexdigest())
    assert verify.check_checkpoint(evil) is None  # the checksum matches: only weights_only protects
    log: list[str] = []
    assert load_latest(folder, log=log.append)["step"] == 2
    assert not marker.exists(), "the pickle's code ran"
    assert "does not load as plain tensors" in log[0]
    with pytest.raises(Exception):  # and the same bytes do execute without weights_only
        torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


# -- corrupt checkpoints on a real cell through the engine ----------------------------------------

CELL = dict(suite="sinusoid-5shot", algorithm="maml", seed=3, preset="smoke", device="cpu",
            overrides={"config": {"batching": "loop"}})


class _Killed(BaseException):
    """Stands in for SIGKILL inside the test process: not an Exception, so no 'failed' is written."""


def _run_cell(results: Path, *, die_at_checkpoint: int | None = None, monkeypatch=None) -> str | None:
    from metabench.engine import cell as cell_mod
    from metabench.spec import Cell

    if die_at_checkpoint:
        real, calls = cell_mod.save_checkpoint, []

        def save(*args, **kwargs):
            calls.append(1)
            if len(calls) == die_at_checkpoint:
                raise _Killed
            return real(*args, **kwargs)

        monkeypatch.setattr(cell_mod, "save_checkpoint", save)
    runner = cell_mod.CellRunner(Cell(**CELL), results)
    try:
        return runner.run()
    except _Killed:
        return None
    finally:
        if monkeypatch:
            monkeypatch.undo()


def _rows(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    def read(table):
        files = sorted(results.glob(GLOBS[table]))
        return pd.concat([read_table(f, table) for f in files], ignore_index=True)

    curves = read("curves").drop(columns="wall_time_s").sort_values(["step", "split", "metric"])
    tasks = read("tasks").sort_values(["metric", "task_id"])
    return curves.reset_index(drop=True), tasks.reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    results = tmp_path_factory.mktemp("reference")
    assert _run_cell(results) == "finished"
    return _rows(results)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x04
    p.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda ck: _truncate(ck[-1]),
    "bit-flipped": lambda ck: _flip(ck[-1]),
    "missing-sidecar": lambda ck: ck[-1].with_suffix(".sha256").unlink(),
    "both-corrupt": lambda ck: (_truncate(ck[-1]), _flip(ck[-2])),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_after_corrupt_checkpoint_finishes_with_identical_rows(tmp_path, reference, damage, monkeypatch):
    results = tmp_path / "results"
    assert _run_cell(results, die_at_checkpoint=3, monkeypatch=monkeypatch) is None  # dies saving step 6
    run = next(p for p in results.iterdir() if p.is_dir())
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    assert [p.name for p in ckpts] == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    DAMAGE[damage](ckpts)
    assert _run_cell(results) == "finished"
    log = (run / "events.log").read_text()
    if damage == "both-corrupt":
        assert log.count("skipped") == 2 and "restarting the cell from step 0" in log
    else:
        assert "ckpt-00000004.pt skipped" in log and "resumed from the checkpoint of step 2" in log
    curves, tasks = _rows(results)
    pd.testing.assert_frame_equal(curves, reference[0], check_exact=True)
    pd.testing.assert_frame_equal(tasks, reference[1], check_exact=True)
    row = read_table(run / "runs.parquet", "runs").iloc[0]
    assert row["status"] == "finished" and math.isfinite(row["peak_memory_mb"]) and row["peak_memory_mb"] > 10
    assert not [p for p in results.rglob("*") if fsutil.is_temporary(p)]
    assert verify.verify_results(results).ok


# -- resources: disk full, read-only folder --------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); the simulated variant runs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _runs_rows(good: Path) -> pd.DataFrame:
    return read_table(_one(good, "runs"), "runs")


def test_disk_full_on_a_tiny_tmpfs_keeps_earlier_results(good, tmp_path):
    with _tmpfs(tmp_path / "tiny", "size=64k") as tiny:
        first = write_table(_runs_rows(good), tiny / "r" / "runs.parquet", "runs")
        before = first.read_bytes()
        with open(tiny / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:  # fill the disk to the last block
                f.write(b"\0" * 1024)
        tasks = read_table(_one(good, "tasks"), "tasks").assign(run_id="r")
        with pytest.raises(ResultsError, match="No space left on device.*Earlier results are intact"):
            write_table(tasks, tiny / "r" / "tasks.parquet", "tasks")
        with pytest.raises(ResultsError, match="No space left on device"):
            write_table(_runs_rows(good).assign(status="failed"), first, "runs")  # a rewrite
        assert first.read_bytes() == before and verify.check_results_file(first, "runs") is None
        assert sorted(p.name for p in (tiny / "r").iterdir()) == ["runs.parquet"]  # no temporary


def test_disk_full_simulated_keeps_earlier_results(good, tmp_path, monkeypatch):
    path = write_table(_runs_rows(good), tmp_path / "runs.parquet", "runs")
    before = path.read_bytes()
    real_write = fsutil.os.fdopen

    class Full(io.BufferedWriter):
        pass

    def fdopen(fd, mode="r", *a, **k):
        f = real_write(fd, mode, *a, **k)
        f.write = lambda b: (_ for _ in ()).throw(OSError(28, "No space left on device"))
        return f

    monkeypatch.setattr(fsutil.os, "fdopen", fdopen)
    with pytest.raises(ResultsError, match="No space left on device"):
        write_table(_runs_rows(good), path, "runs")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["runs.parquet"]


def test_read_only_results_folder_gives_one_clear_error(good, tmp_path, capsys):
    src = _copy(good, tmp_path / "src")
    with _tmpfs(tmp_path / "ro", "size=4m") as ro:
        shutil.copytree(src, ro / "results")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        before = {p: p.read_bytes() for p in (ro / "results").rglob("*.parquet")}
        with pytest.raises(ResultsError, match="Read-only file system.*Earlier results are intact"):
            write_table(_runs_rows(good), _one(ro / "results", "runs"), "runs")
        rc = cli.main(["run", "--suites", "sinusoid-5shot", "--algorithms", "maml", "--preset", "smoke",
                       "--results-dir", str(ro / "results"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("error:") == 1 and "cannot write to the results folder" in err
        assert "Traceback" not in err
        assert {p: p.read_bytes() for p in (ro / "results").rglob("*.parquet")} == before
        assert ResultsDB(ro / "results").leaderboard("omniglot-5w1s")["n_seeds"].tolist() == [2, 2]


# -- downloads: archives with escaping members ------------------------------------------------------


@pytest.mark.parametrize("member", ["../escape.txt", "/tmp/metabench-abs-escape.txt", "a/../../escape.txt",
                                    "C:/escape.txt", "..\\escape.txt"])
def test_crafted_zip_cannot_write_outside(tmp_path, member):
    from metabench.datafiles import safe_extract

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ok/a.txt", b"a")
        z.writestr(member, b"evil")
    with pytest.raises(MetabenchError, match="Refusing to extract"):
        safe_extract(archive, tmp_path / "dest" / "inner")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "dest" / "escape.txt").exists()
    assert not Path("/tmp/metabench-abs-escape.txt").exists()
    assert not list((tmp_path / "dest").rglob("a.txt"))  # checked before anything is written


def test_tar_archives_are_refused_not_extracted(tmp_path):
    # metabench only ever extracts zips (Omniglot); a tar (with a '../' member here) is refused as
    # "not a readable zip" rather than handed to tarfile.
    from metabench.datafiles import safe_extract

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 4
        t.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(MetabenchError, match="not a readable zip"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def test_verify_leaves_every_file_untouched(good):
    """verify only reads: every file under the folder (its leftover temporary included) has the
    same bytes and modification time after it ran, and nothing was added or removed."""
    import hashlib

    def snapshot() -> dict[str, tuple[str, int]]:
        return {str(p.relative_to(good)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
                for p in sorted(good.rglob("*")) if p.is_file()}

    before = snapshot()
    report = verify.verify_results(good)
    assert snapshot() == before
    assert [p.path.name for p in report.bad] == [".tasks.parquet.abc123.tmp"]
    assert json.loads(json.dumps(report.checked)) == {"runs": 11, "curves": 21, "tasks": 10, "checkpoints": 0}


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    import os

    from metabench.engine.jobstore import remove_stale_temporaries

    dead = _dead_pid()
    (tmp_path / "jobs" / "j1").mkdir(parents=True)
    (tmp_path / "r1" / "checkpoints").mkdir(parents=True)
    files = {
        "job": tmp_path / "jobs" / "j1" / f".status.json.{dead}.abc.tmp",
        "finished cell": tmp_path / "r1" / f".progress.json.{dead}.abc.tmp",
        "checkpoint": tmp_path / "r1" / "checkpoints" / f".ckpt-00000002.pt.{dead}.abc.tmp",
        "live": tmp_path / "r1" / f".runs.parquet.{os.getpid()}.abc.tmp",
    }
    for f in files.values():
        f.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path, ["r1"]) == 3
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [files["live"]]
    report = verify.verify_results(tmp_path)
    assert report.ok and "a write in progress" in report.problems[0].what  # live: a note, not bad


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
