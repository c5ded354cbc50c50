"""Shared pieces of the natural-image suites (miniImageNet, CIFAR-FS).

- ``safe_pickle_load``: reads a pickle from a data folder with an Unpickler that only resolves
  numpy's array-rebuilding functions and a few plain builtins. A pickle names the functions it
  calls while loading, so an ordinary ``pickle.load`` of a file someone handed you can run any
  code; here any other global (``os.system``, ``builtins.eval``, a class from some package...)
  raises MetabenchError instead. Python-2 pickles (CIFAR-100, MetaOptNet's files) load with
  ``encoding="latin1"``, which is also what numpy needs for their arrays.
- ``ClassImages`` and ``load_cached``: a dataset decoded once into one uint8 tensor per
  meta-split, ``(n_classes, n_per_class, C, H, W)``, cached in ``cache_dir()`` under a name that
  changes with the source files (name, size, mtime), written atomically.
- ``ImageClasses``: the Suite that samples N-way K-shot tasks from such tensors on the device.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from metabench.errors import MetabenchError
from metabench.suites.base import Suite, TaskBatch

__all__ = ["safe_pickle_load", "ClassImages", "load_cached", "ImageClasses", "files_fingerprint"]

# (module, name) pairs a data pickle may refer to: numpy's array/dtype/scalar rebuilders (numpy 1
# and numpy 2 module paths) and plain builtin containers. Nothing here can run arbitrary code.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "int"), ("builtins", "float"),
    ("builtins", "str"), ("builtins", "bytes"),
    ("__builtin__", "set"), ("__builtin__", "frozenset"),   # Python-2 spellings
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),   # how protocol-2 pickles written by Python 3 spell a bytes object
}  # fmt: skip


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, what: str):
        super().__init__(file, encoding="latin1")
        self.what = what

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise MetabenchError(
            f"Refusing to load {self.what}: the pickle asks for {module}.{name}, which is not a numpy "
            "array or a plain container (pickles can run code; only data pickles are read)."
        )

    def persistent_load(self, pid):
        raise MetabenchError(f"Refusing to load {self.what}: it uses persistent ids, which data pickles do not.")


def safe_pickle_load(source: str | os.PathLike[str] | bytes | io.IOBase, what: str | None = None) -> Any:
    """Unpickle numpy arrays and plain containers only (see the module docstring).

    ``source``: a path, the bytes of a pickle, or a binary file object. Raises MetabenchError for
    a forbidden global or a file that is not a readable pickle.
    """
    if isinstance(source, (bytes, bytearray)):
        f, label, close = io.BytesIO(source), what or "a pickle", True
    elif isinstance(source, (str, os.PathLike)):
        label = what or str(source)
        try:
            f, close = open(source, "rb"), True
        except OSError as exc:
            raise MetabenchError(f"Cannot read {label} ({exc.strerror or exc}).") from exc
    else:
        f, label, close = source, what or "a pickle", False
    try:
        return _RestrictedUnpickler(f, label).load()
    except MetabenchError:
        raise
    except Exception as exc:  # truncated file, wrong format, numpy errors...
        raise MetabenchError(f"Cannot read {label} as a pickle ({type(exc).__name__}: {exc}): "
                             "the file is corrupt or not in the expected format.") from exc
    finally:
        if close:
            f.close()


# --------------------------------------------------------------------------- decoded tensors


@dataclass(frozen=True, eq=False)
class ClassImages:
    """A dataset by meta-split: ``images[split]`` is uint8 (n_classes, n_per_class, C, H, W) and
    ``classes[split]`` names its classes in the same order."""

    images: dict[str, torch.Tensor]
    classes: dict[str, list[str]]
    source: str = ""

    def check(self, name: str, shape: tuple[int, int, int], expected: dict[str, tuple[int, int]]) -> None:
        """Errors for a wrong image shape or overlapping splits; a warning for unexpected counts."""
        seen: dict[str, str] = {}
        for split, t in self.images.items():
            if t.dtype != torch.uint8 or t.dim() != 5 or tuple(t.shape[2:]) != shape:
                raise MetabenchError(f"{name} {split} images must be uint8 (classes, images, {shape}); "
                                     f"received {t.dtype} {tuple(t.shape)} from {self.source}.")
            if len(self.classes[split]) != t.shape[0]:
                raise MetabenchError(f"{name} {split}: {t.shape[0]} image groups but "
                                     f"{len(self.classes[split])} class names in {self.source}.")
            for c in self.classes[split]:
                if c in seen:
                    raise MetabenchError(f"{name}: class {c!r} is in both the {seen[c]} and {split} splits "
                                         f"of {self.source}; the meta-splits must be disjoint.")
                seen[c] = split
        got = {s: (int(t.shape[0]), int(t.shape[1])) for s, t in self.images.items()}
        if got != expected:
            warnings.warn(f"{name} from {self.source} has (classes, images per class) {got}, not the "
                          f"published {expected}; results on it are not comparable with published ones.")


def files_fingerprint(paths: list[Path]) -> str:
    """A short digest of the files' names, sizes and mtimes (cheap: stats only)."""
    digest = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        digest.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_cached(prefix: str, version: int, fingerprint: str, build: Callable[[], ClassImages]) -> ClassImages:
    """``build()`` once per (prefix, version, fingerprint); later calls read the cache file."""
    from metabench.datafiles import cache_dir
    from metabench.fsutil import atomic_file

    path = cache_dir() / f"{prefix}-v{version}-{fingerprint}.pt"
    if path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("format") == prefix and payload.get("version") == version:
                return ClassImages(payload["images"], payload["classes"], payload["source"])
        except Exception as exc:  # an unreadable cache is just a miss
            warnings.warn(f"Ignoring the unreadable cache {path} ({exc}); decoding again.")
    data = build()
    try:
        with atomic_file(path) as f:
            torch.save({"format": prefix, "version": version, "images": data.images,
                        "classes": data.classes, "source": data.source}, f)
    except OSError as exc:
        warnings.warn(f"Could not write the cache {path} ({exc.strerror or exc}); the next load decodes "
                      "again. Set METABENCH_CACHE to a writable folder with space.")
    return data


# --------------------------------------------------------------------------- the suite


class ImageClasses(Suite):
    """N-way K-shot classification over classes of equally many RGB images per meta-split.

    A task draws ``n_way`` distinct classes of the split and, for each, ``n_shot + n_query``
    distinct images (support and query never share one); pixels are scaled to [0, 1]. Subclasses
    set the class attributes and implement ``_load(data_root, allow_download, progress)``.
    """

    kind = "classification"
    primary_metric = "accuracy"
    common_budgets = (1,)   # one inner step: the smallest budget of every gradient-based row
    n_query_test = 15
    class_ids = True

    def __init__(self, way: int, shot: int):
        super().__init__()
        self.n_way, self.n_shot = way, shot
        self._data: ClassImages | None = None
        self._images: dict[str, torch.Tensor] = {}

    def _load(self, data_root, allow_download: bool, progress: bool) -> ClassImages:
        raise NotImplementedError

    def prepare(self, data_root=None, device="cpu", *, allow_download=True, progress=True):
        if self._data is None:
            self._data = self._load(data_root, allow_download, progress)
        self._images = {s: t.to(device) for s, t in self._data.images.items()}
        return super().prepare(data_root, device)

    def n_classes(self, split: str) -> int:
        return len(self._data.classes[split])

    def _sample(self, split, n_tasks, generator, *, n_way, n_shot, n_query) -> TaskBatch:
        images = self._images[split]                                   # (C_split, N, ch, H, W)
        n_classes, n_images = images.shape[:2]
        if n_way > n_classes:
            raise ValueError(f"{n_way}-way tasks need {n_way} classes; the {split} split has {n_classes}")
        per = n_shot + n_query
        if per > n_images:
            raise ValueError(f"n_shot + n_query must be at most {n_images}, got {n_shot}+{n_query}")
        pick = torch.multinomial(torch.ones(n_tasks, n_classes), n_way, replacement=False,
                                 generator=generator)                      # (T, W)
        idx = torch.multinomial(torch.ones(n_tasks * n_way, n_images), per, replacement=False,
                                generator=generator).view(n_tasks, n_way, per)  # (T, W, S+Q)
        dev = images.device
        x = images[pick.to(dev)[..., None], idx.to(dev)]               # (T, W, S+Q, ch, H, W)
        x = x.transpose(1, 2).float().div_(255.0)                       # shot-major: label = j % W
        shape = tuple(images.shape[2:])
        xs = x[:, :n_shot].reshape(n_tasks, n_shot * n_way, *shape)
        xq = x[:, n_shot:].reshape(n_tasks, n_query * n_way, *shape)
        labels = torch.arange(n_way, device=dev)
        ys = labels.repeat(n_shot).expand(n_tasks, -1).contiguous()
        yq = labels.repeat(n_query).expand(n_tasks, -1).contiguous()
        names = self._data.classes[split]
        desc = [{"classes": [names[int(c)] for c in row]} for row in pick]
        return TaskBatch(xs, ys, xq, yq, n_way=n_way, query_groups=n_query, descriptors=desc,
                         classes=pick.to(dev))
