"""Omniglot as one uint8 tensor: read the PNGs once, cache the decoded tensor, load it fast.

Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015, Science 350(6266):1332-1338): 1623 handwritten
characters from 50 alphabets, drawn once by each of 20 people, as 105x105 1-bit PNGs.

``load_omniglot`` accepts, in ``ROOT/omniglot/``, either an unpacked tree
(``images_background/<Alphabet>/characterNN/*.png`` and ``images_evaluation/...``) or the zips
(``images_background.zip``/``images_evaluation.zip``: the official ones, or the re-packed ones
with the same PNG members). A complete tree is preferred over a zip (finding and checking them:
``metabench.suites.omniglot_layout``). The first call decodes 32,460 PNGs (seconds) and saves the
result in ``cache_dir()``; later calls read that file.

Preprocessing (version 1, part of the cache file name): each PNG is converted to "L", resized to
28x28 with PIL's LANCZOS filter, then inverted so strokes are bright (255) on a 0 background —
the 28x28 Omniglot of Vinyals et al. (2016) and Finn et al. (2017).

Meta-splits (``OmniglotData.split``):
- ``"vinyals"``: the class splits of Vinyals et al. (2016) as published by
  jakesnell/prototypical-networks, read from ``ROOT/omniglot/splits/vinyals/{train,val,test}.txt``;
  a class is a (character, rotation) pair, rotations 0/90/180/270 degrees. 1028/172/423
  characters, i.e. 4112/688/1692 classes; ``"trainval"`` is train followed by val. The splits are
  disjoint in characters, not in alphabets (Gurmukhi has characters in train and in test).
- ``"lake"``: the original background/evaluation division, every character at rotation 0;
  ``"train"`` is an alias of background, ``"test"`` of evaluation, and ``"val"`` is empty
  (the original protocol has no validation characters).
"""
from __future__ import annotations

import difflib
import hashlib
import io
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from metabench.datafiles import cache_dir, resolve_data_root
from metabench.datasets import ensure_omniglot
from metabench.errors import ConfigError, MetabenchError
from metabench.fsutil import atomic_file
from metabench.suites.omniglot_layout import (ALPHABETS, N_CHARACTERS, N_DRAWERS, SUBSETS, Source,
                                              expected_characters, locate, scan_zip)

__all__ = ["OmniglotData", "load_omniglot", "decode_png", "IMAGE_SIZE"]

#: Bump when decoding changes: it is part of the cache file name.
PREPROCESS_VERSION = 1
IMAGE_SIZE = 28
ROTATIONS = (0, 90, 180, 270)

_VINYALS_NAMES = ("train", "val", "test")
_LAKE_NAMES = ("background", "evaluation", "train", "val", "test")


@dataclass(frozen=True, eq=False)
class OmniglotData:
    """All of Omniglot, decoded; index-aligned per character.

    images: (1623, 20, 28, 28) uint8, character x drawer; strokes 255 on a 0 background.
    characters: ``"Alphabet/characterNN"`` per character: background alphabets then evaluation
        ones, alphabets sorted by name, characters by number.
    alphabets: the alphabet of each character.
    background: (1623,) bool, True for characters of images_background.
    vinyals: split name -> (character index, rotation) pairs, as read from the split files.
    """

    images: torch.Tensor
    characters: list[str]
    alphabets: list[str]
    background: torch.Tensor
    vinyals: dict[str, list[tuple[int, int]]] = field(repr=False)

    def __repr__(self) -> str:
        n, d, h, w = self.images.shape
        return (
            f"OmniglotData({n} characters x {d} drawers, {h}x{w} uint8, "
            f"{len(set(self.alphabets))} alphabets)"
        )

    def split(self, scheme: str = "vinyals", name: str = "train") -> list[tuple[int, int]]:
        """(character index, rotation in degrees) pairs of one meta-split.

        scheme "vinyals": name in train / val / test / trainval (4112 / 688 / 1692 / 4800 classes).
        scheme "lake": name in background / evaluation (train = background, test = evaluation,
        val = empty), every character at rotation 0.
        """
        if scheme == "vinyals":
            if name == "trainval":
                return list(self.vinyals["train"]) + list(self.vinyals["val"])
            if name in self.vinyals:
                return list(self.vinyals[name])
            raise ConfigError(_unknown("Vinyals split", name, (*_VINYALS_NAMES, "trainval")))
        if scheme == "lake":
            if name not in _LAKE_NAMES:
                raise ConfigError(_unknown("Lake split", name, _LAKE_NAMES))
            if name == "val":
                return []
            want_background = name in ("background", "train")
            return [(i, 0) for i, b in enumerate(self.background.tolist()) if b == want_background]
        raise ConfigError(_unknown("Omniglot split scheme", scheme, ("vinyals", "lake")))


def _unknown(kind: str, name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown {kind} {name!r}.{hint} Known: {', '.join(known)}."


# --------------------------------------------------------------------------- decoding


def decode_png(data: bytes, what: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            small = im.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MetabenchError(
            f"Cannot decode {what} ({exc}): the file is corrupt; replace it."
        ) from exc
    # The PNGs are black strokes on white; invert so strokes are the bright, non-zero pixels.
    return 255 - np.asarray(small, dtype=np.uint8)


def _decode(sources: list[Source], progress: bool) -> np.ndarray:
    images = np.empty((N_CHARACTERS, N_DRAWERS, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    with tqdm(
        total=N_CHARACTERS * N_DRAWERS, unit="img", desc="Decoding Omniglot", disable=not progress
    ) as bar:
        c = 0
        for src in sources:
            assert src.files is not None
            archive = zipfile.ZipFile(src.path) if src.kind == "zip" else None
            try:
                for names in src.files.values():
                    for d, name in enumerate(names):
                        if archive is not None:
                            try:
                                data = archive.read(name)
                            except zipfile.BadZipFile as exc:
                                raise MetabenchError(
                                    f"{src.path} is corrupt at {name} ({exc}): replace the zip."
                                ) from exc
                        else:
                            try:
                                data = (src.path / name).read_bytes()
                            except OSError as exc:
                                raise MetabenchError(
                                    f"Cannot read {src.path / name} ({exc.strerror or exc})."
                                ) from exc
                        images[c, d] = decode_png(data, f"{name} in {src.path}")
                    c += 1
                    bar.update(len(names))
            finally:
                if archive is not None:
                    archive.close()
    return images


# --------------------------------------------------------------------------- cache


def _images_digest(images: torch.Tensor) -> str:
    return hashlib.sha256(images.contiguous().numpy().data).hexdigest()


def _read_cache(path: Path, characters: list[str]) -> dict | None:
    """The cached tensors, or None when absent or not trustworthy (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        images = payload["images"]
        ok = (
            payload.get("format") == "metabench-omniglot"
            and payload.get("version") == PREPROCESS_VERSION
            and isinstance(images, torch.Tensor)
            and images.dtype == torch.uint8
            and tuple(images.shape) == (N_CHARACTERS, N_DRAWERS, IMAGE_SIZE, IMAGE_SIZE)
            and payload["characters"] == characters
            and payload["images_sha256"] == _images_digest(images)
        )
    except Exception as exc:  # any unreadable file is just a cache miss
        warnings.warn(f"Ignoring the unreadable Omniglot cache {path} ({exc}); decoding again.")
        return None
    if not ok:
        warnings.warn(
            f"Ignoring the Omniglot cache {path}: its content does not check out; decoding again."
        )
        return None
    return payload


# --------------------------------------------------------------------------- splits


def _read_vinyals(folder: Path, index: dict[str, int]) -> dict[str, list[tuple[int, int]]]:
    splits = {}
    for name in _VINYALS_NAMES:
        path = folder / "splits" / "vinyals" / f"{name}.txt"
        pairs = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                character, _, rot = line.rpartition("/")
                m = re.fullmatch(r"rot(\d{3})", rot)
                if character not in index or not m or int(m.group(1)) not in ROTATIONS:
                    raise MetabenchError(
                        f"{path}:{lineno}: expected 'Alphabet/characterNN/rotDDD' naming an "
                        f"Omniglot character and a rotation in {ROTATIONS}, received {line!r}."
                    )
                pairs.append((index[character], int(m.group(1))))
        splits[name] = pairs
    return splits


# --------------------------------------------------------------------------- entry point


def load_omniglot(
    data_root: str | os.PathLike[str] | None = None,
    *,
    allow_download: bool = True,
    progress: bool = True,
) -> OmniglotData:
    """Omniglot from ``data_root/omniglot`` (default root: ``resolve_data_root()``).

    Missing files are downloaded when ``allow_download`` (see ``ensure_omniglot``). The decoded
    tensor is cached in ``cache_dir()`` under a name that changes with the source PNGs, so a
    later call with the same files only reads that cache (well under a second).
    Raises DataUnavailable when the data is absent and cannot be fetched, MetabenchError when
    it is present but incomplete or corrupt (saying what is missing).
    """
    folder = ensure_omniglot(
        resolve_data_root(data_root), allow_download=allow_download, progress=progress
    )
    sources = [locate(folder, subset) for subset in SUBSETS]
    characters = expected_characters()
    alphabets = [c.split("/", 1)[0] for c in characters]
    n_background = sum(n for _, n in ALPHABETS["images_background"])
    background = torch.arange(len(characters)) < n_background

    source_digest = hashlib.sha256(
        "".join(f"{s.subset}:{s.kind}:{s.fingerprint}\n" for s in sources).encode()
    ).hexdigest()[:16]
    name = f"omniglot-{IMAGE_SIZE}x{IMAGE_SIZE}-v{PREPROCESS_VERSION}-{source_digest}.pt"
    cache_path = cache_dir() / name
    payload = _read_cache(cache_path, characters)
    if payload is None:
        # Only now list and check the zips: a cache hit means these exact bytes were checked.
        sources = [
            src if src.files is not None else replace(src, files=scan_zip(src.path, src.subset))
            for src in sources
        ]
        assert [c for src in sources for c in src.files] == characters
        images = torch.from_numpy(_decode(sources, progress))
        payload = {
            "format": "metabench-omniglot",
            "version": PREPROCESS_VERSION,
            "images": images,
            "images_sha256": _images_digest(images),
            "characters": characters,
            "source_digest": source_digest,
        }
        try:
            with atomic_file(cache_path) as f:
                torch.save(payload, f)
        except OSError as exc:
            # The decoded data is good; only the speed-up for the next run is lost.
            warnings.warn(
                f"Could not write the Omniglot cache {cache_path} ({exc.strerror or exc}); the next "
                "load will decode again. Set METABENCH_CACHE to a writable folder with space."
            )
    index = {c: i for i, c in enumerate(characters)}
    return OmniglotData(
        images=payload["images"],
        characters=characters,
        alphabets=alphabets,
        background=background,
        vinyals=_read_vinyals(folder, index),
    )
