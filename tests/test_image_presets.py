"""Issue 22 section 1: every few-shot classifier has presets of its own for miniImageNet and CIFAR-FS
(before, those suites silently took the Omniglot settings), and they run end to end on a tiny fake
CIFAR-FS."""
from __future__ import annotations

import json
import warnings

import pytest

from metabench.algorithms import ALGORITHMS
from metabench.algorithms.base import IMAGE_SUITES
from metabench.cli import main
from metabench.results.query import ResultsDB
from metabench.suites import make_suite

from test_image_suites import make_cifar

#: The algorithms issue 22 names (finetune, rfs and simpleshot have presets of their own elsewhere).
CLASSIFIERS = ["maml", "fomaml", "reptile", "protonet", "matchingnet", "mann", "metanet", "anil", "metasgd",
               "pixel-centroid"]


def _config(algorithm: str, preset: str, suite_id: str):
    return ALGORITHMS.get(algorithm).preset_config(preset, make_suite(suite_id))


@pytest.mark.parametrize("suite_id", IMAGE_SUITES)
@pytest.mark.parametrize("preset", ["paper", "quick"])
def test_image_suites_do_not_take_the_omniglot_settings(suite_id, preset):
    shot = make_suite(suite_id).n_shot
    for name in ("maml", "fomaml", "anil", "metasgd"):
        c = _config(name, preset, suite_id)   # MAML's miniImageNet protocol (Finn et al. 2017, appendix A.1)
        assert (c.arch, c.hidden, c.inner_lr, c.meta_batch_size) == ("pool", 32, 0.01, 4 if shot == 1 else 2)
        steps = (1, 1) if name == "metasgd" else (5, 10)
        assert (c.inner_steps, c.test_inner_steps) == steps
        assert c.n_query == (15 if preset == "paper" else 1)
    reptile = _config("reptile", preset, suite_id)   # the README's miniImageNet commands
    assert (reptile.arch, reptile.hidden, reptile.inner_steps, reptile.train_shot, reptile.inner_batch) == \
        ("pool", 32, 8, 15, 10)
    assert reptile.test_inner_batch == (5 if shot == 1 else 15)
    protonet = _config("protonet", preset, suite_id)
    if preset == "paper":   # Snell et al. section 3.2
        assert (protonet.train_way, protonet.n_query) == ((30, 15) if shot == 1 else (20, 15))
    assert _config("matchingnet", preset, suite_id).fce is (preset == "paper")
    for name in CLASSIFIERS:   # every one of them spells the image suites out (or has nothing to set)
        table = ALGORITHMS.get(name).PRESETS[preset]
        assert suite_id in table or name in ("protonet", "pixel-centroid") or not table, name


#: Run end to end in the test (seconds each); every one of CLASSIFIERS, with both presets on both
#: CIFAR-FS suites and with smoke on miniImageNet too, was run by hand (docs/algorithms.md).
E2E = ["maml", "protonet", "matchingnet", "pixel-centroid"]


def test_paper_presets_run_end_to_end_on_fake_cifarfs(tmp_path, capsys):
    """One meta-step and two test tasks per cell, with the CIFAR-FS `paper` preset (ProtoNets'
    30-way training episodes need the 64 training classes the fake archive has); MAML's batching is
    pinned to the loop (`auto` would time both ways first)."""
    data = make_cifar(tmp_path / "data")
    results = tmp_path / "results"
    loop = ["loop.meta_steps=1", "loop.eval_every=1", "loop.n_val_tasks=1", "loop.n_test_tasks=2",
            "loop.checkpoint_every=1", "loop.log_every=1", "maml.batching=loop"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not the published.*")
        rc = main(["run", "--suites", "cifarfs-5w1s", "--algorithms", ",".join(E2E), "--preset", "paper",
                   *[a for s in loop for a in ("--set", s)], "--data-dir", str(data), "--results-dir", str(results),
                   "--device", "cpu", "--no-download", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    runs = ResultsDB(results).runs()
    assert sorted(runs["algorithm"]) == sorted(E2E) and set(runs["status"]) == {"finished"}
    protocols = {r["algorithm"]: json.loads(r["config"])["protocol"] for r in runs.to_dict("records")}
    assert protocols["maml"]["backbone"] == "conv4-pool-32" and protocols["maml"]["test_steps"] == 10
    assert protocols["protonet"]["train_way"] == 30 and protocols["protonet"]["adaptation_unit"] == "support passes"
    assert protocols["pixel-centroid"]["train_way"] is None and protocols["pixel-centroid"]["adaptation_budget"] == 1
