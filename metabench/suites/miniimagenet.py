"""miniImageNet N-way K-shot classification on the Ravi & Larochelle (2017) split.

Vinyals et al. (2016), "Matching Networks for One Shot Learning" (the dataset); Ravi & Larochelle
(2017), "Optimization as a Model for Few-Shot Learning" (the split used by MAML, ProtoNets and
most later work): 100 ImageNet classes x 600 images, 84x84 RGB; 64 train / 16 val / 20 test
classes. Tasks are drawn as in every image suite (``image_classes.ImageClasses``): 15 queries per
class at test, 600 fixed test tasks.

Nothing is downloaded (ImageNet's terms do not allow redistribution). The loader reads, from
``ROOT/miniimagenet/`` (``ROOT`` = ``--data-dir`` / ``METABENCH_DATA``), whichever of the common
formats is there, in this order:

1. ``mini-imagenet-cache-{train,val,test}.pkl`` (learn2learn and others; ``-validation`` is
   accepted for val): a dict with ``image_data`` (N, 84, 84, 3) uint8 and ``class_dict``
   {class name: [row indices]}.
2. ``miniImageNet_category_split_{train_phase_train,val,test}.pickle`` (MetaOptNet, Lee et al.
   2019, and its descendants): a dict with ``data`` (N, 84, 84, 3) uint8 and ``labels`` (N ints);
   class names come from ``catname2label`` when present.
3. ``{train,val,test}.csv`` (Ravi's files: header ``filename,label``) with the images in
   ``images/<filename>`` or ``images/<label>/<filename>``; images that are not 84x84 are resized
   with PIL's LANCZOS filter (as ProtoNets' preprocessing script does), converted to RGB.

Pickles are read with ``image_classes.safe_pickle_load`` (numpy arrays and plain containers only),
never with a bare ``pickle.load``. The decoded tensors are cached (``cache_dir()``).

Differences from the papers: none in the task distribution; pixels are scaled to [0, 1] without
per-channel mean/std normalisation (batch norm in Conv-4 follows the first convolution).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from metabench.errors import DataUnavailable, MetabenchError
from metabench.suites.image_classes import ClassImages, ImageClasses, files_fingerprint, load_cached, safe_pickle_load

SPLITS = ("train", "val", "test")
IMAGE_SIZE = 84
#: (classes, images per class) of the Ravi & Larochelle split.
EXPECTED = {"train": (64, 600), "val": (16, 600), "test": (20, 600)}
#: Bump when decoding changes (part of the cache file name).
PREPROCESS_VERSION = 1

_CACHE_NAMES = {"train": ("mini-imagenet-cache-train.pkl",),
                "val": ("mini-imagenet-cache-val.pkl", "mini-imagenet-cache-validation.pkl"),
                "test": ("mini-imagenet-cache-test.pkl",)}
_METAOPTNET_NAMES = {"train": "miniImageNet_category_split_train_phase_train.pickle",
                     "val": "miniImageNet_category_split_val.pickle",
                     "test": "miniImageNet_category_split_test.pickle"}
FORMATS_TEXT = ("mini-imagenet-cache-{train,val,test}.pkl, "
                "miniImageNet_category_split_{train_phase_train,val,test}.pickle, "
                "or {train,val,test}.csv with an images/ folder")


def _group(images: np.ndarray, rows_by_class: dict[str, list[int]], what: str) -> tuple[torch.Tensor, list[str]]:
    """(N, 84, 84, 3) uint8 rows grouped by class -> (n_classes, n_per_class, 3, 84, 84)."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise MetabenchError(f"{what}: expected images as uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3), received {got}.")
    counts = {len(v) for v in rows_by_class.values()}
    if len(counts) != 1:
        raise MetabenchError(f"{what}: classes have different numbers of images ({sorted(counts)}); "
                             "expected the same number for every class (600 in miniImageNet).")
    names = list(rows_by_class)
    idx = np.asarray([rows_by_class[n] for n in names], dtype=np.int64)   # (C, n)
    if idx.size and (idx.min() < 0 or idx.max() >= len(images)):
        raise MetabenchError(f"{what}: class indices point outside the {len(images)} images.")
    grouped = torch.from_numpy(images[idx])                               # (C, n, 84, 84, 3)
    return grouped.permute(0, 1, 4, 2, 3).contiguous(), names


def _as_dict(obj, what: str, keys: tuple[str, ...]) -> dict:
    if not isinstance(obj, dict) or not all(k in obj for k in keys):
        found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise MetabenchError(f"{what}: expected a dict with keys {', '.join(keys)}; received {found}.")
    return obj


def _from_cache_pickles(paths: dict[str, Path]) -> ClassImages:
    images, classes = {}, {}
    for split, path in paths.items():
        d = _as_dict(safe_pickle_load(path), str(path), ("image_data", "class_dict"))
        rows = {str(k): [int(i) for i in v] for k, v in d["class_dict"].items()}
        images[split], classes[split] = _group(d["image_data"], rows, str(path))
    return ClassImages(images, classes, str(next(iter(paths.values())).parent))


def _from_metaoptnet(paths: dict[str, Path]) -> ClassImages:
    images, classes = {}, {}
    for split, path in paths.items():
        d = _as_dict(safe_pickle_load(path), str(path), ("data", "labels"))
        names = {int(v): str(k) for k, v in d.get("catname2label", {}).items()}
        by_label: dict[int, list[int]] = {}
        for i, label in enumerate(np.asarray(d["labels"]).tolist()):
            by_label.setdefault(int(label), []).append(i)
        rows = {names.get(k, f"label{k}"): by_label[k] for k in sorted(by_label)}   # classes by label
        images[split], classes[split] = _group(d["data"], rows, str(path))
    return ClassImages(images, classes, str(next(iter(paths.values())).parent))


def _read_csv(path: Path) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["filename", "label"]:
            raise MetabenchError(f"{path}: expected a header 'filename,label', received {header!r}.")
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) < 2:
                raise MetabenchError(f"{path}:{lineno}: expected 'filename,label', received {row!r}.")
            rows.setdefault(row[1].strip(), []).append(row[0].strip())
    return rows


def _decode_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(path.read_bytes())) as im:
            im = im.convert("RGB")
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MetabenchError(f"Cannot decode {path} ({exc}): the file is missing or corrupt.") from exc


def _from_csv(folder: Path, progress: bool) -> ClassImages:
    from tqdm.auto import tqdm

    tables = {s: _read_csv(folder / f"{s}.csv") for s in SPLITS}
    total = sum(len(v) for t in tables.values() for v in t.values())
    images, classes = {}, {}
    with tqdm(total=total, unit="img", desc="Decoding miniImageNet", disable=not progress) as bar:
        for split, table in tables.items():
            files, rows, n = [], {}, 0
            for label, names in table.items():
                rows[label] = list(range(n, n + len(names)))
                n += len(names)
                for name in names:
                    path = folder / "images" / name
                    if not path.is_file():
                        path = folder / "images" / label / name
                    files.append(_decode_image(path))
                    bar.update(1)
            stacked = np.stack(files) if files else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
            images[split], classes[split] = _group(stacked, rows, str(folder / f"{split}.csv"))
    return ClassImages(images, classes, str(folder))


def load_miniimagenet(data_root=None, *, progress: bool = True) -> ClassImages:
    """miniImageNet from ``ROOT/miniimagenet`` in any of the accepted formats (module docstring).

    Raises DataUnavailable (one sentence naming the folder and the formats) when none is there,
    MetabenchError when the files are there but malformed.
    """
    from metabench.datafiles import resolve_data_root

    folder = resolve_data_root(data_root) / "miniimagenet"
    cache_pkls = {s: next((folder / n for n in names if (folder / n).is_file()), None)
                  for s, names in _CACHE_NAMES.items()}
    metaopt = {s: folder / n for s, n in _METAOPTNET_NAMES.items()}
    csvs = {s: folder / f"{s}.csv" for s in SPLITS}
    if all(cache_pkls.values()):
        paths, build = cache_pkls, lambda: _from_cache_pickles(cache_pkls)
    elif all(p.is_file() for p in metaopt.values()):
        paths, build = metaopt, lambda: _from_metaoptnet(metaopt)
    elif all(p.is_file() for p in csvs.values()) and (folder / "images").is_dir():
        paths, build = csvs, lambda: _from_csv(folder, progress)
    else:
        raise DataUnavailable(f"miniImageNet was not found in {folder}: put one of these there (it cannot be "
                              f"downloaded automatically): {FORMATS_TEXT}.")
    # The csv format's fingerprint covers the csv files only: edit images in place -> delete the cache.
    data = load_cached("metabench-miniimagenet", PREPROCESS_VERSION,
                       files_fingerprint(list(paths.values())), build)
    data.check("miniImageNet", (3, IMAGE_SIZE, IMAGE_SIZE), EXPECTED)
    return data


class MiniImageNet(ImageClasses):
    version = 1
    split_scheme = "ravi"
    needs_data = "miniimagenet"

    def __init__(self, way: int, shot: int):
        super().__init__(way, shot)
        self.id = f"miniimagenet-{way}w{shot}s"
        self.input_shape = (3, IMAGE_SIZE, IMAGE_SIZE)

    def _load(self, data_root, allow_download, progress):
        return load_miniimagenet(data_root, progress=progress)
