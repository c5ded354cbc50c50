"""The Lake background/evaluation split suites and the 20 official one-shot runs."""
from __future__ import annotations

import zipfile

import pytest
import torch

from metabench.errors import ConfigError, DataUnavailable, MetabenchError
from metabench.suites import make_suite
from metabench.suites.omniglot_lake import VAL_ALPHABETS, _labels, load_runs

_CACHE: dict[str, object] = {}


@pytest.fixture
def lake(shared_data):
    def get(suite_id):
        if suite_id not in _CACHE:
            _CACHE[suite_id] = make_suite(suite_id).prepare(shared_data, "cpu", allow_download=False, progress=False)
        return _CACHE[suite_id]
    return get


def test_lake_split_is_background_vs_evaluation(lake, omniglot):
    s = lake("omniglot-lake-5w1s")
    assert s.split_scheme == "lake" and s.describe()["split_scheme"] == "lake"
    chars = {k: set(v[:, 0].tolist()) for k, v in s._classes.items()}
    assert {k: len(v) for k, v in chars.items()} == {"train": 883, "val": 81, "test": 659}
    assert not (chars["train"] & chars["val"] or chars["train"] & chars["test"] or chars["val"] & chars["test"])
    bg = omniglot.background
    assert all(bool(bg[c]) for c in chars["train"] | chars["val"]) and not any(bool(bg[c]) for c in chars["test"])
    assert {omniglot.alphabets[c] for c in chars["val"]} == set(VAL_ALPHABETS)
    assert all(int(r) == 0 for v in s._classes.values() for r in v[:, 1])   # no rotated classes


def test_runs_are_the_official_tasks(lake, omniglot):
    s = lake("omniglot-lake-runs")
    assert (s.n_way, s.n_shot, s.n_query_test, s.n_test_tasks) == (20, 1, 1, 20)
    b = next(s.fixed_tasks("test", batch_size=50))
    assert b.task_ids == list(range(20)) and b.support_x.shape == (20, 20, 1, 28, 28) == b.query_x.shape
    assert torch.equal(b.support_y[0], torch.arange(20)) and torch.equal(b.query_y[0], torch.arange(20))
    # Every class image and its paired test item are drawings of the same evaluation character.
    eval_idx = {c: i for i, c in enumerate(omniglot.characters)}
    for r, d in enumerate(b.descriptors):
        assert d["run"] == r + 1 and None not in d["characters"] and len(set(d["characters"])) == 20
        assert all(not bool(omniglot.background[eval_idx[c]]) for c in d["characters"])
        for k, c in enumerate(d["characters"]):
            drawings = omniglot.images[eval_idx[c]]
            q = (b.query_x[r, k, 0] * 255).round().to(torch.uint8)
            assert any(torch.equal(q, drawings[j]) for j in range(20)), (r, k, c)
            assert not torch.equal(q, (b.support_x[r, k, 0] * 255).round().to(torch.uint8))
    # The first pair of run01/class_labels.txt: item01 is a drawing of class08.
    assert b.descriptors[0]["test_items"][7] == "item01.png"
    with pytest.raises(ConfigError, match="exactly 20"):
        next(s.fixed_tasks("test", 21))


def test_pixel_nearest_neighbour_on_runs_is_far_from_human(lake):
    """A sanity anchor: 1-NN on raw 28x28 pixels is much worse than the 4.5% human error."""
    b = next(lake("omniglot-lake-runs").fixed_tasks("test"))
    d = torch.cdist(b.query_x.flatten(2), b.support_x.flatten(2))       # (20 runs, 20 items, 20 classes)
    err = (d.argmin(-1) != b.query_y).float().mean().item()
    assert 0.3 < err < 0.95


def test_class_labels_parser_rejects_bad_files():
    good = "\n".join(f"run01/test/item{i:02d}.png run01/training/class{21 - i:02d}.png" for i in range(1, 21))
    assert _labels(good, "run01")[1] == 20
    with pytest.raises(MetabenchError, match="one to one"):
        _labels(good.replace("class20", "class19"), "run01")
    with pytest.raises(MetabenchError, match="unexpected line"):
        _labels("hello", "run01")


def test_runs_missing_offline_is_one_sentence(tmp_path, shared_data):
    import shutil

    (tmp_path / "omniglot").mkdir()
    for name in ("images_background.zip", "images_evaluation.zip", "splits"):
        src = shared_data / "omniglot" / name
        (tmp_path / "omniglot" / name).symlink_to(src, target_is_directory=src.is_dir())
    with pytest.raises(DataUnavailable, match="all_runs.zip"):
        make_suite("omniglot-lake-runs").prepare(tmp_path, "cpu", allow_download=False, progress=False)
    bad = tmp_path / "omniglot" / "official-extras"
    bad.mkdir()
    with zipfile.ZipFile(bad / "all_runs.zip", "w") as z:
        z.writestr("run01/class_labels.txt", "")
    with pytest.raises(MetabenchError, match="lacks a member|one to one"):
        load_runs(bad / "all_runs.zip")
    shutil.rmtree(bad)
