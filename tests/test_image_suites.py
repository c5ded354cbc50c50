"""miniImageNet and CIFAR-FS: loaders for every accepted format on tiny fake datasets, the
restricted unpickler, the CIFAR-FS split lists and a full `metabench run` smoke run (every algorithm's
conformance on both image shapes: test_conformance.py)."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from metabench.checks import check_suite
from metabench.cli import main
from metabench.errors import DataUnavailable, MetabenchError
from metabench.results.query import ResultsDB
from metabench.suites import make_suite
from metabench.suites.cifarfs import CIFAR100_FINE_LABELS, split_classes
from metabench.suites.image_classes import safe_pickle_load

FAKE_CLASSES = {"train": 6, "val": 5, "test": 5}
PER_CLASS = 20          # 5 shots + 15 queries at test


def _images(rng, n, size):
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _class_names():
    return {s: [f"n{i:08d}" for i in range(sum(list(FAKE_CLASSES.values())[:k]), sum(list(FAKE_CLASSES.values())[:k + 1]))]
            for k, s in enumerate(FAKE_CLASSES)}


def make_mini(root, fmt: str):
    """A fake miniImageNet under root/miniimagenet in format 'cache' | 'metaoptnet' | 'csv'."""
    folder = root / "miniimagenet"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = _class_names()
    for split, classes in names.items():
        n = len(classes) * PER_CLASS
        labels = np.repeat(np.arange(len(classes)), PER_CLASS)
        rng.shuffle(labels)                       # rows of a class are not contiguous
        if fmt == "cache":
            data = {"image_data": _images(rng, n, 84),
                    "class_dict": {c: np.flatnonzero(labels == i).tolist() for i, c in enumerate(classes)}}
            name = "mini-imagenet-cache-validation.pkl" if split == "val" else f"mini-imagenet-cache-{split}.pkl"
            (folder / name).write_bytes(pickle.dumps(data, protocol=2))
        elif fmt == "metaoptnet":
            offset = {"train": 0, "val": 64, "test": 80}[split]
            data = {"data": _images(rng, n, 84), "labels": (labels + offset).tolist(),
                    "catname2label": {c: i + offset for i, c in enumerate(classes)}}
            part = "train_phase_train" if split == "train" else split
            (folder / f"miniImageNet_category_split_{part}.pickle").write_bytes(pickle.dumps(data, protocol=4))
        else:
            lines = ["filename,label"]
            for i, c in enumerate(classes):
                (folder / "images" / c).mkdir(parents=True, exist_ok=True)
                for j in range(PER_CLASS):
                    name = f"{c}{j:08d}.png"
                    # Some at the original size (resized on load), some already 84x84; half in images/<label>/.
                    size = 90 if j % 2 else 84
                    target = folder / "images" / (c if i % 2 else "") / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(_images(rng, 1, size)[0]).save(target)
                    lines.append(f"{name},{c}")
            (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def make_cifar(root, *, labels_per_class=(16, 4)):
    """A fake cifar-100-python.tar.gz (the real Python-2 pickle layout) under root/cifar100."""
    rng = np.random.default_rng(1)
    members = {"meta": {"fine_label_names": list(CIFAR100_FINE_LABELS), "coarse_label_names": ["x"] * 20}}
    for part, k in zip(("train", "test"), labels_per_class):
        y = np.repeat(np.arange(100), k)
        rng.shuffle(y)
        members[part] = {"data": rng.integers(0, 256, size=(len(y), 3072), dtype=np.uint8),
                         "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "batch_label": part}
    (root / "cifar100").mkdir(parents=True)
    with tarfile.open(root / "cifar100" / "cifar-100-python.tar.gz", "w:gz") as tar:
        for name, obj in members.items():
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return root


def _prepared(suite_id, root):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not the published.*")
        return make_suite(suite_id).prepare(root, "cpu", allow_download=False, progress=False)


# --- restricted unpickling --------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_safe_pickle_refuses_code_and_reads_arrays(tmp_path):
    with pytest.raises(MetabenchError, match="Refusing to load.*system"):
        safe_pickle_load(pickle.dumps({"data": _Evil()}), "evil.pkl")
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 4, 5):
        out = safe_pickle_load(pickle.dumps({"a": arr, "b": [1, "x"], "c": np.int64(3)}, protocol=protocol))
        assert np.array_equal(out["a"], arr) and out["b"] == [1, "x"] and out["c"] == 3
    with pytest.raises(MetabenchError, match="Cannot read"):
        safe_pickle_load(b"not a pickle", "junk.pkl")


# --- CIFAR-FS split lists ---------------------------------------------------------------------
def test_cifarfs_lists_are_64_16_20_disjoint_cifar100_names():
    s = split_classes()
    assert {k: len(v) for k, v in s.items()} == {"train": 64, "val": 16, "test": 20}
    assert all(len(set(v)) == len(v) for v in s.values())
    assert not (set(s["train"]) & set(s["val"]) or set(s["train"]) & set(s["test"]) or set(s["val"]) & set(s["test"]))
    assert set(s["train"]) | set(s["val"]) | set(s["test"]) == set(CIFAR100_FINE_LABELS)
    assert len(set(CIFAR100_FINE_LABELS)) == 100
    # Spot checks against the paper's lists (r2d2 data/cifar-fs/splits/bertinetto).
    assert {"whale", "rocket", "worm"} <= set(s["test"]) and {"otter", "tractor"} <= set(s["val"])


# --- miniImageNet -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["cache", "metaoptnet", "csv"])
def test_miniimagenet_formats_load_and_conform(tmp_path, fmt):
    root = make_mini(tmp_path, fmt)
    with pytest.warns(UserWarning, match="not the published"):
        suite = make_suite("miniimagenet-5w5s").prepare(root, "cpu", allow_download=False, progress=False)
    imgs = suite._data.images
    assert {s: tuple(t.shape) for s, t in imgs.items()} == {
        s: (n, PER_CLASS, 3, 84, 84) for s, n in FAKE_CLASSES.items()}
    assert suite._data.classes["val"] == _class_names()["val"]
    check_suite(suite)
    b = suite.sample("test", 2, torch.Generator().manual_seed(0))
    assert b.support_x.shape == (2, 25, 3, 84, 84) and set(b.descriptors[0]["classes"]) <= set(_class_names()["test"])


def test_miniimagenet_pickle_rows_are_grouped_by_class(tmp_path):
    """Every image of class c in the decoded tensor is a row the pickle lists under c."""
    root = make_mini(tmp_path, "cache")
    raw = pickle.loads((root / "miniimagenet" / "mini-imagenet-cache-train.pkl").read_bytes())
    suite = _prepared("miniimagenet-5w1s", root)
    t = suite._data.images["train"]
    for i, c in enumerate(suite._data.classes["train"]):
        want = torch.from_numpy(raw["image_data"][raw["class_dict"][c]]).permute(0, 3, 1, 2)
        assert torch.equal(t[i], want)


def test_miniimagenet_absent_is_one_sentence(tmp_path):
    with pytest.raises(DataUnavailable) as info:
        make_suite("miniimagenet-5w1s").prepare(tmp_path, "cpu", allow_download=False, progress=False)
    msg = str(info.value)
    assert str(tmp_path / "miniimagenet") in msg and "mini-imagenet-cache" in msg and "train.csv" in msg[:400] or \
        "{train,val,test}.csv" in msg


def test_miniimagenet_evil_pickle_is_refused(tmp_path):
    folder = tmp_path / "miniimagenet"
    folder.mkdir()
    for s in ("train", "val", "test"):
        (folder / f"mini-imagenet-cache-{s}.pkl").write_bytes(pickle.dumps({"image_data": _Evil(), "class_dict": {}}))
    with pytest.raises(MetabenchError, match="Refusing"):
        make_suite("miniimagenet-5w1s").prepare(tmp_path, "cpu", allow_download=False, progress=False)


def test_miniimagenet_wrong_shape_is_explained(tmp_path):
    folder = tmp_path / "miniimagenet"
    folder.mkdir()
    for s in ("train", "val", "test"):
        data = {"image_data": np.zeros((4, 32, 32, 3), np.uint8), "class_dict": {f"{s}c": [0, 1, 2, 3]}}
        (folder / f"mini-imagenet-cache-{s}.pkl").write_bytes(pickle.dumps(data))
    with pytest.raises(MetabenchError, match=r"expected images as uint8 \(N, 84, 84, 3\)"):
        make_suite("miniimagenet-5w1s").prepare(tmp_path, "cpu", allow_download=False, progress=False)


# --- CIFAR-FS ---------------------------------------------------------------------------------
def test_cifarfs_archive_loads_with_the_bertinetto_split(tmp_path):
    root = make_cifar(tmp_path)
    suite = _prepared("cifarfs-5w5s", root)
    s = split_classes()
    assert suite._data.classes == s
    assert {k: tuple(v.shape) for k, v in suite._data.images.items()} == {
        "train": (64, 20, 3, 32, 32), "val": (16, 20, 3, 32, 32), "test": (20, 20, 3, 32, 32)}
    # Pixel layout: row r of the archive is 3 channel planes of 32x32.
    with tarfile.open(root / "cifar100" / "cifar-100-python.tar.gz") as tar:
        train = pickle.load(tar.extractfile("cifar-100-python/train"))
    label = CIFAR100_FINE_LABELS.index(s["test"][0])
    first = np.flatnonzero(np.asarray(train["fine_labels"]) == label)[0]
    assert torch.equal(suite._data.images["test"][0, 0], torch.from_numpy(train["data"][first].reshape(3, 32, 32)))
    check_suite(suite)


def test_cifarfs_missing_offline_and_wrong_archive(tmp_path):
    with pytest.raises(DataUnavailable, match=r"cifar100 fetch|data fetch cifar100"):
        make_suite("cifarfs-5w1s").prepare(tmp_path, "cpu", allow_download=False, progress=False)
    (tmp_path / "cifar100").mkdir()
    (tmp_path / "cifar100" / "cifar-100-python.tar.gz").write_bytes(b"garbage")
    with pytest.raises(MetabenchError, match="not a readable tar.gz"):
        make_suite("cifarfs-5w1s").prepare(tmp_path, "cpu", allow_download=False, progress=False)


def test_fetch_cifar100_from_a_mirror_checks_the_md5(tmp_path, monkeypatch):
    import hashlib

    from metabench.datasets import fetch_command
    from metabench.errors import ChecksumError

    mirror = make_cifar(tmp_path / "mirror") / "cifar100"
    md5 = hashlib.md5((mirror / "cifar-100-python.tar.gz").read_bytes()).hexdigest()
    with pytest.raises(ChecksumError):          # the default (official) md5 rejects the fake archive
        fetch_command("cifar100", tmp_path / "data", base_url=mirror.as_uri())
    assert not (tmp_path / "data" / "cifar100" / "cifar-100-python.tar.gz").exists()
    folder = fetch_command("cifar100", tmp_path / "data", base_url=mirror.as_uri(),
                           checksums={"cifar-100-python.tar.gz": f"md5:{md5}"})
    assert (folder / "cifar-100-python.tar.gz").read_bytes() == (mirror / "cifar-100-python.tar.gz").read_bytes()


# --- a full run on the fake data --------------------------------------------------------------
def test_smoke_run_on_fake_miniimagenet_and_cifarfs(tmp_path, capsys):
    data = make_cifar(make_mini(tmp_path / "data", "cache"))
    results = tmp_path / "results"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not the published.*")
        rc = main(["run", "--suites", "miniimagenet-5w1s,cifarfs-5w1s", "--algorithms", "protonet",
                   "--preset", "smoke", "--data-dir", str(data), "--results-dir", str(results),
                   "--device", "cpu", "--no-download", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    db = ResultsDB(results)
    runs = db.runs()
    assert set(runs["suite"]) == {"miniimagenet-5w1s", "cifarfs-5w1s"} and set(runs["status"]) == {"finished"}
    assert set(runs["split_scheme"]) == {"ravi", "bertinetto"}
    board = db.leaderboard("miniimagenet-5w1s")
    assert len(board) == 1 and board["n_tasks"].iloc[0] == 10 and 0 <= board["mean"].iloc[0] <= 1
    assert db.leaderboard("miniimagenet-5w1s", split_scheme="ravi").equals(board)
    assert db.leaderboard("miniimagenet-5w1s", split_scheme="vinyals").empty
