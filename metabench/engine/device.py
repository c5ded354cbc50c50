"""Device choice: the GPU when present and asked for, the CPU otherwise, one code path."""
from __future__ import annotations

import torch

from metabench.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for, but torch sees no CUDA GPU here; "
                              "use --device auto or --device cpu")
        return torch.device("cuda")
    raise ConfigError(f"--device must be auto, cpu or cuda, got {name!r}")
