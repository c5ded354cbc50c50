"""A fingerprint of a suite's fixed test tasks: proof that "task 17" means the same task everywhere.

Runs are paired task by task (same ``task_id`` = same task). That is only honest across machines,
metabench versions and datasets if the fixed test tasks really are identical, so every run stores
``fingerprint(suite, n)``: a sha256 over the tasks' actual inputs and targets (issue 21).

How it is computed (``SCHEME`` names this recipe; a change of recipe changes the prefix):

* each fixed test task is hashed on its own, in task order, so the fingerprint does not depend
  on the batch size the tasks were drawn with;
* a task's tensors (support/query inputs and targets for few-shot suites; the task parameters
  for meta-RL suites) are hashed by field name with their shape and, for floating point values,
  rounded to 1e-6 first: a one-pixel change (1/255) or any real change of a task shows, while the
  last-bit differences one CPU's vectorised ``sin`` may have from another's do not;
* integer tensors and the JSON of each task's descriptors are hashed exactly;
* the suite id, version and the number of tasks come first.

``cached_fingerprint`` stores the value once per (suite, version, number of tasks) in the cache
folder (``metabench.data.cache_dir``), so only the first run of a suite on a machine pays for it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np
import torch

SCHEME = "tasks-sha256-v1"
#: Floating-point task values are rounded to this many decimals before hashing.
DECIMALS = 6


def _hash_tensor(h: "hashlib._Hash", name: str, t: torch.Tensor) -> None:
    t = t.detach().to("cpu")
    h.update(f"{name}:{tuple(t.shape)}:".encode())
    if t.is_floating_point():
        values = np.round(t.to(torch.float64).numpy(), DECIMALS)
        h.update(b"f")
        h.update(np.ascontiguousarray(np.rint(values * 10**DECIMALS).astype(np.int64)).tobytes())
    else:
        h.update(b"i")
        h.update(np.ascontiguousarray(t.to(torch.int64).numpy()).tobytes())


def _per_task_tensors(batch: Any) -> dict[str, torch.Tensor]:
    """Every tensor of a batch whose first dimension is the task: few-shot fields or RL params."""
    if hasattr(batch, "params"):   # RLTaskBatch
        return {f"params.{k}": v for k, v in batch.params.items()}
    out = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        if isinstance(value, torch.Tensor) and f.name != "classes":   # classes: a label map, not data
            out[f.name] = value
    return out


def task_digests(batch: Any) -> list[str]:
    """One sha256 hex digest per task of ``batch`` (a TaskBatch or an RLTaskBatch)."""
    tensors = _per_task_tensors(batch)
    digests = []
    for i in range(batch.n_tasks):
        h = hashlib.sha256()
        for name in sorted(tensors):
            _hash_tensor(h, name, tensors[name][i])
        if batch.descriptors:
            h.update(json.dumps(batch.descriptors[i], sort_keys=True, default=str).encode())
        digests.append(h.hexdigest())
    return digests


def fingerprint(suite: Any, n: int | None = None, batch_size: int = 50) -> str:
    """``'tasks-sha256-v1:<hex>'`` over the first ``n`` fixed test tasks of a prepared suite
    (default: all of them)."""
    n = suite.n_test_tasks if n is None else n
    h = hashlib.sha256(f"{SCHEME}|{suite.id}|v{suite.version}|{n}".encode())
    for batch in suite.fixed_tasks("test", n, batch_size=batch_size):
        for d in task_digests(batch):
            h.update(bytes.fromhex(d))
    return f"{SCHEME}:{h.hexdigest()}"


def cached_fingerprint(suite: Any, n: int | None = None) -> str:
    """``fingerprint`` computed once per (suite id, version, n) on this machine and cached."""
    from metabench import fsutil
    from metabench.data import cache_dir

    n = suite.n_test_tasks if n is None else n
    path = cache_dir() / "fingerprints" / f"{suite.id}-v{suite.version}-n{n}.txt"
    try:
        text = path.read_text().strip()
        if text.startswith(SCHEME + ":"):
            return text
    except OSError:
        pass
    value = fingerprint(suite, n)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write_bytes(path, (value + "\n").encode())
    except OSError:
        pass   # a read-only cache only costs recomputing it next time
    return value
