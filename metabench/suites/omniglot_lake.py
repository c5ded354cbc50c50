"""Omniglot on the original Lake et al. (2015) split, and the 20 official one-shot runs.

Lake, Salakhutdinov & Tenenbaum (2015). "Human-level concept learning through probabilistic
program induction." Science 350(6266):1332-1338; data and runs: github.com/brendenlake/omniglot.

Two suite families, both with ``split_scheme = "lake"`` (stored with every result, so the
leaderboard never mixes them with the Vinyals-split ``omniglot-*`` suites):

- ``omniglot-lake-{5,20}w{1,5}s``: N-way K-shot tasks drawn exactly like ``omniglot-*``
  (``metabench.suites.omniglot``), but meta-trained on the 30 *background* alphabets and tested
  on the 20 *evaluation* alphabets (659 characters), every character at rotation 0 (the original
  protocol has no rotated classes). The original protocol has no validation set; we hold out the
  5 smallest background alphabets (Blackfoot, Ojibwe, Inuktitut, Tagalog, Alphabet of the Magi:
  81 characters) for validation and meta-train on the other 25 (883 characters) — the same
  25/5 character counts as Meta-Dataset's Omniglot split.
- ``omniglot-lake-runs``: the paper's one-shot classification benchmark. Its fixed test tasks are
  the 20 official runs of ``all_runs.zip`` (``ROOT/omniglot/official-extras/all_runs.zip``,
  downloaded with ``metabench data fetch omniglot``). Each run is one 20-way 1-shot task: 20
  training images (``training/classNN.png``, one per class) and 20 test images
  (``test/itemNN.png``); ``class_labels.txt`` pairs every test item with its class image. All
  800 images are drawings of evaluation-set characters, and each run's 20 test items are 20
  different drawings of its 20 classes (one each), so a run is classified within itself, exactly
  as in the paper: error = fraction of the 20 test items given the wrong class image. Training
  and validation tasks are 20-way 1-shot tasks from the background alphabets (as above), so every
  algorithm meta-trains on the same task shape it is tested on. Published human error on these
  runs: 4.5% (Lake et al. 2015, Fig. 3 / main text) — see ``metabench.results.published``.

Preprocessing is that of the rest of the Omniglot suite (``omniglot_images.decode_png``): the
105x105 PNGs become 28x28 with PIL's LANCZOS filter, inverted so strokes are bright.

Differences from the paper: the paper's models (BPL) are not trained on episodes; here any
meta-learner is meta-trained on background-alphabet episodes. Task descriptors of the runs name
the evaluation character of every class image, found by exact equality of the preprocessed 28x28
image with the evaluation-set images (``None`` if no unique match).
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch

from metabench.errors import ConfigError, DataUnavailable, MetabenchError
from metabench.suites.base import TaskBatch
from metabench.suites.omniglot import Omniglot

N_RUNS = 20
RUN_WAY = 20
RUNS_FILE = "official-extras/all_runs.zip"
#: Background alphabets held out for validation (the 5 smallest: 14+14+16+17+20 = 81 characters).
VAL_ALPHABETS = (
    "Blackfoot_(Canadian_Aboriginal_Syllabics)",
    "Ojibwe_(Canadian_Aboriginal_Syllabics)",
    "Inuktitut_(Canadian_Aboriginal_Syllabics)",
    "Tagalog",
    "Alphabet_of_the_Magi",
)


class OmniglotLake(Omniglot):
    """N-way K-shot Omniglot tasks on the Lake background/evaluation split."""

    version = 1
    split_scheme = "lake"

    def __init__(self, way: int, shot: int):
        super().__init__(way, shot)
        self.id = f"omniglot-lake-{way}w{shot}s"

    def _split_pairs(self, data, split: str) -> list[tuple[int, int]]:
        if split == "test":
            return data.split("lake", "evaluation")
        background = data.split("lake", "background")
        is_val = [data.alphabets[c] in VAL_ALPHABETS for c, _ in background]
        return [p for p, v in zip(background, is_val) if v == (split == "val")]


def _labels(text: str, run: str) -> dict[int, int]:
    """class_labels.txt -> {test item number: class number}, checked to be a bijection."""
    pairs = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(rf"\s*{run}/test/item(\d\d)\.png\s+{run}/training/class(\d\d)\.png\s*", line)
        if not m:
            raise MetabenchError(f"{RUNS_FILE}: {run}/class_labels.txt has an unexpected line {line!r}; "
                                 f"expected '{run}/test/itemNN.png {run}/training/classNN.png'.")
        pairs[int(m.group(1))] = int(m.group(2))
    want = set(range(1, RUN_WAY + 1))
    if set(pairs) != want or set(pairs.values()) != want:
        raise MetabenchError(f"{RUNS_FILE}: {run}/class_labels.txt must pair items 01-20 with classes "
                             f"01-20 one to one; received {len(pairs)} pairs.")
    return pairs


def load_runs(zip_path: Path) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
    """The 20 official runs as uint8 tensors in the Omniglot preprocessing.

    Returns (support, query, items): support (20 runs, 20 classes, 28, 28) with class k at
    position k-1; query (20, 20, 28, 28) where position k-1 holds the test item of class k;
    items[run][k-1] is that test item's file name (``itemNN.png``).
    """
    from metabench.suites.omniglot_images import IMAGE_SIZE, decode_png

    support = torch.empty(N_RUNS, RUN_WAY, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    query = torch.empty_like(support)
    items: list[list[str]] = []
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for r in range(N_RUNS):
                run = f"run{r + 1:02d}"
                labels = _labels(archive.read(f"{run}/class_labels.txt").decode("utf-8"), run)
                by_class = {c: i for i, c in labels.items()}
                names = []
                for k in range(1, RUN_WAY + 1):
                    cls_name = f"{run}/training/class{k:02d}.png"
                    item_name = f"{run}/test/item{by_class[k]:02d}.png"
                    support[r, k - 1] = torch.from_numpy(decode_png(archive.read(cls_name), cls_name))
                    query[r, k - 1] = torch.from_numpy(decode_png(archive.read(item_name), item_name))
                    names.append(f"item{by_class[k]:02d}.png")
                items.append(names)
    except KeyError as exc:
        raise MetabenchError(f"{zip_path} lacks a member ({exc}): it is not the official all_runs.zip; "
                             "run `metabench data fetch omniglot` to replace it.") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise MetabenchError(f"{zip_path} is not a readable zip ({exc}): delete it and run "
                             "`metabench data fetch omniglot`.") from exc
    return support, query, items


def _ensure_runs(data_root, allow_download: bool, progress: bool) -> Path:
    from metabench.datafiles import download, resolve_data_root
    from metabench.datasets import OMNIGLOT_FILES

    path = resolve_data_root(data_root) / "omniglot" / RUNS_FILE
    if path.is_file():
        return path
    todo = (f"run `metabench data fetch omniglot` on a machine with internet, or copy the official "
            f"all_runs.zip (github.com/brendenlake/omniglot, python/one-shot-classification) to {path}.")
    if not allow_download:
        raise DataUnavailable(f"The Lake one-shot runs are not in {path} and downloading is turned off: {todo}")
    try:
        return download(OMNIGLOT_FILES[RUNS_FILE], path, progress=progress)
    except DataUnavailable as exc:
        raise DataUnavailable(f"The Lake one-shot runs are not in {path} and could not be downloaded: {todo}") from exc


class OmniglotLakeRuns(OmniglotLake):
    """The 20 official 20-way one-shot runs of Lake et al. (2015) as fixed test tasks."""

    version = 1
    n_query_test = 1
    n_test_tasks = N_RUNS

    def __init__(self):
        super().__init__(RUN_WAY, 1)
        self.id = "omniglot-lake-runs"
        self._runs: tuple[torch.Tensor, torch.Tensor] | None = None

    def prepare(self, data_root=None, device="cpu", *, allow_download=True, progress=True):
        super().prepare(data_root, device, allow_download=allow_download, progress=progress)
        if self._runs is None:
            support, query, items = load_runs(_ensure_runs(data_root, allow_download, progress))
            self._items = items
            self._run_characters = self._match_characters(support)
            self._runs = (support, query)
        self._runs = (self._runs[0].to(device), self._runs[1].to(device))
        return self

    def _match_characters(self, support: torch.Tensor) -> list[list[str | None]]:
        """The evaluation character of each class image, by exact 28x28 equality with its drawings."""
        test_chars = self._classes["test"][:, 0].tolist()
        index: dict[bytes, list[int]] = {}
        images = self._images.cpu()
        for c in test_chars:
            for d in range(images.shape[1]):
                index.setdefault(images[c, d].numpy().tobytes(), []).append(c)
        out = []
        for r in range(N_RUNS):
            row = []
            for k in range(RUN_WAY):
                hits = set(index.get(support[r, k].numpy().tobytes(), []))
                row.append(self._characters[hits.pop()] if len(hits) == 1 else None)
            out.append(row)
        return out

    def fixed_tasks(self, split: str = "test", n: int | None = None, batch_size: int = 50,
                    start: int = 0) -> Iterator[TaskBatch]:
        if split != "test":
            yield from super().fixed_tasks(split, n, batch_size, start)
            return
        total = N_RUNS if n is None else n
        if total > N_RUNS:
            raise ConfigError(f"{self.id} has exactly {N_RUNS} test tasks (the official runs); "
                              f"{total} were asked for")
        if not self._prepared or self._runs is None:
            raise RuntimeError(f"suite {self.id} was not prepared; call prepare() first")
        support, query = self._runs
        labels = torch.arange(RUN_WAY, device=support.device)
        for lo in range(start, total, batch_size):
            ids = list(range(lo, min(lo + batch_size, total)))
            sel = torch.tensor(ids, device=support.device)
            xs = support[sel].float().div_(255.0).unsqueeze(2)   # (T, 20, 1, 28, 28), label = position
            xq = query[sel].float().div_(255.0).unsqueeze(2)     # (T, 20, 1, 28, 28), one item per class
            y = labels.expand(len(ids), -1).contiguous()
            desc = []
            for i in ids:
                chars = self._run_characters[i]
                desc.append({"run": i + 1, "characters": chars,
                             "alphabets": [c.split("/", 1)[0] if c else None for c in chars],
                             "test_items": self._items[i]})
            yield replace(TaskBatch(xs, y, xq, y.clone(), n_way=RUN_WAY, query_groups=1, descriptors=desc),
                          task_ids=ids)

    def describe(self):
        return {**super().describe(), "test_tasks": "the 20 official runs of Lake et al. (2015)"}
