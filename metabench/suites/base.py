"""The Suite contract: a versioned task distribution with fixed validation and test tasks.

A suite hands out *whole batches* of tasks as tensors on the device (`sample`), and a fixed,
seeded list of test tasks that is the same for every algorithm (`fixed_tasks`), so that every
comparison between algorithms is paired task by task.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Iterator

import torch

from metabench.errors import ConfigError

KINDS = ("classification", "regression", "rl-discrete", "rl-continuous")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TaskBatch:
    """A batch of few-shot tasks.

    Classification: `support_x` (T, n_way*n_shot, C, H, W), `support_y` (T, n_way*n_shot) int64
    in [0, n_way); queries likewise.  Both sets are laid out shot-major: element j has label
    j % n_way, so the query set splits into `n_query` contiguous groups holding one example of
    each class (`query_groups`).  Regression: x and y are (T, K, 1) floats, `n_way` is 0.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    n_way: int
    query_groups: int = 1
    descriptors: list[dict[str, Any]] = field(default_factory=list)
    task_ids: list[int] | None = None
    classes: torch.Tensor | None = None
    """(T, n_way) int64: which class of the split each label stands for (label c of task t is
    class `classes[t, c]` of the split), for baselines that pre-train one classifier over all of a
    split's classes (`finetune`).  None when the suite does not say (`Suite.class_ids`)."""

    @property
    def n_tasks(self) -> int:
        return self.support_x.shape[0]

    def to(self, device: torch.device | str) -> "TaskBatch":
        return replace(self, support_x=self.support_x.to(device), support_y=self.support_y.to(device),
                       query_x=self.query_x.to(device), query_y=self.query_y.to(device),
                       classes=None if self.classes is None else self.classes.to(device))

    @staticmethod
    def cat(batches: list["TaskBatch"]) -> "TaskBatch":
        b0 = batches[0]
        ids = [i for b in batches for i in (b.task_ids or [])]
        return replace(b0, support_x=torch.cat([b.support_x for b in batches]),
                       support_y=torch.cat([b.support_y for b in batches]),
                       query_x=torch.cat([b.query_x for b in batches]),
                       query_y=torch.cat([b.query_y for b in batches]),
                       descriptors=[d for b in batches for d in b.descriptors],
                       task_ids=ids or None,
                       classes=None if any(b.classes is None for b in batches)
                       else torch.cat([b.classes for b in batches]))


class Suite:
    """Base class of every suite. Subclasses set the class attributes and implement `_sample`."""

    id: ClassVar[str]
    version: ClassVar[int]
    kind: ClassVar[str]
    primary_metric: ClassVar[str]
    split_scheme: ClassVar[str] = "-"
    n_way: int = 0
    n_shot: int = 0
    n_query_test: int = 15        # queries per class (classification) or points (regression) at test
    n_test_tasks: int = 600
    n_val_tasks: int = 600
    needs_data: ClassVar[str | None] = None   # dataset name under the data root, if any
    input_shape: tuple[int, ...] = ()         # one input, e.g. (C, H, W) = (1, 28, 28) for images
    class_ids: ClassVar[bool] = False         # batches carry `classes` and `n_classes` works
    #: Test-time adaptation budgets (inner steps) at which every gradient-based learner also reports
    #: its metric as `metric@k`, whatever its own `test_inner_steps`, so that rows adapted with
    #: different budgets can be compared at one budget (issue 22 section 3; `Algorithm.report_steps`).
    common_budgets: ClassVar[tuple[int, ...]] = ()

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self._prepared = False

    # --- data ---------------------------------------------------------------------------------
    def prepare(self, data_root=None, device: torch.device | str = "cpu", *,
                allow_download: bool = True, progress: bool = True) -> "Suite":
        """Load whatever data the suite needs onto `device`. Idempotent."""
        self.device = torch.device(device)
        self._prepared = True
        return self

    def unavailable(self) -> str | None:
        """None if the suite can run in this installation, else one sentence saying how to make it
        run (e.g. an optional extra to install). The engine skips such suites with that sentence."""
        return None

    # --- sampling -----------------------------------------------------------------------------
    def sample(self, split: str, n_tasks: int, generator: torch.Generator, *, n_way: int | None = None,
               n_shot: int | None = None, n_query: int | None = None) -> TaskBatch:
        """`n_tasks` random tasks from `split`, drawn with `generator` (a CPU generator)."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        if n_tasks < 1:
            raise ConfigError(f"n_tasks must be at least 1, got {n_tasks}")
        if not self._prepared:
            raise RuntimeError(f"suite {self.id} was not prepared; call prepare() first")
        return self._sample(split, n_tasks, generator, n_way=n_way or self.n_way,
                            n_shot=n_shot or self.n_shot, n_query=n_query or self.n_query_test)

    def _sample(self, split: str, n_tasks: int, generator: torch.Generator, *, n_way: int,
                n_shot: int, n_query: int) -> TaskBatch:
        raise NotImplementedError

    def n_classes(self, split: str) -> int:
        """How many classes `split` holds (suites with `class_ids`; after `prepare`)."""
        raise NotImplementedError(f"suite {self.id} does not number its classes")

    def task_seed(self, split: str, index: int) -> int:
        """The seed of fixed task `index` of `split`: stable across runs, machines and versions
        of Python (crc32, not hash())."""
        base = zlib.crc32(f"{self.id}/v{self.version}/{split}".encode())
        return (base * 1_000_003 + index) % (2**63 - 1)

    def fixed_tasks(self, split: str = "test", n: int | None = None, batch_size: int = 50,
                    start: int = 0) -> Iterator[TaskBatch]:
        """The suite's fixed tasks of `split` (the same for every algorithm), in batches.

        Task i is drawn from its own generator seeded by `task_seed(split, i)`, so task i is the
        same whatever the batch size and however many tasks are asked for.
        """
        total = n if n is not None else (self.n_test_tasks if split == "test" else self.n_val_tasks)
        for lo in range(start, total, batch_size):
            parts = []
            for i in range(lo, min(lo + batch_size, total)):
                g = torch.Generator().manual_seed(self.task_seed(split, i))
                parts.append(replace(self.sample(split, 1, g), task_ids=[i]))
            yield TaskBatch.cat(parts)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "kind": self.kind,
                "primary_metric": self.primary_metric, "split_scheme": self.split_scheme,
                "n_way": self.n_way, "n_shot": self.n_shot, "n_query_test": self.n_query_test,
                "n_test_tasks": self.n_test_tasks, "needs_data": self.needs_data}
