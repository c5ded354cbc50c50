"""Omniglot N-way K-shot classification on the Vinyals et al. (2016) split.

Data: Lake et al. (2015), 1623 characters x 20 drawers, resized to 28x28 (see
`metabench.suites.omniglot_images`).  Split: Vinyals et al. (2016) as released by Snell et al.
(2017) and used by MAML and ProtoNets: 1028 / 172 / 423 characters for train / val / test, each
rotated by 0, 90, 180 and 270 degrees into four classes (4112 / 688 / 1692 classes).

A task draws `n_way` distinct classes from the split and, for each, `n_shot + n_query` distinct
drawers; support and query never share an image.  Everything after the index draw is tensor work
on the device: the whole dataset lives there as one uint8 tensor, images are gathered by index,
rotated with `torch.rot90` and scaled to [0, 1] (strokes 1, background 0).
"""
from __future__ import annotations

import torch

from metabench.suites.base import Suite, TaskBatch

DRAWERS = 20


class Omniglot(Suite):
    version = 1
    kind = "classification"
    primary_metric = "accuracy"
    common_budgets = (1,)   # one inner step: the smallest budget of every gradient-based row
    split_scheme = "vinyals"
    needs_data = "omniglot"
    n_query_test = 15
    class_ids = True

    def __init__(self, way: int, shot: int):
        super().__init__()
        self.n_way, self.n_shot = way, shot
        self.id = f"omniglot-{way}w{shot}s"
        self.input_shape = (1, 28, 28)
        self._images: torch.Tensor | None = None

    def prepare(self, data_root=None, device="cpu", *, allow_download=True, progress=True):
        if self._images is None:
            from metabench.suites.omniglot_images import load_omniglot

            data = load_omniglot(data_root, allow_download=allow_download, progress=progress)
            self._characters = data.characters
            self._alphabets = data.alphabets
            self._classes = {}
            for split in ("train", "val", "test"):
                pairs = self._split_pairs(data, split)
                self._classes[split] = torch.tensor(
                    [[c, r // 90] for c, r in pairs], dtype=torch.int64)  # (n_classes, 2)
            self._images = data.images
        self._images = self._images.to(device)
        return super().prepare(data_root, device)

    def _split_pairs(self, data, split: str) -> list[tuple[int, int]]:
        """(character index, rotation in degrees) classes of one meta-split."""
        return data.split(self.split_scheme, split)

    def n_classes(self, split: str) -> int:
        return len(self._classes[split])

    def _sample(self, split, n_tasks, generator, *, n_way, n_shot, n_query) -> TaskBatch:
        classes = self._classes[split]
        if n_way > len(classes):
            raise ValueError(f"{n_way}-way tasks need {n_way} classes; the {split} split has {len(classes)}")
        if n_shot + n_query > DRAWERS:
            raise ValueError(f"n_shot + n_query must be at most {DRAWERS}, got {n_shot}+{n_query}")
        per = n_shot + n_query
        # Index draws on the CPU with the caller's generator (reproducible on every device).
        pick = torch.multinomial(torch.ones(n_tasks, len(classes)), n_way, replacement=False,
                                 generator=generator)                      # (T, W) class rows
        drawers = torch.multinomial(torch.ones(n_tasks * n_way, DRAWERS), per, replacement=False,
                                    generator=generator).view(n_tasks, n_way, per)  # (T, W, S+Q)
        chosen = classes[pick]                                             # (T, W, 2)
        char, rot = chosen[..., 0], chosen[..., 1]
        dev = self._images.device
        imgs = self._images[char.to(dev)[..., None], drawers.to(dev)]      # (T, W, S+Q, 28, 28)
        imgs = imgs.float().div_(255.0)
        rot_d = rot.to(dev)
        for k in (1, 2, 3):
            mask = rot_d == k
            if mask.any():
                imgs[mask] = torch.rot90(imgs[mask], k, dims=(-2, -1))
        # Shot-major layout: element j of a set has label j % n_way.
        imgs = imgs.transpose(1, 2)                                        # (T, S+Q, W, 28, 28)
        xs = imgs[:, :n_shot].reshape(n_tasks, n_shot * n_way, 1, 28, 28)
        xq = imgs[:, n_shot:].reshape(n_tasks, n_query * n_way, 1, 28, 28)
        labels = torch.arange(n_way, device=dev)
        ys = labels.repeat(n_shot).expand(n_tasks, -1).contiguous()
        yq = labels.repeat(n_query).expand(n_tasks, -1).contiguous()
        desc = []
        for t in range(n_tasks):
            names = [self._characters[int(c)] for c in char[t]]
            desc.append({"alphabets": [self._alphabets[int(c)] for c in char[t]],
                         "characters": names, "rotations": [int(r) * 90 for r in rot[t]]})
        return TaskBatch(xs, ys, xq, yq, n_way=n_way, query_groups=n_query, descriptors=desc,
                         classes=pick.to(dev))
