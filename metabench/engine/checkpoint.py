"""Checkpoints: written atomically with a sha256 beside them; the last two are kept.

Loading verifies the checksum and falls back to the previous checkpoint if the newest is
corrupt (truncated, bit-flipped, or missing its checksum file); a checkpoint that fails is
deleted, so it can never shadow newer good ones. Checkpoints load with `weights_only=True`, so
nothing in the results folder can run code: a pickle that would call a function is refused even
when its checksum matches.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import re
from pathlib import Path
from typing import Any, Callable

import torch

from metabench.fsutil import atomic_write_bytes, remove_temporaries

KEEP = 2
_NAME = re.compile(r"ckpt-(\d{8})\.pt$")


def _ckpts(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.search(p.name))]
    return sorted(found)


def save_checkpoint(folder: Path, step: int, state: dict[str, Any]) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    path = Path(folder) / f"ckpt-{step:08d}.pt"
    # The checksum file is written first: a checkpoint without a matching checksum is ignored.
    atomic_write_bytes(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())
    atomic_write_bytes(path, data, fault_point="checkpoint")
    for _, old in _ckpts(Path(folder))[:-KEEP]:
        old.unlink(missing_ok=True)
        old.with_suffix(".sha256").unlink(missing_ok=True)
    return path


def _why_bad(path: Path, data: bytes) -> str | None:
    try:
        expected = path.with_suffix(".sha256").read_text().strip()
    except FileNotFoundError:
        return "its checksum file is missing"
    except OSError as exc:
        return f"its checksum file cannot be read ({exc.strerror or exc})"
    if hashlib.sha256(data).hexdigest() != expected:
        return "its sha256 does not match (truncated or corrupted)"
    return None


def load_latest(folder: Path, map_location: str | torch.device = "cpu",
                log: Callable[[str], None] = lambda message: None) -> dict[str, Any] | None:
    """The newest checkpoint whose checksum matches and that loads, or None.

    Each checkpoint skipped is reported through ``log`` (one sentence) and deleted along with
    its checksum file; so are checksum files whose checkpoint is gone and temporary files of a
    write that was killed (the caller owns ``folder``: no other process writes there).
    """
    folder = Path(folder)
    remove_temporaries(folder, only_stale=False)
    for sidecar in folder.glob("ckpt-*.sha256") if folder.is_dir() else []:
        if not sidecar.with_suffix(".pt").exists():
            sidecar.unlink(missing_ok=True)  # a save or clean-up killed between its two files
    for _, path in reversed(_ckpts(folder)):
        try:
            data = path.read_bytes()
        except OSError as exc:  # unreadable (permissions, I/O error): skip it but keep it
            log(f"checkpoint {path.name} skipped: it cannot be read ({exc.strerror or exc})")
            continue
        reason = _why_bad(path, data)
        if reason is None:
            try:
                return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
            except Exception as exc:  # noqa: BLE001 - checksum-valid but not a plain-tensors state
                reason = f"it does not load as plain tensors ({type(exc).__name__}: {str(exc)[:200]})"
        log(f"checkpoint {path.name} skipped: {reason}; falling back to the previous one")
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
            path.with_suffix(".sha256").unlink(missing_ok=True)
    return None
