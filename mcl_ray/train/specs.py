"""Small translations from the config to runtime objects (augmentation spec, device)."""

from __future__ import annotations

import torch

from mcl_ray.config.schema import ExperimentConfig
from mcl_ray.data.augment import AugmentSpec
from mcl_ray.errors import ConfigError


def augment_spec(cfg: ExperimentConfig) -> AugmentSpec:
    a = cfg.augment
    return AugmentSpec(
        crop_size=cfg.data.image_size,
        crop_scale=tuple(a.crop_scale),
        hflip=a.hflip,
        jitter_strength=a.jitter,
        jitter_prob=a.jitter_prob,
        grayscale=a.grayscale,
        blur=a.blur,
    )


def resolve_device(setting: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is a config error, not a crash later."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' was requested but no CUDA device is visible")
    return torch.device(setting)
