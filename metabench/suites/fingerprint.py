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

The engine hashes the test tasks while it evaluates them (``Fingerprinter``), so a run pays only
for the hashing, never for drawing the tasks a second time.
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


class Fingerprinter:
    """The fingerprint built batch by batch, e.g. while the engine evaluates the test tasks:
    ``fp = Fingerprinter(suite, n); fp.add(batch) ...; fp.value()``. Batches must arrive in task
    order (as ``suite.fixed_tasks`` yields them); ``value()`` checks that exactly tasks 0..n-1
    were added."""

    def __init__(self, suite: Any, n: int):
        self.n, self._next = n, 0
        self._h = hashlib.sha256(f"{SCHEME}|{suite.id}|v{suite.version}|{n}".encode())

    def add(self, batch: Any) -> None:
        ids = batch.task_ids or []
        if ids != list(range(self._next, self._next + batch.n_tasks)):
            raise ValueError(f"fixed tasks must be added in order: expected {self._next}.., got {ids[:3]}..")
        for d in task_digests(batch):
            self._h.update(bytes.fromhex(d))
        self._next += batch.n_tasks

    def value(self) -> str:
        if self._next != self.n:
            raise ValueError(f"the fingerprint covers {self.n} tasks, {self._next} were added")
        return f"{SCHEME}:{self._h.hexdigest()}"


def fingerprint(suite: Any, n: int | None = None, batch_size: int = 50) -> str:
    """``'tasks-sha256-v1:<hex>'`` over the first ``n`` fixed test tasks of a prepared suite
    (default: all of them)."""
    n = suite.n_test_tasks if n is None else n
    fp = Fingerprinter(suite, n)
    for batch in suite.fixed_tasks("test", n, batch_size=batch_size):
        fp.add(batch)
    return fp.value()
