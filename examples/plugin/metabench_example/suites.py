"""The example's suite: an image-folder suite declared by omniglot-mini.toml (shipped here), with
its images under the data root (``DATA/omniglot-mini``, built by ``build_omniglot_mini``)."""
from __future__ import annotations

from pathlib import Path

from metabench.suites.image_folder import ImageFolderSuite

DECLARATION = Path(__file__).resolve().parent / "omniglot-mini.toml"


def omniglot_mini() -> ImageFolderSuite:
    """The ``metabench.suites`` entry point: a fresh, unprepared suite (as every suite factory)."""
    return ImageFolderSuite.from_toml(DECLARATION)
