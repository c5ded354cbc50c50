"""Small file helpers shared by every layer: atomic writes (a file is whole or absent), durable
renames, clean-up of what a killed writer leaves behind, and the fault-injection hook.

Temporary files are named ``.<target name>.<pid>.<random>.tmp`` beside their target: hidden (no
results glob matches them), and carrying the writer's process id so that a leftover of a writer
that is no longer alive can be told apart from a write in progress.

Fault injection (for the crash tests only): ``METABENCH_FAULT=<point>:<n>`` makes the process
``os._exit(137)`` -- as abrupt as SIGKILL: no cleanup, no flush -- the n-th time (1-based) it
reaches ``fault(<point>)``. Points: ``write`` (half-way through writing any temporary file),
``parquet`` (half-way through a results file), ``checkpoint`` (half-way through a checkpoint),
``rename`` (temporary file complete, not yet renamed). Unset, the hook costs one comparison.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

_FAULT_POINT, _, _FAULT_N = (os.environ.get("METABENCH_FAULT") or "").partition(":")
_fault_counts: dict[str, int] = {}


def fault(point: str) -> None:
    """Die here (exit status 137, no cleanup) if METABENCH_FAULT names this point and count."""
    if point != _FAULT_POINT:
        return
    _fault_counts[point] = _fault_counts.get(point, 0) + 1
    if str(_fault_counts[point]) == _FAULT_N:
        os._exit(137)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write `path` through: a temporary file beside it, fsynced and renamed over
    `path` when the block ends. Any error (disk full, permission denied...) removes the temporary
    file and leaves an existing `path` untouched. For a writer that streams (``torch.save``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        fault("rename")
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: Path, data: bytes, *, fault_point: str | None = None) -> None:
    """Write `data` to `path` through ``atomic_file``: whole or not at all.

    `fault_point` names an extra fault-injection point (see the module doc).
    """
    with atomic_file(path) as f:
        half = len(data) // 2
        f.write(data[:half])
        if _FAULT_POINT:
            f.flush()  # so a fault leaves a real half-written file behind
            fault("write")
            if fault_point:
                fault(fault_point)
        f.write(data[half:])


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, default=str).encode())


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def is_temporary(path: Path) -> bool:
    """Whether `path` is named like a temporary file of ``atomic_write_bytes``."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


def _writer_alive(path: Path) -> bool:
    """Whether the process that created temporary file `path` may still be writing it."""
    parts = Path(path).name.split(".")
    pid = parts[-3] if len(parts) >= 4 else ""
    if not pid.isdigit():
        return False  # an older name without a pid: nothing can tell, treat as stale
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return int(pid) != 0


def remove_temporaries(folder: Path, *, only_stale: bool = True) -> list[Path]:
    """Delete temporary files directly in `folder` that a killed writer left; returns them.

    With ``only_stale`` (the default) a file whose writer process is still alive on this machine
    is kept; pass False only when no other process can be writing in `folder`.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if is_temporary(p) and p.is_file() and not (only_stale and _writer_alive(p)):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed
