"""CIFAR-FS N-way K-shot classification (Bertinetto et al. 2019).

Bertinetto, Henriques, Torr & Vedaldi (2019), "Meta-learning with differentiable closed-form
solvers", ICLR. CIFAR-FS is CIFAR-100 (Krizhevsky 2009) re-split by class: 64 train / 16 val /
20 test classes, each with all of its 600 images (CIFAR-100's 500 training + 100 test images),
32x32 RGB. The class lists are the paper's (``cifarfs_splits/*.txt``, shipped with the package;
see their header for provenance). Tasks are drawn as in every image suite
(``image_classes.ImageClasses``): 15 queries per class at test, 600 fixed test tasks.

Data: the standard CIFAR-100 python archive ``cifar-100-python.tar.gz`` (md5
eb9058c3a382ffc7106e4002c42a8d85, as torchvision checks) in ``ROOT/cifar100/``, or the folder
``cifar-100-python/`` it unpacks to. ``metabench data fetch cifar100`` downloads the archive
(checksum verified, atomic). The archive is never extracted: its ``meta``, ``train`` and ``test``
members are read by exact name straight from the tar (so no member path can escape anywhere) and
unpickled with ``image_classes.safe_pickle_load`` (numpy arrays and plain containers only).
The decoded tensor is cached (``cache_dir()``).

Differences from the paper: none in the task distribution; pixels are scaled to [0, 1] without
per-channel normalisation and without the paper's data augmentation.
"""
from __future__ import annotations

import tarfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from metabench.errors import MetabenchError
from metabench.suites.image_classes import ClassImages, ImageClasses, files_fingerprint, load_cached, safe_pickle_load

SPLITS = ("train", "val", "test")
IMAGE_SIZE = 32
ARCHIVE = "cifar-100-python.tar.gz"
FOLDER = "cifar-100-python"
EXPECTED = {"train": (64, 600), "val": (16, 600), "test": (20, 600)}
PREPROCESS_VERSION = 1

#: CIFAR-100's 100 fine label names, in the archive's ``meta`` order (alphabetical).
CIFAR100_FINE_LABELS = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray "
    "road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar "
    "sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle "
    "wardrobe whale willow_tree wolf woman worm"
).split()


def split_classes() -> dict[str, list[str]]:
    """The CIFAR-FS class names of each meta-split (64 / 16 / 20), from the shipped lists."""
    out = {}
    for split in SPLITS:
        text = resources.files("metabench.suites").joinpath("cifarfs_splits", f"{split}.txt").read_text("utf-8")
        out[split] = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return out


def _get(d: dict, key: str, what: str):
    """CIFAR pickles are Python 2 dicts: keys are str under latin1 decoding, bytes otherwise."""
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    raise MetabenchError(f"{what}: expected a dict with key {key!r}; received keys {sorted(map(str, d))[:6]}.")


def _members(source: Path) -> dict[str, object]:
    """meta/train/test of the archive (read from the tar, never extracted) or of the folder."""
    out = {}
    if source.is_dir():
        for name in ("meta", "train", "test"):
            out[name] = safe_pickle_load(source / name)
        return out
    try:
        with tarfile.open(source, "r:gz") as tar:
            for name in ("meta", "train", "test"):
                try:
                    f = tar.extractfile(f"{FOLDER}/{name}")
                except KeyError as exc:
                    raise MetabenchError(f"{source} has no member {FOLDER}/{name}: it is not the CIFAR-100 "
                                         "python archive; delete it and run `metabench data fetch cifar100`.") from exc
                if f is None:
                    raise MetabenchError(f"{source}: {FOLDER}/{name} is not a regular file.")
                with f:
                    out[name] = safe_pickle_load(f, f"{FOLDER}/{name} in {source}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise MetabenchError(f"{source} is not a readable tar.gz ({exc}): delete it and run "
                             "`metabench data fetch cifar100`.") from exc
    return out


def _build(source: Path) -> ClassImages:
    m = _members(source)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _get(m["meta"], "fine_label_names", "meta")]
    data, labels = [], []
    for part in ("train", "test"):
        x = np.asarray(_get(m[part], "data", part))
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE:
            raise MetabenchError(f"{part} in {source}: expected data as uint8 (N, 3072), received {x.dtype} {x.shape}.")
        data.append(x.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE))   # rows are channel-major (R, G, B planes)
        labels.append(np.asarray(_get(m[part], "fine_labels", part), dtype=np.int64))
    x, y = np.concatenate(data), np.concatenate(labels)
    if len(x) != len(y) or (len(y) and (y.min() < 0 or y.max() >= len(names))):
        raise MetabenchError(f"{source}: fine_labels do not match the images or the {len(names)} label names.")
    index = {n: i for i, n in enumerate(names)}
    images, classes = {}, {}
    for split, wanted in split_classes().items():
        missing = [c for c in wanted if c not in index]
        if missing:
            raise MetabenchError(f"{source}: CIFAR-FS class(es) {', '.join(missing)} are not among its fine labels.")
        rows = [np.flatnonzero(y == index[c]) for c in wanted]
        if len({len(r) for r in rows}) != 1:
            raise MetabenchError(f"{source}: the CIFAR-FS {split} classes have different numbers of images.")
        images[split] = torch.from_numpy(x[np.stack(rows)])          # (C, n, 3, 32, 32), train images first
        classes[split] = list(wanted)
    return ClassImages(images, classes, str(source))


def load_cifarfs(data_root=None, *, allow_download: bool = True, progress: bool = True) -> ClassImages:
    """CIFAR-FS from ``ROOT/cifar100`` (module docstring); downloads the archive when allowed."""
    from metabench.datasets import ensure_cifar100

    folder = ensure_cifar100(data_root, allow_download=allow_download, progress=progress)
    source = folder / FOLDER if (folder / FOLDER / "train").is_file() else folder / ARCHIVE
    files = [source / n for n in ("meta", "train", "test")] if source.is_dir() else [source]
    data = load_cached("metabench-cifarfs", PREPROCESS_VERSION, files_fingerprint(files), lambda: _build(source))
    data.check("CIFAR-FS", (3, IMAGE_SIZE, IMAGE_SIZE), EXPECTED)
    return data


class CifarFS(ImageClasses):
    version = 1
    split_scheme = "bertinetto"
    needs_data = "cifar100"

    def __init__(self, way: int, shot: int):
        super().__init__(way, shot)
        self.id = f"cifarfs-{way}w{shot}s"
        self.input_shape = (3, IMAGE_SIZE, IMAGE_SIZE)

    def _load(self, data_root, allow_download, progress):
        return load_cifarfs(data_root, allow_download=allow_download, progress=progress)


__all__ = ["CifarFS", "load_cifarfs", "split_classes", "CIFAR100_FINE_LABELS"]
