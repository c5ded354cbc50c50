"""Matching Networks, MANN and Meta Networks: oracles on hand-made cases and smoke runs through the engine.

(Conformance for these algorithms comes from tests/test_core.py, which parametrises over the registry.)
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from metabench.algorithms.mann import (cosine_read, instance_numbers, least_used, lrua_write_weights,
                                       usage_update, write_memory)
from metabench.algorithms.matchingnet import attention, class_probabilities
from metabench.algorithms.metanet import augmented_linear, preprocess_gradient
from metabench.engine.cell import CellRunner
from metabench.results import metrics
from metabench.results.writer import read_table
from metabench.spec import Cell


# --- MANN: LRUA on a hand-made memory -----------------------------------------------------------
def test_least_used_marks_the_n_smallest_usages():
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.0]])
    assert least_used(usage, 1).tolist() == [[0.0, 0.0, 0.0, 1.0]]
    assert least_used(usage, 2).tolist() == [[0.0, 1.0, 0.0, 1.0]]


def test_lrua_write_weights_memory_and_usage_by_hand():
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.0]])                 # slot 3 is least used
    prev_read = torch.tensor([[[0.7, 0.1, 0.1, 0.1]]])           # (B=1, H=1, S=4)
    alpha = torch.tensor([[0.0]])                                 # sigmoid(0) = 0.5
    ww = lrua_write_weights(alpha, prev_read, least_used(usage, 1))
    # 0.5 * prev_read + 0.5 * [0, 0, 0, 1]
    assert torch.allclose(ww, torch.tensor([[[0.35, 0.05, 0.05, 0.55]]]))
    alpha = torch.tensor([[math.log(3.0)]])                       # sigmoid = 0.75
    ww3 = lrua_write_weights(alpha, prev_read, least_used(usage, 1))
    assert torch.allclose(ww3, torch.tensor([[[0.525, 0.075, 0.075, 0.325]]]))

    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]])
    key = torch.tensor([[[10.0, -10.0]]])                         # (B, H, D)
    new = write_memory(memory, usage, ww, key)
    # the least-used slot (3) is zeroed first, then slot i gets ww_i * key
    expected = torch.tensor([[[1 + 3.5, 2 - 3.5], [3 + 0.5, 4 - 0.5], [5 + 0.5, 6 - 0.5], [0 + 5.5, 0 - 5.5]]])
    assert torch.allclose(new, expected)

    read_w = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]])
    u = usage_update(usage, read_w, ww, gamma=0.9)
    # 0.9 * usage + read + write
    assert torch.allclose(u, torch.tensor([[0.45 + 0.1 + 0.35, 0.09 + 0.2 + 0.05, 0.81 + 0.3 + 0.05,
                                            0.0 + 0.4 + 0.55]]))


def test_cosine_read_by_hand():
    memory = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])  # (1, S=3, D=2)
    key = torch.tensor([[[2.0, 0.0]]])                              # cos = 1, 0, 1/sqrt(2)
    w, r = cosine_read(key, memory)
    e = torch.tensor([math.e, 1.0, math.exp(1 / math.sqrt(2))])
    w_hand = e / e.sum()
    assert torch.allclose(w[0, 0], w_hand)
    assert torch.allclose(r[0, 0], w_hand[0] * memory[0, 0] + w_hand[1] * memory[0, 1] + w_hand[2] * memory[0, 2])


def test_instance_numbers_count_presentations():
    y = torch.tensor([[0, 1, 0, 0, 1, 2]])
    assert instance_numbers(y).tolist() == [[1, 1, 2, 3, 2, 1]]


def test_instance_metrics_are_registered_with_direction():
    for k in (1, 2, 3, 4, 5, 10):
        assert metrics.direction(f"accuracy_inst{k}") == "higher"
    assert metrics.format_value("accuracy_inst2", 0.8) == "80.00%"


# --- Matching Networks: attention on a hand-made support set --------------------------------------
def test_matching_attention_by_hand():
    zs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ys = torch.tensor([0, 1, 1])
    zq = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    a = attention(zq, zs)
    c = 1 / math.sqrt(2)
    for row, cos in zip(a, ([1.0, 0.0, c], [0.0, -1.0, -c])):
        e = torch.exp(torch.tensor(cos))
        assert torch.allclose(row, e / e.sum())
    p = class_probabilities(a, ys, 2)
    assert torch.allclose(p[:, 0], a[:, 0]) and torch.allclose(p[:, 1], a[:, 1] + a[:, 2])
    assert torch.allclose(p.sum(1), torch.ones(2))
    scaled = attention(zq, zs, scale=10.0)   # softmax(10 cos): the same cosines, sharpened
    for row, cos in zip(scaled, ([1.0, 0.0, c], [0.0, -1.0, -c])):
        e = torch.exp(10 * torch.tensor(cos))
        assert torch.allclose(row, e / e.sum())


# --- Meta Networks: layer augmentation and gradient preprocessing -------------------------------
def test_layer_augmentation_adds_slow_and_fast_paths():
    x = torch.tensor([[1.0, 2.0]])
    W = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    b = torch.tensor([0.5, -1.0])
    W_fast = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    # slow pre-activation: [1.5, -3]; fast pre-activation: [2, -1]
    assert torch.allclose(augmented_linear(x, W, b, W_fast), torch.tensor([[3.5, -4.0]]))
    # hidden layer: ReLU on each path, then the sum (not ReLU of the sum)
    assert torch.allclose(augmented_linear(x, W, b, W_fast, F.relu), torch.tensor([[3.5, 0.0]]))
    # one fast weight per row (a query's attention-read fast weights)
    xs = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    per_row = torch.stack([W_fast, torch.zeros(2, 2)])
    assert torch.allclose(augmented_linear(xs, W, b, per_row), torch.tensor([[3.5, -4.0], [1.5, -3.0]]))


def test_gradient_preprocessing_by_hand():
    g = torch.tensor([1.0, -math.exp(-5.0), 1e-6])
    out = preprocess_gradient(g, p=10.0)
    assert torch.allclose(out, torch.tensor([[0.0, 1.0], [-0.5, -1.0], [-1.0, math.exp(10.0) * 1e-6]]))


# --- smoke runs through the engine ---------------------------------------------------------------
@pytest.mark.parametrize("suite_id, algorithm", [
    ("omniglot-5w1s", "matchingnet"), ("omniglot-5w1s", "metanet"), ("omniglot-5w1s", "mann"),
    ("sinusoid-5shot", "mann"),
])
def test_smoke_cell(tmp_path, shared_data, suite_id, algorithm):
    cell = Cell(suite_id, algorithm, 0, "smoke", device="cpu")
    assert CellRunner(cell, tmp_path, shared_data, allow_download=False).run() == "finished"
    runs = read_table(tmp_path / cell.run_id / "runs.parquet", "runs")
    assert runs["status"].iloc[0] == "finished"
    tasks = read_table(tmp_path / cell.run_id / "tasks.parquet", "tasks")
    names = set(tasks["metric"])
    if suite_id.startswith("omniglot"):
        assert "accuracy" in names and tasks[tasks.metric == "accuracy"]["value"].between(0, 1).all()
        if algorithm == "mann":
            assert {f"accuracy_inst{k}" for k in (1, 2, 3, 5, 10)} <= names
        assert runs["family"].iloc[0] == ("metric" if algorithm == "matchingnet" else "memory")
    else:
        assert "mse" in names and (tasks[tasks.metric == "mse"]["value"] >= 0).all()
    for name in names:
        metrics.direction(name)   # every stored metric is registered
    assert len(tasks[tasks.metric == ("accuracy" if suite_id.startswith("omniglot") else "mse")]) == 10


def test_mann_queries_are_independent_continuations_of_the_support_state():
    """Each query is one more step from the post-support state: changing one query's input (or
    dropping the others) leaves every other query's output unchanged."""
    from metabench.algorithms.mann import Config, MANNCore, expand_state
    torch.manual_seed(0)
    core = MANNCore(6, 3, Config(controller_size=8, memory_slots=6, memory_width=4, read_heads=2))
    support = torch.randn(2, 4, 6)                        # 2 episodes, 4 support steps
    _, state = core.run(support)
    queries = torch.randn(2, 3, 6)                        # 3 queries per episode
    out = core.continuation(queries.flatten(0, 1), expand_state(state, 3)).view(2, 3, 3)
    changed = queries.clone()
    changed[:, 1:] = torch.randn(2, 2, 6)
    out2 = core.continuation(changed.flatten(0, 1), expand_state(state, 3)).view(2, 3, 3)
    assert torch.allclose(out[:, 0], out2[:, 0], atol=1e-6) and not torch.allclose(out[:, 1], out2[:, 1])
    alone = core.continuation(queries[:, 0], state)      # one query per episode, no others
    assert torch.allclose(out[:, 0], alone, atol=1e-6)


# --- issue 20 section 4: the built-in names are the published models; the tricks are named variants ---
#: The preset cells before issue 20 (`git show 76c1675:metabench/algorithms/<file>.py`), which
#: the named variants must reproduce field for field.
_OLD_CELLS = {
    ("mann", "mann-keystrength", "quick"): dict(
        controller_size=200, memory_slots=128, memory_width=40, read_heads=4, gamma=0.95, key_strength=True,
        image_size=20, meta_batch_size=16, lr=0.003, grad_clip=10.0, seq_per_class=10, eval_seq_per_class=10,
        train_shot=None, n_query=10),
    ("metanet", "metanet-centred", "quick"): dict(
        hidden=64, head_hidden=64, rep_dim=64, meta_hidden=20, rep_fast_weights=True, shared_embedding=True,
        attention_scale=5.0, learn_attention_scale=True, center_attention=True, grad_p=10.0, meta_batch_size=4,
        n_query=5, train_shot=None, lr=0.001, lr_halve_every=2000),
    ("metanet", "metanet-centred", "paper"): dict(
        hidden=64, head_hidden=64, rep_dim=64, meta_hidden=20, rep_fast_weights=True, shared_embedding=False,
        attention_scale=5.0, learn_attention_scale=True, center_attention=True, grad_p=10.0, meta_batch_size=1,
        n_query=5, train_shot=None, lr=0.001, lr_halve_every=2000),
    ("matchingnet", "matchingnet-scaled", "quick"): dict(
        train_way=20, train_shot=None, n_query=5, lr=0.001, lr_halve_every=2000, hidden=64, fce=False, fce_steps=5,
        cosine_scale=10.0),
}


@pytest.mark.parametrize("algorithm, name, preset", sorted(_OLD_CELLS))
def test_named_variants_reproduce_the_old_preset_cells(algorithm, name, preset):
    import dataclasses
    import importlib

    from metabench.algorithms import ALGORITHMS
    from metabench.spec import RunSpec
    from metabench.suites import make_suite

    entry = importlib.import_module(f"metabench.algorithms.{algorithm}").VARIANTS[name]
    cells, skipped = RunSpec(("omniglot-5w1s",), (entry,), preset=preset).plan()
    assert not skipped and len(cells) == 1 and cells[0].variant == entry   # written as the leaderboard labels it
    cls = ALGORITHMS.get(algorithm)
    cfg = cls.preset_config(preset, make_suite("omniglot-5w1s"), cells[0].overrides["config"])
    assert dataclasses.asdict(cfg) == _OLD_CELLS[algorithm, name, preset]


def test_the_plain_rows_use_none_of_the_tricks():
    from metabench.algorithms import ALGORITHMS
    from metabench.suites import make_suite

    s = make_suite("omniglot-5w1s")
    for preset in ("quick", "paper"):
        mann = ALGORITHMS.get("mann").preset_config(preset, s)
        metanet = ALGORITHMS.get("metanet").preset_config(preset, s)
        matching = ALGORITHMS.get("matchingnet").preset_config(preset, s)
        assert not mann.key_strength
        assert (metanet.attention_scale, metanet.learn_attention_scale, metanet.center_attention) == (1.0, False, False)
        assert (matching.cosine_scale, matching.train_way) == (1.0, None)   # the paper: test-way episodes
