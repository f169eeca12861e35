"""Augmentation settings as plain values (no torch, so the config layer builds them for free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AugmentSpec:
    """Plain augmentation settings (the config layer maps onto this)."""

    crop_size: int  # output side in pixels
    crop_scale: tuple[float, float] = (0.2, 1.0)  # RandomResizedCrop area fraction range
    hflip: float = 0.5  # probability of a horizontal flip
    jitter_strength: float = 0.5  # SimCLR strength s: brightness/contrast/saturation 0.8s, hue 0.2s; 0 = off
    jitter_prob: float = 0.8  # probability that a sample is colour-jittered
    grayscale: float = 0.2  # probability of converting to grayscale (0 = off)
    blur: float = 0.0  # probability of Gaussian blur (kernel ~10% of crop size, sigma 0.1-2.0)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # final normalisation
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
