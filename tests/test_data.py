"""Data folders, downloads (from a local HTTP server only), safe extraction, the Omniglot loader."""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import socket
import stat
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from metabench.datafiles import RemoteFile, cache_dir, download, resolve_data_root, safe_extract
from metabench import datasets
from metabench.datasets import OMNIGLOT_FILES, ensure_omniglot, fetch_command, fetch_omniglot
from metabench.errors import ChecksumError, ConfigError, DataUnavailable, MetabenchError
from metabench.suites import omniglot_images
from metabench.suites.omniglot_images import load_omniglot


# --------------------------------------------------------------------------- no real network

_real_create_connection = socket.create_connection


def _loopback_only(address, *args, **kwargs):
    host = address[0]
    if host not in ("127.0.0.1", "localhost"):
        raise AssertionError(f"a test tried to reach {host}: only 127.0.0.1 is allowed")
    return _real_create_connection(address, *args, **kwargs)


@pytest.fixture(autouse=True)
def no_real_network(monkeypatch):
    # urllib (through http.client) opens every connection with socket.create_connection.
    monkeypatch.setattr(socket, "create_connection", _loopback_only)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- a local mirror


class _MirrorHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path == "/truncated":  # promises 1000 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture(scope="module")
def mirror(shared_data):
    """http://127.0.0.1:<port> serving the staged omniglot folder."""
    handler = functools.partial(_MirrorHandler, directory=str(shared_data / "omniglot"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def provenance_sha256(shared_data) -> dict[str, str]:
    """relative path -> "sha256:<hex>", parsed from the table in PROVENANCE.md."""
    text = (shared_data / "omniglot" / "PROVENANCE.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| \d+ \| `([0-9a-f]{64})` \|$", text, flags=re.M)
    sums = {path: f"sha256:{digest}" for path, digest in rows}
    assert "images_background.zip" in sums and "splits/vinyals/test.txt" in sums
    return {k: v for k, v in sums.items() if k in OMNIGLOT_FILES}


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------- folders


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("METABENCH_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("METABENCH_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == tmp_path / "xdg" / "metabench" / "data"


def test_cache_dir_created_and_unwritable_is_explained(monkeypatch, tmp_path):
    monkeypatch.delenv("METABENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "metabench" / "cache"
    assert cache_dir().is_dir()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("METABENCH_CACHE", str(blocker / "cache"))
    with pytest.raises(MetabenchError, match="METABENCH_CACHE"):
        cache_dir()


def test_checksum_spec_is_validated():
    with pytest.raises(ConfigError, match="md5:<hex>"):
        RemoteFile("x", "http://127.0.0.1/x", "crc32:1234")
    with pytest.raises(ConfigError, match="64 hex digits"):
        RemoteFile("x", "http://127.0.0.1/x", "sha256:abc")


def test_fetch_command_unknown_dataset_suggests(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'omniglot'"):
        fetch_command("omniglott", tmp_path)


def test_unknown_checksum_key_is_rejected(tmp_path, mirror):
    with pytest.raises(ConfigError, match="splits/vinyals/train.txt"):
        fetch_omniglot(tmp_path, base_url=mirror, checksums={"train.txt": "sha256:" + "0" * 64})
    assert not (tmp_path / "omniglot").exists()


# --------------------------------------------------------------------------- loader


def test_omniglot_shape_and_sets(omniglot):
    assert omniglot.images.shape == (1623, 20, 28, 28)
    assert omniglot.images.dtype == torch.uint8
    assert len(omniglot.characters) == len(omniglot.alphabets) == 1623
    assert int(omniglot.background.sum()) == 964
    assert int((~omniglot.background).sum()) == 659
    assert len(set(omniglot.alphabets)) == 50
    assert omniglot.characters[0] == "Alphabet_of_the_Magi/character01"
    assert omniglot.characters[964] == "Angelic/character01"


def test_strokes_are_bright_on_dark(omniglot):
    img = omniglot.images[0, 0].float()
    assert img.max() >= 200  # strokes near 255
    assert (img > 128).float().mean() < 0.3  # mostly background, which is 0
    assert img[0].max() == 0 and img[:, 0].max() == 0  # borders are empty background


def test_vinyals_splits(omniglot):
    splits = {name: omniglot.split("vinyals", name) for name in ("train", "val", "test")}
    assert [len(s) for s in splits.values()] == [4112, 688, 1692]
    chars = {name: {c for c, _ in pairs} for name, pairs in splits.items()}
    assert not chars["train"] & chars["val"]
    assert not chars["train"] & chars["test"]
    assert not chars["val"] & chars["test"]
    assert len(chars["train"] | chars["val"] | chars["test"]) == 1623
    assert {r for pairs in splits.values() for _, r in pairs} == {0, 90, 180, 270}
    assert len(omniglot.split("vinyals", "trainval")) == 4800


def test_lake_splits_and_bad_names(omniglot):
    background = omniglot.split("lake", "background")
    assert len(background) == 964 and all(r == 0 for _, r in background)
    assert omniglot.split("lake", "train") == background
    assert len(omniglot.split("lake", "test")) == 659
    assert omniglot.split("lake", "val") == []
    with pytest.raises(ConfigError, match="Did you mean 'test'"):
        omniglot.split("vinyals", "tset")
    with pytest.raises(ConfigError, match="Did you mean 'vinyals'"):
        omniglot.split("vinyal", "train")


def test_second_load_comes_from_cache(omniglot, shared_data, omniglot_cache, monkeypatch):
    cached = [p.name for p in omniglot_cache.glob("omniglot-*.pt")]
    assert cached and all(re.fullmatch(r"omniglot-28x28-v1-[0-9a-f]{16}\.pt", n) for n in cached)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(omniglot_images, "_decode", no_decoding)
    start = time.perf_counter()
    again = load_omniglot(shared_data, allow_download=False, progress=False)
    assert time.perf_counter() - start < 2.0
    assert torch.equal(again.images, omniglot.images)


def test_corrupt_cache_is_not_read(tmp_path, omniglot):
    bad = tmp_path / "omniglot-28x28-v1-0000000000000000.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable"):
        assert omniglot_images._read_cache(bad, omniglot.characters) is None


def _stage_splits(shared_data: Path, folder: Path) -> None:
    shutil.copytree(shared_data / "omniglot" / "splits", folder / "splits")


def test_tree_missing_alphabet_is_named(shared_data, tmp_path):
    folder = tmp_path / "omniglot"
    latin = folder / "images_background" / "Latin"
    for k in range(1, 27):
        (latin / f"character{k:02d}").mkdir(parents=True)
        for d in range(1, 21):
            (latin / f"character{k:02d}" / f"{682 + k:04d}_{d:02d}.png").touch()
    (folder / "images_evaluation.zip").symlink_to(shared_data / "omniglot" / "images_evaluation.zip")
    _stage_splits(shared_data, folder)
    with pytest.raises(MetabenchError, match="missing alphabet.*Tifinagh") as info:
        load_omniglot(tmp_path, allow_download=False, progress=False)
    detail = str(info.value).split("is incomplete:")[1]
    assert str(folder / "images_background") in str(info.value)
    assert "Tifinagh" in detail and "Latin" not in detail


def test_zip_missing_members_is_named(shared_data, tmp_path):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    (folder / "images_background.zip").symlink_to(shared_data / "omniglot" / "images_background.zip")
    with zipfile.ZipFile(shared_data / "omniglot" / "images_evaluation.zip") as src, zipfile.ZipFile(
        folder / "images_evaluation.zip", "w"
    ) as dst:
        for d in range(1, 20):  # drawer 20 missing
            name = f"images_evaluation/Angelic/character01/0965_{d:02d}.png"
            dst.writestr(name, src.read(name))
    _stage_splits(shared_data, folder)
    with pytest.raises(MetabenchError, match="images_evaluation.zip is incomplete") as info:
        load_omniglot(tmp_path, allow_download=False, progress=False)
    message = str(info.value)
    assert "Angelic/character01 has 19 PNGs, expected 20" in message
    assert "character02" in message and "Atemayar_Qelisayer" in message


def test_missing_data_without_download_says_what_to_do(tmp_path):
    with pytest.raises(DataUnavailable, match=r"metabench data fetch omniglot --data-dir"):
        ensure_omniglot(tmp_path, allow_download=False)


def test_ensure_without_network_is_one_sentence(tmp_path, monkeypatch):
    port = _closed_port()
    dead = {
        name: RemoteFile(name, f"http://127.0.0.1:{port}/{name}", f.checksum)
        for name, f in OMNIGLOT_FILES.items()
    }
    monkeypatch.setattr(datasets, "OMNIGLOT_FILES", dead)
    with pytest.raises(DataUnavailable) as info:
        ensure_omniglot(tmp_path, progress=False)
    message = str(info.value)
    assert message.startswith(f"Omniglot is not in {tmp_path / 'omniglot'} and could not be downloaded")
    assert "splits/vinyals/*.txt" in message and message.count(". ") == 0
    assert not list((tmp_path / "omniglot").glob("**/*.part"))


# --------------------------------------------------------------------------- downloads


def test_fetch_from_local_mirror(tmp_path, mirror, provenance_sha256, omniglot):
    folder = fetch_omniglot(tmp_path, base_url=mirror, checksums=provenance_sha256, progress=False)
    assert folder == tmp_path / "omniglot"
    for name in provenance_sha256:
        assert (folder / name).is_file(), name
    assert (folder / "images_background" / "Latin" / "character01" / "0683_01.png").is_file()
    assert len(list((folder / "images_evaluation").glob("*/*/*.png"))) == 659 * 20
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")]  # no temp leftovers

    # Everything is present and checks out, so a second fetch needs no server at all.
    before = (folder / "images_background.zip").stat().st_mtime_ns
    dead = f"http://127.0.0.1:{_closed_port()}"
    fetch_omniglot(tmp_path, base_url=dead, checksums=provenance_sha256, progress=False)
    assert (folder / "images_background.zip").stat().st_mtime_ns == before

    # The unpacked tree is preferred over the zips, and decodes to the same tensor.
    loaded = load_omniglot(tmp_path, allow_download=False, progress=False)
    assert torch.equal(loaded.images, omniglot.images)
    assert loaded.split("vinyals", "test") == omniglot.split("vinyals", "test")


def test_checksum_mismatch_leaves_nothing(tmp_path, mirror):
    dest = tmp_path / "splits" / "vinyals" / "train.txt"
    wrong = "sha256:" + "0" * 64
    remote = RemoteFile("splits/vinyals/train.txt", f"{mirror}/splits/vinyals/train.txt", wrong)
    with pytest.raises(ChecksumError) as info:
        download(remote, dest, progress=False)
    message = str(info.value)
    assert "splits/vinyals/train.txt" in message and wrong in message
    assert "received sha256:984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0" in message
    assert _listing(tmp_path) == ["splits", "splits/vinyals"]

    # An existing file is left untouched by a failed download over it.
    dest.write_text("old")
    with pytest.raises(ChecksumError):
        download(remote, dest, progress=False)
    assert dest.read_text() == "old"
    assert _listing(tmp_path) == ["splits", "splits/vinyals", "splits/vinyals/train.txt"]


def test_fetch_with_wrong_checksum_raises(tmp_path, mirror, provenance_sha256):
    sums = dict(provenance_sha256, **{"splits/vinyals/val.txt": "md5:" + "0" * 32})
    with pytest.raises(ChecksumError, match="splits/vinyals/val.txt"):
        fetch_omniglot(tmp_path, base_url=mirror, checksums=sums, progress=False, include_extras=False)
    assert not (tmp_path / "omniglot" / "splits" / "vinyals" / "val.txt").exists()
    assert not list(tmp_path.rglob("*.part"))


def test_unreachable_server_is_data_unavailable(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/images_background.zip"
    remote = RemoteFile("images_background.zip", url, "md5:" + "0" * 32)
    with pytest.raises(DataUnavailable, match="Could not download images_background.zip"):
        download(remote, tmp_path / "x.zip", progress=False)
    assert _listing(tmp_path) == []


def test_truncated_transfer_is_data_unavailable(tmp_path, mirror):
    remote = RemoteFile("truncated", f"{mirror}/truncated", "md5:" + "0" * 32)
    with pytest.raises(DataUnavailable, match="stopped after 10 of 1000 bytes"):
        download(remote, tmp_path / "t", progress=False)
    assert _listing(tmp_path) == []


# --------------------------------------------------------------------------- extraction


def _zip_with(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, payload in members.items():
            z.writestr(name, payload)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "bad, reason",
    [("../evil.txt", "outside"), ("/tmp/evil-abs.txt", "absolute"), ("ok/..\\..\\evil.txt", "outside")],
)
def test_safe_extract_refuses_escaping_members(tmp_path, bad, reason):
    archive = _zip_with(tmp_path / "bad.zip", {"fine/a.txt": b"a", bad: b"evil"})
    dest = tmp_path / "dest"
    with pytest.raises(MetabenchError, match=re.escape(repr(bad)) + ".*" + reason):
        safe_extract(archive, dest)
    assert _listing(tmp_path) == ["bad.zip"]
    assert not Path("/tmp/evil-abs.txt").exists()


def test_safe_extract_refuses_symlinks(tmp_path):
    archive = _zip_with(tmp_path / "link.zip", {"a.txt": b"a"}, symlink="link")
    with pytest.raises(MetabenchError, match="'link' is a symbolic link"):
        safe_extract(archive, tmp_path / "dest")
    assert _listing(tmp_path) == ["link.zip"]


def test_safe_extract_replaces_whole_top_folders(tmp_path):
    dest = tmp_path / "dest"
    (dest / "top").mkdir(parents=True)
    (dest / "top" / "stale.txt").write_text("old")
    (dest / "keep.txt").write_text("unrelated")
    archive = _zip_with(tmp_path / "ok.zip", {"top/": b"", "top/sub/a.txt": b"a", "b.txt": b"b"})
    placed = safe_extract(archive, dest)
    assert sorted(p.name for p in placed) == ["b.txt", "top"]
    assert _listing(dest) == ["b.txt", "keep.txt", "top", "top/sub", "top/sub/a.txt"]
    assert (dest / "top" / "sub" / "a.txt").read_bytes() == b"a"
