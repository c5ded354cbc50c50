"""Checkpoints: written atomically with a sha256 beside them; the last two are kept.

Loading verifies the checksum and falls back to the previous checkpoint if the newest is
corrupt; checkpoints load with `weights_only=True`, so nothing in the results folder can run code.
"""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import torch

from metabench.fsutil import atomic_write_bytes

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
    atomic_write_bytes(path, data)
    for _, old in _ckpts(Path(folder))[:-KEEP]:
        old.unlink(missing_ok=True)
        old.with_suffix(".sha256").unlink(missing_ok=True)
    return path


def load_latest(folder: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The newest checkpoint whose checksum matches, or None."""
    for _, path in reversed(_ckpts(Path(folder))):
        try:
            data = path.read_bytes()
            expected = path.with_suffix(".sha256").read_text().strip()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() != expected:
            continue
        try:
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
        except Exception:  # a checksum-valid file that torch cannot read: treat as corrupt
            continue
    return None
