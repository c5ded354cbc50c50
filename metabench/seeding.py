"""The seeds of the random streams derived from a run's seed or a test task's id, in one place.

A learner owns a few generators besides its weight initialisation (training-batch shuffles,
exploration noise, the initial draw of a learned step size), and some evaluations draw per test
task.  Each such generator is seeded by one affine formula, `base * stride + k`: `k` tells the
streams of one base apart and the prime `stride` keeps the streams of neighbouring bases apart.
These integers are part of every stored result, so the formulas never change (tests pin values).
"""
from __future__ import annotations

#: The 1,000th prime: the stride of a run's own streams, `stream(seed, k)`.
RUN_STRIDE = 7_919
#: A prime above a million: the stride of per-task streams, `task_stream(task_id, k)`.
TASK_STRIDE = 1_000_003


def stream(seed: int, k: int, stride: int = RUN_STRIDE) -> int:
    """The seed of stream `k` of the run seeded `seed`: `seed * stride + k`.

    In use: k = 1 the training draws of reptile, mann and rl2; k = 2 maml-rl's; k = 3 mql's.
    Meta-SGD's initial step sizes use k = 3 with stride 104,729 (the 10,000th prime), as they
    did before this helper existed."""
    return seed * stride + k


def task_stream(task_id: int, k: int) -> int:
    """The seed of stream `k` of test task `task_id`: `task_id * TASK_STRIDE + k`.  Seeded by the
    task alone, its draws do not depend on the run's seed or on the other tasks of its batch."""
    return stream(task_id, k, TASK_STRIDE)
