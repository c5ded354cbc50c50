"""Conformance checkers, one per contract (in the spirit of Gymnasium's `check_env`).

`check_suite(suite)` and `check_algorithm(name, suite)` raise AssertionError with a message that
names the broken rule.  The tests parametrise them over every registered name, so registering a
new suite or algorithm adds its tests.
"""
from __future__ import annotations

import math

import torch

from metabench.algorithms import ALGORITHMS
from metabench.suites.base import KINDS, Suite, TaskBatch


def _check_batch(suite: Suite, b: TaskBatch, n_tasks: int, n_way: int, n_shot: int, n_query: int) -> None:
    assert b.n_tasks == n_tasks, f"{suite.id}: asked for {n_tasks} tasks, got {b.n_tasks}"
    for name in ("support_x", "support_y", "query_x", "query_y"):
        t = getattr(b, name)
        assert t.device.type == suite.device.type, f"{suite.id}: {name} is on {t.device}, not {suite.device}"
    if suite.kind == "classification":
        assert b.n_way == n_way
        assert b.support_x.shape[:2] == (n_tasks, n_way * n_shot), f"{suite.id}: support_x {tuple(b.support_x.shape)}"
        assert b.query_x.shape[:2] == (n_tasks, n_way * n_query), f"{suite.id}: query_x {tuple(b.query_x.shape)}"
        assert b.support_y.dtype == torch.int64 and b.query_y.dtype == torch.int64
        for y, per in ((b.support_y, n_shot), (b.query_y, n_query)):
            assert int(y.min()) >= 0 and int(y.max()) < n_way, f"{suite.id}: labels outside [0, {n_way})"
            counts = torch.stack([torch.bincount(row, minlength=n_way) for row in y])
            assert bool((counts == per).all()), f"{suite.id}: classes are not balanced ({per} per class)"
        # Shot-major layout: query group g holds one example of each class.
        assert bool((b.query_y[:, :n_way] == torch.arange(n_way, device=b.query_y.device)).all())
        assert b.query_groups == n_query
        # Support and query never share an image (compare every pair of images in each task).
        s = b.support_x.flatten(2)
        q = b.query_x.flatten(2)
        same = (s[:, :, None, :] == q[:, None, :, :]).all(-1)
        assert not bool(same.any()), f"{suite.id}: a query image also appears in the support set"
        assert b.support_x.dtype.is_floating_point and float(b.support_x.min()) >= 0 and float(b.support_x.max()) <= 1
    else:
        assert b.support_x.shape == (n_tasks, n_shot, 1) and b.query_x.shape == (n_tasks, n_query, 1)
        assert b.support_y.shape == b.support_x.shape and b.query_y.shape == b.query_x.shape
    for t in (b.support_x, b.query_x):
        assert bool(torch.isfinite(t.float()).all()), f"{suite.id}: non-finite inputs"
    assert len(b.descriptors) == n_tasks, f"{suite.id}: need one descriptor dict per task"
    if suite.class_ids:
        assert b.classes is not None and b.classes.shape == (n_tasks, n_way), f"{suite.id}: classes must be (T, n_way)"
        assert all(len(set(row.tolist())) == n_way for row in b.classes), f"{suite.id}: a task repeats a class"


def check_suite(suite: Suite) -> None:
    """Shapes, label ranges, disjoint support/query, reproducibility and fixed test tasks."""
    assert suite.kind in KINDS, f"{suite.id}: unknown kind {suite.kind!r}"
    assert isinstance(suite.version, int) and suite.version >= 1
    n_way, n_shot, n_query = suite.n_way, suite.n_shot, 3
    b1 = suite.sample("train", 4, torch.Generator().manual_seed(1), n_query=n_query)
    _check_batch(suite, b1, 4, n_way, n_shot, n_query)
    b2 = suite.sample("train", 4, torch.Generator().manual_seed(1), n_query=n_query)
    assert torch.equal(b1.support_x, b2.support_x) and torch.equal(b1.query_x, b2.query_x), \
        f"{suite.id}: the same generator seed gave different tasks"
    b3 = suite.sample("train", 4, torch.Generator().manual_seed(2), n_query=n_query)
    assert not torch.equal(b1.support_x, b3.support_x), f"{suite.id}: different seeds gave the same tasks"
    # Fixed test tasks: task i is the same whatever the batch size.
    a = TaskBatch.cat(list(suite.fixed_tasks("test", 6, batch_size=4)))
    b = TaskBatch.cat(list(suite.fixed_tasks("test", 6, batch_size=6)))
    assert a.task_ids == list(range(6)) and b.task_ids == list(range(6))
    assert torch.equal(a.query_x, b.query_x), f"{suite.id}: fixed test tasks depend on the batch size"
    _check_batch(suite, a, 6, n_way, n_shot, suite.n_query_test)
    c = next(suite.fixed_tasks("test", 3, batch_size=3, start=1))
    assert torch.equal(c.support_x[0], a.support_x[1]) and c.task_ids == [1, 2]
    v = next(suite.fixed_tasks("val", 2, batch_size=2))
    assert not torch.equal(v.support_x, a.support_x[:2]), f"{suite.id}: val and test tasks coincide"


def _snapshot(algo) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in algo.meta_parameters().items()}


def check_algorithm(name: str, suite: Suite, preset: str = "smoke", seed: int = 0) -> None:
    """Training changes meta-parameters; evaluate never does; state round-trips exactly."""
    cls = ALGORITHMS.get(name)
    assert cls.family and cls.supports, f"{name}: set family and supports"
    ok, _ = cls.fits(suite)
    assert ok, f"{name} does not fit {suite.id}"
    algo = cls(suite, cls.preset_config(preset, suite), suite.device, seed)
    req = algo.train_request()
    gen = torch.Generator().manual_seed(0)
    batch = suite.sample("train", req.n_tasks, gen, n_way=req.n_way, n_shot=req.n_shot, n_query=req.n_query)
    before = _snapshot(algo)
    if cls.needs_training:
        metrics = algo.meta_train_step(batch)
        assert metrics and all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), \
            f"{name}: meta_train_step must return finite floats, got {metrics}"
        after = _snapshot(algo)
        assert any(not torch.equal(before[k], after[k]) for k in before), f"{name}: meta_train_step changed nothing"
    else:
        after = before   # nothing to learn: the engine runs zero training steps
    test = next(suite.fixed_tasks("test", 3, batch_size=3))
    state = {k: v for k, v in algo.state_dict().items()}
    out1 = algo.evaluate(test)
    assert suite.primary_metric in out1, f"{name}: evaluate must report {suite.primary_metric!r}"
    for k, v in out1.items():
        assert v.shape == (3,), f"{name}: metric {k} has shape {tuple(v.shape)}, expected (n_tasks,)"
        assert bool(torch.isfinite(v).all()), f"{name}: metric {k} is not finite"
    for k, v in _snapshot(algo).items():
        assert torch.equal(v, after[k]), f"{name}: evaluate changed meta-parameter {k}"
    out2 = algo.evaluate(test)
    for k in out1:
        assert torch.allclose(out1[k], out2[k]), f"{name}: evaluate is not repeatable ({k})"
    clone = cls(suite, algo.config, suite.device, seed + 1)
    clone.load_state_dict(state)
    out3 = clone.evaluate(test)
    for k in out1:
        assert torch.allclose(out1[k], out3[k], atol=1e-6), f"{name}: state_dict round trip changed {k}"
    proto = algo.protocol
    assert set(proto) >= {"transductive", "query_batch"}
