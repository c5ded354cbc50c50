"""Omniglot's published content and where its PNGs are: the alphabet tables (what a complete copy
holds), and finding one set's PNGs in an unpacked tree or a zip, saying exactly what is missing.

Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015, Science 350(6266):1332-1338): 1623 handwritten
characters from 50 alphabets, drawn once by each of 20 people. A set (``images_background``,
``images_evaluation``) is either a tree ``<set>/<Alphabet>/characterNN/*.png`` or ``<set>.zip``
with the same members; ``metabench.suites.omniglot_images`` decodes what ``locate`` finds.
"""
from __future__ import annotations

import hashlib
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from metabench.datafiles import file_checksum
from metabench.errors import DataUnavailable, MetabenchError

N_DRAWERS = 20

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


# --------------------------------------------------------------------------- finding the PNGs


@dataclass(frozen=True)
class Source:
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


def scan_zip(path: Path, subset: str) -> dict[str, list[str]]:
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


def locate(folder: Path, subset: str) -> Source:
    """The tree if it is complete, else the zip (fingerprinted by its sha256, ~10 ms)."""
    tree, zpath = folder / subset, folder / f"{subset}.zip"
    tree_problems: list[str] = []
    if tree.is_dir():
        try:
            files, fingerprint, tree_problems = _scan_tree(tree, subset)
        except OSError as exc:
            raise MetabenchError(f"Cannot read {tree} ({exc.strerror or exc}).") from exc
        if files is not None:
            return Source(subset, "tree", tree, fingerprint, files)
    if zpath.is_file():
        try:
            fingerprint = file_checksum(zpath)
        except OSError as exc:
            raise MetabenchError(f"Cannot read {zpath} ({exc.strerror or exc}).") from exc
        return Source(subset, "zip", zpath, fingerprint)
    if tree.is_dir():
        raise MetabenchError(
            _problems_text(tree, tree_problems)
            + f". Restore the missing files or put {subset}.zip in {folder}."
        )
    raise DataUnavailable(f"Neither {tree} nor {zpath} exists: put one of them in {folder}.")


def expected_characters() -> list[str]:
    return [
        f"{alphabet}/character{k:02d}"
        for subset in SUBSETS
        for alphabet, n_chars in sorted(ALPHABETS[subset])
        for k in range(1, n_chars + 1)
    ]


