"""The shared pieces under the algorithms: seeds of random streams (metabench.seeding)."""
from __future__ import annotations

from metabench.seeding import stream, task_stream


def test_streams_are_the_integers_every_stored_run_was_seeded_with():
    # the formulas written out before the helper existed (seed * 7919 + k, ...): changing them
    # would change every number of the learners that draw from these streams
    assert [stream(s, 1) for s in (0, 1, 3)] == [1, 7_920, 23_758]          # reptile, mann, rl2
    assert stream(5, 2) == 39_597 and stream(2, 3) == 15_841                 # maml-rl, mql
    assert stream(7, 3, stride=104_729) == 733_106                           # metasgd's alpha
    assert task_stream(4, 17) == 4_000_029                                   # reptile's test mini-batches
    assert task_stream(10 + 1, 12_345) == 1_000_003 * 11 + 12_345            # mann's test sequences
