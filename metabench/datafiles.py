"""Where datasets live and how their files arrive: data folders, checksummed downloads, safe zip
extraction. Nothing here knows a particular dataset (those are in `metabench.datasets`).

Where things live:

- the *data root* (``resolve_data_root``) holds one folder per dataset, e.g. ``ROOT/omniglot/``
  with the dataset's files in their published layout. It may be read-only (a shared copy);
- the *cache* (``cache_dir``) is a writable per-user folder for decoded tensors.

What is downloaded is declared once, as ``RemoteFile`` values with a pinned checksum; ``download``
streams a file to a temporary name next to its destination, checks it, and only then moves it
into place, so a file in the data root is always whole or absent. ``safe_extract`` unpacks a zip
without letting a member escape the destination folder.
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

from tqdm.auto import tqdm

from metabench.errors import ChecksumError, ConfigError, DataUnavailable, MetabenchError
from metabench.fsutil import fsync_dir

__all__ = [
    "RemoteFile",
    "resolve_data_root",
    "cache_dir",
    "file_checksum",
    "has_checksum",
    "download",
    "safe_extract",
    "tree_matches_zip",
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


def has_checksum(path: Path, checksum: str) -> bool:
    """Whether ``path`` is a file whose bytes match ``checksum`` (``"algo:hex"``)."""
    algo, hexdigest = _parse_checksum(checksum)
    return path.is_file() and file_checksum(path, algo) == f"{algo}:{hexdigest}"


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


def tree_matches_zip(zip_path: Path, dest: Path) -> bool:
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
