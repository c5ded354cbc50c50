"""Registry, run specs, the Omniglot splits and the algorithm oracles (conformance: test_conformance.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metabench.algorithms import ALGORITHMS
from metabench.algorithms.maml import MAML
from metabench.errors import ConfigError
from metabench.nn.functional import sgd_step
from metabench.nn.heads import logits_from, prototypes
from metabench.registry import Registry
from metabench.spec import RunSpec, parse_seeds
from metabench.suites import make_suite


# --- registry and spec ------------------------------------------------------------------------
def test_registry_did_you_mean():
    r = Registry("algorithm")
    r.add("protonet", object)
    with pytest.raises(ConfigError, match="Did you mean 'protonet'"):
        r.get("protonet2")


@pytest.mark.parametrize("bad, match", [
    (dict(suites=("omniglot-5w1",), algorithms=("maml",)), "Did you mean 'omniglot-5w1s'"),
    (dict(suites=("sinusoid-5shot",), algorithms=("mamll",)), "Did you mean 'maml'"),
    (dict(suites=("sinusoid-5shot",), algorithms=("maml",), preset="quik"), "Did you mean 'quick'"),
    (dict(suites=("sinusoid-5shot",), algorithms=("maml",), device="tpu"), "--device must be"),
])
def test_spec_rejects_bad_input(bad, match):
    with pytest.raises(ConfigError, match=match):
        RunSpec(**bad).validate()


def test_seeds_parse_and_reject():
    assert parse_seeds("0, 1,1,2") == [0, 1, 2]
    for bad in ("a", "-1", "1.5", "", "99999999999"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_plan_skips_incompatible_pairs_with_a_reason():
    cells, skipped = RunSpec(("sinusoid-5shot", "omniglot-5w1s"), ("maml", "protonet"), (0, 1), "smoke").plan()
    assert {(c.suite, c.algorithm) for c in cells} == {("sinusoid-5shot", "maml"), ("omniglot-5w1s", "maml"),
                                                       ("omniglot-5w1s", "protonet")}
    assert len(cells) == 6
    assert skipped == [("sinusoid-5shot", "protonet", "protonet handles classification tasks; sinusoid-5shot is regression")]


def test_unknown_config_option_is_named():
    with pytest.raises(ConfigError, match="unknown option.*inner_lrr"):
        MAML.preset_config("quick", make_suite("sinusoid-5shot"), {"inner_lrr": 0.1})


# --- suites (their conformance checks: test_conformance.py) -----------------------------------
def test_omniglot_split_sizes_and_descriptors(suite_by_id):
    s = suite_by_id("omniglot-5w1s")
    assert {k: len(v) for k, v in s._classes.items()} == {"train": 4112, "val": 688, "test": 1692}
    b = next(s.fixed_tasks("test", 2, batch_size=2))
    d = b.descriptors[0]
    assert len(d["characters"]) == 5 and len(d["alphabets"]) == 5 and set(d["rotations"]) <= {0, 90, 180, 270}
    train_chars = {int(c) for c, _ in s._classes["train"].tolist()}
    test_chars = {int(c) for c, _ in s._classes["test"].tolist()}
    assert not train_chars & test_chars


# --- oracles ----------------------------------------------------------------------------------
def test_one_inner_step_by_hand():
    """y = w x, loss = mean((w x - y)^2) on two points: dL/dw = mean(2 x (w x - y))."""
    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.tensor([[0.5]]))

        def forward(self, x, groups=1):
            return x @ self.weight.T

    model = Lin()
    x = torch.tensor([[1.0], [2.0]])
    y = torch.tensor([[2.0], [3.0]])
    params = {"weight": model.weight}
    new = sgd_step(params, F.mse_loss(model(x), y), 0.1, create_graph=True)
    # residuals: 0.5-2 = -1.5, 1.0-3 = -2.0; grad = mean(2*1*-1.5, 2*2*-2.0) = (-3 - 8)/2 = -5.5
    assert new["weight"].item() == pytest.approx(0.5 + 0.1 * 5.5)
    # second order: d(w')/dw = 1 - lr * d2L/dw2 = 1 - 0.1 * mean(2 x^2) = 1 - 0.1 * 5 = 0.5
    (g,) = torch.autograd.grad(new["weight"].sum(), model.weight)
    assert g.item() == pytest.approx(0.5)
    first = sgd_step(params, F.mse_loss(model(x), y), 0.1, create_graph=False)
    (g1,) = torch.autograd.grad(first["weight"].sum(), model.weight)
    assert g1.item() == pytest.approx(1.0)  # first-order: the gradient is a constant


def test_inner_loss_sum_over_shots_by_hand():
    """The authors' reduction (issue 22): 3-way 2-shot, per-example cross-entropies l_i; 'sum/K'
    is sum(l_i) / 2, three times the mean, so one inner step moves three times as far."""
    from metabench.algorithms.maml import inner_loss_fn
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0],
                           [1.0, -1.0, 3.0], [0.0, 0.0, 0.0], [-2.0, 1.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    per_example = [-torch.log_softmax(logits[i], 0)[y[i]] for i in range(6)]
    by_hand = sum(per_example) / 2
    assert inner_loss_fn(F.cross_entropy, "sum/K", 3)(logits, y).item() == pytest.approx(by_hand.item())
    assert inner_loss_fn(F.cross_entropy, "mean", 3)(logits, y).item() == pytest.approx(by_hand.item() / 3)
    # regression: K is the number of points, so sum/K is the mean
    out, t = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [4.0]])
    assert inner_loss_fn(F.mse_loss, "sum/K", None)(out, t).item() == pytest.approx((1 + 4) / 2)


def test_maml_paper_preset_uses_the_authors_reduction(suite_by_id):
    from metabench.algorithms.anil import ANIL
    from metabench.algorithms.metasgd import MetaSGD
    suite = suite_by_id("omniglot-5w1s")
    assert MAML.preset_config("paper", suite).inner_loss == "sum/K"
    assert MAML.preset_config("quick", suite).inner_loss == "mean"
    assert ALGORITHMS.get("fomaml").preset_config("paper", suite).inner_loss == "sum/K"
    assert ANIL.preset_config("paper", suite).inner_loss == "mean"      # not the MAML authors' code
    assert MetaSGD.preset_config("paper", suite).inner_loss == "mean"
    # the step it takes: MAML's test-time step with sum/K equals the mean's step with N x the rate
    batch = suite.sample("test", 1, torch.Generator().manual_seed(1), n_shot=1, n_query=1)
    steps = {}
    for reduction, lr in (("sum/K", 0.1), ("mean", 0.5)):
        algo = MAML(suite, MAML.preset_config("smoke", suite, {"inner_loss": reduction, "inner_lr": lr}), "cpu", seed=0)
        theta = {n: p.detach().double().requires_grad_(True) for n, p in algo.model.named_parameters()}
        algo.model.double()
        new = algo.inner_loop(theta, batch.support_x[0].double(), batch.support_y[0], 1, first_order=True)
        steps[reduction] = {n: (new[n] - theta[n]).detach() for n in theta}
    for n in steps["mean"]:
        assert torch.allclose(steps["sum/K"][n], steps["mean"][n], rtol=1e-9, atol=1e-12)


def test_prototypes_against_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(15, 8, generator=g, dtype=torch.float64)
    y = torch.arange(5).repeat(3)
    q = torch.randn(7, 8, generator=g, dtype=torch.float64)
    protos = prototypes(z, y, 5)
    for c in range(5):
        members = [z[i] for i in range(15) if int(y[i]) == c]
        assert torch.allclose(protos[c], sum(members) / len(members))
    logits = logits_from(q, protos)
    for i in range(7):
        for c in range(5):
            assert logits[i, c].item() == pytest.approx(-sum((q[i, d] - protos[c, d]).item() ** 2 for d in range(8)))


def _maml_grads(suite, batching: str, first_order: bool, overrides: dict):
    cfg = MAML.preset_config("smoke", suite, {"batching": batching, "first_order": first_order, **overrides})
    algo = MAML(suite, cfg, "cpu", seed=3)
    algo.model.double()
    batch = suite.sample("train", 4, torch.Generator().manual_seed(5), n_shot=suite.n_shot, n_query=2)
    from dataclasses import replace
    batch = replace(batch, support_x=batch.support_x.double(), query_x=batch.query_x.double(),
                    support_y=batch.support_y if batch.n_way else batch.support_y.double(),
                    query_y=batch.query_y if batch.n_way else batch.query_y.double())
    algo.opt.zero_grad()
    (algo._meta_grad_vmap if batching == "vmap" else algo._meta_grad_loop)(batch)
    return {n: p.grad.clone() for n, p in algo.model.named_parameters()}


@pytest.mark.parametrize("suite_id, overrides", [
    ("omniglot-5w1s", {"arch": "strided", "inner_steps": 2}),
    ("omniglot-5w1s", {"arch": "pool"}),
    ("sinusoid-5shot", {"inner_steps": 2}),
])
@pytest.mark.parametrize("first_order", [False, True])
def test_maml_vmap_equals_loop_in_float64(suite_id, overrides, first_order, suite_by_id):
    suite = suite_by_id(suite_id)
    loop = _maml_grads(suite, "loop", first_order, overrides)
    vm = _maml_grads(suite, "vmap", first_order, overrides)
    for n in loop:
        scale = loop[n].abs().max().item() or 1.0
        err = (loop[n] - vm[n]).abs().max().item() / scale
        assert err < 1e-5, f"{n}: relative difference {err:.2e} between loop and vmap meta-gradients"


def test_second_order_differs_from_first_order(suite_by_id):
    """Guards against 'second order' silently being first order."""
    suite = suite_by_id("sinusoid-5shot")
    so = _maml_grads(suite, "loop", False, {})
    fo = _maml_grads(suite, "loop", True, {})
    assert any((so[n] - fo[n]).abs().max() > 1e-6 for n in so)


def test_auto_batching_measures_both_and_leaves_parameters_alone(suite_by_id):
    suite = suite_by_id("sinusoid-5shot")
    algo = MAML(suite, MAML.preset_config("smoke", suite, {"batching": "auto"}), "cpu", seed=0)
    assert algo.batching == "auto"
    batch = suite.sample("train", 4, torch.Generator().manual_seed(0), n_query=3)
    ref = MAML(suite, MAML.preset_config("smoke", suite, {"batching": "loop"}), "cpu", seed=0)
    algo._choose_batching(batch)
    assert algo.batching in ("loop", "vmap") and set(algo.batching_timings) == {"loop", "vmap"}
    for (n, p), q in zip(algo.model.named_parameters(), ref.model.parameters()):
        assert torch.equal(p, q), f"timing the batching modes changed {n}"
    clone = MAML(suite, algo.config, "cpu", seed=1)
    clone.load_state_dict(algo.state_dict())
    assert clone.batching == algo.batching  # a resumed cell keeps the measured choice
