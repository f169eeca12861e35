"""The torch device a run's `device` setting resolves to."""

from __future__ import annotations

import torch

from mcl_ray.errors import ConfigError


def resolve_device(setting: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is a config error, not a crash later."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' was requested but no CUDA device is visible")
    return torch.device(setting)
