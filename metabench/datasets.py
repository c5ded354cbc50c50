"""The datasets metabench downloads: Omniglot and CIFAR-100 (their files, URLs and pinned
checksums; fetch and ensure), and what ``metabench data fetch`` runs.

The plumbing (data root, checksummed download, safe extraction) is `metabench.datafiles`; the
decoding of Omniglot's images lives in ``metabench.suites.omniglot_images``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Mapping

from metabench.datafiles import RemoteFile, download, has_checksum, resolve_data_root, safe_extract, tree_matches_zip
from metabench.errors import ConfigError, DataUnavailable
from metabench.registry import Registry

__all__ = [
    "OMNIGLOT_FILES",
    "DATASETS",
    "fetch_omniglot",
    "ensure_omniglot",
    "fetch_command",
    "CIFAR100_FILE",
    "fetch_cifar100",
    "ensure_cifar100",
]

# --------------------------------------------------------------------------- Omniglot


_OMNIGLOT_OFFICIAL = "https://github.com/brendenlake/omniglot/raw/master/python"
_OMNIGLOT_EXTRAS = (
    "https://github.com/brendenlake/omniglot/raw/32aee47094f15296299b761dcaa01400b90c60d5/python"
)
_VINYALS = (
    "https://raw.githubusercontent.com/jakesnell/prototypical-networks/"
    "8fdc675e33f630999fe39c1465647a859ad69621/data/omniglot/splits/vinyals"
)

#: Omniglot's files, by path relative to ``ROOT/omniglot``. The zip checksums are the published
#: md5s of the official zips (the ones torchvision checks); the others are the sha256 of the files
#: at the pinned commits of their URLs. A copy with re-packed zips (the same PNG members) is
#: fetched from a mirror with the zips' own sha256 as `checksums`.
OMNIGLOT_FILES: dict[str, RemoteFile] = {
    f.name: f
    for f in (
        RemoteFile(
            "images_background.zip",
            f"{_OMNIGLOT_OFFICIAL}/images_background.zip",
            "md5:68d2efa1b9178cc56df9314c21c6e718",
        ),
        RemoteFile(
            "images_evaluation.zip",
            f"{_OMNIGLOT_OFFICIAL}/images_evaluation.zip",
            "md5:6b91aef0f799c5bb55b94e3f2daec811",
        ),
        RemoteFile(
            "splits/vinyals/train.txt",
            f"{_VINYALS}/train.txt",
            "sha256:984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0",
        ),
        RemoteFile(
            "splits/vinyals/val.txt",
            f"{_VINYALS}/val.txt",
            "sha256:11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a",
        ),
        RemoteFile(
            "splits/vinyals/test.txt",
            f"{_VINYALS}/test.txt",
            "sha256:845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204",
        ),
        RemoteFile(
            "official-extras/all_runs.zip",
            f"{_OMNIGLOT_EXTRAS}/one-shot-classification/all_runs.zip",
            "sha256:437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",
        ),
    )
}
_OMNIGLOT_IMAGE_ZIPS = ("images_background.zip", "images_evaluation.zip")
_OMNIGLOT_SPLITS = ("splits/vinyals/train.txt", "splits/vinyals/val.txt", "splits/vinyals/test.txt")
_OMNIGLOT_EXTRA_FILES = ("official-extras/all_runs.zip",)


def _omniglot_remotes(
    wanted: Iterable[str], base_url: str | None, checksums: Mapping[str, str] | None
) -> list[RemoteFile]:
    checksums = dict(checksums or {})
    unknown = sorted(set(checksums) - set(OMNIGLOT_FILES))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], OMNIGLOT_FILES, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown Omniglot file {unknown[0]!r} in checksums.{hint} Expected paths relative to "
            f"the omniglot folder: {', '.join(OMNIGLOT_FILES)}."
        )
    remotes = []
    for name in wanted:
        default = OMNIGLOT_FILES[name]
        url = f"{base_url.rstrip('/')}/{name}" if base_url else default.url
        remotes.append(RemoteFile(name, url, checksums.get(name, default.checksum)))
    return remotes


def _fetch_omniglot_files(
    folder: Path,
    wanted: Iterable[str],
    *,
    base_url: str | None,
    checksums: Mapping[str, str] | None,
    progress: bool,
) -> None:
    """Download the ``wanted`` files that are absent or stale, then unpack the image zips."""
    for remote in _omniglot_remotes(wanted, base_url, checksums):
        dest = folder / remote.name
        fresh = False
        if not has_checksum(dest, remote.checksum):
            download(remote, dest, progress=progress)
            fresh = True
        if remote.name in _OMNIGLOT_IMAGE_ZIPS and (fresh or not tree_matches_zip(dest, folder)):
            # The zips hold their own top folder (images_background/...), so they unpack into
            # the dataset folder itself.
            safe_extract(dest, folder)


def fetch_omniglot(
    data_root: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
    include_extras: bool = True,
) -> Path:
    """Download Omniglot into ``data_root/omniglot`` and unpack it; returns that folder.

    Fetches ``images_background.zip``, ``images_evaluation.zip``, ``splits/vinyals/{train,val,
    test}.txt`` and, with ``include_extras``, ``official-extras/all_runs.zip``. A file already
    present with the right checksum is not downloaded again. The image zips are unpacked to
    ``omniglot/images_background/`` and ``omniglot/images_evaluation/`` (and kept).

    base_url: a mirror; each file is then fetched from ``base_url + "/" + <relative path>``.
    checksums: relative path -> ``"algo:hex"``, overriding the defaults (needed for any mirror
        whose zips are not the official bytes, such as re-packed zips of the same images).
    """
    folder = Path(data_root).expanduser() / "omniglot"
    # Small files first: a wrong mirror or checksum shows up before 14 MB are transferred.
    wanted = _OMNIGLOT_SPLITS + _OMNIGLOT_IMAGE_ZIPS
    if include_extras:
        wanted += _OMNIGLOT_EXTRA_FILES
    _fetch_omniglot_files(folder, wanted, base_url=base_url, checksums=checksums, progress=progress)
    return folder


def _omniglot_missing(folder: Path) -> list[str]:
    """Files the loader needs that are absent (an unpacked tree stands in for its zip)."""
    missing = [
        name
        for name in _OMNIGLOT_IMAGE_ZIPS
        if not (folder / name).is_file() and not (folder / name.removesuffix(".zip")).is_dir()
    ]
    missing += [name for name in _OMNIGLOT_SPLITS if not (folder / name).is_file()]
    return missing


def ensure_omniglot(
    data_root: str | os.PathLike[str], *, allow_download: bool = True, progress: bool = True
) -> Path:
    """``data_root/omniglot`` once its images (tree or zips) and Vinyals split files are there.

    Missing pieces are downloaded when ``allow_download``; files that are present are never
    replaced here (a copy with different zip bytes, like the re-packed zips, is fine). Whether
    the images are complete is checked by the loader, which says exactly what is missing.
    Raises DataUnavailable with one sentence saying what to do when they cannot be fetched.
    """
    root = Path(data_root).expanduser()
    folder = root / "omniglot"
    missing = _omniglot_missing(folder)
    if not missing:
        return folder
    todo = (
        f"run `metabench data fetch omniglot --data-dir {root}` on a machine with internet, or copy "
        f"images_background.zip, images_evaluation.zip and splits/vinyals/*.txt into {folder}."
    )
    if not allow_download:
        raise DataUnavailable(
            f"Omniglot is not complete in {folder} (missing {', '.join(missing)}) and downloading "
            f"is turned off: {todo}"
        )
    try:
        _fetch_omniglot_files(folder, missing, base_url=None, checksums=None, progress=progress)
    except DataUnavailable as exc:
        raise DataUnavailable(
            f"Omniglot is not in {folder} and could not be downloaded (no network?): {todo}"
        ) from exc
    return folder


# --------------------------------------------------------------------------- CIFAR-100

#: The CIFAR-100 python archive (Krizhevsky 2009), read by the CIFAR-FS suites. The md5 is the one
#: published on the CIFAR page and checked by torchvision.datasets.CIFAR100.
CIFAR100_FILE = RemoteFile(
    "cifar-100-python.tar.gz",
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "md5:eb9058c3a382ffc7106e4002c42a8d85",
)


def fetch_cifar100(
    data_root: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
) -> Path:
    """Download ``cifar-100-python.tar.gz`` into ``data_root/cifar100``; returns that folder.

    Kept as the archive: the loader reads its members straight from the tar (nothing is
    extracted). A file already present with the right checksum is not downloaded again.
    ``base_url``/``checksums`` as in ``fetch_omniglot`` (the only key is the archive's name).
    """
    checksums = dict(checksums or {})
    unknown = sorted(set(checksums) - {CIFAR100_FILE.name})
    if unknown:
        raise ConfigError(f"Unknown CIFAR-100 file {unknown[0]!r} in checksums; the only file is "
                          f"{CIFAR100_FILE.name!r}.")
    url = f"{base_url.rstrip('/')}/{CIFAR100_FILE.name}" if base_url else CIFAR100_FILE.url
    remote = RemoteFile(CIFAR100_FILE.name, url, checksums.get(CIFAR100_FILE.name, CIFAR100_FILE.checksum))
    folder = Path(data_root).expanduser() / "cifar100"
    dest = folder / remote.name
    if not has_checksum(dest, remote.checksum):
        download(remote, dest, progress=progress)
    return folder


def ensure_cifar100(
    data_root: str | os.PathLike[str] | None, *, allow_download: bool = True, progress: bool = True
) -> Path:
    """``ROOT/cifar100`` once it holds the archive or its unpacked ``cifar-100-python/`` folder.

    A present archive is not re-checked here (a wrong file fails when it is read). Downloads it
    when absent and ``allow_download``; else DataUnavailable in one sentence.
    """
    root = resolve_data_root(data_root)
    folder = root / "cifar100"
    if (folder / CIFAR100_FILE.name).is_file() or (folder / "cifar-100-python" / "train").is_file():
        return folder
    todo = (f"run `metabench data fetch cifar100 --data-dir {root}` on a machine with internet, or copy "
            f"{CIFAR100_FILE.name} ({CIFAR100_FILE.url}) into {folder}.")
    if not allow_download:
        raise DataUnavailable(f"CIFAR-100 is not in {folder} and downloading is turned off: {todo}")
    try:
        return fetch_cifar100(root, progress=progress)
    except DataUnavailable as exc:
        raise DataUnavailable(f"CIFAR-100 is not in {folder} and could not be downloaded (no network?): {todo}") from exc


# --------------------------------------------------------------------------- CLI entry point

#: Datasets that ``metabench data fetch`` knows, name -> fetch function(data_root, **options).
DATASETS: Registry[Callable[..., Path]] = Registry("dataset")
DATASETS.add("omniglot", fetch_omniglot)
DATASETS.add("cifar100", fetch_cifar100)


def fetch_command(
    dataset: str,
    data_dir: str | os.PathLike[str] | None,
    base_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Path:
    """What ``metabench data fetch <dataset>`` does: validate the name, download, unpack.

    Returns the dataset folder. Unknown names raise ConfigError with a did-you-mean hint.
    """
    fetch = DATASETS.get(dataset)
    return fetch(resolve_data_root(data_dir), base_url=base_url, checksums=checksums, progress=True)
