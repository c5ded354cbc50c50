"""Omniglot as one uint8 tensor: read the PNGs once, cache the decoded tensor, load it fast.

Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015, Science 350(6266):1332-1338): 1623 handwritten
characters from 50 alphabets, drawn once by each of 20 people, as 105x105 1-bit PNGs.

``load_omniglot`` accepts, in ``ROOT/omniglot/``, either an unpacked tree
(``images_background/<Alphabet>/characterNN/*.png`` and ``images_evaluation/...``) or the zips
(``images_background.zip``/``images_evaluation.zip``: the official ones, or the re-packed ones
with the same PNG members). A complete tree is preferred over a zip. The first call decodes
32,460 PNGs (seconds) and saves the result in ``cache_dir()``; later calls read that file.

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
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from metabench.data import cache_dir, ensure_omniglot, file_checksum, resolve_data_root
from metabench.errors import ConfigError, DataUnavailable, MetabenchError

__all__ = ["OmniglotData", "load_omniglot", "ALPHABETS", "N_DRAWERS", "IMAGE_SIZE"]

#: Bump when decoding changes: it is part of the cache file name.
PREPROCESS_VERSION = 1
IMAGE_SIZE = 28
N_DRAWERS = 20
ROTATIONS = (0, 90, 180, 270)

#: The published content, (alphabet folder, number of characters) per set, from alphabets.csv.
#: It lets the loader say exactly what is missing from an incomplete copy.
ALPHABETS: dict[str, tuple[tuple[str, int], ...]] = {
    "images_background": (
        ("Alphabet_of_the_Magi", 20),
        ("Anglo-Saxon_Futhorc", 29),
        ("Arcadian", 26),
        ("Armenian", 41),
        ("Asomtavruli_(Georgian)", 40),
        ("Balinese", 24),
        ("Bengali", 46),
        ("Blackfoot_(Canadian_Aboriginal_Syllabics)", 14),
        ("Braille", 26),
        ("Burmese_(Myanmar)", 34),
        ("Cyrillic", 33),
        ("Early_Aramaic", 22),
        ("Futurama", 26),
        ("Grantha", 43),
        ("Greek", 24),
        ("Gujarati", 48),
        ("Hebrew", 22),
        ("Inuktitut_(Canadian_Aboriginal_Syllabics)", 16),
        ("Japanese_(hiragana)", 52),
        ("Japanese_(katakana)", 47),
        ("Korean", 40),
        ("Latin", 26),
        ("Malay_(Jawi_-_Arabic)", 40),
        ("Mkhedruli_(Georgian)", 41),
        ("N_Ko", 33),
        ("Ojibwe_(Canadian_Aboriginal_Syllabics)", 14),
        ("Sanskrit", 42),
        ("Syriac_(Estrangelo)", 23),
        ("Tagalog", 17),
        ("Tifinagh", 55),
    ),
    "images_evaluation": (
        ("Angelic", 20),
        ("Atemayar_Qelisayer", 26),
        ("Atlantean", 26),
        ("Aurek-Besh", 26),
        ("Avesta", 26),
        ("Ge_ez", 26),
        ("Glagolitic", 45),
        ("Gurmukhi", 45),
        ("Kannada", 41),
        ("Keble", 26),
        ("Malayalam", 47),
        ("Manipuri", 40),
        ("Mongolian", 30),
        ("Old_Church_Slavonic_(Cyrillic)", 45),
        ("Oriya", 46),
        ("Sylheti", 28),
        ("Syriac_(Serto)", 23),
        ("Tengwar", 25),
        ("Tibetan", 42),
        ("ULOG", 26),
    ),
}
SUBSETS = ("images_background", "images_evaluation")
N_CHARACTERS = sum(n for subset in SUBSETS for _, n in ALPHABETS[subset])  # 1623

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


# --------------------------------------------------------------------------- finding the PNGs


@dataclass(frozen=True)
class _Source:
    """Where one set's PNGs are: a complete tree, or a zip (checked only when decoded)."""

    subset: str
    kind: str  # "tree" or "zip"
    path: Path
    fingerprint: str  # changes whenever the PNGs do; cheap to compute
    # "Alphabet/characterNN" -> its 20 PNG paths (tree: relative to path; zip: member names).
    # None for a zip until it is needed: listing 20k members costs more than the cached load.
    files: dict[str, list[str]] | None = None


def _problems_text(where: Path, problems: list[str]) -> str:
    shown = "; ".join(problems[:5])
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    return f"{where} is incomplete: {shown}{more}"


def _check_layout(subset: str, found: dict[str, dict[int, list[str]]]) -> list[str]:
    """Compare ``found[alphabet][character number] -> png names`` with the published content."""
    problems = []
    missing_alphabets = [a for a, _ in ALPHABETS[subset] if a not in found]
    if missing_alphabets:
        problems.append(f"missing alphabet(s) {', '.join(missing_alphabets)}")
    for alphabet, n_chars in ALPHABETS[subset]:
        if alphabet not in found:
            continue
        chars = found[alphabet]
        absent = [f"character{k:02d}" for k in range(1, n_chars + 1) if k not in chars]
        if absent:
            problems.append(f"{alphabet} lacks {', '.join(absent)} (expected {n_chars} characters)")
        for k, pngs in sorted(chars.items()):
            if k <= n_chars and len(pngs) != N_DRAWERS:
                problems.append(
                    f"{alphabet}/character{k:02d} has {len(pngs)} PNGs, expected {N_DRAWERS}"
                )
    return problems


def _files_in_order(subset: str, found: dict[str, dict[int, list[str]]]) -> dict[str, list[str]]:
    return {
        f"{alphabet}/character{k:02d}": sorted(found[alphabet][k])
        for alphabet, n_chars in sorted(ALPHABETS[subset])
        for k in range(1, n_chars + 1)
    }


_CHAR_DIR = re.compile(r"character(\d+)")


def _scan_tree(tree: Path, subset: str) -> tuple[dict[str, list[str]] | None, str, list[str]]:
    """Lists a tree's PNGs and fingerprints them by name, size and mtime (stats only)."""
    found: dict[str, dict[int, list[str]]] = {}
    stats: dict[str, tuple[int, int]] = {}
    for alphabet, _ in ALPHABETS[subset]:
        adir = tree / alphabet
        if not adir.is_dir():
            continue
        chars: dict[int, list[str]] = {}
        for cdir in os.scandir(adir):
            m = _CHAR_DIR.fullmatch(cdir.name)
            if not m or not cdir.is_dir():
                continue
            pngs = []
            for f in os.scandir(cdir.path):
                if f.name.endswith(".png") and f.is_file():
                    st = f.stat()
                    rel = f"{alphabet}/{cdir.name}/{f.name}"
                    pngs.append(rel)
                    stats[rel] = (st.st_size, st.st_mtime_ns)
            chars[int(m.group(1))] = pngs
        found[alphabet] = chars
    problems = _check_layout(subset, found)
    if problems:
        return None, "", problems
    files = _files_in_order(subset, found)
    # mtime_ns catches a same-size rewrite; a fresh unpack of the same PNGs costs one re-decode.
    digest = hashlib.sha256()
    for rels in files.values():
        for rel in rels:
            digest.update(f"{rel}\0{stats[rel][0]}\0{stats[rel][1]}\n".encode())
    return files, digest.hexdigest(), []


def _scan_zip(path: Path, subset: str) -> dict[str, list[str]]:
    """Lists and checks a zip's PNG members; MetabenchError says what is missing."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise MetabenchError(
            f"{path} is not a readable zip ({exc}): delete it and run "
            "`metabench data fetch omniglot` again, or copy a good one."
        ) from exc
    member = re.compile(rf"{re.escape(subset)}/([^/]+)/character(\d+)/([^/]+\.png)")
    found: dict[str, dict[int, list[str]]] = {}
    for name in names:
        m = member.fullmatch(name)
        if m:
            found.setdefault(m.group(1), {}).setdefault(int(m.group(2)), []).append(name)
    problems = _check_layout(subset, found)
    if problems:
        raise MetabenchError(
            _problems_text(path, problems)
            + ". Replace it with a complete copy (`metabench data fetch omniglot`)."
        )
    return _files_in_order(subset, found)


def _locate(folder: Path, subset: str) -> _Source:
    """The tree if it is complete, else the zip (fingerprinted by its sha256, ~10 ms)."""
    tree, zpath = folder / subset, folder / f"{subset}.zip"
    tree_problems: list[str] = []
    if tree.is_dir():
        try:
            files, fingerprint, tree_problems = _scan_tree(tree, subset)
        except OSError as exc:
            raise MetabenchError(f"Cannot read {tree} ({exc.strerror or exc}).") from exc
        if files is not None:
            return _Source(subset, "tree", tree, fingerprint, files)
    if zpath.is_file():
        try:
            fingerprint = file_checksum(zpath)
        except OSError as exc:
            raise MetabenchError(f"Cannot read {zpath} ({exc.strerror or exc}).") from exc
        return _Source(subset, "zip", zpath, fingerprint)
    if tree.is_dir():
        raise MetabenchError(
            _problems_text(tree, tree_problems)
            + f". Restore the missing files or put {subset}.zip in {folder}."
        )
    raise DataUnavailable(f"Neither {tree} nor {zpath} exists: put one of them in {folder}.")


def _expected_characters() -> list[str]:
    return [
        f"{alphabet}/character{k:02d}"
        for subset in SUBSETS
        for alphabet, n_chars in sorted(ALPHABETS[subset])
        for k in range(1, n_chars + 1)
    ]


# --------------------------------------------------------------------------- decoding


def _decode_png(data: bytes, what: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            small = im.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MetabenchError(
            f"Cannot decode {what} ({exc}): the file is corrupt; replace it."
        ) from exc
    # The PNGs are black strokes on white; invert so strokes are the bright, non-zero pixels.
    return 255 - np.asarray(small, dtype=np.uint8)


def _decode(sources: list[_Source], progress: bool) -> np.ndarray:
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
                        images[c, d] = _decode_png(data, f"{name} in {src.path}")
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


def _write_cache(path: Path, payload: dict) -> None:
    """Atomically: a temp file in the same folder, fsynced, then renamed over ``path``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    sources = [_locate(folder, subset) for subset in SUBSETS]
    characters = _expected_characters()
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
            src if src.files is not None else replace(src, files=_scan_zip(src.path, src.subset))
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
            _write_cache(cache_path, payload)
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
