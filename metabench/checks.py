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


def _check_batch(suite: Suite, b: TaskBatch, n_tasks: int, n_way: int, n_shot: int, n_query: int,
                 sampled: bool = False) -> None:
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
    if suite.class_ids and (b.classes is not None or sampled):   # fixed test tasks may omit them
        assert b.classes is not None and b.classes.shape == (n_tasks, n_way), f"{suite.id}: classes must be (T, n_way)"
        assert all(len(set(row.tolist())) == n_way for row in b.classes), f"{suite.id}: a task repeats a class"


def check_suite(suite: Suite) -> None:
    """Shapes, label ranges, disjoint support/query, reproducibility and fixed test tasks."""
    assert suite.kind in KINDS, f"{suite.id}: unknown kind {suite.kind!r}"
    if suite.kind.startswith("rl-"):
        return check_rl_suite(suite)
    assert isinstance(suite.version, int) and suite.version >= 1
    n_way, n_shot, n_query = suite.n_way, suite.n_shot, 3
    b1 = suite.sample("train", 4, torch.Generator().manual_seed(1), n_query=n_query)
    _check_batch(suite, b1, 4, n_way, n_shot, n_query, sampled=True)
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


def make_algorithm(name: str, suite: Suite, preset: str = "smoke", seed: int = 0):
    """An instance of the algorithm ``name`` (a registered name or import path) on a prepared
    suite, configured by ``preset``."""
    cls = ALGORITHMS.get(name)
    assert cls.family and cls.supports, f"{name}: set family and supports"
    ok, _ = cls.fits(suite)
    assert ok, f"{name} does not fit {suite.id}"
    return cls(suite, cls.preset_config(preset, suite), suite.device, seed)


def check_train_step(name: str, algo, suite: Suite) -> dict[str, torch.Tensor]:
    """One meta-training step returns finite float metrics and changes a meta-parameter; returns
    the meta-parameters after it (before it, for algorithms that do not meta-train)."""
    before = _snapshot(algo)
    if not type(algo).needs_training:
        return before   # nothing to learn: the engine runs zero training steps
    req = algo.train_request()
    gen = torch.Generator().manual_seed(0)
    batch = suite.sample("train", req.n_tasks, gen, n_way=req.n_way, n_shot=req.n_shot, n_query=req.n_query)
    metrics = algo.meta_train_step(batch)
    assert isinstance(metrics, dict) and metrics and all(
        isinstance(k, str) and isinstance(v, float) and math.isfinite(v) for k, v in metrics.items()), \
        f"{name}: meta_train_step must return a non-empty dict of finite Python floats, got {metrics!r}"
    after = _snapshot(algo)
    assert any(not torch.equal(before[k], after[k]) for k in before), \
        f"{name}: meta_train_step changed no meta-parameter (meta_parameters() must return what it learns)"
    return after


def check_evaluate(name: str, algo, suite: Suite, params: dict[str, torch.Tensor], n: int = 3):
    """``evaluate`` reports the primary metric per task, finite, leaves every meta-parameter as it
    was and is repeatable. Returns (the state before evaluating, the test batch, the metrics)."""
    test = next(suite.fixed_tasks("test", n, batch_size=n))
    state = {k: v for k, v in algo.state_dict().items()}
    out1 = algo.evaluate(test)
    assert isinstance(out1, dict) and suite.primary_metric in out1, \
        f"{name}: evaluate must report {suite.primary_metric!r} (a dict metric -> tensor of shape (n_tasks,))"
    for k, v in out1.items():
        assert isinstance(v, torch.Tensor) and v.shape == (n,), \
            f"{name}: metric {k} has shape {tuple(getattr(v, 'shape', ()))}, expected (n_tasks,) = ({n},)"
        assert bool(torch.isfinite(v).all()), f"{name}: metric {k} is not finite"
    now = _snapshot(algo)
    assert set(now) == set(params), f"{name}: evaluate changed the set of meta-parameters"
    for k, v in now.items():
        assert torch.equal(v, params[k]), f"{name}: evaluate changed meta-parameter {k}; it must adapt a copy"
    out2 = algo.evaluate(test)
    for k in out1:
        assert torch.allclose(out1[k], out2[k]), f"{name}: evaluate is not repeatable ({k} changed between two calls)"
    return state, test, out1


def check_state_round_trip(name: str, algo, state: dict, test, out1: dict, seed: int = 0) -> None:
    """A fresh instance (another seed) loaded with ``state`` evaluates exactly like the original."""
    clone = type(algo)(algo.suite, algo.config, algo.device, seed + 1)
    clone.load_state_dict(state)
    out3 = clone.evaluate(test)
    for k in out1:
        assert torch.allclose(out1[k], out3[k], atol=1e-6), \
            f"{name}: state_dict round trip changed {k} (load_state_dict must restore everything evaluate uses)"
    proto = algo.protocol
    assert set(proto) >= {"transductive", "query_batch"}, f"{name}: protocol must name transductive and query_batch"


def check_algorithm(name: str, suite: Suite, preset: str = "smoke", seed: int = 0) -> None:
    """The static class contract; training changes meta-parameters; evaluate never does; state
    round-trips exactly. (``metabench.conformance`` adds the engine-level checks.)"""
    from metabench.algorithms.base import check_algorithm_class

    check_algorithm_class(name, ALGORITHMS.get(name))
    algo = make_algorithm(name, suite, preset, seed)
    after = check_train_step(name, algo, suite)
    state, test, out1 = check_evaluate(name, algo, suite, after)
    check_state_round_trip(name, algo, state, test, out1, seed)


def check_rl_suite(suite) -> None:
    """Meta-RL suites (see `metabench.rl`): reproducible task draws, fixed tasks independent of the
    batch size, references, descriptors, and the vectorised environment's shapes, trial structure
    and determinism, and `score`."""
    import json

    from metabench.results.metrics import spec as metric_spec
    from metabench.rl.core import RLTaskBatch

    assert isinstance(suite.version, int) and suite.version >= 1
    metric_spec(suite.primary_metric)   # a registered metric (raises otherwise)
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    b1, b2, b3 = suite.sample("train", 4, g(1)), suite.sample("train", 4, g(1)), suite.sample("train", 4, g(2))
    assert isinstance(b1, RLTaskBatch) and b1.n_tasks == 4, f"{suite.id}: sample must return an RLTaskBatch of 4 tasks"
    for k, v in b1.params.items():
        assert v.shape[0] == 4 and v.device.type == suite.device.type, f"{suite.id}: param {k} {tuple(v.shape)} on {v.device}"
        assert bool(torch.isfinite(v).all()), f"{suite.id}: non-finite task parameter {k}"
        assert torch.equal(v, b2.params[k]), f"{suite.id}: the same generator seed gave different tasks ({k})"
    assert any(not torch.equal(v, b3.params[k]) for k, v in b1.params.items()), f"{suite.id}: different seeds gave the same tasks"
    assert len(b1.descriptors) == 4, f"{suite.id}: need one descriptor dict per task"
    json.dumps(b1.descriptors)
    if b1.reference:
        assert set(b1.reference) == {"random", "oracle"}, f"{suite.id}: reference keys {sorted(b1.reference)}"
        assert bool((b1.reference["oracle"] >= b1.reference["random"] - 1e-9).all()), f"{suite.id}: oracle below random"
    a = RLTaskBatch.cat(list(suite.fixed_tasks("test", 6, batch_size=4)))
    b = RLTaskBatch.cat(list(suite.fixed_tasks("test", 6, batch_size=6)))
    assert a.task_ids == list(range(6)) and b.task_ids == list(range(6))
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), f"{suite.id}: fixed test tasks depend on the batch size"
    for k in a.reference:
        assert torch.allclose(a.reference[k], b.reference[k]), f"{suite.id}: references depend on the batch size"
    c = next(suite.fixed_tasks("test", 3, batch_size=3, start=1))
    assert c.task_ids == [1, 2] and all(torch.equal(c.params[k][0], a.params[k][1]) for k in a.params)
    v = next(suite.fixed_tasks("val", 2, batch_size=2))
    assert any(not torch.equal(v.params[k], a.params[k][:2]) for k in a.params), f"{suite.id}: val and test tasks coincide"
    if suite.unavailable():
        return
    # The environment: shapes, trial structure, determinism.
    tasks = a.select([0, 1])
    runs = []
    for _ in range(2):
        env = suite.make_env(tasks, 3, generator=torch.Generator(suite.device).manual_seed(0))
        assert env.n_envs == 6 and env.task_index.tolist() == [0, 0, 0, 1, 1, 1]
        obs = env.reset()
        assert obs.shape == (6, env.obs_dim) and obs.dtype == torch.float32, f"{suite.id}: obs {tuple(obs.shape)} {obs.dtype}"
        act_g = torch.Generator(suite.device).manual_seed(1)
        space = env.action_space
        rewards, dones, trial_dones = [], [], []
        for _t in range(env.trial_length):
            if space.discrete:
                act = torch.randint(0, space.n, (6,), generator=act_g, device=suite.device)
            else:
                act = space.low + (space.high - space.low) * torch.rand(6, space.dim, generator=act_g, device=suite.device)
            obs, r, d, info = env.step(act)
            assert obs.shape == (6, env.obs_dim) and r.shape == (6,) and d.shape == (6,) and d.dtype == torch.bool
            assert bool(torch.isfinite(obs).all() and torch.isfinite(r).all())
            rewards.append(r)
            dones.append(bool(d.all()) if bool(d.any()) else False)
            trial_dones.append(info["trial_done"])
            assert ("final_obs" in info) == dones[-1]
        want = [(t + 1) % env.horizon == 0 for t in range(env.trial_length)]
        assert dones == want, f"{suite.id}: done flags do not mark every {env.horizon}th step"
        assert trial_dones == [False] * (env.trial_length - 1) + [True]
        runs.append(torch.stack(rewards))
        if hasattr(env, "close"):
            env.close()
    assert torch.equal(runs[0], runs[1]), f"{suite.id}: the same generator seed gave different rewards"
    n_ep = env.episodes_per_trial
    out = suite.score(tasks, torch.zeros(2, n_ep))
    assert suite.primary_metric in out, f"{suite.id}: score() must report {suite.primary_metric!r}"
    for k, t in out.items():
        metric_spec(k)
        assert t.shape == (2,) and bool(torch.isfinite(t).all()), f"{suite.id}: score {k} {tuple(t.shape)}"
