"""Data folders, checksummed downloads and safe zip extraction.

Where things live:

- the *data root* (``resolve_data_root``) holds one folder per dataset, e.g. ``ROOT/omniglot/``
  with the dataset's files in their published layout. It may be read-only (a shared copy);
- the *cache* (``cache_dir``) is a writable per-user folder for decoded tensors.

What is downloaded is declared once, as ``RemoteFile`` values with a pinned checksum; ``download``
streams a file to a temporary name next to its destination, checks it, and only then moves it
into place, so a file in the data root is always whole or absent. ``safe_extract`` unpacks a zip
without letting a member escape the destination folder.

Only ``fetch_omniglot``/``ensure_omniglot`` know about a particular dataset; the decoding of the
images lives in ``metabench.suites.omniglot_data``.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Mapping

from tqdm.auto import tqdm

from metabench.errors import ChecksumError, ConfigError, DataUnavailable, MetabenchError
from metabench.registry import Registry
from metabench.fsutil import fsync_dir

__all__ = [
    "RemoteFile",
    "OMNIGLOT_FILES",
    "DATASETS",
    "resolve_data_root",
    "cache_dir",
    "file_checksum",
    "download",
    "safe_extract",
    "fetch_omniglot",
    "ensure_omniglot",
    "fetch_command",
    "CIFAR100_FILE",
    "fetch_cifar100",
    "ensure_cifar100",
]

#: Seconds a connection may stay silent before a download counts as failed.
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 16
_ALGORITHMS = ("md5", "sha256")
_USER_AGENT = "metabench/0.1 (python-urllib)"


# --------------------------------------------------------------------------- folders


def _user_cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() if xdg else Path.home() / ".cache"


def resolve_data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds one subfolder per dataset (``ROOT/omniglot/...``).

    ``data_dir`` if given, else the environment variable ``METABENCH_DATA``, else
    ``$XDG_CACHE_HOME/metabench/data`` (``~/.cache/metabench/data``). Nothing is created here:
    the folder may be a read-only shared copy.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("METABENCH_DATA")
    if env:
        return Path(env).expanduser()
    return _user_cache_home() / "metabench" / "data"


def cache_dir() -> Path:
    """A writable folder for decoded tensors, created on demand.

    ``METABENCH_CACHE`` if set, else ``$XDG_CACHE_HOME/metabench/cache`` (``~/.cache/...``).
    Raises MetabenchError when the folder cannot be created or written.
    """
    env = os.environ.get("METABENCH_CACHE")
    path = Path(env).expanduser() if env else _user_cache_home() / "metabench" / "cache"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MetabenchError(
            f"Cannot create the cache folder {path} ({exc.strerror or exc}): set METABENCH_CACHE "
            "to a writable folder."
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise MetabenchError(
            f"The cache folder {path} is not writable: set METABENCH_CACHE to a writable folder."
        )
    return path


# --------------------------------------------------------------------------- remote files


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: where it goes, where it comes from, and its pinned checksum.

    name: the path relative to the dataset folder (``splits/vinyals/train.txt``); it is also
        what a mirror (``base_url``) serves the file under.
    url: the canonical address.
    checksum: ``"md5:<hex>"`` or ``"sha256:<hex>"``.
    """

    name: str
    url: str
    checksum: str

    def __post_init__(self) -> None:
        _parse_checksum(self.checksum, what=f"the checksum of {self.name}")

    @property
    def algorithm(self) -> str:
        return self.checksum.split(":", 1)[0].lower()

    @property
    def hexdigest(self) -> str:
        return self.checksum.split(":", 1)[1].lower()


def _parse_checksum(checksum: str, *, what: str = "a checksum") -> tuple[str, str]:
    algo, sep, hexdigest = str(checksum).partition(":")
    algo = algo.lower()
    if not sep or algo not in _ALGORITHMS or not re.fullmatch(r"[0-9a-fA-F]+", hexdigest):
        raise ConfigError(
            f"Expected {what} as 'md5:<hex>' or 'sha256:<hex>', received {checksum!r}."
        )
    length = hashlib.new(algo).digest_size * 2
    if len(hexdigest) != length:
        raise ConfigError(
            f"Expected {what} to have {length} hex digits after '{algo}:', "
            f"received {len(hexdigest)} ({checksum!r})."
        )
    return algo, hexdigest.lower()


def file_checksum(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """``"<algorithm>:<hex>"`` of a file's bytes."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return f"{algorithm}:{hasher.hexdigest()}"


def _matches(path: Path, checksum: str) -> bool:
    algo, hexdigest = _parse_checksum(checksum)
    return path.is_file() and file_checksum(path, algo) == f"{algo}:{hexdigest}"


_OMNIGLOT_OFFICIAL = "https://github.com/brendenlake/omniglot/raw/master/python"
_OMNIGLOT_EXTRAS = (
    "https://github.com/brendenlake/omniglot/raw/32aee47094f15296299b761dcaa01400b90c60d5/python"
)
_VINYALS = (
    "https://raw.githubusercontent.com/jakesnell/prototypical-networks/"
    "8fdc675e33f630999fe39c1465647a859ad69621/data/omniglot/splits/vinyals"
)

#: Omniglot's files, by path relative to ``ROOT/omniglot``. The zip checksums are the published
#: md5s of the official zips (the ones torchvision checks); the others are the sha256 values in
#: the staged copy's shared/data/omniglot/PROVENANCE.md (those files are byte-identical to their
#: sources). The staged zips are re-packed: fetch from that copy with their sha256 as `checksums`.
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


# --------------------------------------------------------------------------- download



def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return getattr(reason, "strerror", None) or str(reason)
    if isinstance(exc, (TimeoutError,)):
        return f"no answer within {DOWNLOAD_TIMEOUT_S:g} s"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)


def download(
    remote: RemoteFile, dest_path: str | os.PathLike[str], *, progress: bool = True
) -> Path:
    """Download ``remote`` to ``dest_path`` and verify its checksum; returns ``dest_path``.

    The bytes go to a hidden ``.<name>.*.part`` file in the destination folder, are hashed on
    the way, fsynced, and only then renamed over ``dest_path``: the destination is whole or
    untouched, and no ``.part`` file survives any error (including Ctrl-C).

    Raises DataUnavailable when the server cannot be reached or the transfer breaks off,
    ChecksumError when the bytes do not match ``remote.checksum``, MetabenchError when the
    destination folder cannot be written.
    """
    dest = Path(dest_path)
    algo, expected = _parse_checksum(remote.checksum, what=f"the checksum of {remote.name}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise MetabenchError(
            f"Cannot write {dest} ({exc.strerror or exc}): choose a writable data folder with "
            "--data-dir or METABENCH_DATA."
        ) from exc
    tmp = Path(tmp_name)
    hasher = hashlib.new(algo)
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(remote.url, headers={"User-Agent": _USER_AGENT})
            try:
                response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S)
            except ValueError as exc:  # not a URL urllib understands
                raise ConfigError(
                    f"Cannot download {remote.name}: {remote.url!r} is not a URL urllib can open "
                    "(expected http:// or https://)."
                ) from exc
            except _NETWORK_ERRORS as exc:
                raise DataUnavailable(
                    f"Could not download {remote.name} from {remote.url} ({_network_reason(exc)})."
                ) from exc
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                received = 0
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=remote.name,
                    disable=not progress,
                    file=sys.stderr,
                    leave=False,
                ) as bar:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except _NETWORK_ERRORS as exc:
                            raise DataUnavailable(
                                f"The download of {remote.name} from {remote.url} broke off after "
                                f"{received} bytes ({_network_reason(exc)})."
                            ) from exc
                        if not chunk:
                            break
                        hasher.update(chunk)
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            if total is not None and received != total:
                raise DataUnavailable(
                    f"The download of {remote.name} from {remote.url} stopped after {received} of "
                    f"{total} bytes."
                )
            out.flush()
            os.fsync(out.fileno())
        received_digest = hasher.hexdigest()
        if received_digest != expected:
            raise ChecksumError(
                f"{remote.name} from {remote.url} does not match its checksum: expected "
                f"{algo}:{expected}, received {algo}:{received_digest}; the download was deleted "
                "(a changed or wrong file on the server, or a wrong checksum given?)."
            )
        os.replace(tmp, dest)
    except OSError as exc:  # network errors were turned into DataUnavailable above: this is disk
        tmp.unlink(missing_ok=True)
        raise MetabenchError(
            f"Cannot write {dest} ({exc.strerror or exc}): check the free space and permissions "
            "of the data folder, or choose another with --data-dir or METABENCH_DATA."
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return dest


# --------------------------------------------------------------------------- extraction


def _safe_member_parts(info: zipfile.ZipInfo, zip_path: Path) -> tuple[str, ...]:
    """The path components of a zip member, or MetabenchError if it could land outside."""
    name = info.filename
    # Zips written on Windows may use backslashes; treat them as separators so "..\\x" is caught.
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise MetabenchError(
            f"Refusing to extract {zip_path}: member {name!r} has an absolute path."
        )
    parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", "."))
    if ".." in parts:
        raise MetabenchError(
            f"Refusing to extract {zip_path}: member {name!r} points outside the destination ('..')."
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise MetabenchError(f"Refusing to extract {zip_path}: member {name!r} is a symbolic link.")
    return parts


def safe_extract(zip_path: str | os.PathLike[str], dest_dir: str | os.PathLike[str]) -> list[Path]:
    """Extract a zip into ``dest_dir``; returns the top-level paths it created or replaced.

    Every member is checked before anything is written: an absolute name, a ``..`` component or
    a symbolic link raises MetabenchError naming the member. The archive is unpacked into a hidden
    temporary folder inside ``dest_dir`` and each top-level entry is then renamed into place (an
    existing one is swapped out and deleted), so a half-extracted tree never appears.
    """
    zip_path, dest = Path(zip_path), Path(dest_dir)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise MetabenchError(
            f"{zip_path} is not a readable zip ({exc}): delete it and download it again."
        ) from exc
    with archive:
        members = [(info, _safe_member_parts(info, zip_path)) for info in archive.infolist()]
        try:
            dest.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".metabench-extract-", dir=dest))
        except OSError as exc:
            raise MetabenchError(f"Cannot write to {dest} ({exc.strerror or exc}).") from exc
        try:
            # No resolve() per member: the names were checked above, the temp folder is fresh,
            # and only plain files and folders are written, so no path can lead through a link.
            made: set[str] = set()
            for info, parts in members:
                if not parts:
                    continue
                target = os.path.join(tmp, *parts)
                folder = target if info.is_dir() else os.path.dirname(target)
                if folder not in made:
                    os.makedirs(folder, exist_ok=True)
                    made.add(folder)
                if info.is_dir():
                    continue
                with archive.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            placed = []
            for entry in sorted(tmp.iterdir()):
                final = dest / entry.name
                if final.exists() or final.is_symlink():
                    old = Path(tempfile.mkdtemp(prefix=".metabench-old-", dir=dest))
                    os.replace(final, old / entry.name)
                    os.replace(entry, final)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(entry, final)
                placed.append(final)
        except zipfile.BadZipFile as exc:
            raise MetabenchError(
                f"{zip_path} is corrupt ({exc}): delete it and download it again."
            ) from exc
        except OSError as exc:
            raise MetabenchError(
                f"Cannot extract {zip_path} into {dest} ({exc.strerror or exc})."
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(dest)
    return placed


def _tree_matches_zip(zip_path: Path, dest: Path) -> bool:
    """Whether every file of the zip exists under ``dest`` with the same size (cheap: stats only)."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                target = dest / info.filename
                if not target.is_file() or target.stat().st_size != info.file_size:
                    return False
    except (zipfile.BadZipFile, OSError):
        return False
    return True


# --------------------------------------------------------------------------- Omniglot


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
        if not _matches(dest, remote.checksum):
            download(remote, dest, progress=progress)
            fresh = True
        if remote.name in _OMNIGLOT_IMAGE_ZIPS and (fresh or not _tree_matches_zip(dest, folder)):
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
    if not _matches(dest, remote.checksum):
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
