"""Image-folder suites: a folder of class folders becomes an N-way K-shot suite.

A user's own images, declared in a small TOML file (``metabench-suite.toml``) and sampled exactly
like the built-in image suites (``image_classes.ImageClasses``: tasks as tensors on the device, fixed
seeded test tasks, support and query never share an image)::

    DATA/myshapes/metabench-suite.toml
    DATA/myshapes/images/<class>/*.png|jpg|jpeg      one folder per class
    DATA/myshapes/train.txt, val.txt, test.txt        class folder names, one a line (or a rule)

How a suite is named in ``--suites``: by the ``id`` its TOML declares. Every
``DATA/*/metabench-suite.toml`` under the data root (``METABENCH_DATA``, else the per-user data
folder) is registered when ``metabench.suites`` is imported, with origin ``folder PATH``; an id
that is already taken (a built-in, another folder) is refused with a sentence saying so. A
package can ship a declaration too, through a ``metabench.suites`` entry point to a function that
returns ``ImageFolderSuite.from_toml(path)``; ``data_folder`` then says where under the data root
its images are. Worker processes import ``metabench.suites`` afresh and find the same suites.

The TOML keys (docs/plugins.md has the full table)::

    id = "myshapes-5w1s"     # the suite id (letters, digits, '.', '_', '-')
    version = 1              # bump whenever the images, splits or preprocessing change
    way = 5                  # classes per task
    shot = 1                 # support images per class
    queries = 15             # query images per class in the fixed validation and test tasks
    image_size = 28          # images are resized (LANCZOS) to image_size x image_size
    channels = 1             # 1 = grayscale ("L"), 3 = RGB
    invert = false           # 255 - pixel (dark strokes on white -> bright on black)
    images = "images"        # the class folders, relative to this file (default ".")
    # data_folder = "name"   # ... or a folder under the data root instead of `images`
    # images_per_class = 20  # use the first N images (sorted by name) of each class;
    #                        # default: as many as the smallest class has
    # test_tasks = 600       # fixed test tasks (default 600); val_tasks likewise
    [splits]                 # three files naming the class folders of each split ...
    train = "train.txt"
    val = "val.txt"
    test = "test.txt"
    # ... or a rule: each class goes to a split by the crc32 of its name, in these proportions
    # rule = "hash"; train = 0.6; val = 0.2; test = 0.2

Preprocessing (version 1, part of the cache key): each image is converted to "L" or "RGB",
resized to image_size x image_size with LANCZOS when it is not that size already, optionally
inverted, stored as uint8 and scaled to [0, 1] when sampled. The decoded tensor is cached
(``cache_dir()``) under a key that changes with the TOML file, the split files and every image's
path, size and modification time.

The split scheme stored with results is ``files-<digest of the three lists>`` or
``hash-<train>-<val>-<test>``, so results on different splits are never mixed.
"""
from __future__ import annotations

import hashlib
import re
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metabench.errors import ConfigError, DataUnavailable, MetabenchError
from metabench.suites.image_classes import ClassImages, ImageClasses, load_cached

SUITE_FILE = "metabench-suite.toml"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLIT_NAMES = ("train", "val", "test")
#: Bump when decoding changes (part of the cache file name).
PREPROCESS_VERSION = 1
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEYS = {"id", "version", "way", "shot", "queries", "image_size", "channels", "invert", "images",
         "data_folder", "images_per_class", "test_tasks", "val_tasks", "description", "splits"}


@dataclass(frozen=True)
class FolderSpec:
    """A validated ``metabench-suite.toml`` (see the module docstring for each key)."""

    path: Path
    id: str
    version: int
    way: int
    shot: int
    queries: int
    image_size: int
    channels: int
    invert: bool
    images: str | None
    data_folder: str | None
    split_files: dict[str, str] | None
    split_rule: dict[str, float] | None
    images_per_class: int | None
    test_tasks: int
    val_tasks: int
    description: str

    @property
    def split_scheme(self) -> str:
        if self.split_rule is not None:
            r = self.split_rule
            return f"hash-{r['train']:g}-{r['val']:g}-{r['test']:g}"
        lists = read_split_files(self)
        text = "\n".join(f"{s}:{','.join(lists[s])}" for s in SPLIT_NAMES)
        return "files-" + hashlib.sha256(text.encode()).hexdigest()[:8]

    def image_root(self, data_root=None) -> Path:
        """The folder holding the class folders."""
        if self.data_folder is not None:
            from metabench.datafiles import resolve_data_root

            return resolve_data_root(data_root) / self.data_folder
        return (self.path.parent / (self.images or ".")).resolve()


def _int(doc: dict, key: str, where: str, least: int, default: int | None = None, most: int | None = None) -> int:
    if key not in doc:
        if default is None:
            raise ConfigError(f"{where}: the key {key!r} is missing (an integer >= {least}, see docs/plugins.md)")
        return default
    v = doc[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < least or (most is not None and v > most):
        bound = f"from {least} to {most}" if most is not None else f">= {least}"
        raise ConfigError(f"{where}: {key} must be an integer {bound}, got {v!r}")
    return v


def _str(doc: dict, key: str, where: str) -> str | None:
    v = doc.get(key)
    if v is not None and (not isinstance(v, str) or not v.strip()):
        raise ConfigError(f"{where}: {key} must be a non-empty string, got {v!r}")
    return v


def read_spec(path: str | Path) -> FolderSpec:
    """Parse and validate a suite declaration; ConfigError (one sentence) for anything wrong."""
    path = Path(path)
    if path.is_dir():
        path = path / SUITE_FILE
    where = str(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no suite declaration at {path}; write a {SUITE_FILE} there (see docs/plugins.md)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path} ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML ({exc}); fix it (see docs/plugins.md for an example)") from None
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(_KEYS))}")
    sid = doc.get("id")
    if not isinstance(sid, str) or not _ID.fullmatch(sid):
        raise ConfigError(f"{where}: id must be letters, digits, '.', '_' or '-' (at most 64, e.g. "
                          f"'myshapes-5w1s'), got {sid!r}")
    images, data_folder = _str(doc, "images", where), _str(doc, "data_folder", where)
    if images is not None and data_folder is not None:
        raise ConfigError(f"{where}: give either images (a folder relative to this file) or data_folder "
                          f"(a folder under the data root), not both")
    if data_folder is not None and (Path(data_folder).is_absolute() or ".." in Path(data_folder).parts):
        raise ConfigError(f"{where}: data_folder must be a folder name under the data root, got {data_folder!r}")
    invert = doc.get("invert", False)
    if not isinstance(invert, bool):
        raise ConfigError(f"{where}: invert must be true or false, got {invert!r}")
    channels = doc.get("channels", 1)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"{where}: channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description must be a string, got {description!r}")
    per_class = doc.get("images_per_class")
    if per_class is not None:
        per_class = _int(doc, "images_per_class", where, 2)
    splits = doc.get("splits")
    if not isinstance(splits, dict):
        raise ConfigError(f"{where}: add a [splits] table: train/val/test = files naming the class folders, "
                          f"or rule = \"hash\" with train/val/test fractions")
    split_files = split_rule = None
    if "rule" in splits:
        if splits["rule"] != "hash":
            raise ConfigError(f"{where}: [splits] rule must be \"hash\", got {splits['rule']!r}")
        extra = sorted(set(splits) - {"rule", *SPLIT_NAMES})
        fr = {s: splits.get(s) for s in SPLIT_NAMES}
        if extra or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1 for v in fr.values()) \
                or abs(sum(fr.values()) - 1) > 1e-6:
            raise ConfigError(f"{where}: with rule = \"hash\", [splits] needs train, val and test fractions in "
                              f"(0, 1) that sum to 1, got {dict((k, v) for k, v in splits.items() if k != 'rule')}")
        split_rule = {s: float(v) for s, v in fr.items()}
    else:
        if set(splits) != set(SPLIT_NAMES) or not all(isinstance(v, str) and v for v in splits.values()):
            raise ConfigError(f"{where}: [splits] needs exactly train, val and test (file names relative to "
                              f"this file), or rule = \"hash\", got keys {sorted(splits)}")
        split_files = dict(splits)
    spec = FolderSpec(
        path=path.resolve(), id=sid, version=_int(doc, "version", where, 1), way=_int(doc, "way", where, 2),
        shot=_int(doc, "shot", where, 1), queries=_int(doc, "queries", where, 1, default=15),
        image_size=_int(doc, "image_size", where, 4, most=1024), channels=channels, invert=invert,
        images=images, data_folder=data_folder, split_files=split_files, split_rule=split_rule,
        images_per_class=per_class, test_tasks=_int(doc, "test_tasks", where, 1, default=600),
        val_tasks=_int(doc, "val_tasks", where, 1, default=600), description=description)
    if split_files is not None:
        read_split_files(spec)   # missing or overlapping lists are errors now, not at the first run
    return spec


def read_split_files(spec: FolderSpec) -> dict[str, list[str]]:
    """split -> class folder names from the split files (blank lines and '#' comments skipped);
    ConfigError for a missing file, a repeated class or a class in two splits."""
    lists: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for split in SPLIT_NAMES:
        f = spec.path.parent / spec.split_files[split]
        try:
            lines = f.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{spec.path}: cannot read the {split} split file {f} ({exc.strerror or exc})") from None
        names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        for n in names:
            if n in seen:
                raise ConfigError(f"{spec.path}: class {n!r} is listed in both the {seen[n]} and the {split} "
                                  f"split files; the splits must not overlap")
            seen[n] = split
        if not names:
            raise ConfigError(f"{spec.path}: the {split} split file {f} names no class folder")
        lists[split] = names
    return lists


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """class name -> its image files sorted by name, for every subfolder of root holding images."""
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            out[d.name] = files
    return out


def _assign_splits(spec: FolderSpec, classes: dict[str, list[Path]], root: Path) -> dict[str, list[str]]:
    if spec.split_rule is None:
        lists = read_split_files(spec)
        missing = [n for s in SPLIT_NAMES for n in lists[s] if n not in classes]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise MetabenchError(f"{spec.id}: the split files name {len(missing)} class folder(s) with no "
                                 f"{'/'.join(IMAGE_EXTENSIONS)} images in {root}: {shown}")
        return lists
    cut = (spec.split_rule["train"], spec.split_rule["train"] + spec.split_rule["val"])
    lists = {s: [] for s in SPLIT_NAMES}
    for name in classes:
        u = zlib.crc32(name.encode()) / 2**32
        lists["train" if u < cut[0] else "val" if u < cut[1] else "test"].append(name)
    return lists


def _decode(path: Path, spec: FolderSpec) -> np.ndarray:
    """One image file -> uint8 (C, H, W)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if spec.channels == 1 else "RGB")
            if im.size != (spec.image_size, spec.image_size):
                im = im.resize((spec.image_size, spec.image_size), Image.Resampling.LANCZOS)
            a = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MetabenchError(f"{spec.id}: cannot decode {path} ({exc}); remove or replace the file") from None
    if spec.invert:
        a = 255 - a
    return a[None] if spec.channels == 1 else a.transpose(2, 0, 1)


def load_image_folder(spec: FolderSpec, data_root=None, progress: bool = False) -> ClassImages:
    """The suite's images by split as uint8 (n_classes, n_per_class, C, H, W), decoded once and
    cached. DataUnavailable when the folder is absent; MetabenchError (one sentence) for missing
    classes, too few images per class, too few classes, overlapping splits or unreadable images."""
    import torch
    from tqdm.auto import tqdm

    root = spec.image_root(data_root)
    if not root.is_dir():
        how = (f"the folder {spec.data_folder!r} under the data root" if spec.data_folder
               else f"images = {spec.images or '.'!r} in {spec.path}")
        raise DataUnavailable(f"{spec.id}: no image folder at {root} ({how}); create it with one subfolder "
                              f"of images per class")
    classes = _class_folders(root)
    lists = _assign_splits(spec, classes, root)
    need = spec.shot + spec.queries
    used = [n for s in SPLIT_NAMES for n in lists[s]]
    fewest = min(len(classes[n]) for n in used) if used else 0
    per = spec.images_per_class or fewest
    short = [n for n in used if len(classes[n]) < max(per, need)]
    if short:
        n = short[0]
        why = (f"images_per_class = {per}" if spec.images_per_class and per > need
               else f"shot + queries = {spec.shot} + {spec.queries}")
        raise MetabenchError(f"{spec.id}: class {n!r} has {len(classes[n])} image(s) but {why} needs at least "
                             f"{max(per, need)} per class ({len(short)} class(es) too small); add images or "
                             f"lower shot/queries")
    for s in SPLIT_NAMES:
        if len(lists[s]) < spec.way:
            raise MetabenchError(f"{spec.id}: the {s} split has {len(lists[s])} class(es); {spec.way}-way tasks need "
                                 f"at least {spec.way}")
    files = {n: classes[n][:per] for n in used}
    digest = hashlib.sha256(spec.path.read_bytes())
    digest.update(repr(lists).encode())
    for n in used:
        for f in files[n]:
            st = f.stat()
            digest.update(f"{n}/{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())

    def build() -> ClassImages:
        images: dict[str, torch.Tensor] = {}
        with tqdm(total=len(used) * per, unit="img", desc=f"Decoding {spec.id}", disable=not progress) as bar:
            for s in SPLIT_NAMES:
                rows = []
                for n in lists[s]:
                    rows.append(np.stack([_decode(f, spec) for f in files[n]]))
                    bar.update(per)
                images[s] = torch.from_numpy(np.stack(rows))        # (C_split, per, ch, H, W)
        return ClassImages(images, {s: list(lists[s]) for s in SPLIT_NAMES}, str(root))

    data = load_cached(f"metabench-folder-{spec.id}", PREPROCESS_VERSION, digest.hexdigest()[:16], build)
    shape = (spec.channels, spec.image_size, spec.image_size)
    data.check(spec.id, shape, {s: (len(lists[s]), per) for s in SPLIT_NAMES})
    return data


class ImageFolderSuite(ImageClasses):
    """An N-way K-shot suite over an image folder declared in a ``metabench-suite.toml``."""

    def __init__(self, spec: FolderSpec):
        super().__init__(spec.way, spec.shot)
        self.spec = spec
        self.id, self.version, self.split_scheme = spec.id, spec.version, spec.split_scheme
        self.n_query_test, self.n_test_tasks, self.n_val_tasks = spec.queries, spec.test_tasks, spec.val_tasks
        self.input_shape = (spec.channels, spec.image_size, spec.image_size)
        self.needs_data = spec.data_folder or str(spec.image_root())

    @classmethod
    def from_toml(cls, path: str | Path) -> "ImageFolderSuite":
        return cls(read_spec(path))

    def _load(self, data_root, allow_download, progress):
        return load_image_folder(self.spec, data_root, progress)

    def describe(self) -> dict[str, Any]:
        return dict(super().describe(), folder=str(self.spec.path))


# --------------------------------------------------------------------------- discovery

def discover(root: str | Path) -> tuple[list[FolderSpec], list[str]]:
    """Every ``ROOT/*/metabench-suite.toml``: (the valid declarations, one sentence per bad one)."""
    specs, problems = [], []
    try:
        candidates = sorted(Path(root).glob(f"*/{SUITE_FILE}"))
    except OSError:
        return [], []
    for path in candidates:
        try:
            specs.append(read_spec(path))
        except MetabenchError as exc:
            problems.append(str(exc))
    return specs, problems


def register_folder_suites(registry, root, seen_roots: set[str] | None = None) -> list[str]:
    """Register the suites declared under ``root`` in ``registry`` (once per root); returns the
    problems met (bad declarations, ids already taken), each one sentence."""
    key = str(Path(root).expanduser().resolve()) if root is not None else ""
    if seen_roots is not None:
        if key in seen_roots:
            return []
        seen_roots.add(key)
    specs, problems = discover(root)
    for spec in specs:
        problems += register_spec(registry, spec)
    return problems


def register_spec(registry, spec: FolderSpec) -> list[str]:
    """Register one declaration under its id (origin ``folder PATH``); a taken id is a problem."""
    from functools import partial

    if spec.id in registry._items:
        taken = registry._origins.get(spec.id)
        if taken == f"folder {spec.path}":
            return []
        return [f"the suite id {spec.id!r} declared in {spec.path} is already taken ({taken}); choose another id"]
    registry.add(spec.id, partial(ImageFolderSuite, spec), origin=f"folder {spec.path}")
    return []
