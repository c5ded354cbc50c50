"""rfs and simpleshot (issue 25): oracles by hand, the RFS head against a direct scikit-learn fit,
the SimpleShot training mean against every training image, smoke cells on omniglot-5w1s and on
the fake miniImageNet. Conformance comes from tests/test_core.py and test_image_suites.py, which
parametrise over the registry."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metabench.algorithms import ALGORITHMS, named_variant
from metabench.algorithms.pretrain import StepDecay, embed_images, embed_tasks
from metabench.algorithms.rfs import logistic_heads
from metabench.algorithms.simpleshot import centroids, nearest_centroid, transform
from metabench.errors import ConfigError
from metabench.results.query import ResultsDB
from metabench.suites import make_suite


# --- SimpleShot by hand -----------------------------------------------------------------------
def test_cl2n_l2n_un_transforms_by_hand():
    z = torch.tensor([[4.0, 5.0], [1.0, 1.0], [2.0, 1.0]])
    mean = torch.tensor([1.0, 1.0])
    # CL2N: z - mean = (3, 4), (0, 0), (1, 0) -> / norm = (0.6, 0.8), (0, 0) (zero stays zero), (1, 0)
    assert torch.allclose(transform(z, mean, "cl2n"), torch.tensor([[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]]))
    # L2N: (4, 5) / sqrt(41), (1, 1) / sqrt(2), (2, 1) / sqrt(5)
    want = torch.tensor([[4 / 41**0.5, 5 / 41**0.5], [2**-0.5, 2**-0.5], [2 / 5**0.5, 1 / 5**0.5]])
    assert torch.allclose(transform(z, None, "l2"), want)
    assert torch.equal(transform(z, None, "un"), z)


def test_centroids_and_nearest_centroid_by_hand():
    # One task, 2 classes x 2 shots: class 0 at (0, 0) and (2, 0) -> centroid (1, 0);
    # class 1 at (0, 4) and (0, 2) -> centroid (0, 3).
    zs = torch.tensor([[[0.0, 0.0], [0.0, 4.0], [2.0, 0.0], [0.0, 2.0]]])
    ys = torch.tensor([[0, 1, 0, 1]])
    cents = centroids(zs, ys, 2)
    assert torch.equal(cents, torch.tensor([[[1.0, 0.0], [0.0, 3.0]]]))
    # (1, 1): distances 1 and sqrt(5) -> 0; (0, 2.5): sqrt(7.25) and 0.5 -> 1; (2, 2.5): sqrt(7.25) vs sqrt(4.25) -> 1
    zq = torch.tensor([[[1.0, 1.0], [0.0, 2.5], [2.0, 2.5]]])
    assert nearest_centroid(zq, cents).tolist() == [[0, 1, 1]]


def test_cl2n_changes_the_decision_where_the_paper_says_it_helps():
    """Centring by the base mean can flip a decision: by hand, UN and CL2N disagree on this query."""
    zs = torch.tensor([[[10.0, 0.0], [0.0, 1.0]]])      # class 0 far out, class 1 near the origin
    ys = torch.tensor([[0, 1]])
    zq = torch.tensor([[[3.0, 0.2]]])
    mean = torch.tensor([0.0, 0.0])
    # UN: distance to (10, 0) is ~7.0, to (0, 1) is ~3.1 -> class 1.
    assert nearest_centroid(zq, centroids(zs, ys, 2)).item() == 1
    # L2N / CL2N with zero mean: directions (1, 0) and (0, 1); the query points along (1, 0.07) -> class 0.
    n = transform(zs, mean, "cl2n"), transform(zq, mean, "cl2n")
    assert nearest_centroid(n[1], centroids(n[0], ys, 2)).item() == 0


# --- RFS head against scikit-learn directly -----------------------------------------------------
def test_rfs_heads_equal_a_direct_logistic_regression_fit():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    T, W, shots, Q, D = 3, 5, 2, 15, 16
    zs = rng.normal(size=(T, W * shots, D)).astype(np.float32)
    zq = rng.normal(size=(T, W * Q, D)).astype(np.float32)
    ys = np.tile(np.arange(W), (T, shots))
    proba = logistic_heads(zs, ys, zq)
    assert proba.shape == (T, W * Q, W)
    for t in range(T):
        clf = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000, random_state=0).fit(zs[t], ys[t])
        np.testing.assert_allclose(proba[t], clf.predict_proba(zq[t]), rtol=1e-6, atol=1e-9)
        assert np.array_equal(proba[t].argmax(-1), clf.predict(zq[t]))


def test_rfs_evaluate_is_the_paper_pipeline_on_normalised_features(suite_by_id):
    """evaluate() = embed -> L2-normalise -> LogisticRegression per task -> accuracy and NLL."""
    from sklearn.linear_model import LogisticRegression

    suite = suite_by_id("omniglot-5w1s")
    cls = ALGORITHMS.get("rfs")
    algo = cls(suite, cls.preset_config("smoke", suite), "cpu", 0)
    batch = next(suite.fixed_tasks("test", 3, batch_size=3))
    out = algo.evaluate(batch)
    zs, zq = embed_tasks(algo.model, batch)
    for t in range(3):
        s, q = F.normalize(zs[t], dim=-1).numpy(), F.normalize(zq[t], dim=-1).numpy()
        clf = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(s, batch.support_y[t].numpy())
        y = batch.query_y[t].numpy()
        assert out["accuracy"][t].item() == pytest.approx((clf.predict(q) == y).mean())
        nll = -np.log(clf.predict_proba(q)[np.arange(len(y)), y]).mean()
        assert out["loss"][t].item() == pytest.approx(nll, rel=1e-5)


# --- the shared pre-training --------------------------------------------------------------------
def test_step_decay_by_hand():
    s = StepDecay(0.05, (0.6, 0.8), 0.1)
    # 100 steps: 0-59 at 0.05, 60-79 at 0.005, 80-99 at 0.0005 (RFS: epochs 1-60, 61-80, 81-100)
    assert [s.lr(k, 100) for k in (0, 59, 60, 79, 80, 99)] == pytest.approx([0.05, 0.05, 0.005, 0.005, 5e-4, 5e-4])
    assert s.lr(99, None) == 0.05          # outside the engine: no schedule


def test_fits_and_config_errors():
    for name in ("rfs", "simpleshot"):
        cls = ALGORITHMS.get(name)
        assert cls.fits(make_suite("omniglot-5w1s"))[0] and cls.fits(make_suite("miniimagenet-5w5s"))[0]
        ok, reason = cls.fits(make_suite("sinusoid-5shot"))
        assert not ok and "regression" in reason
    suite = make_suite("omniglot-5w1s")
    with pytest.raises(ConfigError, match="feature_norm must be one of cl2n, l2, un, got 'l1'"):
        ALGORITHMS.get("simpleshot").preset_config("quick", suite, {"feature_norm": "l1"})
    with pytest.raises(ConfigError, match="per_class must be at least 2"):
        ALGORITHMS.get("rfs").preset_config("quick", suite, {"per_class": 1})
    with pytest.raises(ConfigError, match="C must be positive"):
        ALGORITHMS.get("rfs").preset_config("quick", suite, {"C": 0.0})


def test_named_variants_resolve_to_the_paper_rows():
    from metabench.spec import RunSpec

    suite = make_suite("omniglot-5w1s")
    cls = ALGORITHMS.get("simpleshot")
    assert cls.preset_config("quick", suite).feature_norm == "cl2n"      # the plain row is CL2N
    for short, norm in (("simpleshot-un", "un"), ("simpleshot-l2", "l2")):
        entry = named_variant(short)
        cells, skipped = RunSpec(("omniglot-5w1s",), (short,), preset="quick").plan()
        assert not skipped and cells[0].variant == entry == f"simpleshot[feature_norm={norm}]"
        assert cls.preset_config("quick", suite, cells[0].overrides["config"]).feature_norm == norm


def test_paper_presets_follow_the_authors_code():
    rfs, ss = ALGORITHMS.get("rfs"), ALGORITHMS.get("simpleshot")
    mini = make_suite("miniimagenet-5w1s")
    c = rfs.preset_config("paper", mini)
    assert (c.lr, c.momentum, c.weight_decay, c.lr_decay_at, c.lr_decay) == (0.05, 0.9, 5e-4, (0.6, 0.8), 0.1)
    assert c.batch_way * c.per_class == 64 and (c.C, c.max_iter) == (1.0, 1000)
    c = ss.preset_config("paper", mini)
    assert (c.lr, c.momentum, c.weight_decay, c.lr_decay_at, c.lr_decay) == (0.1, 0.9, 1e-4, (0.5, 0.75), 0.1)
    assert c.batch_way * c.per_class == 256 and c.mean_per_class == 600   # every image of a class
    ft = ALGORITHMS.get("finetune")   # Chen et al.'s train.py on miniImageNet: Adam 1e-3, 16 images per batch
    c = ft.preset_config("paper", mini)
    assert (c.lr, c.batch_way * c.per_class) == (1e-3, 16)
    assert ft.preset_config("quick", mini) == ft.preset_config("quick", make_suite("omniglot-5w1s"))


# --- SimpleShot's training mean -----------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    from test_image_suites import make_mini

    return make_mini(tmp_path_factory.mktemp("mini"), "cache")


def _fake_mini(root):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not the published.*")
        return make_suite("miniimagenet-5w1s").prepare(root, "cpu", allow_download=False, progress=False)


def test_simpleshot_mean_is_over_every_training_image(fake_data):
    """mean_per_class = all of a class's images -> the mean over the whole training split."""
    suite = _fake_mini(fake_data)
    cls = ALGORITHMS.get("simpleshot")
    images = suite._data.images["train"]                           # (6 classes, 20, 3, 84, 84) uint8
    algo = cls(suite, cls.preset_config("smoke", suite, {"mean_per_class": images.shape[1]}), "cpu", 0)
    want = embed_images(algo.model, images.flatten(0, 1).float() / 255.0).double().mean(0)
    assert torch.allclose(algo.train_mean().double(), want, rtol=1e-5, atol=1e-6)
    # cached until the backbone changes
    assert algo.train_mean() is algo.train_mean()
    # the paper preset's 600 per class on a dataset with 20: one sentence saying what to change
    with pytest.raises(ConfigError, match=r"mean_per_class=600 asks for more images per class than the training "
                                          r"split of miniimagenet-5w1s holds .*at most 20.*set mean_per_class"):
        cls(suite, cls.preset_config("paper", suite, {"hidden": 8}), "cpu", 0)


# --- smoke cells ----------------------------------------------------------------------------------
def _smoke(tmp_path, suite_id, data_dir, algorithms=("rfs", "simpleshot")) -> ResultsDB:
    """The cells of `algorithms` on `suite_id` (smoke preset), run in this process."""
    from metabench.engine.cell import CellRunner
    from metabench.spec import RunSpec

    cells, skipped = RunSpec((suite_id,), tuple(algorithms), (0,), "smoke", "cpu").plan()
    assert not skipped and len(cells) == len(algorithms)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not the published.*")
        for cell in cells:
            assert CellRunner(cell, tmp_path, data_dir, allow_download=False).run() == "finished"
    return ResultsDB(tmp_path)


def test_smoke_cells_on_omniglot(tmp_path, shared_data):
    board = _smoke(tmp_path, "omniglot-5w1s", shared_data, ("rfs", "simpleshot", "simpleshot-un")).leaderboard(
        "omniglot-5w1s")
    assert set(board["variant"]) == {"rfs", "simpleshot", "simpleshot[feature_norm=un]"}
    assert board["n_tasks"].tolist() == [10, 10, 10]


@pytest.mark.slow   # ~11 s on a busy 2-core machine; the 32x32 conformance checks (test_image_suites) run by default
def test_smoke_cells_on_fake_miniimagenet(tmp_path, fake_data):
    board = _smoke(tmp_path, "miniimagenet-5w1s", fake_data).leaderboard("miniimagenet-5w1s")
    assert set(board["algorithm"]) == {"rfs", "simpleshot"} and board["n_tasks"].tolist() == [10, 10]
