"""Reptile, ANIL, Meta-SGD, finetune and pixel-centroid: oracles computed by hand, and a smoke
run of each through the engine.  (Their conformance checks run in test_conformance.py, which
parametrises over every registered algorithm.)"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from metabench.algorithms import ALGORITHMS
from metabench.algorithms.anil import ANIL
from metabench.algorithms.finetune import FineTune
from metabench.algorithms.metasgd import MetaSGD
from metabench.algorithms.pixel_centroid import PixelCentroid
from metabench.algorithms.reptile import Reptile, minibatch_indices, outer_step_size
from metabench.engine.cell import CellRunner
from metabench.errors import ConfigError
from metabench.nn.functional import adam_step, forward, params_of
from metabench.nn.heads import head_out
from metabench.nn.layers import MLP
from metabench.results.writer import read_table
from metabench.spec import Cell, Loop, loop_for
from metabench.suites import TaskBatch, make_suite


def sinusoid():
    return make_suite("sinusoid-5shot").prepare(None, "cpu")


def linear_model(w: float, b: float) -> MLP:
    """y = w x + b as an MLP with one layer (its only layer is its head)."""
    model = MLP((1, 1))
    with torch.no_grad():
        model.layers[0].weight.fill_(w)
        model.layers[0].bias.fill_(b)
    return model


def regression_batch(xs, ys, xq, yq) -> TaskBatch:
    t = lambda v: torch.tensor(v, dtype=torch.float32)[..., None]   # noqa: E731  (T, K) -> (T, K, 1)
    return TaskBatch(t(xs), t(ys), t(xq), t(yq), n_way=0)


# --- Reptile ----------------------------------------------------------------------------------
def test_reptile_outer_update_on_a_linear_model_by_hand():
    """Two tasks, y = w x (no bias term learned: its gradient is kept by hand too), one inner SGD
    step on both points of each task, outer step eps: theta + eps (mean_i phi_i - theta)."""
    suite = sinusoid()
    cfg = Reptile.preset_config("smoke", suite, dict(inner_optimizer="sgd", inner_lr=0.1, inner_steps=1,
                                                     inner_batch=2, train_shot=2, meta_batch_size=2,
                                                     outer_lr=0.5, outer_lr_final=0.0))
    algo = Reptile(suite, cfg, "cpu", seed=0)
    algo.model = linear_model(0.5, 0.0).requires_grad_(False)
    algo.total_meta_steps = 4
    # task 1: points (1, 2), (2, 3); task 2: points (1, -1), (3, -3)  (support + one query each)
    batch = regression_batch([[1.0], [1.0]], [[2.0], [-1.0]], [[2.0], [3.0]], [[3.0], [-3.0]])
    # task 1: residuals 0.5-2=-1.5, 1-3=-2 -> dL/dw = mean(2*1*-1.5, 2*2*-2) = -5.5, dL/db = mean(2r) = -3.5
    # task 2: residuals 0.5+1=1.5, 1.5+3=4.5 -> dL/dw = mean(3, 27) = 15, dL/db = mean(3, 9) = 6
    w1, b1 = 0.5 + 0.1 * 5.5, 0.0 + 0.1 * 3.5
    w2, b2 = 0.5 - 0.1 * 15, 0.0 - 0.1 * 6
    algo.meta_train_step(batch)
    eps = 0.5  # step 0 of 4: no annealing yet
    assert algo.model.layers[0].weight.item() == pytest.approx(0.5 + eps * ((w1 + w2) / 2 - 0.5), abs=1e-6)
    assert algo.model.layers[0].bias.item() == pytest.approx(0.0 + eps * ((b1 + b2) / 2 - 0.0), abs=1e-6)
    assert algo.step == 1


def test_reptile_annealing_and_minibatches():
    assert [outer_step_size(s, 4, 1.0, 0.0) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert outer_step_size(7, None, 0.3, 0.0) == 0.3
    idx = minibatch_indices(4, 3, 3, [torch.Generator().manual_seed(0)])   # 9 draws = 2 epochs + 1
    flat = idx.flatten().tolist()
    assert idx.shape == (1, 3, 3) and sorted(flat[:4]) == [0, 1, 2, 3] and sorted(flat[4:8]) == [0, 1, 2, 3]


def test_adam_step_matches_torch_adam():
    """TensorFlow's Adam form equals torch's when eps = 0."""
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(3, 2, generator=g, dtype=torch.float64)
    grads = [torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(3)]
    ref = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.01, betas=(0.5, 0.9), eps=0.0)
    params, m, v = {"p": p0}, {"p": torch.zeros_like(p0)}, {"p": torch.zeros_like(p0)}
    for t, gr in enumerate(grads, 1):
        ref.grad = gr.clone()
        opt.step()
        params, m, v = adam_step(params, {"p": gr}, m, v, t, 0.01, 0.5, 0.9, eps=0.0)
    assert torch.allclose(params["p"], ref.detach(), atol=1e-12)


def test_reptile_protocol_is_stored_and_both_evaluations_run(suite_by_id):
    suite = suite_by_id("omniglot-5w1s")
    test = next(suite.fixed_tasks("test", 2, batch_size=2))
    for transductive, query_batch in ((True, "n_way (one per class)"), (False, "support set + 1 query")):
        algo = Reptile(suite, Reptile.preset_config("smoke", suite, {"transductive": transductive}), "cpu", 0)
        assert algo.protocol == {"transductive": transductive, "query_batch": query_batch}
        acc = algo.evaluate(test)["accuracy"]
        assert acc.shape == (2,) and bool(((acc >= 0) & (acc <= 1)).all())


# --- Meta-SGD ---------------------------------------------------------------------------------
def test_metasgd_per_parameter_step_and_its_meta_gradient_by_hand():
    suite = sinusoid()
    algo = MetaSGD(suite, MetaSGD.preset_config("smoke", suite, {"batching": "loop"}), "cpu", seed=0)
    algo.model = linear_model(0.5, 0.0)
    algo.alpha = {"layers.0.weight": torch.tensor([[0.3]], requires_grad=True),
                  "layers.0.bias": torch.tensor([0.05], requires_grad=True)}
    batch = regression_batch([[1.0, 2.0]], [[2.0, 3.0]], [[3.0]], [[4.0]])
    # grads on the support set: dL/dw = -5.5, dL/db = -3.5 (see the Reptile test)
    # w' = 0.5 + 0.3 * 5.5 = 2.15, b' = 0 + 0.05 * 3.5 = 0.175; query: 3 w' + b' = 6.625, error 2.625
    out = algo.evaluate(batch)
    assert out["mse@1"].item() == pytest.approx(2.625 ** 2, rel=1e-5)
    algo._meta_grad_loop(batch)
    # dLq/dalpha_w = 2 * 2.625 * x_q * (-dL/dw) = 2 * 2.625 * 3 * 5.5; dLq/dalpha_b = 2 * 2.625 * 3.5
    assert algo.alpha["layers.0.weight"].grad.item() == pytest.approx(2 * 2.625 * 3 * 5.5, rel=1e-5)
    assert algo.alpha["layers.0.bias"].grad.item() == pytest.approx(2 * 2.625 * 3.5, rel=1e-5)


def test_metasgd_alpha_is_learned_and_checkpointed():
    suite = sinusoid()
    algo = MetaSGD(suite, MetaSGD.preset_config("smoke", suite), "cpu", seed=0)
    assert set(algo.meta_parameters()) == set(params_of(algo.model)) | {f"alpha/{n}" for n in params_of(algo.model)}
    a = algo.alpha["layers.0.weight"]
    assert a.shape == algo.model.layers[0].weight.shape and 0.005 <= a.min() and a.max() <= 0.1
    before = a.detach().clone()
    algo.meta_train_step(suite.sample("train", 4, torch.Generator().manual_seed(0), n_query=3))
    assert not torch.equal(before, a.detach())
    with pytest.raises(ConfigError, match="alpha_init"):
        MetaSGD.preset_config("smoke", suite, {"alpha_init": (0.1, 0.01)})


# --- ANIL -------------------------------------------------------------------------------------
def _anil_reference_grads(algo: ANIL, batch) -> dict[str, torch.Tensor]:
    """A plain per-task loop: MAML's `adapt` on the head's parameters only, with the body's held
    at theta (so the inner loop cannot touch the body), second order."""
    theta = params_of(algo.model)
    head = [n for n in theta if n.startswith(algo.model.head_prefix)]
    algo.opt.zero_grad(set_to_none=True)
    for t in range(batch.n_tasks):
        body = {n: p for n, p in theta.items() if n not in head}

        class HeadOnly(torch.nn.Module):
            def forward(self, x, groups=1):
                return forward(algo.model, {**body, **self.fast}, x, groups)

        m = HeadOnly()

        def run(fast, x, groups=1):
            m.fast = fast
            return m(x, groups)

        fast = {n: theta[n] for n in head}
        for _ in range(algo.config.inner_steps):
            loss = algo.loss_fn(run(fast, batch.support_x[t]), batch.support_y[t])
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
            fast = {n: p - algo.config.inner_lr * g for (n, p), g in zip(fast.items(), grads)}
        qloss = algo.loss_fn(run(fast, batch.query_x[t], batch.query_groups), batch.query_y[t])
        (qloss / batch.n_tasks).backward()
    return {n: p.grad.clone() for n, p in algo.model.named_parameters()}


@pytest.mark.parametrize("suite_id", ["sinusoid-5shot", "omniglot-5w1s"])
def test_anil_meta_gradient_equals_a_head_only_inner_loop(suite_id, suite_by_id):
    suite = suite_by_id(suite_id)
    algo = ANIL(suite, ANIL.preset_config("smoke", suite, {"inner_steps": 2}), "cpu", seed=1)
    algo.model.double()
    batch = suite.sample("train", 3, torch.Generator().manual_seed(2), n_query=2)
    dbl = lambda t: t.double() if t.is_floating_point() else t   # noqa: E731
    batch = TaskBatch(dbl(batch.support_x), dbl(batch.support_y), dbl(batch.query_x), dbl(batch.query_y),
                      batch.n_way, batch.query_groups)
    ref = _anil_reference_grads(algo, batch)
    algo.opt.zero_grad(set_to_none=True)
    zs, zq = algo._features(batch)
    head = algo._initial_head(batch.n_tasks, detach=False)
    for _ in range(2):
        head = algo._head_step(zs, batch.support_y, head, create_graph=True)
    loss, _ = algo._scores(head_out(zq, head), batch.query_y)
    loss.mean().backward()
    for n, p in algo.model.named_parameters():
        assert torch.allclose(p.grad, ref[n], atol=1e-10, rtol=1e-7), n
    assert any(ref[n].abs().sum() > 0 for n in ref if not n.startswith(algo.model.head_prefix))  # body learns


def test_anil_inner_loop_leaves_the_body_alone():
    """Adapting with ANIL and adapting the head alone with MAML's `adapt` give the same network."""
    suite = sinusoid()
    algo = ANIL(suite, ANIL.preset_config("smoke", suite), "cpu", seed=0)
    batch = suite.sample("test", 2, torch.Generator().manual_seed(3), n_query=4)
    got = algo.evaluate(batch)["mse@1"]
    theta = {n: p.detach() for n, p in params_of(algo.model).items()}
    for t in range(2):
        fast = {n: p.clone().requires_grad_(n.startswith(algo.model.head_prefix)) for n, p in theta.items()}
        head = {n: p for n, p in fast.items() if p.requires_grad}
        loss = F.mse_loss(forward(algo.model, fast, batch.support_x[t]), batch.support_y[t])
        grads = dict(zip(head, torch.autograd.grad(loss, list(head.values()))))
        new = {n: (p - algo.config.inner_lr * grads[n] if n in grads else p) for n, p in fast.items()}
        want = F.mse_loss(forward(algo.model, new, batch.query_x[t]), batch.query_y[t])
        assert got[t].item() == pytest.approx(want.item(), rel=1e-5)


# --- baselines --------------------------------------------------------------------------------
def test_pixel_centroid_on_a_hand_made_task():
    zeros, ones = torch.zeros(1, 2, 2), torch.ones(1, 2, 2)
    support = torch.stack([zeros, ones])[None]                              # (1, 2, 1, 2, 2)
    query = torch.stack([zeros + 0.2, ones * 0.9, ones * 0.6])[None]        # distances: 0.2 -> 0, 0.9 -> 1, 0.6 -> 1
    batch = TaskBatch(support, torch.tensor([[0, 1]]), query, torch.tensor([[0, 1, 0]]), n_way=2)
    suite = make_suite("omniglot-5w1s")
    out = PixelCentroid(suite, PixelCentroid.Config(), "cpu", 0).evaluate(batch)
    assert out["accuracy"].item() == pytest.approx(2 / 3)


def test_zero_step_algorithm_gets_a_zero_step_loop():
    suite = make_suite("omniglot-5w1s")
    assert loop_for(PixelCentroid, "quick", suite).meta_steps == 0
    assert loop_for(Reptile, "quick", suite).meta_steps > 0
    with pytest.raises(ConfigError, match="meta_steps"):
        Loop(meta_steps=-1).validate()


def test_finetune_head_fit_on_separable_features():
    suite = sinusoid()
    algo = FineTune(suite, FineTune.preset_config("quick", suite), "cpu", 0)
    algo.kind = "classification"   # fit_head only looks at the kind; no network is involved
    zs = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])    # (1, 3, 3)
    head = {"weight": torch.zeros(1, 3, 3), "bias": torch.zeros(1, 3)}
    head = algo.fit_head(zs, torch.tensor([[0, 1, 2]]), head)
    zq = torch.tensor([[[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.0, 0.3, 0.8], [0.6, 0.0, 0.4]]])
    pred = (torch.baddbmm(head["bias"][:, None], zq, head["weight"].transpose(1, 2))).argmax(-1)
    assert pred.tolist() == [[0, 1, 2, 0]]


def test_finetune_needs_numbered_classes():
    ok, _ = FineTune.fits(make_suite("omniglot-5w1s"))
    assert ok

    class Anonymous(type(make_suite("omniglot-5w1s"))):
        class_ids = False

    ok, reason = FineTune.fits(Anonymous(5, 1))
    assert not ok and "number its classes" in reason


def test_list_json_has_a_reason_for_every_misfit(capsys):
    from metabench.cli import main

    assert main(["list", "--json"]) == 0
    fits = json.loads(capsys.readouterr().out)["fits"]
    assert fits["pixel-centroid"]["sinusoid-5shot"]["ok"] is False
    for name in ("reptile", "anil", "metasgd", "finetune", "maml", "fomaml"):
        assert fits[name]["sinusoid-5shot"]["ok"] is True
    assert all(row["reason"] for algo in fits.values() for row in algo.values() if not row["ok"])


# --- through the engine -----------------------------------------------------------------------
SMOKE = [(a, s) for a in ("reptile", "anil", "metasgd", "finetune", "pixel-centroid")
         for s in ("omniglot-5w1s", "sinusoid-5shot") if ALGORITHMS.get(a).fits(make_suite(s))[0]]


@pytest.mark.parametrize("algorithm, suite_id", SMOKE)
def test_smoke_cell_through_the_engine(algorithm, suite_id, tmp_path, shared_data):
    cell = Cell(suite_id, algorithm, 0, "smoke", "cpu")
    assert CellRunner(cell, tmp_path, shared_data, allow_download=False).run() == "finished"
    runs = read_table(tmp_path / cell.run_id / "runs.parquet", "runs")
    tasks = read_table(tmp_path / cell.run_id / "tasks.parquet", "tasks")
    metric = "accuracy" if suite_id.startswith("omniglot") else "mse"
    values = tasks[tasks.metric == metric]
    assert sorted(values.task_id) == list(range(10)) and values.value.notna().all()
    expected_steps = 0 if algorithm == "pixel-centroid" else 6
    assert runs.iloc[0]["meta_steps"] == expected_steps and runs.iloc[0]["family"] == ALGORITHMS.get(algorithm).family
